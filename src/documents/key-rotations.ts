/**
 * Data-key rotations of a collection: fields encrypted with an old data key are re-encrypted with
 * a new one. While a rotation runs, writes already use the new key and equality queries on
 * deterministic fields match ciphertexts under both keys; once it is done, the old key is no
 * longer needed for this collection. The state lives in MongoDB so every instance follows it
 * (within `refreshMs`, and at once when the change feed says it changed: `recordChange`,
 * `forget`), and the resume point survives a restart.
 */
import type { Collection } from 'mongodb';

export interface RotationRecord {
  _id: string;
  namespace: string;
  fromKeyId: string;
  toKeyId: string;
  state: 'running' | 'done';
  /** Canonical Extended JSON of the last `_id` processed: where a resumed run starts. */
  resumeAfter?: string;
  /** Documents done and fields rotated up to the resume point. */
  done?: number;
  rotatedFields?: number;
  jobId?: string;
  startedAt: Date;
  finishedAt?: Date;
}

export interface KeySuccession {
  toKeyId: string;
  state: RotationRecord['state'];
}

export interface KeyRotationsOptions {
  refreshMs?: number;
  /** Tell the fleet a collection's rotation started or finished (which key its writes use changed). */
  recordChange?: (namespace: string) => Promise<void>;
  /** Whether the cached state may be served now (false while the fleet's changes cannot be followed). */
  trusted?: () => boolean;
}

export function createKeyRotations(collection: Collection<RotationRecord>, options: KeyRotationsOptions = {}) {
  const { refreshMs = 2000, recordChange = async () => undefined, trusted = () => true } = options;
  let cache: { at: number; byNamespace: Map<string, Map<string, KeySuccession>> } | undefined;
  // Bumped by every change: a read that began before it must not be cached after it.
  let epoch = 0;
  function forget(): void {
    epoch++;
    cache = undefined;
  }

  async function load(): Promise<Map<string, Map<string, KeySuccession>>> {
    if (cache && trusted() && Date.now() - cache.at < refreshMs) return cache.byNamespace;
    const since = epoch;
    const byNamespace = new Map<string, Map<string, KeySuccession>>();
    for (const record of await collection.find({}).toArray()) {
      const map = byNamespace.get(record.namespace) ?? new Map<string, KeySuccession>();
      map.set(record.fromKeyId, { toKeyId: record.toKeyId, state: record.state });
      byNamespace.set(record.namespace, map);
    }
    if (since === epoch) cache = { at: Date.now(), byNamespace };
    return byNamespace;
  }

  return {
    /** Another instance started or finished a rotation: read the state again at the next use. */
    forget,

    /** For a namespace: old key id → its successor and whether the rotation is still running. */
    async successions(namespace: string): Promise<Map<string, KeySuccession>> {
      return (await load()).get(namespace) ?? new Map();
    },
    async get(namespace: string, fromKeyId: string): Promise<RotationRecord | null> {
      return collection.findOne({ _id: `${namespace}|${fromKeyId}` });
    },
    /** Start (or resume) a rotation; a finished one with other keys is refused by the caller. */
    async begin(namespace: string, fromKeyId: string, toKeyId: string, jobId: string): Promise<RotationRecord> {
      const _id = `${namespace}|${fromKeyId}`;
      await collection.updateOne(
        { _id },
        { $set: { namespace, fromKeyId, toKeyId, state: 'running', jobId }, $setOnInsert: { startedAt: new Date() }, $unset: { finishedAt: '' } },
        { upsert: true },
      );
      forget();
      await recordChange(namespace);
      return (await collection.findOne({ _id }))!;
    },
    async saveResumePoint(namespace: string, fromKeyId: string, resumeAfter: string, counts: { done: number; rotatedFields: number }): Promise<void> {
      await collection.updateOne({ _id: `${namespace}|${fromKeyId}` }, { $set: { resumeAfter, ...counts } });
    },
    async finish(namespace: string, fromKeyId: string): Promise<void> {
      await collection.updateOne({ _id: `${namespace}|${fromKeyId}` }, { $set: { state: 'done', finishedAt: new Date() } });
      forget();
      await recordChange(namespace);
    },
  };
}

export type KeyRotations = ReturnType<typeof createKeyRotations>;

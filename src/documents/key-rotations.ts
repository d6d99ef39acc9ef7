/**
 * Data-key rotations of a collection: fields encrypted with an old data key are re-encrypted with
 * a new one. While a rotation runs, writes already use the new key and equality queries on
 * deterministic fields match ciphertexts under both keys; once it is done, the old key is no
 * longer needed for this collection. The state lives in MongoDB so every instance follows it
 * (within `refreshMs`), and the resume point survives a restart.
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
  jobId?: string;
  startedAt: Date;
  finishedAt?: Date;
}

export interface KeySuccession {
  toKeyId: string;
  state: RotationRecord['state'];
}

export function createKeyRotations(collection: Collection<RotationRecord>, refreshMs = 2000) {
  let cache: { at: number; byNamespace: Map<string, Map<string, KeySuccession>> } | undefined;

  async function load(): Promise<Map<string, Map<string, KeySuccession>>> {
    if (cache && Date.now() - cache.at < refreshMs) return cache.byNamespace;
    const byNamespace = new Map<string, Map<string, KeySuccession>>();
    for (const record of await collection.find({}).toArray()) {
      const map = byNamespace.get(record.namespace) ?? new Map<string, KeySuccession>();
      map.set(record.fromKeyId, { toKeyId: record.toKeyId, state: record.state });
      byNamespace.set(record.namespace, map);
    }
    cache = { at: Date.now(), byNamespace };
    return byNamespace;
  }

  return {
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
      cache = undefined;
      return (await collection.findOne({ _id }))!;
    },
    async saveResumePoint(namespace: string, fromKeyId: string, resumeAfter: string): Promise<void> {
      await collection.updateOne({ _id: `${namespace}|${fromKeyId}` }, { $set: { resumeAfter } });
    },
    async finish(namespace: string, fromKeyId: string): Promise<void> {
      await collection.updateOne({ _id: `${namespace}|${fromKeyId}` }, { $set: { state: 'done', finishedAt: new Date() } });
      cache = undefined;
    },
  };
}

export type KeyRotations = ReturnType<typeof createKeyRotations>;

/**
 * Master-key migration: rewrapping data keys under another master key (CMK rotation, local → AWS
 * KMS), the guided migration with its verification pass, its dry-run plan, and the rotation report.
 * Data keys and every ciphertext stay the same; only their wrapping changes.
 */
import { createHash } from 'node:crypto';
import { Binary, type Collection } from 'mongodb';
import { AppError } from '../errors.js';
import type { Kms } from '../kms/kms.js';
import { isDowngrade, readStoredMasterKey, type MasterKey } from '../kms/master-key.js';
import { keyIdToString, storedMasterKey, toKeyView, type KeyDocument } from './key-document.js';
import { selectorFilter, type KeySelector } from './key-selector.js';
import { unwrapDataKey } from './unwrap-data-key.js';

export interface MasterKeyMigrationOptions {
  collection: Collection<KeyDocument>;
  kms: Kms;
  /** Drop what this process cached of a key whose wrapping changed. */
  forgetKey(keyId: string): void;
  /** Tell the fleet these keys changed (see KeyStoreOptions.recordChanges). */
  recordChanges?: (keyIds: string[]) => Promise<void>;
  /** Run a change of one key document holding its fleet lock (see KeyStoreOptions.lock). */
  lock?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

export interface RewrapResult {
  matched: number;
  rewrapped: number;
  keyIds: string[];
}

const MAX_REWRAP = 10_000;

/** What moving keys from a KMS down to the local master key takes; the routes decide who has it. */
export const DOWNGRADE_NEEDS =
  'These data keys would move from a KMS to the local master key, a weaker protection: that needs "allowDowngrade": true, from the operator.';

export interface RewrapOptions {
  /** Allow rewrapping keys now under a KMS with the local master key (see `isDowngrade`). */
  allowDowngrade?: boolean;
}

/** Whether two stored master keys (as key documents hold them) are the same. */
function sameStoredKey(a: unknown, b: Record<string, unknown>): boolean {
  if (a === null || typeof a !== 'object') return false;
  const canonical = (value: object) => JSON.stringify(Object.entries(value).sort(([x], [y]) => (x < y ? -1 : 1)));
  return canonical(a) === canonical(b);
}

/** Refuse (403) a rewrap that would downgrade some of `docs`, unless allowed. */
function checkDowngrade(docs: { masterKey?: unknown }[], to: MasterKey, options: RewrapOptions): void {
  if (options.allowDowngrade === true) return;
  if (docs.some((doc) => isDowngrade((doc.masterKey as { provider?: unknown } | undefined)?.provider, to.provider))) {
    throw new AppError('FORBIDDEN', DOWNGRADE_NEEDS);
  }
}

/** Rewrap, migration and report over the key-vault collection; keys changed are told to the fleet. */
export function createMasterKeyMigration(options: MasterKeyMigrationOptions) {
  const { collection, kms, forgetKey, recordChanges = async () => undefined } = options;
  const lock = options.lock ?? ((_name, fn) => fn());
  /** Change an existing key document holding its fleet lock. */
  function withKeyLock<T>(id: Binary, fn: () => Promise<T>): Promise<T> {
    return lock(`key:${keyIdToString(id.buffer)}`, fn);
  }
  const unwrap = (doc: KeyDocument) => unwrapDataKey(kms, doc);

  return {
    /**
     * Re-encrypt the matching data keys under a new master key, leaving the data keys (and so every
     * ciphertext) unchanged. All keys are unwrapped and rewrapped before anything is written, so a
     * KMS failure writes nothing; each document is then replaced only if nobody changed it meanwhile.
     * Keys now under a KMS are not moved to the local master key unless `allowDowngrade` (403).
     */
    async rewrap(
      selector: KeySelector,
      newMasterKey: MasterKey,
      authorize?: (keyIds: string[]) => Promise<Set<string>>,
      options: RewrapOptions = {},
    ): Promise<RewrapResult> {
      kms.checkUsable(newMasterKey);
      const docs = await collection.find(selectorFilter(selector)).limit(MAX_REWRAP + 1).toArray();
      if (docs.length > MAX_REWRAP) throw new AppError('VALIDATION_FAILED', `Select at most ${MAX_REWRAP} keys per rewrap.`);
      if (authorize) {
        const ids = docs.map((doc) => keyIdToString(doc._id.buffer));
        const allowed = await authorize(ids);
        if (ids.some((id) => !allowed.has(id))) throw new AppError('FORBIDDEN', 'The selection includes data keys your grants do not cover.');
      }
      // Judged on the documents read here; each write below is conditional on the wrapping read,
      // so a key rewrapped meanwhile (say, up to a KMS) is left alone, not downgraded.
      checkDowngrade(docs, newMasterKey, options);
      const rewrapped: { doc: KeyDocument; material: Buffer }[] = [];
      for (const doc of docs) {
        const dataKey = await unwrap(doc);
        try {
          rewrapped.push({ doc, material: await kms.wrap(newMasterKey, dataKey) });
        } finally {
          dataKey.fill(0);
        }
      }
      const stored = storedMasterKey(newMasterKey);
      // One conditional update per key, so the answer names exactly the keys that changed: a key
      // someone else rewrapped meanwhile keeps their wrapping and is not counted.
      const changed = await Promise.all(
        rewrapped.map(async ({ doc, material }) => {
          const result = await withKeyLock(doc._id, () =>
            collection.updateOne(
              { _id: doc._id, keyMaterial: doc.keyMaterial },
              { $set: { keyMaterial: new Binary(material, 0), masterKey: stored }, $currentDate: { updateDate: true } },
            ),
          );
          return result.modifiedCount === 1 ? keyIdToString(doc._id.buffer) : undefined;
        }),
      );
      const keyIds = changed.filter((id): id is string => id !== undefined);
      keyIds.forEach(forgetKey);
      await recordChanges(keyIds);
      return { matched: docs.length, rewrapped: keyIds.length, keyIds };
    },

    /**
     * The keys a migration to `newMasterKey` would touch, and those of them it would downgrade
     * (see `isDowngrade`): a dry run, no KMS call, nothing written.
     */
    async planMigration(
      selector: KeySelector,
      newMasterKey: MasterKey,
      authorize?: (keyIds: string[]) => Promise<Set<string>>,
    ): Promise<{ keyIds: string[]; downgradeKeyIds: string[] }> {
      const docs = await collection.find(selectorFilter(selector), { projection: { _id: 1, 'masterKey.provider': 1 } }).limit(MAX_REWRAP + 1).toArray();
      if (docs.length > MAX_REWRAP) throw new AppError('VALIDATION_FAILED', `Select at most ${MAX_REWRAP} keys per migration.`);
      const ids = docs.map((doc) => keyIdToString(doc._id.buffer));
      if (authorize) {
        const allowed = await authorize(ids);
        if (ids.some((id) => !allowed.has(id))) throw new AppError('FORBIDDEN', 'The selection includes data keys your grants do not cover.');
      }
      const downgradeKeyIds = docs.filter((doc) => isDowngrade(doc.masterKey?.provider, newMasterKey.provider)).map((doc) => keyIdToString(doc._id.buffer));
      return { keyIds: ids, downgradeKeyIds };
    },

    /**
     * The guided master-key migration (CMK rotation, local → AWS): each selected data key is
     * rewrapped under the new master key, then a verification pass unwraps every migrated key under
     * its new wrapping, bypassing the cache, and compares it with the original (by SHA-256). A key
     * that does not verify (another key comes back, or KMS refuses or fails the unwrap) is restored
     * to its old wrapping together with every key not verified yet, and the migration fails with
     * that error. Keys are done
     * one at a time, so a failure part way leaves each key valid under one master key or the other;
     * running the same selection again resumes with the keys still left. Keys now under a KMS are
     * not moved to the local master key unless `allowDowngrade`: checked again here, on the keys as
     * the job reads them, since they may have been rewrapped since they were planned.
     *
     * `resumeSince`: this is the same migration taken over after its run was cut short; keys already
     * under the new master key and rewrapped since then are that run's work, checked to unwrap but
     * not rewrapped again. (Without it every selected key is rewrapped: rewrapping under the same
     * AWS key ARN is how a key rotated by AWS is picked up.)
     */
    async migrateMasterKey(
      selector: KeySelector,
      newMasterKey: MasterKey,
      options: RewrapOptions & {
        onProgress?: (progress: { total: number; done: number; failed: number; phase: string }) => Promise<void>;
        signal?: AbortSignal;
        resumeSince?: Date;
      } = {},
    ) {
      kms.checkUsable(newMasterKey);
      const docs = await collection.find(selectorFilter(selector)).limit(MAX_REWRAP).toArray();
      checkDowngrade(docs, newMasterKey, options);
      const stored = storedMasterKey(newMasterKey);
      const progress = { total: docs.length, done: 0, failed: 0, phase: 'rewrapping' };
      const migrated: { doc: KeyDocument; digest: string; material: Binary }[] = [];
      // Keys the earlier, cut-short run of this migration rewrapped (see `resumeSince`).
      const already: KeyDocument[] = [];
      let skipped = 0;
      for (const doc of docs) {
        options.signal?.throwIfAborted();
        const wrappedAt = doc.updateDate instanceof Date ? doc.updateDate.getTime() : 0;
        if (options.resumeSince !== undefined && wrappedAt >= options.resumeSince.getTime() && sameStoredKey(doc.masterKey, stored)) {
          already.push(doc);
          progress.done++;
          continue;
        }
        const dataKey = await unwrap(doc);
        let material: Buffer;
        let digest: string;
        try {
          digest = createHash('sha256').update(dataKey).digest('hex');
          material = await kms.wrap(newMasterKey, dataKey);
        } finally {
          dataKey.fill(0);
        }
        const result = await withKeyLock(doc._id, () =>
          collection.updateOne(
            { _id: doc._id, keyMaterial: doc.keyMaterial },
            { $set: { keyMaterial: new Binary(material, 0), masterKey: stored }, $currentDate: { updateDate: true } },
          ),
        );
        if (result.modifiedCount === 1) {
          migrated.push({ doc, digest, material: new Binary(material, 0) });
          forgetKey(keyIdToString(doc._id.buffer));
          await recordChanges([keyIdToString(doc._id.buffer)]);
        } else skipped++;
        progress.done++;
        if (options.onProgress && (progress.done % 10 === 0 || progress.done === progress.total)) await options.onProgress({ ...progress });
      }
      progress.phase = 'verifying';
      if (options.onProgress) await options.onProgress({ ...progress });
      for (const doc of already) {
        options.signal?.throwIfAborted();
        (await unwrap(doc)).fill(0);
      }
      for (const [index, { doc, digest }] of migrated.entries()) {
        const fresh = await collection.findOne({ _id: doc._id });
        let failure: unknown;
        if (fresh === null) {
          failure = new AppError('MIGRATION_VERIFICATION_FAILED', `Data key ${keyIdToString(doc._id.buffer)} is gone.`);
        } else {
          try {
            const again = await kms.unwrap(readStoredMasterKey(fresh.masterKey), Buffer.from(fresh.keyMaterial.buffer));
            if (createHash('sha256').update(again).digest('hex') !== digest) {
              failure = new AppError('MIGRATION_VERIFICATION_FAILED', `Data key ${keyIdToString(doc._id.buffer)} was restored to its old wrapping.`);
            }
            again.fill(0);
          } catch (err) {
            // KMS refusing or failing to unwrap what was just wrapped (an identity allowed
            // kms:Encrypt but not kms:Decrypt, say) fails the verification too: the service must
            // not leave keys under a wrapping it has not shown it can unwrap.
            failure = err;
          }
        }
        if (failure !== undefined) {
          // This key and every one not verified yet go back to their old wrapping, each only if
          // it still holds what this migration wrote; the keys already verified stay migrated.
          const unverified = migrated.slice(index);
          progress.failed += unverified.length;
          for (const { doc: old, material } of unverified) {
            await withKeyLock(old._id, () =>
              collection.updateOne({ _id: old._id, keyMaterial: material }, { $set: { keyMaterial: old.keyMaterial, masterKey: old.masterKey } }),
            );
            forgetKey(keyIdToString(old._id.buffer));
          }
          await recordChanges(unverified.map(({ doc: old }) => keyIdToString(old._id.buffer)));
          throw failure;
        }
      }
      progress.phase = 'done';
      return {
        progress,
        result: {
          matched: docs.length,
          rewrapped: migrated.length,
          verified: migrated.length,
          alreadyMigrated: already.length,
          skipped,
          keyIds: [...migrated.map(({ doc }) => doc), ...already].map((doc) => keyIdToString(doc._id.buffer)),
          masterKey: stored,
        },
      };
    },

    /**
     * How many data keys were last wrapped (created or rewrapped) longer ago than `olderThanDays`,
     * counted as the rotation report counts them, in the database (nothing read back).
     */
    async countRotationDue(olderThanDays: number): Promise<number> {
      const cutoff = new Date(Date.now() - olderThanDays * 86_400_000);
      return collection.countDocuments({
        _id: { $type: 'binData' },
        $or: [
          { updateDate: { $lt: cutoff } },
          { updateDate: { $exists: false }, creationDate: { $lt: cutoff } },
          { updateDate: { $exists: false }, creationDate: { $exists: false } },
        ],
      });
    },

    /**
     * Which master keys wrap how many data keys, and which wrappings are older than the rotation
     * period (the reference documents' CMK rotation: rewrap them under a new master key).
     */
    async rotationReport(olderThanDays: number, authorize?: (keyIds: string[]) => Promise<Set<string>>) {
      const now = Date.now();
      const cutoff = now - olderThanDays * 86_400_000;
      const docs = await collection
        .find({ _id: { $type: 'binData' } }, { projection: { masterKey: 1, creationDate: 1, updateDate: 1 } })
        .toArray();
      const allowed = authorize ? await authorize(docs.map((doc) => keyIdToString(doc._id.buffer))) : undefined;
      const groups = new Map<string, { masterKey: Record<string, string>; dataKeys: number; due: number; oldest: number; newest: number; dueKeyIds: string[] }>();
      let due = 0;
      let total = 0;
      for (const doc of docs) {
        const id = keyIdToString(doc._id.buffer);
        if (allowed && !allowed.has(id)) continue;
        total++;
        const masterKey = toKeyView(doc as KeyDocument, now).masterKey;
        const wrapped = (doc.updateDate instanceof Date ? doc.updateDate : doc.creationDate instanceof Date ? doc.creationDate : new Date(0)).getTime();
        const label = JSON.stringify(masterKey);
        const group = groups.get(label) ?? { masterKey, dataKeys: 0, due: 0, oldest: wrapped, newest: wrapped, dueKeyIds: [] };
        group.dataKeys++;
        group.oldest = Math.min(group.oldest, wrapped);
        group.newest = Math.max(group.newest, wrapped);
        if (wrapped < cutoff) {
          group.due++;
          due++;
          if (group.dueKeyIds.length < 1000) group.dueKeyIds.push(id);
        }
        groups.set(label, group);
      }
      return {
        generatedAt: new Date(now).toISOString(),
        olderThanDays,
        dataKeys: total,
        due,
        masterKeys: [...groups.values()].map((g) => ({
          masterKey: g.masterKey,
          dataKeys: g.dataKeys,
          due: g.due,
          oldestWrapDate: new Date(g.oldest).toISOString(),
          newestWrapDate: new Date(g.newest).toISOString(),
          ...(g.dueKeyIds.length > 0 ? { dueKeyIds: g.dueKeyIds } : {}),
        })),
      };
    },
  };
}

export type MasterKeyMigration = ReturnType<typeof createMasterKeyMigration>;

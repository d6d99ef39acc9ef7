import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { MongoServerError, type Collection, type Filter, Binary, UUID } from 'mongodb';
import { KEY_LENGTH } from '../crypto/aead.js';
import { AppError, isAppError } from '../errors.js';
import type { Kms } from '../kms/kms.js';
import { isDowngrade, readStoredMasterKey, type MasterKey } from '../kms/master-key.js';
import { createAltNameClaims, type AltNameClaim } from './alt-name-claims.js';
import type { DataKeyCache, KeyOrError, Loaded } from './data-key-cache.js';
import { keyIdToString, storedMasterKey, toKeyView, type KeyDocument } from './key-document.js';

export interface KeyVaultOptions {
  collection: Collection<KeyDocument>;
  kms: Kms;
  cache: DataKeyCache;
  /** How long an alt name → key id lookup is trusted (the data-key cache TTL). */
  altNameTtlMs: number;
  /**
   * Tell the fleet these keys changed (deleted, rewrapped, renamed), after the change and before
   * the caller answers, so other instances drop what they cached of them (src/fleet/).
   */
  recordChanges?: (keyIds: string[]) => Promise<void>;
  /** Whether cached alt names may be served now (false while the fleet's changes cannot be followed). */
  trusted?: () => boolean;
  /**
   * Where alt names are claimed before a key takes them (src/key-vault/alt-name-claims.ts): what
   * keeps a name unique when instances create keys at once. Without it, only this process's lock
   * and the index do.
   */
  altNameClaims?: { collection: Collection<AltNameClaim>; graceMs?: number };
  /**
   * Run a change of one key document holding a lock every instance respects (src/fleet/fleet-lock.ts):
   * FerretDB loses one of two concurrent updates of a document, so an alt name removed through one
   * instance came back, or a rewrap was undone, when another instance changed the key at once.
   */
  lock?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

export interface CreateKeyInput {
  masterKey: MasterKey;
  keyAltNames?: string[];
  /** Custom 96-byte key material (imported keys); generated when absent. */
  keyMaterial?: Buffer;
}

export interface KeySelector {
  keyIds?: UUID[];
  keyAltNames?: string[];
  provider?: MasterKey['provider'];
  /** Only keys wrapped by this AWS master key ARN. */
  masterKeyArn?: string;
}

export interface RewrapResult {
  matched: number;
  rewrapped: number;
  keyIds: string[];
}

const DUPLICATE_KEY = 11000;
const NOT_IMPLEMENTED = 238;
const INDEX_CONFLICTS = new Set([85, 86]);
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

/**
 * The key vault: data-key documents in a MongoDB collection read and written with majority
 * concerns, and the unwrapping of data keys through the KMS into the cache.
 */
export function createKeyVault(options: KeyVaultOptions) {
  const { collection, kms, cache, altNameTtlMs, recordChanges = async () => undefined, trusted = () => true } = options;
  const lock = options.lock ?? ((_name, fn) => fn());
  /** Change an existing key document holding its fleet lock. */
  function withKeyLock<T>(id: Binary, fn: () => Promise<T>): Promise<T> {
    return lock(`key:${keyIdToString(id.buffer)}`, fn);
  }
  // Ids are not secret; caching the alt-name lookup spares a vault read per request. Kept short:
  // another instance may move a name to another key.
  const altNameIds = new LRUCache<string, UUID>({ max: 10_000, ttl: Math.min(altNameTtlMs, 10_000) });
  // Alt names by key id, for authorisation by alt-name pattern; names are not secret.
  const altNamesById = new LRUCache<string, string[]>({ max: 10_000, ttl: Math.min(altNameTtlMs, 10_000) });
  // Ids known to have no key: an unknown id costs what a known one does, and gives no timing hint.
  const missingIds = new LRUCache<string, true>({ max: 10_000, ttl: altNameTtlMs });

  /** Drop what this process cached of a key (its data key, its alt names both ways). */
  function forgetKey(id: string): void {
    cache.delete(id);
    altNamesById.delete(id);
    const stale: string[] = [];
    for (const [name, keyId] of altNameIds.entries()) if (keyIdToString(keyId.buffer) === id) stale.push(name);
    for (const name of stale) altNameIds.delete(name);
  }

  // Claims make a name unique across instances; absent (unit tests), claiming is a no-op.
  const claims = options.altNameClaims
    ? createAltNameClaims({
        ...options.altNameClaims,
        keyHasName: async (keyId, name) => (await collection.findOne({ _id: keyId as UUID, keyAltNames: name }, { projection: { _id: 1 } })) !== null,
      })
    : undefined;

  /** Claim names for a key, in a canonical order (two creators of [a, b] and [b, a] do not both lose); all or none. */
  async function claimNames(names: string[], keyId: Binary): Promise<void> {
    const claimed: string[] = [];
    try {
      for (const name of [...names].sort()) {
        await claims?.claim(name, keyId);
        claimed.push(name);
      }
    } catch (err) {
      await releaseNames(claimed, keyId);
      throw err;
    }
  }

  /**
   * Release names a key no longer holds. A release that fails is left: the claim is stale (its key
   * does not hold the name) and can be claimed over after its grace period.
   */
  async function releaseNames(names: string[], keyId: Binary): Promise<void> {
    await Promise.all(names.map((name) => claims?.release(name, keyId).catch(() => undefined)));
  }

  // Alt-name uniqueness is also checked against the key documents (keys written before claims
  // existed, or by drivers) and by the index (element-wise on MongoDB; FerretDB's compares whole
  // arrays). Serialising these writes closes the race within a process.
  let altNameLock: Promise<unknown> = Promise.resolve();
  function withAltNameLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = altNameLock.then(fn, fn);
    altNameLock = run.catch(() => undefined);
    return run;
  }

  async function assertAltNamesFree(names: string[], exceptId?: Binary): Promise<void> {
    if (names.length === 0) return;
    const filter: Filter<KeyDocument> = { keyAltNames: { $in: names } };
    if (exceptId !== undefined) filter._id = { $ne: exceptId };
    const clash = await collection.findOne(filter, { projection: { _id: 1 } });
    if (clash !== null) throw new AppError('KEY_ALT_NAME_CONFLICT');
  }

  /** Create the indexes drivers expect; a partial unique index where the server has them. */
  async function createIndexes(): Promise<void> {
    await claims?.ensureIndexes();
    try {
      await collection.createIndex(
        { keyAltNames: 1 },
        { name: 'keyAltNames_1', unique: true, partialFilterExpression: { keyAltNames: { $exists: true } } },
      );
    } catch (err) {
      if (!(err instanceof MongoServerError)) throw err;
      if (INDEX_CONFLICTS.has(err.code as number)) return;
      if (err.code !== NOT_IMPLEMENTED) throw err;
      await collection.createIndex({ keyAltNames: 1 }, { name: 'keyAltNames_1', unique: true });
    }
  }

  // Indexes are made before the first write rather than at boot, so the service can start while
  // the database is briefly away (readiness says so); a failed attempt is retried next time.
  let indexes: Promise<void> | undefined;
  function ensureIndexes(): Promise<void> {
    indexes ??= createIndexes().catch((err: unknown) => {
      indexes = undefined;
      throw err;
    });
    return indexes;
  }

  function translateWriteError(err: unknown): never {
    if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) throw new AppError('KEY_ALT_NAME_CONFLICT');
    throw err;
  }

  async function unwrap(doc: KeyDocument): Promise<Buffer> {
    const masterKey = readStoredMasterKey(doc.masterKey);
    let key: Buffer;
    try {
      key = await kms.unwrap(masterKey, Buffer.from(doc.keyMaterial.buffer));
    } catch (err) {
      if (isAppError(err)) throw err;
      // A local key that fails its tag: wrong master key, or a damaged document.
      throw new AppError('MASTER_KEY_UNUSABLE', 'The data key cannot be unwrapped with the configured master key.', { cause: err });
    }
    if (key.length !== KEY_LENGTH) {
      key.fill(0);
      throw new AppError('KMS_ERROR');
    }
    return key;
  }

  function selectorFilter(selector: KeySelector): Filter<KeyDocument> {
    // Only UUID ids: a stray document of another shape in the vault is not a data key.
    const clauses: Filter<KeyDocument>[] = [{ _id: { $type: 'binData' } }];
    // A list given empty selects nothing (never everything).
    if (selector.keyIds !== undefined) clauses.push({ _id: { $in: selector.keyIds } });
    if (selector.keyAltNames !== undefined) clauses.push({ keyAltNames: { $in: selector.keyAltNames } });
    if (selector.provider !== undefined) clauses.push({ 'masterKey.provider': selector.provider });
    if (selector.masterKeyArn !== undefined) clauses.push({ 'masterKey.key': selector.masterKeyArn });
    return clauses.length === 1 ? clauses[0]! : { $and: clauses };
  }

  const vault = {
    ensureIndexes,

    /** Another instance changed this key: drop what this process cached of it. */
    forgetKey,

    /** This process cannot know what changed: drop every cached key and alt name. */
    forgetAll(): void {
      cache.clear();
      altNameIds.clear();
      altNamesById.clear();
      missingIds.clear();
    },

    /** Generate (or import), wrap and store a new data key. Nothing is written if wrapping fails. */
    async createDataKey(input: CreateKeyInput): Promise<KeyDocument> {
      kms.checkUsable(input.masterKey);
      const altNames = [...new Set(input.keyAltNames ?? [])];
      if (input.keyMaterial !== undefined && input.keyMaterial.length !== KEY_LENGTH) throw new AppError('INVALID_KEY_MATERIAL');
      await assertAltNamesFree(altNames);
      const dataKey = input.keyMaterial !== undefined ? Buffer.from(input.keyMaterial) : randomBytes(KEY_LENGTH);
      try {
        const keyMaterial = await kms.wrap(input.masterKey, dataKey);
        const now = new Date();
        const doc: KeyDocument = {
          _id: new UUID(),
          keyMaterial: new Binary(keyMaterial, 0),
          creationDate: now,
          updateDate: now,
          status: 0,
          masterKey: storedMasterKey(input.masterKey),
        };
        if (altNames.length > 0) doc.keyAltNames = altNames;
        await ensureIndexes();
        await claimNames(altNames, doc._id);
        try {
          await withAltNameLock(async () => {
            await assertAltNamesFree(altNames);
            await collection.insertOne(doc).catch(translateWriteError);
          });
        } catch (err) {
          await releaseNames(altNames, doc._id);
          throw err;
        }
        return doc;
      } finally {
        dataKey.fill(0);
      }
    },

    async findById(id: UUID): Promise<KeyDocument | null> {
      return collection.findOne({ _id: id });
    },

    async findByAltName(name: string): Promise<KeyDocument | null> {
      return collection.findOne({ keyAltNames: name });
    },

    async requireById(id: UUID): Promise<KeyDocument> {
      const doc = await vault.findById(id);
      if (doc === null) throw new AppError('KEY_NOT_FOUND');
      return doc;
    },

    async requireByAltName(name: string): Promise<KeyDocument> {
      const doc = await vault.findByAltName(name);
      if (doc === null) throw new AppError('KEY_NOT_FOUND');
      return doc;
    },

    /** A page of key documents in `_id` order, after the given id. */
    async listKeys(options: { limit: number; after?: UUID; selector?: KeySelector }): Promise<KeyDocument[]> {
      const filter = selectorFilter(options.selector ?? {});
      const page: Filter<KeyDocument> = options.after ? { $and: [filter, { _id: { $gt: options.after } }] } : filter;
      return collection.find(page).sort({ _id: 1 }).limit(options.limit).toArray();
    },

    /** Add an alt name. Like the drivers, alt-name changes leave updateDate alone: it dates the wrapping. */
    async addAltName(id: UUID, name: string): Promise<KeyDocument> {
      return withAltNameLock(() => withKeyLock(id, async () => {
        const doc = await vault.requireById(id);
        if (doc.keyAltNames?.includes(name)) return doc;
        await ensureIndexes();
        await claimNames([name], doc._id);
        try {
          await assertAltNamesFree([name], doc._id);
          await collection
            .updateOne({ _id: id }, { $push: { keyAltNames: name } })
            .catch(translateWriteError);
        } catch (err) {
          await releaseNames([name], doc._id);
          throw err;
        }
        forgetKey(keyIdToString(id.buffer));
        await recordChanges([keyIdToString(id.buffer)]);
        return vault.requireById(id);
      }));
    },

    async removeAltName(id: UUID, name: string): Promise<KeyDocument> {
      return withAltNameLock(() => withKeyLock(id, async () => {
        // $pull, not a rewrite of the array: a name another writer adds meanwhile is kept.
        const pulled = await collection.updateOne({ _id: id, keyAltNames: name }, { $pull: { keyAltNames: name } });
        if (pulled.matchedCount === 0) {
          await vault.requireById(id);
          throw new AppError('KEY_NOT_FOUND', 'The key does not have that alt name.');
        }
        // Drivers leave no empty keyAltNames array behind; neither do we.
        await collection.updateOne({ _id: id, keyAltNames: { $size: 0 } }, { $unset: { keyAltNames: '' } });
        await releaseNames([name], id);
        altNameIds.delete(name);
        forgetKey(keyIdToString(id.buffer));
        await recordChanges([keyIdToString(id.buffer)]);
        return vault.requireById(id);
      }));
    },

    /**
     * Delete a data key. Every value encrypted with it becomes unreadable, permanently: in this
     * process at once, in the fleet once the change is recorded (before this resolves). Recorded
     * even when the key was already gone: a deleter that died before recording is made good.
     */
    async deleteKey(id: UUID): Promise<boolean> {
      // No projection: FerretDB does not support one on findAndModify.
      const doc = await withKeyLock(id, () => collection.findOneAndDelete({ _id: id }));
      await releaseNames(doc?.keyAltNames ?? [], id);
      const keyId = keyIdToString(id.buffer);
      for (const name of doc?.keyAltNames ?? []) altNameIds.delete(name);
      forgetKey(keyId);
      missingIds.set(keyId, true);
      await recordChanges([keyId]);
      return doc !== null;
    },

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

    /** The id of the key an alt name names (404 when none does). */
    async resolveAltName(name: string): Promise<UUID> {
      const id = (await vault.resolveAltNames([name])).get(name);
      if (id === undefined) throw new AppError('KEY_NOT_FOUND');
      return id;
    },

    /**
     * The key ids of many alt names in one query (a batch naming a thousand keys is one round
     * trip, not a thousand); names that name no key are left out.
     */
    async resolveAltNames(names: string[]): Promise<Map<string, UUID>> {
      const found = new Map<string, UUID>();
      const missing = new Set<string>();
      const useCache = trusted();
      for (const name of names) {
        const cached = useCache ? altNameIds.get(name) : undefined;
        if (cached !== undefined) found.set(name, cached);
        else missing.add(name);
      }
      if (missing.size === 0) return found;
      const docs = await collection.find({ keyAltNames: { $in: [...missing] } }, { projection: { _id: 1, keyAltNames: 1 } }).toArray();
      for (const doc of docs) {
        const id = new UUID(doc._id.buffer);
        for (const name of doc.keyAltNames ?? []) {
          if (!missing.has(name)) continue;
          altNameIds.set(name, id);
          found.set(name, id);
        }
      }
      return found;
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

    /** The alt names of each key id (one query for what is not cached); unknown ids map to []. */
    async altNamesOf(ids: string[]): Promise<Map<string, string[]>> {
      const out = new Map<string, string[]>();
      const missing: string[] = [];
      const useCache = trusted();
      for (const id of new Set(ids)) {
        const cached = useCache ? altNamesById.get(id) : undefined;
        if (cached !== undefined) out.set(id, cached);
        else missing.push(id);
      }
      if (missing.length > 0) {
        const docs = await collection.find({ _id: { $in: missing.map((id) => new UUID(id)) } }, { projection: { keyAltNames: 1 } }).toArray();
        const found = new Map(docs.map((doc) => [keyIdToString(doc._id.buffer), doc.keyAltNames ?? []]));
        for (const id of missing) {
          const names = found.get(id) ?? [];
          altNamesById.set(id, names);
          out.set(id, names);
        }
      }
      return out;
    },

    /**
     * Run `use` with the unwrapped data keys of `ids` (or, per id, the error that made its key
     * unavailable), fetching every key that is not cached with one key-vault query. The keys are
     * leased for the duration of `use` and must not be kept beyond it.
     */
    async withDataKeys<T>(ids: Iterable<string>, use: (keys: Map<string, KeyOrError>) => T | Promise<T>): Promise<T> {
      const wanted = [...new Set(ids)];
      let batch: Promise<Map<string, KeyDocument>> | undefined;
      const load = async (id: string): Promise<Loaded> => {
        if (missingIds.has(id)) throw new AppError('KEY_NOT_FOUND');
        batch ??= collection
          .find({ _id: { $in: wanted.filter((w) => !missingIds.has(w)).map((w) => new UUID(w)) } })
          .toArray()
          .then((docs) => new Map(docs.map((doc) => [keyIdToString(doc._id.buffer), doc])));
        const doc = (await batch).get(id);
        if (doc === undefined) {
          missingIds.set(id, true);
          throw new AppError('KEY_NOT_FOUND');
        }
        // The wrapping names the key version: the same material under the same master key.
        const tag = `${JSON.stringify(doc.masterKey)}:${Buffer.from(doc.keyMaterial.buffer).toString('base64')}`;
        return { tag, unwrap: () => unwrap(doc) };
      };
      return cache.withKeys(wanted, load, (keys) => {
        for (const value of keys.values()) if (value instanceof Error && !isAppError(value)) throw value;
        return use(keys);
      });
    },
  };
  return vault;
}

export type KeyVault = ReturnType<typeof createKeyVault>;

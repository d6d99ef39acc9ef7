/**
 * The key store: data-key documents in a MongoDB collection read and written with majority
 * concerns (create, find, list, alt names, delete), the unwrapping of data keys through the KMS into
 * the cache, and the alt-name lookups authorization needs. Master-key migration (rewrap, plans, the
 * rotation report) is beside it, in master-key-migration.ts.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { MongoServerError, type Collection, type Filter, Binary, UUID } from 'mongodb';
import { KEY_LENGTH } from '../crypto/aead.js';
import { AppError, isAppError } from '../errors.js';
import type { Kms } from '../kms/kms.js';
import type { MasterKey } from '../kms/master-key.js';
import { createAltNameClaims, type AltNameClaim } from './alt-name-claims.js';
import type { DataKeyCache, KeyOrError, Loaded } from './data-key-cache.js';
import { keyIdToString, storedMasterKey, type KeyDocument, type TrashedKeyDocument } from './key-document.js';
import { createAltNameLookups } from './alt-name-lookups.js';
import { createKeyTrash, keyFieldsOf, type Reconciled } from './key-trash.js';
import { selectorFilter, type KeySelector } from './key-selector.js';
import { unwrapDataKey } from './unwrap-data-key.js';

export interface KeyStoreOptions {
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
  /**
   * Where deleted keys wait (src/key-vault/key-trash.ts), and for how long before a sweep may purge
   * them: a delete is recoverable until then.
   */
  trash: { collection: Collection<TrashedKeyDocument>; retentionMs: number };
}

/** A key and its state: in the vault (usable), or in the trash. */
export type ListedKey = { state: 'active'; doc: KeyDocument } | { state: 'deleted'; doc: TrashedKeyDocument };

/** What a trash sweep did. */
export interface SweepResult {
  /** Keys found in both collections (a move cut short) and settled. */
  reconciled: number;
  /** Keys whose retention ended, purged. */
  purged: number;
}

export interface CreateKeyInput {
  masterKey: MasterKey;
  keyAltNames?: string[];
  /** Custom 96-byte key material (imported keys); generated when absent. */
  keyMaterial?: Buffer;
}

const DUPLICATE_KEY = 11000;
const NOT_IMPLEMENTED = 238;
const INDEX_CONFLICTS = new Set([85, 86]);

/**
 * The key store over one key-vault collection. Every change of a key is told to the fleet
 * (`recordChanges`) before it resolves, so other instances drop what they cached of it.
 */
export function createKeyStore(options: KeyStoreOptions) {
  const { collection, kms, cache, altNameTtlMs, recordChanges = async () => undefined, trusted = () => true } = options;
  const trash = createKeyTrash({ vault: collection, trash: options.trash.collection });
  const retentionMs = options.trash.retentionMs;
  const lock = options.lock ?? ((_name, fn) => fn());
  /** Change an existing key document holding its fleet lock. */
  function withKeyLock<T>(id: Binary, fn: () => Promise<T>): Promise<T> {
    return lock(`key:${keyIdToString(id.buffer)}`, fn);
  }
  const lookups = createAltNameLookups({ collection, ttlMs: altNameTtlMs, trusted });
  // Ids known to have no key: an unknown id costs what a known one does, and gives no timing hint.
  const missingIds = new LRUCache<string, true>({ max: 10_000, ttl: altNameTtlMs });

  /** Drop what this process cached of a key (its data key, its alt names both ways). */
  function forgetKey(id: string): void {
    cache.delete(id);
    // A key restored through another instance exists again.
    missingIds.delete(id);
    lookups.forgetKey(id);
  }

  // Claims make a name unique across instances; absent (unit tests), claiming is a no-op.
  const claims = options.altNameClaims
    ? createAltNameClaims({
        ...options.altNameClaims,
        // A trashed key keeps its names reserved: its restore must not find them taken.
        keyHasName: async (keyId, name) =>
          (await collection.findOne({ _id: keyId as UUID, keyAltNames: name }, { projection: { _id: 1 } })) !== null || (await trash.holdsName(keyId, name)),
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
    if (clash !== null || (await trash.anyHoldsName(names, exceptId))) throw new AppError('KEY_ALT_NAME_CONFLICT');
  }

  /** Create the indexes drivers expect; a partial unique index where the server has them. */
  async function createIndexes(): Promise<void> {
    await claims?.ensureIndexes();
    await trash.ensureIndexes();
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

  /**
   * Settle a key found in both collections (see key-trash.ts) and tell this process and the fleet
   * when that moved it. The caller holds the key's lock.
   */
  async function settle(id: Binary): Promise<Reconciled> {
    const outcome = await trash.reconcile(id);
    if (outcome === 'none') return outcome;
    const keyId = keyIdToString(id.buffer);
    forgetKey(keyId);
    if (outcome === 'kept-in-trash') missingIds.set(keyId, true);
    await recordChanges([keyId]);
    return outcome;
  }

  const store = {
    ensureIndexes,

    /** Another instance changed this key: drop what this process cached of it. */
    forgetKey,

    /** This process cannot know what changed: drop every cached key and alt name. */
    forgetAll(): void {
      cache.clear();
      lookups.clear();
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
      const doc = await store.findById(id);
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
        const doc = await store.requireById(id);
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
        return store.requireById(id);
      }));
    },

    async removeAltName(id: UUID, name: string): Promise<KeyDocument> {
      return withAltNameLock(() => withKeyLock(id, async () => {
        // $pull, not a rewrite of the array: a name another writer adds meanwhile is kept.
        const pulled = await collection.updateOne({ _id: id, keyAltNames: name }, { $pull: { keyAltNames: name } });
        // A name the key does not hold: the key unchanged, as the drivers' removeKeyAltName answers.
        if (pulled.matchedCount === 0) return store.requireById(id);
        // Drivers leave no empty keyAltNames array behind; neither do we.
        await collection.updateOne({ _id: id, keyAltNames: { $size: 0 } }, { $unset: { keyAltNames: '' } });
        await releaseNames([name], id);
        lookups.forgetName(name);
        forgetKey(keyIdToString(id.buffer));
        await recordChanges([keyIdToString(id.buffer)]);
        return store.requireById(id);
      }));
    },

    /**
     * Delete a data key: it moves to the trash (src/key-vault/key-trash.ts), unusable at once in
     * this process and in the fleet once the change is recorded (before this resolves), its alt
     * names still reserved; it can be restored until `purgeAfter`, when a sweep purges it. Recorded
     * even when the key was already gone: a deleter that died before recording is made good.
     */
    async deleteKey(id: Binary, deletedBy: string): Promise<boolean> {
      await ensureIndexes();
      const moved = await withKeyLock(id, async () => {
        const doc = await collection.findOne({ _id: id });
        if (doc === null) return null;
        const deletedAt = new Date();
        const record = { deletedAt, deletedBy, purgeAfter: new Date(deletedAt.getTime() + retentionMs) };
        await trash.writeTrashCopy(doc, record);
        const removed = await trash.removeVaultCopy(id);
        // Rewrapped between the two by a writer outside the lock (a driver): keep the wrapping removed.
        if (removed !== null && !Buffer.from(removed.keyMaterial.buffer).equals(Buffer.from(doc.keyMaterial.buffer))) {
          await trash.writeTrashCopy(removed, record);
        }
        return removed ?? doc;
      });
      const keyId = keyIdToString(id.buffer);
      for (const name of moved?.keyAltNames ?? []) lookups.forgetName(name);
      forgetKey(keyId);
      missingIds.set(keyId, true);
      await recordChanges([keyId]);
      return moved !== null;
    },

    /**
     * Move a trashed key back into the vault: usable again at once here, in the fleet once the
     * change is recorded, and every value encrypted under it decrypts again. 409 KEY_NOT_DELETED
     * for an active key, 404 KEY_NOT_FOUND for one in neither collection (purged, or never there),
     * 409 KEY_ALT_NAME_CONFLICT if one of its names was taken meanwhile (nothing moves then).
     */
    async restoreKey(id: UUID): Promise<KeyDocument> {
      await ensureIndexes();
      // The alt-name lock first, then the key's, as addAltName takes them.
      const restored = await withAltNameLock(() => withKeyLock(id, async () => {
        await settle(id);
        const doc = await trash.findById(id);
        if (doc === null) {
          if ((await collection.findOne({ _id: id }, { projection: { _id: 1 } })) !== null) throw new AppError('KEY_NOT_DELETED');
          throw new AppError('KEY_NOT_FOUND');
        }
        const names = doc.keyAltNames ?? [];
        // Its names stayed claimed by it: claiming them again is a no-op, unless one was taken over.
        await claimNames(names, doc._id);
        await assertAltNamesFree(names, doc._id);
        await trash.markRestoring(id);
        try {
          await trash.writeVaultCopy(doc);
        } catch (err) {
          // Nothing reached the vault: the key stays deleted, as it was.
          await trash.clearRestoring(id).catch(() => undefined);
          throw err;
        }
        await trash.removeTrashCopy(id);
        return keyFieldsOf(doc);
      }));
      forgetKey(keyIdToString(id.buffer));
      await recordChanges([keyIdToString(id.buffer)]);
      return restored;
    },

    /**
     * Purge a trashed key now: its material is gone for good (crypto-shredding: every value under
     * it is unreadable forever, backups of the vault aside) and its alt names are free again.
     * 409 KEY_NOT_DELETED for an active key (delete it first), 404 KEY_NOT_FOUND for one in neither.
     */
    async purgeKey(id: UUID): Promise<void> {
      const purged = await withKeyLock(id, async () => {
        await settle(id);
        if ((await collection.findOne({ _id: id }, { projection: { _id: 1 } })) !== null) {
          throw new AppError('KEY_NOT_DELETED', 'The data key is active: delete it first, then purge it.');
        }
        const doc = await trash.removeTrashCopy(id);
        if (doc === null) throw new AppError('KEY_NOT_FOUND');
        return doc;
      });
      await releaseNames(purged.keyAltNames ?? [], id);
    },

    /**
     * Settle every key found in both collections: a delete or restore cut short by a crash (see
     * key-trash.ts); each under its lock. How many were settled.
     */
    async reconcileTrash(): Promise<number> {
      let reconciled = 0;
      for (const id of await trash.inBoth()) {
        if ((await withKeyLock(id, () => settle(id))) !== 'none') reconciled++;
      }
      return reconciled;
    },

    /**
     * Settle what a crash left (reconcileTrash), then purge the trashed keys whose retention ended
     * by `now`. Each key is purged under its lock, and checked again there (restored, or deleted
     * anew with a later purgeAfter, meanwhile: left alone).
     */
    async sweepTrash(now = new Date()): Promise<SweepResult> {
      const result: SweepResult = { reconciled: await store.reconcileTrash(), purged: 0 };
      for (;;) {
        const due = await trash.due(now);
        const before = result.purged;
        for (const id of due) {
          const purged = await withKeyLock(id, async () => {
            const fresh = await trash.findById(id);
            if (fresh === null || fresh.purgeAfter.getTime() > now.getTime()) return null;
            // In both again (a restore under way elsewhere): the next sweep settles it first.
            if ((await collection.findOne({ _id: id }, { projection: { _id: 1 } })) !== null) return null;
            return trash.removeTrashCopy(id);
          });
          if (purged === null) continue;
          await releaseNames(purged.keyAltNames ?? [], id);
          result.purged++;
        }
        // Stop when a pass purged nothing: what is left due is being restored or was purged already.
        if (due.length === 0 || result.purged === before) return result;
      }
    },

    /**
     * A key in either state: the vault's (active), else the trash's (deleted). A key in both (a
     * move cut short) is active: that is what it is until a sweep settles it.
     */
    async findInAnyState(id: UUID): Promise<ListedKey | null> {
      const active = await collection.findOne({ _id: id });
      if (active !== null) return { state: 'active', doc: active };
      const deleted = await trash.findById(id);
      return deleted === null ? null : { state: 'deleted', doc: deleted };
    },

    /** A key in either state by alt name (a trashed key keeps its names reserved). */
    async findInAnyStateByAltName(name: string): Promise<ListedKey | null> {
      const active = await collection.findOne({ keyAltNames: name });
      if (active !== null) return { state: 'active', doc: active };
      const deleted = await trash.findByAltName(name);
      return deleted === null ? null : { state: 'deleted', doc: deleted };
    },

    /** A page of keys in one state or both, in `_id` order after the given id (see findInAnyState). */
    async listInState(options: { state: 'active' | 'deleted' | 'all'; limit: number; after?: UUID; selector?: KeySelector }): Promise<ListedKey[]> {
      const [active, deleted] = await Promise.all([
        options.state === 'deleted' ? [] : store.listKeys(options),
        options.state === 'active' ? [] : trash.list(options),
      ]);
      const listed: ListedKey[] = [...active.map((doc) => ({ state: 'active' as const, doc })), ...deleted.map((doc) => ({ state: 'deleted' as const, doc }))];
      // Each source gave its first `limit` after `after`: the first `limit` of both are among them.
      listed.sort((a, b) => Buffer.compare(Buffer.from(a.doc._id.buffer), Buffer.from(b.doc._id.buffer)) || (a.state === 'active' ? -1 : 1));
      const once = listed.filter((key, i) => i === 0 || !Buffer.from(key.doc._id.buffer).equals(Buffer.from(listed[i - 1]!.doc._id.buffer)));
      return once.slice(0, options.limit);
    },

    /** The id of the key an alt name names (404 when none does). */
    async resolveAltName(name: string): Promise<UUID> {
      const id = (await lookups.resolveAltNames([name])).get(name);
      if (id === undefined) throw new AppError('KEY_NOT_FOUND');
      return id;
    },

    /**
     * The key ids of many alt names in one query (a batch naming a thousand keys is one round
     * trip, not a thousand); names that name no key are left out.
     */
    resolveAltNames: lookups.resolveAltNames,

    /** The alt names of each key id (one query for what is not cached); unknown ids map to []. */
    altNamesOf: lookups.altNamesOf,

    /**
     * Run `use` with the unwrapped data keys of `ids` (or, per id, the error that made its key
     * unavailable), fetching every key that is not cached with one key-vault query. The keys are
     * leased for the duration of `use` and must not be kept beyond it.
     */
    async withDataKeys<T>(ids: Iterable<string>, use: (keys: Map<string, KeyOrError>) => T | Promise<T>): Promise<T> {
      const wanted = [...new Set(ids)];
      let batch: Promise<Map<string, KeyDocument>> | undefined;
      const load = async (id: string): Promise<Loaded> => {
        // Only while the fleet's changes are followed: a key restored elsewhere is then forgotten here.
        if (trusted() && missingIds.has(id)) throw new AppError('KEY_NOT_FOUND');
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
        return { tag, unwrap: () => unwrapDataKey(kms, doc) };
      };
      return cache.withKeys(wanted, load, (keys) => {
        for (const value of keys.values()) if (value instanceof Error && !isAppError(value)) throw value;
        return use(keys);
      });
    },
  };
  return store;
}

export type KeyStore = ReturnType<typeof createKeyStore>;

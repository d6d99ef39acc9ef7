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
import { keyIdToString, storedMasterKey, type KeyDocument } from './key-document.js';
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

  const store = {
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
      const doc = await store.findById(id);
      if (doc === null) throw new AppError('KEY_NOT_FOUND');
      return doc;
    },

    async requireByAltName(name: string): Promise<KeyDocument> {
      const doc = await store.findByAltName(name);
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
        if (pulled.matchedCount === 0) {
          await store.requireById(id);
          throw new AppError('KEY_NOT_FOUND', 'The key does not have that alt name.');
        }
        // Drivers leave no empty keyAltNames array behind; neither do we.
        await collection.updateOne({ _id: id, keyAltNames: { $size: 0 } }, { $unset: { keyAltNames: '' } });
        await releaseNames([name], id);
        altNameIds.delete(name);
        forgetKey(keyIdToString(id.buffer));
        await recordChanges([keyIdToString(id.buffer)]);
        return store.requireById(id);
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

    /** The id of the key an alt name names (404 when none does). */
    async resolveAltName(name: string): Promise<UUID> {
      const id = (await store.resolveAltNames([name])).get(name);
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

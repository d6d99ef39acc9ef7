/**
 * Client identities: a name, grants, optional JWT / certificate subjects, and bearer tokens.
 *
 * A token is `epx_<tokenId>_<secret>`: the token id (16 random bytes, hex) finds the client, the
 * secret (32 random bytes, base64url) proves possession. Only SHA-256 of the secret is stored: with
 * 256 random bits there is nothing to brute-force, so a slow password hash would only cost time.
 *
 * The collection holds two kinds of documents: clients (`_id` `cl_…`) and token-use stamps
 * (`_id` `tu_<tokenId>`, the last use of a token). The stamps are kept out of the client documents
 * because FerretDB loses one of two concurrent updates of a document: a use stamp written into the
 * client document could undo a revocation or a grant change made at the same moment.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
// Binary from the driver, not from 'bson': the driver decodes with its own (CommonJS) copy of bson,
// whose classes fail `instanceof` against the ES module copy.
import { Binary, MongoServerError, type Collection, type Filter } from 'mongodb';
import { AppError } from '../errors.js';
import { checkGrants, type Grant, type Principal } from './scopes.js';

/** A client as the API shows it: never a token, a secret or a hash. */
export interface ClientView {
  id: string;
  name: string;
  grants: Grant[];
  jwtSubject?: string;
  certSubject?: string;
  disabled: boolean;
  createdAt: string;
  updatedAt: string;
  tokens: { id: string; createdAt: string; expiresAt?: string; lastUsedAt?: string }[];
}

export interface ClientStoreOptions {
  /** The clients collection; write and read concerns are the caller's (majority, as the key vault). */
  collection: Collection<any>;
  /** How long a successful authentication is trusted without a database read; 0 disables the cache. */
  cacheTtlMs: number;
  /** Cached authentications at most (default 10 000). */
  cacheMax?: number;
  /**
   * Tell the fleet a client changed (grants, disabled, a token revoked, deleted), after the change
   * and before the caller answers, so other instances drop its cached authentications (src/fleet/).
   */
  recordChange?: (clientId: string) => Promise<void>;
  /** Whether cached authentications may be served now (false while the fleet's changes cannot be followed). */
  trusted?: () => boolean;
  /**
   * Run a change of one client holding a lock every instance respects (src/fleet/fleet-lock.ts):
   * FerretDB loses one of two concurrent updates of a document, so a revocation through one
   * instance racing a grant change through another could answer 204 and leave the token working.
   * Without it, changes are serialised within this process only.
   */
  lock?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
}

interface StoredToken {
  id: string;
  /** SHA-256 of the secret. */
  hash: Binary;
  createdAt: Date;
  expiresAt?: Date;
}

interface ClientDocument {
  _id: string;
  name: string;
  grants: Grant[];
  jwtSubject?: string;
  certSubject?: string;
  disabled: boolean;
  createdAt: Date;
  updatedAt: Date;
  tokens: StoredToken[];
}

/**
 * Judges a change to a client from the client as stored, before anything is written: throws (an
 * AppError) to refuse it. The routes use it to keep a client administrator to clients within its
 * own grants.
 */
export type ClientGuard = (current: { id: string; grants: Grant[] }) => void;

/** What a guarded change answers when its condition matched nothing: read the client and judge again. */
const CHANGED = Symbol('changed');
const GUARD_ATTEMPTS = 3;

interface UseStamp {
  _id: string;
  clientId: string;
  lastUsedAt: Date;
}

interface CachedAuth {
  principal: Principal;
  clientId: string;
  expiresAt?: number;
}

const tokenPattern = /^epx_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;
const clientIdPattern = /^cl_[0-9a-f]{24}$/;
const tokenIdPattern = /^[0-9a-f]{32}$/;
// `_id` ranges of the two kinds of documents ('`' is the character after '_').
const CLIENT_IDS = { $gte: 'cl_', $lt: 'cl`' };
const STAMP_IDS = { $gte: 'tu_', $lt: 'tu`' };
const MAX_NAME_LENGTH = 200;
const MAX_SUBJECT_LENGTH = 1024;
/** Live tokens per client: enough to rotate, few enough to keep the document small. */
export const MAX_TOKENS = 20;
const MAX_PAGE = 1000;
/** A token's last use is written at most this often (per token and process). */
const LAST_USED_INTERVAL_MS = 60_000;
const DUPLICATE_KEY = 11000;
const NOT_IMPLEMENTED = 238;
const INDEX_CONFLICTS = new Set([85, 86]);

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function bytesOf(value: unknown): Buffer | undefined {
  if (value instanceof Binary) return Buffer.from(value.buffer.buffer, value.buffer.byteOffset, value.length());
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return undefined;
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.trim().length === 0 || name.length > MAX_NAME_LENGTH) {
    throw new AppError('VALIDATION_FAILED', `name must be a non-blank string of at most ${MAX_NAME_LENGTH} characters.`);
  }
  return name;
}

function checkSubject(subject: unknown, field: string): string | undefined {
  if (subject === undefined) return undefined;
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH) {
    throw new AppError('VALIDATION_FAILED', `${field} must be a non-empty string of at most ${MAX_SUBJECT_LENGTH} characters.`);
  }
  return subject;
}

function toView(doc: ClientDocument, lastUsed: Map<string, Date> = new Map()): ClientView {
  const view: ClientView = {
    id: doc._id,
    name: doc.name,
    grants: doc.grants,
    disabled: doc.disabled === true,
    createdAt: doc.createdAt.toISOString(),
    updatedAt: doc.updatedAt.toISOString(),
    tokens: (doc.tokens ?? []).map((token) => {
      const entry: ClientView['tokens'][number] = { id: token.id, createdAt: token.createdAt.toISOString() };
      if (token.expiresAt !== undefined) entry.expiresAt = token.expiresAt.toISOString();
      const used = lastUsed.get(token.id);
      if (used !== undefined) entry.lastUsedAt = used.toISOString();
      return entry;
    }),
  };
  if (doc.jwtSubject !== undefined) view.jwtSubject = doc.jwtSubject;
  if (doc.certSubject !== undefined) view.certSubject = doc.certSubject;
  return view;
}

/** A frozen principal: a cached one is shared by concurrent requests, which must not change it. */
function toPrincipal(doc: ClientDocument): Principal {
  const grants = doc.grants.map((grant) => {
    const copy: Grant = { scope: grant.scope };
    if (grant.keyAltNames !== undefined) copy.keyAltNames = Object.freeze([...grant.keyAltNames]) as string[];
    if (grant.keyIds !== undefined) copy.keyIds = Object.freeze([...grant.keyIds]) as string[];
    return Object.freeze(copy);
  });
  return Object.freeze({ clientId: doc._id, name: doc.name, grants: Object.freeze(grants) as Grant[] });
}

function translateWriteError(err: unknown): never {
  if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) {
    throw new AppError('CLIENT_CONFLICT', 'Another client already has that jwtSubject or certSubject.', { cause: err });
  }
  throw err;
}

/**
 * The client store. Authentications are cached for `cacheTtlMs`: a change made through this store
 * (update, disable, token revocation, delete) takes effect at once in this process, and in the
 * others when they read the change feed (`recordChange`, `forgetClient`); without a feed, another
 * process keeps trusting what it cached for up to `cacheTtlMs`.
 */
export function createClientStore({
  collection,
  cacheTtlMs,
  cacheMax = 10_000,
  recordChange = async () => undefined,
  trusted = () => true,
  lock = (_name, fn) => fn(),
}: ClientStoreOptions) {
  const clients = collection as Collection<ClientDocument>;
  const stamps = collection as Collection<UseStamp>;
  // Keyed by `token:<sha256 of the whole token>` or `subject:…`; never by the token itself.
  const cache = cacheTtlMs > 0 ? new LRUCache<string, CachedAuth>({ max: cacheMax, ttl: cacheTtlMs }) : undefined;
  // Bumped by every invalidation: a lookup that read the database before a change finished must
  // not put what it read into the cache after the change cleared it.
  let epoch = 0;
  // Token ids whose last use this process stamped within the interval.
  const recentlyStamped = new LRUCache<string, true>({ max: 10_000, ttl: LAST_USED_INTERVAL_MS });

  function invalidate(clientId: string): void {
    epoch++;
    if (cache === undefined) return;
    const stale: string[] = [];
    for (const [key, entry] of cache.entries()) if (entry.clientId === clientId) stale.push(key);
    for (const key of stale) cache.delete(key);
  }

  function remember(key: string, entry: CachedAuth, since: number): void {
    if (cache === undefined || since !== epoch) return;
    const ttl = entry.expiresAt === undefined ? cacheTtlMs : Math.min(cacheTtlMs, entry.expiresAt - Date.now());
    if (ttl > 0) cache.set(key, entry, { ttl });
  }

  /** Stamp a token's last use, at most once a minute; never delays or fails the request. */
  function stampUse(clientId: string, tokenId: string): void {
    if (recentlyStamped.has(tokenId)) return;
    recentlyStamped.set(tokenId, true);
    // A stamp racing a revocation may outlive its token: harmless (views show stamps of live
    // tokens only), and deleting the client removes it.
    stamps
      .updateOne({ _id: `tu_${tokenId}` }, { $set: { clientId, lastUsedAt: new Date() } }, { upsert: true })
      .catch(() => undefined);
  }

  async function lastUses(docs: ClientDocument[]): Promise<Map<string, Date>> {
    const ids = docs.flatMap((doc) => (doc.tokens ?? []).map((token) => `tu_${token.id}`));
    if (ids.length === 0) return new Map();
    const found = await stamps.find({ _id: { $in: ids } }).toArray();
    return new Map(found.map((stamp) => [stamp._id.slice('tu_'.length), stamp.lastUsedAt]));
  }

  // Writes to client documents run one at a time in a process: FerretDB loses one of two
  // concurrent updates of a document, and the uniqueness checks below need it too. Across
  // processes, a change of an existing client also holds the client's fleet lock (`lock`).
  let writeLock: Promise<unknown> = Promise.resolve();
  function serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = writeLock.then(fn, fn);
    writeLock = run.catch(() => undefined);
    return run;
  }
  function exclusive<T>(clientId: string, fn: () => Promise<T>): Promise<T> {
    return serialised(() => lock(`client:${clientId}`, fn));
  }

  /** Subjects are checked here as well as by the indexes: FerretDB has no partial indexes. */
  async function assertSubjectsFree(jwtSubject?: string, certSubject?: string): Promise<void> {
    const clauses: Filter<ClientDocument>[] = [];
    if (jwtSubject !== undefined) clauses.push({ jwtSubject });
    if (certSubject !== undefined) clauses.push({ certSubject });
    if (clauses.length === 0) return;
    const clash = await clients.findOne(clauses.length === 1 ? clauses[0]! : { $or: clauses }, { projection: { _id: 1 } });
    if (clash !== null) throw new AppError('CLIENT_CONFLICT', 'Another client already has that jwtSubject or certSubject.');
  }

  /** A token id no client has. FerretDB's unique index on an array compares whole arrays, so look. */
  async function freeTokenId(): Promise<string> {
    for (;;) {
      const id = randomBytes(16).toString('hex');
      if ((await clients.findOne({ 'tokens.id': id }, { projection: { _id: 1 } })) === null) return id;
    }
  }

  function newToken(tokenId: string, expiresAt?: Date): { stored: StoredToken; token: string } {
    const secret = randomBytes(32).toString('base64url');
    const stored: StoredToken = { id: tokenId, hash: new Binary(sha256(secret)), createdAt: new Date() };
    if (expiresAt !== undefined) stored.expiresAt = expiresAt;
    return { stored, token: `epx_${tokenId}_${secret}` };
  }

  /**
   * Remove a token, given as read. The element is pulled whole: FerretDB's $pull removes only
   * elements equal to the value given, where MongoDB would also take `{ id }` as a condition.
   * Resolves to false when the token was already gone (or the client no longer matches
   * `condition`); throws if it is somehow still there.
   */
  async function pullToken(clientId: string, stored: StoredToken, condition: Filter<ClientDocument> = {}): Promise<boolean> {
    const result = await clients.updateOne(
      { _id: clientId, 'tokens.id': stored.id, ...condition },
      { $pull: { tokens: stored }, $set: { updatedAt: new Date() } },
    );
    if (result.matchedCount === 0) return false;
    // A revocation that silently did nothing would be the worst outcome: check.
    if ((await clients.findOne({ _id: clientId, 'tokens.id': stored.id }, { projection: { _id: 1 } })) !== null) {
      throw new Error('the token could not be removed from the client document');
    }
    await stamps.deleteOne({ _id: `tu_${stored.id}` });
    return true;
  }

  async function createUniqueIndex(field: string): Promise<void> {
    const name = `${field}_1`;
    try {
      await clients.createIndex({ [field]: 1 }, { name, unique: true, partialFilterExpression: { [field]: { $exists: true } } });
    } catch (err) {
      if (!(err instanceof MongoServerError)) throw err;
      if (INDEX_CONFLICTS.has(err.code as number)) return;
      if (err.code !== NOT_IMPLEMENTED) throw err;
      // FerretDB: no partial indexes, but its unique index lets many documents lack the field.
      await clients.createIndex({ [field]: 1 }, { name, unique: true });
    }
  }

  // Made before the first write rather than at boot, so the service can start while the database
  // is briefly away; a failed attempt is retried next time.
  let indexes: Promise<void> | undefined;
  function ensureIndexes(): Promise<void> {
    indexes ??= Promise.all(['tokens.id', 'jwtSubject', 'certSubject'].map(createUniqueIndex))
      .then(() => undefined)
      .catch((err: unknown) => {
        indexes = undefined;
        throw err;
      });
    return indexes;
  }

  async function requireClient(id: string): Promise<ClientDocument> {
    const doc = typeof id === 'string' && clientIdPattern.test(id) ? await clients.findOne({ _id: id }) : null;
    if (doc === null) throw new AppError('CLIENT_NOT_FOUND');
    return doc;
  }

  /**
   * Make a change to a client after `guard` (if any) approved the client as stored. `change` puts
   * `condition` (the grants the guard saw) in its write filter and answers CHANGED when nothing
   * matched: a grant change racing the check, from another process or another administrator, then
   * makes the write miss instead of acting on a client the guard never saw, and the client is read
   * and judged again. A client deleted meanwhile ends as CLIENT_NOT_FOUND.
   */
  async function judged<T>(
    id: string,
    guard: ClientGuard | undefined,
    change: (current: ClientDocument, condition: Filter<ClientDocument>) => Promise<T | typeof CHANGED>,
  ): Promise<T> {
    for (let attempt = 0; attempt < GUARD_ATTEMPTS; attempt++) {
      const current = await requireClient(id);
      guard?.({ id: current._id, grants: current.grants });
      const result = await change(current, guard === undefined ? {} : { grants: current.grants });
      if (result !== CHANGED) return result;
    }
    throw new Error('the client kept changing while a change to it was judged');
  }

  /** Whether the client is still as `condition` says (false also when it is gone). */
  async function stillMatches(id: string, condition: Filter<ClientDocument>): Promise<boolean> {
    return (await clients.findOne({ _id: id, ...condition }, { projection: { _id: 1 } })) !== null;
  }

  async function view(doc: ClientDocument): Promise<ClientView> {
    return toView(doc, await lastUses([doc]));
  }

  const store = {
    ensureIndexes,

    /** Another instance changed this client: drop its cached authentications. */
    forgetClient: invalidate,

    /** This process cannot know what changed: drop every cached authentication. */
    forgetAll(): void {
      epoch++;
      cache?.clear();
    },

    /**
     * The principal of a client as stored now (never cached), or undefined when it is gone or
     * disabled: what a background job runs as, read again as it goes.
     */
    async currentPrincipal(clientId: string): Promise<Principal | undefined> {
      const doc = typeof clientId === 'string' && clientIdPattern.test(clientId) ? await clients.findOne({ _id: clientId }) : null;
      return doc === null || doc.disabled === true ? undefined : toPrincipal(doc);
    },

    /** Create a client with one token (no expiry). The token is shown this once: only its hash is kept. */
    async createClient(input: { name: string; grants: Grant[]; jwtSubject?: string; certSubject?: string }): Promise<{ client: ClientView; token: string }> {
      const name = checkName(input.name);
      const grants = checkGrants(input.grants);
      const jwtSubject = checkSubject(input.jwtSubject, 'jwtSubject');
      const certSubject = checkSubject(input.certSubject, 'certSubject');
      await ensureIndexes();
      const { stored, token } = newToken(await freeTokenId());
      const now = new Date();
      const doc: ClientDocument = {
        _id: `cl_${randomBytes(12).toString('hex')}`,
        name,
        grants,
        disabled: false,
        createdAt: now,
        updatedAt: now,
        tokens: [stored],
      };
      if (jwtSubject !== undefined) doc.jwtSubject = jwtSubject;
      if (certSubject !== undefined) doc.certSubject = certSubject;
      await serialised(async () => {
        await assertSubjectsFree(jwtSubject, certSubject);
        await clients.insertOne(doc).catch(translateWriteError);
      });
      return { client: toView(doc), token };
    },

    /** A page of clients in id order, after the given id; `next` is set when more follow. */
    async listClients(options: { limit: number; after?: string }): Promise<{ items: ClientView[]; next?: string }> {
      const limit = Math.max(1, Math.min(MAX_PAGE, Math.floor(options.limit) || 1));
      const range = options.after !== undefined && options.after >= CLIENT_IDS.$gte ? { $gt: options.after, $lt: CLIENT_IDS.$lt } : CLIENT_IDS;
      const docs = await clients.find({ _id: range }).sort({ _id: 1 }).limit(limit + 1).toArray();
      const page = docs.slice(0, limit);
      const lastUsed = await lastUses(page);
      const items = page.map((doc) => toView(doc, lastUsed));
      return docs.length > limit ? { items, next: items[items.length - 1]!.id } : { items };
    },

    async getClient(id: string): Promise<ClientView> {
      return view(await requireClient(id));
    },

    /**
     * Change name, grants or the disabled flag; takes effect at once for this process's cache.
     * `guard` judges the client as stored first (see ClientGuard).
     */
    async updateClient(id: string, patch: { name?: string; grants?: Grant[]; disabled?: boolean }, guard?: ClientGuard): Promise<ClientView> {
      const set: Partial<ClientDocument> = {};
      if (patch.name !== undefined) set.name = checkName(patch.name);
      if (patch.grants !== undefined) set.grants = checkGrants(patch.grants);
      if (patch.disabled !== undefined) {
        if (typeof patch.disabled !== 'boolean') throw new AppError('VALIDATION_FAILED', 'disabled must be a boolean.');
        set.disabled = patch.disabled;
      }
      const doc = await exclusive(id, () =>
        judged(id, guard, async (_current, condition) => {
          // No projection: FerretDB does not support one on findAndModify.
          const updated = await clients.findOneAndUpdate({ _id: id, ...condition }, { $set: { ...set, updatedAt: new Date() } }, { returnDocument: 'after' });
          return updated ?? CHANGED;
        }),
      );
      invalidate(id);
      await recordChange(id);
      return view(doc);
    },

    /** Delete a client, its tokens and their use stamps; `guard` judges it first (see ClientGuard). */
    async deleteClient(id: string, guard?: ClientGuard): Promise<void> {
      await exclusive(id, () =>
        judged(id, guard, async (_current, condition) => ((await clients.deleteOne({ _id: id, ...condition })).deletedCount === 1 ? true : CHANGED)),
      );
      invalidate(id);
      await recordChange(id);
      await stamps.deleteMany({ _id: STAMP_IDS, clientId: id });
    },

    /**
     * Issue another token for a client (e.g. to rotate: issue, switch, revoke the old one). The
     * token is returned this once. Expired tokens are dropped; at most MAX_TOKENS live ones.
     * `guard` judges the client first (see ClientGuard): a token acts with all of its grants.
     */
    async issueToken(clientId: string, options: { expiresAt?: Date; guard?: ClientGuard } = {}): Promise<{ tokenId: string; token: string }> {
      const { expiresAt, guard } = options;
      if (expiresAt !== undefined && (!(expiresAt instanceof Date) || Number.isNaN(expiresAt.getTime()) || expiresAt.getTime() <= Date.now())) {
        throw new AppError('VALIDATION_FAILED', 'expiresAt must be a date in the future.');
      }
      await ensureIndexes();
      const { stored, token } = newToken(await freeTokenId(), expiresAt);
      await exclusive(clientId, () =>
        judged(clientId, guard, async (doc, condition) => {
          const now = Date.now();
          for (const old of doc.tokens ?? []) {
            if (old.expiresAt !== undefined && old.expiresAt.getTime() <= now) await pullToken(clientId, old);
          }
          // The count is checked by the update itself, so two concurrent issues cannot pass the limit.
          const pushed = await clients.updateOne(
            { _id: clientId, ...condition, [`tokens.${MAX_TOKENS - 1}`]: { $exists: false } },
            { $push: { tokens: stored }, $set: { updatedAt: new Date() } },
          );
          if (pushed.matchedCount === 1) return true;
          if (!(await stillMatches(clientId, condition))) return CHANGED;
          throw new AppError('VALIDATION_FAILED', `A client may hold at most ${MAX_TOKENS} tokens: revoke one first.`);
        }),
      );
      return { tokenId: stored.id, token };
    },

    /**
     * Revoke a token; in this process at once, in others when they read the change feed. `guard`
     * judges the client first (see ClientGuard).
     */
    async revokeToken(clientId: string, tokenId: string, guard?: ClientGuard): Promise<void> {
      if (typeof tokenId !== 'string' || !tokenIdPattern.test(tokenId)) throw new AppError('CLIENT_NOT_FOUND');
      const removed = await exclusive(clientId, () =>
        judged(clientId, guard, async (doc, condition) => {
          const stored = doc.tokens?.find((token) => token.id === tokenId);
          if (stored === undefined) return false;
          if (await pullToken(clientId, stored, condition)) return true;
          return (await stillMatches(clientId, condition)) ? false : CHANGED;
        }),
      );
      invalidate(clientId);
      if (removed) await recordChange(clientId);
      if (!removed) throw new AppError('CLIENT_NOT_FOUND');
    },

    /**
     * The principal a bearer token stands for, or undefined when the token is malformed, unknown,
     * revoked, expired, or its client is disabled. The secret is compared in constant time; whether
     * a token id exists is not hidden (it is an identifier, not a secret).
     */
    async authenticateToken(token: string): Promise<Principal | undefined> {
      const match = typeof token === 'string' ? tokenPattern.exec(token) : null;
      if (match === null) return undefined;
      const tokenId = match[1]!;
      const secret = match[2]!;
      const key = `token:${sha256(token).toString('hex')}`;
      const cached = trusted() ? cache?.get(key) : undefined;
      if (cached !== undefined) {
        if (cached.expiresAt !== undefined && cached.expiresAt <= Date.now()) {
          cache?.delete(key);
          return undefined;
        }
        stampUse(cached.clientId, tokenId);
        return cached.principal;
      }

      const since = epoch;
      const doc = await clients.findOne({ 'tokens.id': tokenId });
      const stored = doc?.tokens?.find((t) => t.id === tokenId);
      if (doc === null || stored === undefined) return undefined;
      const expected = bytesOf(stored.hash);
      const actual = sha256(secret);
      if (expected === undefined || expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined;
      if (doc.disabled === true) return undefined;
      const expiresAt = stored.expiresAt?.getTime();
      if (expiresAt !== undefined && expiresAt <= Date.now()) return undefined;

      const principal = toPrincipal(doc);
      const entry: CachedAuth = { principal, clientId: doc._id };
      if (expiresAt !== undefined) entry.expiresAt = expiresAt;
      remember(key, entry, since);
      stampUse(doc._id, tokenId);
      return principal;
    },

    /**
     * The enabled client mapped to a verified JWT subject or client-certificate subject (give one;
     * given both, a client must match both), or undefined. Cached like tokens.
     */
    async findBySubject(subject: { jwtSubject?: string; certSubject?: string }): Promise<Principal | undefined> {
      const { jwtSubject, certSubject } = subject;
      if (jwtSubject === undefined && certSubject === undefined) return undefined;
      if ((jwtSubject !== undefined && typeof jwtSubject !== 'string') || (certSubject !== undefined && typeof certSubject !== 'string')) return undefined;
      const key = `subject:${JSON.stringify([jwtSubject ?? null, certSubject ?? null])}`;
      const cached = trusted() ? cache?.get(key) : undefined;
      if (cached !== undefined) return cached.principal;

      const since = epoch;
      const filter: Filter<ClientDocument> = {};
      if (jwtSubject !== undefined) filter.jwtSubject = jwtSubject;
      if (certSubject !== undefined) filter.certSubject = certSubject;
      const doc = await clients.findOne(filter);
      if (doc === null || doc.disabled === true) return undefined;
      const principal = toPrincipal(doc);
      remember(key, { principal, clientId: doc._id }, since);
      return principal;
    },
  };
  return store;
}

export type ClientStore = ReturnType<typeof createClientStore>;

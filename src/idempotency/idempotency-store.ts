/**
 * Remembers the answer to a request made with an Idempotency-Key, so a client that retries after a
 * timeout gets the first answer again instead of a second key or document. Records are per client
 * and route; the same key with a different request body is refused.
 */
import { randomUUID } from 'node:crypto';
import { Binary, MongoServerError, type Collection } from 'mongodb';
import { AppError } from '../errors.js';

export interface IdempotencyRecord {
  _id: string;
  hash: string;
  state: 'pending' | 'done';
  status?: number;
  contentType?: string;
  body?: string;
  /** A document the answer is made from again on a replay (BSON: about its own size, never its plaintext). */
  document?: Binary;
  createdAt: Date;
  expiresAt: Date;
  /** A pending claim is held only this long: a request that died (its database gone, its process killed) does not block retries. */
  pendingUntil?: Date;
  /** Names the claim, so an instance only ever releases or takes over a claim it knows is dead. */
  token?: string;
}

export interface Answer {
  status: number;
  contentType: string;
  body: string;
  document?: Uint8Array;
}

export type Claim = { kind: 'claimed' } | ({ kind: 'replay' } & Answer);

const DUPLICATE_KEY = 11000;
const RELEASE_RETRY_MS = 500;

export function createIdempotencyStore(options: { collection: Collection<IdempotencyRecord>; ttlMs: number; pendingMs: number }) {
  const { collection, ttlMs, pendingMs } = options;
  let indexes: Promise<void> | undefined;
  let inserts = 0;
  // Claims of this process's requests, by id: their tokens.
  const own = new Map<string, string>();
  // Claims whose request failed here but which MongoDB may still hold (the release, or the claim's
  // own insert, could not be confirmed): this process knows they are dead, so it takes them over at
  // once and keeps trying to delete them for the other instances.
  const abandoned = new Map<string, { token: string; until: number }>();
  let retryTimer: NodeJS.Timeout | undefined;

  function abandon(id: string, token: string): void {
    own.delete(id);
    abandoned.set(id, { token, until: Date.now() + pendingMs });
    if (retryTimer === undefined) retryTimer = setTimeout(retryReleases, RELEASE_RETRY_MS).unref();
  }

  function retryReleases(): void {
    retryTimer = undefined;
    const now = Date.now();
    for (const [id, { until }] of abandoned) if (until < now) abandoned.delete(id);
    const attempts = [...abandoned].map(([id, { token }]) =>
      collection.deleteOne({ _id: id, state: 'pending', token }).then(
        () => {
          if (abandoned.get(id)?.token === token) abandoned.delete(id);
        },
        () => undefined,
      ),
    );
    void Promise.all(attempts).then(() => {
      if (retryTimer === undefined && abandoned.size > 0) retryTimer = setTimeout(retryReleases, RELEASE_RETRY_MS).unref();
    });
  }

  /**
   * Whether this request may remove a dead or expired record so a new claim can replace it: one
   * request in the fleet per record. Decided by inserting a marker named after the record: on
   * FerretDB a conditional delete is no arbiter (two instances can both "delete" the dead claim,
   * the later one removing the new claim the first just inserted, and both execute).
   */
  async function takeOver(record: IdempotencyRecord): Promise<boolean> {
    const now = Date.now();
    const _id = `takeover|${record._id}|${record.token ?? record.createdAt.getTime()}|${record.expiresAt.getTime()}`;
    try {
      await collection.insertOne({
        _id,
        hash: '',
        state: 'done',
        createdAt: new Date(now),
        // Kept while a retry could still meet the record it replaced, then pruned with the rest.
        expiresAt: new Date(now + Math.max(pendingMs, 60_000)),
      });
      return true;
    } catch (err) {
      if (!(err instanceof MongoServerError) || err.code !== DUPLICATE_KEY) throw err;
      // Another request is taking it over; one whose marker outlived it died doing so: clear it
      // so that the next attempt can.
      const marker = await collection.findOne({ _id });
      if (marker !== null && marker.expiresAt.getTime() < now) await collection.deleteOne({ _id, expiresAt: marker.expiresAt });
      return false;
    }
  }

  function ensureIndexes(): Promise<void> {
    // A TTL index where the server has them (FerretDB has not: expiry is also checked on read).
    indexes ??= collection
      .createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 })
      .then(() => undefined)
      .catch(() => collection.createIndex({ expiresAt: 1 }).then(() => undefined))
      .catch(() => {
        indexes = undefined;
      });
    return indexes;
  }

  return {
    /**
     * Claim a key for a request, or get the stored answer of an earlier one. Throws
     * IDEMPOTENCY_KEY_REUSED for another request under the same key, IDEMPOTENCY_IN_PROGRESS while
     * the first is still running.
     */
    async claim(id: string, hash: string): Promise<Claim> {
      await ensureIndexes();
      for (let attempt = 0; attempt < 3; attempt++) {
        const now = new Date();
        const token = randomUUID();
        try {
          await collection.insertOne({
            _id: id,
            hash,
            state: 'pending',
            createdAt: now,
            expiresAt: new Date(now.getTime() + ttlMs),
            pendingUntil: new Date(now.getTime() + pendingMs),
            token,
          });
          own.set(id, token);
          if (++inserts % 100 === 0) void collection.deleteMany({ expiresAt: { $lt: now } }).catch(() => undefined);
          return { kind: 'claimed' };
        } catch (err) {
          if (!(err instanceof MongoServerError) || err.code !== DUPLICATE_KEY) {
            // The insert may have landed although its answer was lost: a claim nobody runs.
            abandon(id, token);
            throw err;
          }
        }
        const existing = await collection.findOne({ _id: id });
        if (existing === null) continue;
        if (existing.expiresAt < now) {
          if (await takeOver(existing)) await collection.deleteOne({ _id: id, expiresAt: existing.expiresAt });
          continue;
        }
        if (existing.hash !== hash) throw new AppError('IDEMPOTENCY_KEY_REUSED');
        if (existing.state === 'pending') {
          // Its request failed here, or outlived any request's time limit (it died): take it over.
          const failedHere = existing.token !== undefined && abandoned.get(id)?.token === existing.token;
          if (failedHere || (existing.pendingUntil !== undefined && existing.pendingUntil < now)) {
            abandoned.delete(id);
            if (await takeOver(existing)) await collection.deleteOne({ _id: id, state: 'pending', createdAt: existing.createdAt });
            continue;
          }
          throw new AppError('IDEMPOTENCY_IN_PROGRESS');
        }
        const document = existing.document === undefined ? {} : { document: existing.document.buffer };
        return { kind: 'replay', status: existing.status!, contentType: existing.contentType!, body: existing.body!, ...document };
      }
      throw new AppError('IDEMPOTENCY_IN_PROGRESS');
    },

    /** Keep the answer for replays. */
    async complete(id: string, answer: Answer): Promise<void> {
      const token = own.get(id);
      own.delete(id);
      const { document, ...rest } = answer;
      await collection.updateOne({ _id: id, token }, { $set: { state: 'done', ...rest, ...(document === undefined ? {} : { document: new Binary(document) }) } });
    },

    /** Forget a claim whose request failed on the server side, so a retry runs again. */
    async release(id: string): Promise<void> {
      const token = own.get(id);
      if (token === undefined) return;
      try {
        await collection.deleteOne({ _id: id, state: 'pending', token });
        own.delete(id);
      } catch (err) {
        abandon(id, token);
        throw err;
      }
    },

    close(): void {
      clearTimeout(retryTimer);
      retryTimer = undefined;
    },
  };
}

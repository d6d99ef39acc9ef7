/**
 * Remembers the answer to a request made with an Idempotency-Key, so a client that retries after a
 * timeout gets the first answer again instead of a second key or document. Records are per client
 * and route; the same key with a different request body is refused.
 */
import { MongoServerError, type Collection } from 'mongodb';
import { AppError } from '../errors.js';

export interface IdempotencyRecord {
  _id: string;
  hash: string;
  state: 'pending' | 'done';
  status?: number;
  contentType?: string;
  body?: string;
  createdAt: Date;
  expiresAt: Date;
}

export type Claim = { kind: 'claimed' } | { kind: 'replay'; status: number; contentType: string; body: string };

const DUPLICATE_KEY = 11000;

export function createIdempotencyStore(options: { collection: Collection<IdempotencyRecord>; ttlMs: number }) {
  const { collection, ttlMs } = options;
  let indexes: Promise<void> | undefined;
  let inserts = 0;

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
        try {
          await collection.insertOne({ _id: id, hash, state: 'pending', createdAt: now, expiresAt: new Date(now.getTime() + ttlMs) });
          if (++inserts % 100 === 0) void collection.deleteMany({ expiresAt: { $lt: now } }).catch(() => undefined);
          return { kind: 'claimed' };
        } catch (err) {
          if (!(err instanceof MongoServerError) || err.code !== DUPLICATE_KEY) throw err;
        }
        const existing = await collection.findOne({ _id: id });
        if (existing === null) continue;
        if (existing.expiresAt < now) {
          await collection.deleteOne({ _id: id, expiresAt: existing.expiresAt });
          continue;
        }
        if (existing.hash !== hash) throw new AppError('IDEMPOTENCY_KEY_REUSED');
        if (existing.state === 'pending') throw new AppError('IDEMPOTENCY_IN_PROGRESS');
        return { kind: 'replay', status: existing.status!, contentType: existing.contentType!, body: existing.body! };
      }
      throw new AppError('IDEMPOTENCY_IN_PROGRESS');
    },

    /** Keep the answer for replays. */
    async complete(id: string, answer: { status: number; contentType: string; body: string }): Promise<void> {
      await collection.updateOne({ _id: id }, { $set: { state: 'done', ...answer } });
    },

    /** Forget a claim whose request failed on the server side, so a retry runs again. */
    async release(id: string): Promise<void> {
      await collection.deleteOne({ _id: id, state: 'pending' });
    },
  };
}

/**
 * Short mutual exclusion across the fleet, for read-modify-write changes of one document that
 * instances may make at once (a client's grants changed through one instance while a token of it
 * is revoked through another). FerretDB applies concurrent updates of a document without isolation:
 * one of the two is lost, even when both answered success, and a lost revocation is a token that
 * still works. MongoDB does not need it; it costs two small writes per change there.
 *
 * A lock is a document per generation, `<name>:<generation>`; the newest generation holds the name
 * until its `until`, or until its holder lets it go. Taking a lock inserts the next generation, so
 * a unique `_id` is the only arbiter (FerretDB has no compare-and-set); only the holder updates its
 * own generation. A holder stalled past `ttlMs` may lose the lock to another instance: critical
 * sections are a few database operations, far shorter.
 */
import { randomBytes } from 'node:crypto';
import { MongoServerError, type Collection } from 'mongodb';

export interface LockDocument {
  _id: string;
  name: string;
  generation: number;
  owner: string;
  until: Date;
}

export interface FleetLockOptions {
  collection: Collection<LockDocument>;
  /** How long a lock holds without being let go (a holder that died). */
  ttlMs?: number;
  /** How long to wait for a lock before giving up (the error is thrown). */
  waitMs?: number;
}

const DUPLICATE_KEY = 11000;

export class LockTimeoutError extends Error {
  constructor(name: string) {
    super(`the fleet lock ${name} stayed taken`);
    this.name = 'LockTimeoutError';
  }
}

export function createFleetLocks({ collection, ttlMs = 5000, waitMs = 10_000 }: FleetLockOptions) {
  const owner = randomBytes(8).toString('hex');
  let indexes: Promise<void> | undefined;

  function ensureIndexes(): Promise<void> {
    indexes ??= collection
      .createIndex({ name: 1, generation: -1 }, { name: 'name_1_generation_-1' })
      .then(() => undefined)
      .catch((err: unknown) => {
        indexes = undefined;
        throw err;
      });
    return indexes;
  }

  async function acquire(name: string): Promise<LockDocument> {
    await ensureIndexes().catch(() => undefined);
    const deadline = performance.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      const [head] = await collection.find({ name }).sort({ generation: -1 }).limit(1).toArray();
      if (head === undefined || head.until.getTime() <= Date.now()) {
        const doc: LockDocument = { _id: `${name}:${(head?.generation ?? -1) + 1}`, name, generation: (head?.generation ?? -1) + 1, owner, until: new Date(Date.now() + ttlMs) };
        try {
          await collection.insertOne(doc);
          // Old generations are pruned, so an insert of a pruned one succeeds for a claimer that
          // read the head long ago: the lock is its own only if it is the newest.
          const [now] = await collection.find({ name }).sort({ generation: -1 }).limit(1).toArray();
          if (now?._id === doc._id) return doc;
        } catch (err) {
          if (!(err instanceof MongoServerError) || err.code !== DUPLICATE_KEY) throw err;
        }
      }
      if (performance.now() > deadline) throw new LockTimeoutError(name);
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * Math.min(50, 5 * attempt)));
    }
  }

  return {
    /** Run `fn` holding the lock `name` (across every instance on this database). */
    async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
      const lock = await acquire(name);
      try {
        return await fn();
      } finally {
        // Let go at once (if this fails the lock lapses after ttlMs), and prune what came before.
        await collection.updateOne({ _id: lock._id, owner }, { $set: { until: new Date(0) } }).catch(() => undefined);
        void collection.deleteMany({ name, generation: { $lt: lock.generation } }).catch(() => undefined);
      }
    },
  };
}

export type FleetLocks = ReturnType<typeof createFleetLocks>;

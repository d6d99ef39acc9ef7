/**
 * Which instance runs a background job: a lease in MongoDB, renewed by a heartbeat, that another
 * instance takes over once it has lapsed (its holder died, or let it go on shutdown).
 *
 * A lease is a document per generation, `<jobId>:<generation>`, and the newest generation holds
 * the job. Taking a job over inserts the next generation: only a unique `_id` arbitrates, because
 * FerretDB applies concurrent conditional updates without isolation (five instances "winning" one
 * conditional findOneAndUpdate). Only its holder ever updates a generation (to renew it or let it
 * go), so no two writers meet on one document.
 *
 * Lapse is judged by the reader's clock against the holder's `until`: instances' clocks must agree
 * to well within a third of the lease (NTP does). A holder that notices it lost the lease (a newer
 * generation exists, or its renewal came too late) stops at its next step; until then two instances
 * may briefly run one job, which the resumable operations allow (each write is conditional on what
 * it replaces).
 */
import { MongoServerError, type Collection } from 'mongodb';

export interface LeaseDocument {
  _id: string;
  jobId: string;
  generation: number;
  /** The instance holding it (for operators and logs). */
  owner: string;
  until: Date;
}

export interface Lease {
  jobId: string;
  generation: number;
  /** performance.now() deadline as this process knows it: past it, the holder assumes it lost the job. */
  deadline: number;
}

const DUPLICATE_KEY = 11000;

export function createJobLeases(options: { collection: Collection<LeaseDocument>; leaseMs: number; owner: string }) {
  const { collection, leaseMs, owner } = options;
  let indexes: Promise<void> | undefined;

  function ensureIndexes(): Promise<void> {
    indexes ??= collection
      .createIndex({ jobId: 1, generation: -1 }, { name: 'jobId_1_generation_-1' })
      .then(() => undefined)
      .catch((err: unknown) => {
        indexes = undefined;
        throw err;
      });
    return indexes;
  }

  async function newest(jobId: string): Promise<LeaseDocument | null> {
    const [doc] = await collection.find({ jobId }).sort({ generation: -1 }).limit(1).toArray();
    return doc ?? null;
  }

  return {
    newest,

    /**
     * Take the generation after `after` (null: the first). Undefined when another instance took
     * it first.
     */
    async acquire(jobId: string, after: LeaseDocument | null): Promise<Lease | undefined> {
      await ensureIndexes().catch(() => undefined);
      const generation = (after?.generation ?? -1) + 1;
      const sentAt = performance.now();
      try {
        await collection.insertOne({ _id: `${jobId}:${generation}`, jobId, generation, owner, until: new Date(Date.now() + leaseMs) });
      } catch (err) {
        if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return undefined;
        throw err;
      }
      return { jobId, generation, deadline: sentAt + leaseMs };
    },

    /** Whether the lease has lapsed by this process's clock (so it may be taken over). */
    lapsed(doc: LeaseDocument): boolean {
      return doc.until.getTime() < Date.now();
    },

    /**
     * Renew a lease this process holds; false when it is lost (renewed too late, or a newer
     * generation exists): the holder must stop.
     */
    async renew(lease: Lease): Promise<boolean> {
      const sentAt = performance.now();
      if (sentAt > lease.deadline) return false;
      await collection.updateOne({ _id: `${lease.jobId}:${lease.generation}`, owner }, { $set: { until: new Date(Date.now() + leaseMs) } });
      const head = await newest(lease.jobId);
      if (head?.generation !== lease.generation) return false;
      lease.deadline = sentAt + leaseMs;
      return true;
    },

    /**
     * Whether this process still holds the lease (the newest generation is its own, not lapsed).
     * When the database cannot say, the deadline does.
     */
    async holds(lease: Lease): Promise<boolean> {
      if (performance.now() > lease.deadline) return false;
      try {
        return (await newest(lease.jobId))?.generation === lease.generation;
      } catch {
        return performance.now() <= lease.deadline;
      }
    },

    /** Remove every generation of a finished piece of work's lease (a past period of a scheduled task). */
    async discard(jobId: string): Promise<void> {
      await collection.deleteMany({ jobId });
    },

    /** Let a lease go at once (shutdown): another instance may take the job over now. */
    async release(lease: Lease): Promise<void> {
      await collection.updateOne({ _id: `${lease.jobId}:${lease.generation}`, owner }, { $set: { until: new Date(0) } });
    },
  };
}

export type JobLeases = ReturnType<typeof createJobLeases>;

/**
 * Copies the spool's records into MongoDB, in order, and tells the spool how far it got. Each
 * record's `_id` is (chainId, seq), so shipping a record twice (after a restart, or a write whose
 * answer was lost) is recognised as a duplicate of the same record and skipped; a record at that
 * `_id` with another hmac means two spools write one chain, and shipping stops (a fork, reported,
 * never overwritten). A database outage only delays shipping: the spool holds the records, and
 * appends fail closed once the backlog passes its bound.
 */
import { MongoBulkWriteError, type Collection } from 'mongodb';
import type { AuditRecord } from './audit-record.js';
import type { AuditSpool } from './audit-spool.js';
import type { AuditStore } from './audit-store.js';

export interface AuditShipperOptions {
  spool: AuditSpool;
  records: Collection<AuditRecord>;
  store: AuditStore;
  /** Records per insertMany: FerretDB inserts in chunks of 100. */
  batchSize?: number;
  /** How often the head is published again when nothing is shipped (ms). */
  headIntervalMs?: number;
  /**
   * How long a partial batch waits for more records before it goes out (ms): under load, inserts
   * of full batches, not one small insert per group of requests. A flush does not wait.
   */
  lingerMs?: number;
  log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void; info(obj: object, msg: string): void };
  onShipped?(count: number): void;
}

export type ShipperState = 'idle' | 'shipping' | 'retrying' | 'forked' | 'stopped';

const DUPLICATE_KEY = 11000;
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The published head and the shipped marker follow the shipping at most this often. */
const HEAD_EVERY_MS = 1000;

export function createAuditShipper({ spool, records, store, batchSize = 100, headIntervalMs = 30_000, lingerMs = 20, log, onShipped }: AuditShipperOptions) {
  let state: ShipperState = 'idle';
  let running = false;
  let loop: Promise<void> | undefined;
  let lastError: string | undefined;
  let lastShippedAt: Date | undefined;
  let headPublishedAt = 0;
  /** Someone waits in flush(): ship without lingering. */
  let urgent = 0;
  const progress = new Set<() => void>();

  /** Insert a batch; returns false when the database holds another record at one of its ids. */
  async function ship(batch: AuditRecord[]): Promise<boolean> {
    try {
      await records.insertMany(batch, { ordered: true, writeConcern: { w: 'majority', journal: true } });
      return true;
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      if (errors.some((e) => e.code !== DUPLICATE_KEY) || err.result.getWriteConcernError() !== undefined) throw err;
    }
    // Some records are there already. Each must be exactly ours; the others are inserted again.
    const existing = await records.find({ _id: { $in: batch.map((r) => r._id) } }, { projection: { hmac: 1 } }).toArray();
    const stored = new Map(existing.map((doc) => [doc._id, doc.hmac]));
    for (const record of batch) {
      const hmac = stored.get(record._id);
      if (hmac !== undefined && hmac !== record.hmac) {
        log.error({ chainId: record.chainId, seq: record.seq }, 'audit chain fork: the database holds another record at this seq; shipping stopped (two spools write one chain?)');
        return false;
      }
    }
    const missing = batch.filter((record) => !stored.has(record._id));
    if (missing.length > 0) await records.insertMany(missing, { ordered: true, writeConcern: { w: 'majority', journal: true } });
    return true;
  }

  async function run(): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    while (running) {
      if (urgent === 0 && spool.state().backlog < batchSize && spool.state().backlog > 0) await sleep(lingerMs);
      const batch = spool.peek(batchSize);
      if (batch.length === 0) {
        state = 'idle';
        for (const wake of progress) wake();
        if (Date.now() - headPublishedAt > headIntervalMs && spool.state().shipped.seq > 0) {
          // Re-assert the head now and then: a head rolled back in the database does not stay so.
          await store.publishHead(spool.chainId, spool.state().shipped).then(
            () => (headPublishedAt = Date.now()),
            () => undefined,
          );
        }
        await spool.waitForAppend(Math.min(1000, headIntervalMs));
        continue;
      }
      state = 'shipping';
      try {
        await store.ensureIndexes();
        if (!(await ship(batch))) {
          state = 'forked';
          lastError = 'fork';
          // Nothing more is shipped from this spool; appends go on until the backlog bound.
          return;
        }
        const last = batch[batch.length - 1]!;
        const caughtUp = spool.state().backlog <= batch.length;
        // The marker and the head follow at most once a second, and whenever shipping catches up.
        const note = caughtUp || Date.now() - headPublishedAt >= HEAD_EVERY_MS;
        await spool.markShipped({ seq: last.seq, hmac: last.hmac }, { persist: note });
        if (note) {
          await store.publishHead(spool.chainId, { seq: last.seq, hmac: last.hmac });
          headPublishedAt = Date.now();
        }
        lastShippedAt = new Date();
        lastError = undefined;
        backoff = MIN_BACKOFF_MS;
        onShipped?.(batch.length);
        for (const wake of progress) wake();
      } catch (err) {
        state = 'retrying';
        if (lastError === undefined) log.warn({ err }, 'audit records not shipped to the database yet; retrying (they are safe in the spool)');
        lastError = (err as Error)?.message ?? String(err);
        await sleep(backoff);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  }

  /** Resolves true once every record up to `target` is shipped, false at the deadline. */
  async function waitFor(target: number, deadline: number): Promise<boolean> {
    while (spool.state().shipped.seq < target) {
      const left = deadline - Date.now();
      if (left <= 0 || state === 'forked' || !running) return spool.state().shipped.seq >= target;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          progress.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 250));
        progress.add(done);
      });
    }
    return true;
  }

  return {
    start(): void {
      if (running) return;
      running = true;
      loop = run().catch((err: unknown) => {
        log.error({ err }, 'audit shipper stopped');
      }).finally(() => {
        state = state === 'forked' ? 'forked' : 'stopped';
        running = false;
      });
    },

    /**
     * Wait until every record appended so far is in the database, or `timeoutMs` passes; true when
     * it got there.
     */
    async flush(timeoutMs: number): Promise<boolean> {
      const target = spool.state().head.seq;
      const deadline = Date.now() + timeoutMs;
      urgent++;
      try {
        return await waitFor(target, deadline);
      } finally {
        urgent--;
      }
    },

    status() {
      const { backlog, head, shipped } = spool.state();
      return { state, backlog, head: head.seq, shipped: shipped.seq, ...(lastShippedAt ? { lastShippedAt } : {}), ...(lastError ? { lastError } : {}) };
    },

    async stop(): Promise<void> {
      running = false;
      await loop;
    },
  };
}

export type AuditShipper = ReturnType<typeof createAuditShipper>;

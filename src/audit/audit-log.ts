import { MongoBulkWriteError, type Collection } from 'mongodb';
import { AppError } from '../errors.js';
import { createRecordSigner, GENESIS, readEvent, type AuditEvent, type AuditRecord, type ChainHead, type EventFields } from './audit-record.js';
import { createAuditStore, type AuditListOptions, type AuditStore } from './audit-store.js';

export { auditRecordId, GENESIS, type AuditEvent, type AuditOutcome, type AuditRecord } from './audit-record.js';
export type { AuditListOptions, AuditProblem, AuditVerification } from './audit-store.js';

export interface AuditLogOptions {
  collection: Collection<AuditRecord>;
  /** At least 32 bytes. Every chain in the collection must be keyed by it for verify() to pass. */
  hmacKey: Buffer;
  chainId: string;
  /** How long append() may take in all, queueing and retries included, before it gives up (default 5000). */
  timeoutMs?: number;
  /** Lists, verifies and keeps heads; one over `collection` without heads or checkpoints when absent. */
  store?: AuditStore;
}

const DUPLICATE_KEY = 11000;
const DEFAULT_TIMEOUT_MS = 5000;
/** Duplicate keys are expected when instances share a chain; this only stops a runaway loop. */
const MAX_ATTEMPTS = 50;
/** Duplicate keys after which a reloaded head still lies below the seq we lost: not a peer, a fault. */
const MAX_STALLED = 3;
/**
 * Records per insertMany. Not more: FerretDB (1.24) inserts in chunks of 100 and, when an ordered
 * insert meets a duplicate key, skips the rest of that chunk but goes on with the next one, which
 * would store records chained to ones that were never written.
 */
const MAX_BATCH = 100;
/**
 * The head query may scan the chain where the server cannot use the {chainId, seq} index for the
 * sort (FerretDB on SQLite: about 60 µs per record, so ~6 s at 100k records). It is not bounded by
 * an append's deadline: appends fail by theirs, the load goes on, and later appends use its answer.
 */
const HEAD_MAX_TIME_MS = 120_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a failed ordered insertMany of `size` records is known to have written: its first `written`
 * records (acknowledged with the requested write concern), and whether it stopped because the next
 * one's _id existed. Undefined when that cannot be told: a write concern error (nothing is known
 * durable), a network error or timeout, or a report that does not add up. The driver reports the
 * stop as writeErrors[0].index, and insertedCount must agree with it.
 */
function writtenPrefix(err: unknown, size: number): { written: number; duplicate: boolean } | undefined {
  if (!(err instanceof MongoBulkWriteError)) return undefined;
  try {
    if (err.result.getWriteConcernError() !== undefined) return undefined;
    const writeErrors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
    const first = writeErrors.reduce<(typeof writeErrors)[number] | undefined>(
      (lowest, e) => (e !== undefined && (lowest === undefined || e.index < lowest.index) ? e : lowest),
      undefined,
    );
    if (first === undefined || !Number.isSafeInteger(first.index) || first.index < 0 || first.index >= size) return undefined;
    if (err.insertedCount !== first.index) return undefined;
    return { written: first.index, duplicate: first.code === DUPLICATE_KEY };
  } catch {
    return undefined;
  }
}

/** One append waiting for its answer. */
interface Pending {
  fields: EventFields;
  /** When its caller stops waiting: the time of the call plus timeoutMs. */
  deadline: number;
  /** Once true the caller has its answer, and the event is no longer written (again). */
  settled: boolean;
  timer?: NodeJS.Timeout;
  resolve(record: AuditRecord): void;
  reject(err: AppError): void;
}

function unavailable(cause: unknown): AppError {
  return new AppError('AUDIT_UNAVAILABLE', undefined, { cause });
}

function succeed(entry: Pending, record: AuditRecord): void {
  if (entry.settled) return;
  entry.settled = true;
  clearTimeout(entry.timer);
  // A copy per caller: the array handed to the driver is not theirs to see changed.
  entry.resolve({ ...record });
}

function fail(entry: Pending, err: AppError): void {
  if (entry.settled) return;
  entry.settled = true;
  clearTimeout(entry.timer);
  entry.reject(err);
}

function failAll(entries: Pending[], cause: unknown): void {
  for (const entry of entries) if (!entry.settled) fail(entry, unavailable(cause));
}

/**
 * An append-only, tamper-evident audit trail in a MongoDB collection.
 *
 * Records form hash chains: each carries `seq` (+1 per record) and `prev`, the HMAC of the record
 * before it, and is itself HMAC'd with a key the database never sees. Changing, reordering or
 * removing a record therefore shows in verify(), unless the HMAC key is known. Several instances
 * may share one chain: `_id` is derived from (chainId, seq), so the unique _id index admits one
 * record per seq, and the loser of a race reloads the chain head and tries the next seq.
 *
 * Appends are group-committed: while one insertMany is in flight, the appends that arrive queue up
 * and go out together in the next one (at most MAX_BATCH records), so throughput is not one
 * durable round trip per event.
 *
 * Records hold only what an AuditEvent carries: who, what, outcome, field paths and key ids,
 * never a value or a hash of one.
 */
export function createAuditLog({ collection, hmacKey, chainId, timeoutMs = DEFAULT_TIMEOUT_MS, store: given }: AuditLogOptions) {
  const signer = createRecordSigner(hmacKey);
  const store = given ?? createAuditStore({ records: collection, signer });
  if (typeof chainId !== 'string' || chainId.length === 0 || chainId.length > 200) {
    throw new RangeError('the audit chain id must be a string of 1 to 200 characters');
  }

  /** Seq and hmac of the last record of our chain as we believe it; undefined means "reload". */
  let head: { seq: number; hmac: string } | undefined;
  /** The one head query in flight, shared by every batch that needs it; undefined when none is. */
  let headLoad: Promise<{ seq: number; hmac: string }> | undefined;
  /** Bumped whenever the head becomes unknown, so an older load in flight does not set a stale head. */
  let headEpoch = 0;

  /** Appends waiting for a write, oldest first. */
  const pending: Pending[] = [];
  /** Every append not yet settled, for flush(). */
  const outstanding = new Set<Promise<AuditRecord>>();
  /** Whether the loop that writes batches runs: at most one, since each batch needs the head the last one made. */
  let draining = false;

  const timedOut = () => unavailable(new Error(`audit append timed out after ${timeoutMs} ms`));

  /**
   * Settle with `promise`, or reject once `deadline` passes. The operation may still complete later:
   * that is safe, because the head is reloaded after any failure and _id uniqueness refuses a fork.
   */
  function beforeDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
    promise.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`audit append timed out after ${timeoutMs} ms`)), Math.max(0, deadline - Date.now()));
    });
    return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
  }

  const ensureIndexes = () => store.ensureIndexes();

  async function loadHead(): Promise<{ seq: number; hmac: string }> {
    const last = await collection
      .find({ chainId }, { projection: { seq: 1, hmac: 1 }, readPreference: 'primary', maxTimeMS: HEAD_MAX_TIME_MS })
      .sort({ seq: -1 })
      .limit(1)
      .next();
    if (last === null) return { seq: 0, hmac: GENESIS };
    if (!Number.isSafeInteger(last.seq) || last.seq < 1 || typeof last.hmac !== 'string') {
      throw new Error('the audit chain head is malformed; run verify()');
    }
    return { seq: last.seq, hmac: last.hmac };
  }

  /** The head, loading it once for all waiters when unknown. */
  function knownHead(): Promise<{ seq: number; hmac: string }> {
    if (head !== undefined) return Promise.resolve(head);
    if (headLoad === undefined) {
      const epoch = headEpoch;
      const load = loadHead().then((loaded) => {
        if (epoch === headEpoch) head = loaded;
        return loaded;
      });
      headLoad = load;
      const clear = () => {
        if (headLoad === load) headLoad = undefined;
      };
      load.then(clear, clear);
    }
    return headLoad;
  }

  function forgetHead(): void {
    head = undefined;
    headLoad = undefined;
    headEpoch++;
  }

  function enqueue(fields: EventFields): Promise<AuditRecord> {
    const deadline = Date.now() + timeoutMs;
    const promise = new Promise<AuditRecord>((resolve, reject) => {
      const entry: Pending = { fields, deadline, settled: false, resolve, reject };
      // Each append answers by its own deadline, whatever the batch it is in is doing: queueing
      // counts, so in an outage a burst fails together in about timeoutMs.
      entry.timer = setTimeout(() => fail(entry, timedOut()), timeoutMs);
      pending.push(entry);
    });
    outstanding.add(promise);
    const forget = () => outstanding.delete(promise);
    promise.then(forget, forget);
    if (!draining) {
      draining = true;
      // A microtask later, so the appends made in this same tick go out in one batch.
      queueMicrotask(() => void drain());
    }
    return promise;
  }

  /** Write batches until nothing is pending. Appends queued meanwhile make up the next batch: group commit. */
  async function drain(): Promise<void> {
    try {
      for (let batch = takeBatch(); batch.length > 0; batch = takeBatch()) {
        await writeBatch(batch).catch((err: unknown) => failAll(batch, err));
      }
    } finally {
      draining = false;
    }
  }

  /** Up to MAX_BATCH of the oldest pending appends still worth writing. */
  function takeBatch(): Pending[] {
    const batch: Pending[] = [];
    while (pending.length > 0 && batch.length === 0) batch.push(...live(pending.splice(0, MAX_BATCH)));
    return batch;
  }

  /** The entries still waiting for an answer; those past their deadline are failed, not written. */
  function live(entries: Pending[]): Pending[] {
    const now = Date.now();
    return entries.filter((entry) => {
      if (!entry.settled && now >= entry.deadline) fail(entry, timedOut());
      return !entry.settled;
    });
  }

  /** Records for `entries` at the end of the chain after `after`, each linked to the one before. */
  function chainAfter(after: ChainHead, entries: Pending[]): AuditRecord[] {
    return signer.chain(chainId, after, entries.map((entry) => entry.fields));
  }

  /**
   * Write the appends of `batch` (oldest first) at the end of the chain in one ordered insertMany,
   * and answer each. The write is bounded by the latest deadline in the batch; each caller already
   * has its answer by its own deadline, so one whose record lands after that was told it failed.
   * A duplicate key at record k means another instance took that seq: records before k are written
   * and answered, the rest are chained again on the reloaded head and retried.
   */
  async function writeBatch(batch: Pending[]): Promise<void> {
    let stalled = 0;
    let rest = batch;
    for (let attempt = 1; ; attempt++) {
      rest = live(rest);
      if (rest.length === 0) return;
      const deadline = Math.max(...rest.map((entry) => entry.deadline));
      let records: AuditRecord[] = [];
      try {
        await beforeDeadline(ensureIndexes(), deadline);
        // The head is known on every batch but the first and those after a failure: no timer then.
        records = chainAfter(head ?? (await beforeDeadline(knownHead(), deadline)), rest);
        await beforeDeadline(
          collection.insertMany(records, { ordered: true, writeConcern: { w: 'majority', journal: true, wtimeoutMS: timeoutMs } }),
          deadline,
        );
        const last = records[records.length - 1]!;
        head = { seq: last.seq, hmac: last.hmac };
        rest.forEach((entry, i) => succeed(entry, records[i]!));
        return;
      } catch (err) {
        // Failing before the write (indexes, or a head query still running) leaves the head as it
        // was, and a head query in flight goes on for the next batch.
        if (records.length === 0) return failAll(rest, err);
        // After a failed write the head is unknown: a write that timed out may still have landed.
        forgetHead();
        const outcome = writtenPrefix(err, records.length);
        if (outcome === undefined) return failAll(rest, err);
        rest.slice(0, outcome.written).forEach((entry, i) => succeed(entry, records[i]!));
        rest = rest.slice(outcome.written);
        if (!outcome.duplicate) return failAll(rest, err);
        // Another instance wrote this seq. If the reloaded head does not even reach it, the record
        // holding its _id is not where the head query looks (damaged): stop before spinning.
        const lost = records[outcome.written]!.seq;
        try {
          if ((await beforeDeadline(knownHead(), deadline)).seq < lost) stalled++;
        } catch (reloadErr) {
          return failAll(rest, reloadErr);
        }
        if (attempt >= MAX_ATTEMPTS || stalled >= MAX_STALLED || Date.now() >= deadline) return failAll(rest, err);
        // A little jitter, so two instances do not keep colliding in step.
        await sleep(Math.random() * Math.min(20, attempt * 2));
      }
    }
  }

  return {
    /**
     * Write one event at the end of the chain, with majority and journal write concern. Rejects with
     * AUDIT_UNAVAILABLE when it cannot be written within `timeoutMs` (callers must then not do the
     * audited operation). A timed-out write may still land; the trail then holds an event for an
     * operation that did not happen, never the reverse. Records take seqs in the order of the calls.
     */
    append(event: AuditEvent): Promise<AuditRecord> {
      try {
        return enqueue(readEvent(event));
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },

    /**
     * Make the indexes and load the chain head, so the first appends need not (at start-up, and by
     * the readiness probe while the head is unknown). Rejects when the database does not answer.
     */
    async prepare(): Promise<void> {
      await ensureIndexes();
      await knownHead();
    },

    /** Whether the chain head is known, so an append costs one write. */
    isPrepared(): boolean {
      return head !== undefined;
    },

    /** Wait until every append queued so far has settled (before the clients close, on shutdown). */
    async flush(): Promise<void> {
      await Promise.allSettled([...outstanding]);
    },

    /** A page of records, newest first (see AuditStore.list). */
    list(options: AuditListOptions) {
      return store.list(options);
    },

    /** Verify every chain (see AuditStore.verify). */
    verify(options?: { full?: boolean }) {
      return store.verify(options);
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { MongoBulkWriteError, MongoError, MongoServerError, type Collection, type Filter } from 'mongodb';
import { AppError } from '../errors.js';

export type AuditOutcome = 'started' | 'succeeded' | 'failed' | 'denied';

export interface AuditEvent {
  /** Defaults to now. */
  time?: Date;
  /** Who: 'admin' for the operator token, else a client id, or 'anonymous'. */
  clientId: string;
  /** e.g. 'keys.create', 'crypto.decrypt', 'documents.find', 'clients.create'. */
  action: string;
  outcome: AuditOutcome;
  requestId: string;
  /** HTTP status when known. */
  status?: number;
  /** Error code when failed or denied. */
  code?: string;
  /** Namespace of a document operation. */
  collection?: string;
  /** Field paths touched, never values. */
  paths?: string[];
  /** Data key ids involved. */
  keyIds?: string[];
}

export interface AuditRecord
  extends Required<Pick<AuditEvent, 'clientId' | 'action' | 'outcome' | 'requestId'>>,
    Pick<AuditEvent, 'status' | 'code' | 'collection' | 'paths' | 'keyIds'> {
  /** `${chainId}:${seq zero-padded to 12}`: the unique _id index is what forbids forks. */
  _id: string;
  chainId: string;
  /** 1 for the first record of a chain, then +1 per record. */
  seq: number;
  time: Date;
  /** The hmac of the previous record of the chain; GENESIS ('') for seq 1. */
  prev: string;
  /** HMAC-SHA-256 (hex) over the canonical serialisation of every other field but _id. */
  hmac: string;
}

/** What an event contributes to its record: everything but the chain fields and the hmac. */
type EventFields = Omit<AuditRecord, '_id' | 'hmac' | 'chainId' | 'seq' | 'prev'>;

export interface AuditLogOptions {
  collection: Collection<AuditRecord>;
  /** At least 32 bytes. Every chain in the collection must be keyed by it for verify() to pass. */
  hmacKey: Buffer;
  chainId: string;
  /** How long append() may take in all, queueing and retries included, before it gives up (default 5000). */
  timeoutMs?: number;
}

export interface AuditProblem {
  chainId: string;
  seq: number;
  problem: 'tampered' | 'missing' | 'broken-link';
}

export interface AuditVerification {
  valid: boolean;
  /** Records read. */
  checked: number;
  /** Distinct chain ids seen. */
  chains: number;
  /** At most MAX_PROBLEMS of them; `truncated` says when more were found. */
  problems: AuditProblem[];
  truncated: boolean;
}

export interface AuditListOptions {
  limit: number;
  /** The `next` of the previous page. */
  after?: string;
  action?: string;
  clientId?: string;
}

/** The `prev` of the first record of every chain. */
export const GENESIS = '';
/** Bumped if the canonical serialisation ever changes, so old and new records can be told apart. */
const FORMAT = 'audit-record/v1';
const OUTCOMES: ReadonlySet<string> = new Set<AuditOutcome>(['started', 'succeeded', 'failed', 'denied']);
const RECORD_FIELDS: ReadonlySet<string> = new Set([
  '_id', 'chainId', 'seq', 'time', 'clientId', 'action', 'outcome', 'requestId',
  'status', 'code', 'collection', 'paths', 'keyIds', 'prev', 'hmac',
]);

const DUPLICATE_KEY = 11000;
const INDEX_CONFLICTS = new Set([85, 86]);
const MIN_KEY_LENGTH = 32;
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
const MAX_LIST_LIMIT = 1000;
const MAX_PROBLEMS = 1000;
const READ_MAX_TIME_MS = 5000;
/**
 * The head query may scan the chain where the server cannot use the {chainId, seq} index for the
 * sort (FerretDB on SQLite: about 60 µs per record, so ~6 s at 100k records). It is not bounded by
 * an append's deadline: appends fail by theirs, the load goes on, and later appends use its answer.
 */
const HEAD_MAX_TIME_MS = 120_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function auditRecordId(chainId: string, seq: number): string {
  return `${chainId}:${String(seq).padStart(12, '0')}`;
}

/**
 * The bytes the HMAC covers: every field but `_id` and `hmac`, in a fixed order, absent optional
 * fields as null. A JSON array is unambiguous (no field can bleed into the next), and the record is
 * stored with the very strings and numbers serialised here, so a read-back serialises the same.
 */
function canonical(record: Omit<AuditRecord, '_id' | 'hmac'>): string {
  return JSON.stringify([
    FORMAT,
    record.chainId,
    record.seq,
    record.time.toISOString(),
    record.clientId,
    record.action,
    record.outcome,
    record.requestId,
    record.status ?? null,
    record.code ?? null,
    record.collection ?? null,
    record.paths ?? null,
    record.keyIds ?? null,
    record.prev,
  ]);
}

/** What BSON will store: its UTF-8 turns a lone surrogate into U+FFFD, so do that before hashing. */
function storable(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new AppError('INTERNAL_ERROR', `audit event: ${name} must be a string`);
  return Buffer.from(value, 'utf8').toString('utf8');
}

function storableList(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw new AppError('INTERNAL_ERROR', `audit event: ${name} must be an array of strings`);
  return value.map((item) => storable(item, name));
}

/**
 * Copy only the fields an audit event has, checked: whatever else a caller's object carries (a
 * document, a value) never reaches the trail.
 */
function readEvent(event: AuditEvent): EventFields {
  const time = event.time ?? new Date();
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new AppError('INTERNAL_ERROR', 'audit event: invalid time');
  if (!OUTCOMES.has(event.outcome)) throw new AppError('INTERNAL_ERROR', 'audit event: invalid outcome');
  const fields: EventFields = {
    time: new Date(time.getTime()),
    clientId: storable(event.clientId, 'clientId'),
    action: storable(event.action, 'action'),
    outcome: event.outcome,
    requestId: storable(event.requestId, 'requestId'),
  };
  if (event.status !== undefined) {
    if (!Number.isSafeInteger(event.status)) throw new AppError('INTERNAL_ERROR', 'audit event: status must be an integer');
    fields.status = event.status;
  }
  if (event.code !== undefined) fields.code = storable(event.code, 'code');
  if (event.collection !== undefined) fields.collection = storable(event.collection, 'collection');
  if (event.paths !== undefined) fields.paths = storableList(event.paths, 'paths');
  if (event.keyIds !== undefined) fields.keyIds = storableList(event.keyIds, 'keyIds');
  return fields;
}

const isString = (value: unknown): value is string => typeof value === 'string';
const isOptional = (value: unknown, check: (v: unknown) => boolean) => value === undefined || check(value);
const isStringList = (value: unknown) => Array.isArray(value) && value.every(isString);

/** A stored document if it has exactly a record's shape (and its _id matches), else undefined. */
function asRecord(doc: Record<string, unknown>): AuditRecord | undefined {
  for (const key of Object.keys(doc)) if (!RECORD_FIELDS.has(key)) return undefined;
  const ok =
    isString(doc.chainId) &&
    Number.isSafeInteger(doc.seq) &&
    doc._id === auditRecordId(doc.chainId, doc.seq as number) &&
    doc.time instanceof Date &&
    !Number.isNaN(doc.time.getTime()) &&
    isString(doc.clientId) &&
    isString(doc.action) &&
    isString(doc.outcome) &&
    OUTCOMES.has(doc.outcome) &&
    isString(doc.requestId) &&
    isString(doc.prev) &&
    isString(doc.hmac) &&
    isOptional(doc.status, (v) => Number.isSafeInteger(v)) &&
    isOptional(doc.code, isString) &&
    isOptional(doc.collection, isString) &&
    isOptional(doc.paths, isStringList) &&
    isOptional(doc.keyIds, isStringList);
  return ok ? (doc as unknown as AuditRecord) : undefined;
}

/** The opaque list cursor: base64url of `[time in ms, _id]` of the last record of a page. */
function encodeCursor(record: AuditRecord): string {
  return Buffer.from(JSON.stringify([record.time.getTime(), record._id])).toString('base64url');
}

function decodeCursor(cursor: string): { time: Date; id: string } {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(parsed) && parsed.length === 2 && Number.isSafeInteger(parsed[0]) && isString(parsed[1])) {
      const time = new Date(parsed[0] as number);
      if (!Number.isNaN(time.getTime())) return { time, id: parsed[1] };
    }
  } catch {
    // Falls through to the one error below.
  }
  throw new AppError('INVALID_QUERY', 'The audit cursor is not valid.');
}

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

/** Reads that fail on the database side are outages of the audit store, not bugs of the caller. */
function readFailure(err: unknown): never {
  if (err instanceof MongoError) throw new AppError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  throw err;
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
export function createAuditLog({ collection, hmacKey, chainId, timeoutMs = DEFAULT_TIMEOUT_MS }: AuditLogOptions) {
  if (hmacKey.length < MIN_KEY_LENGTH) throw new RangeError(`the audit HMAC key must be at least ${MIN_KEY_LENGTH} bytes`);
  if (typeof chainId !== 'string' || chainId.length === 0 || chainId.length > 200) {
    throw new RangeError('the audit chain id must be a string of 1 to 200 characters');
  }
  // A copy in a KeyObject: the caller may wipe or reuse its buffer.
  const key: KeyObject = createSecretKey(Buffer.from(hmacKey));
  const mac = (record: Omit<AuditRecord, '_id' | 'hmac'>) => createHmac('sha256', key).update(canonical(record), 'utf8').digest('hex');

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

  async function createIndexes(): Promise<void> {
    const specs = [
      { key: { chainId: 1, seq: 1 }, name: 'chainId_1_seq_1' },
      { key: { time: -1, _id: -1 }, name: 'time_-1__id_-1' },
    ] as const;
    for (const { key: spec, name } of specs) {
      try {
        await collection.createIndex(spec, { name });
      } catch (err) {
        if (!(err instanceof MongoServerError && INDEX_CONFLICTS.has(err.code as number))) throw err;
      }
    }
  }

  // Made before the first append rather than at boot, so the service can start while the database
  // is briefly away; a failed attempt is retried by the next append.
  let indexes: Promise<void> | undefined;
  function ensureIndexes(): Promise<void> {
    indexes ??= createIndexes().catch((err: unknown) => {
      indexes = undefined;
      throw err;
    });
    return indexes;
  }

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
  function chainAfter(after: { seq: number; hmac: string }, entries: Pending[]): AuditRecord[] {
    let prev = after;
    return entries.map(({ fields }) => {
      const seq = prev.seq + 1;
      const unsigned = { chainId, seq, ...fields, prev: prev.hmac };
      const record: AuditRecord = { _id: auditRecordId(chainId, seq), ...unsigned, hmac: mac(unsigned) };
      prev = record;
      return record;
    });
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

    /**
     * A page of records, newest first: ordered by `time` descending, then `_id` descending (so by
     * seq within a chain when times tie). `time` is the appending instance's clock, so records of
     * instances whose clocks disagree interleave by that clock, not by seq. `next` is an opaque
     * cursor, present when more records follow; pages never repeat or skip a record that existed
     * when paging began.
     */
    async list(options: AuditListOptions): Promise<{ items: AuditRecord[]; next?: string }> {
      const { limit } = options;
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
        throw new AppError('INVALID_QUERY', `The limit must be an integer from 1 to ${MAX_LIST_LIMIT}.`);
      }
      const clauses: Filter<AuditRecord>[] = [];
      if (options.action !== undefined) clauses.push({ action: options.action });
      if (options.clientId !== undefined) clauses.push({ clientId: options.clientId });
      if (options.after !== undefined) {
        const { time, id } = decodeCursor(options.after);
        clauses.push({ $or: [{ time: { $lt: time } }, { time, _id: { $lt: id } }] });
      }
      const filter: Filter<AuditRecord> = clauses.length === 0 ? {} : clauses.length === 1 ? clauses[0]! : { $and: clauses };
      const docs = await collection
        .find(filter, { maxTimeMS: READ_MAX_TIME_MS })
        .sort({ time: -1, _id: -1 })
        .limit(limit + 1)
        .toArray()
        .catch(readFailure);
      const items = docs.slice(0, limit);
      return docs.length > limit ? { items, next: encodeCursor(items[items.length - 1]!) } : { items };
    },

    /**
     * Walk every chain in the collection in seq order, streaming, and check each record: its shape
     * and HMAC ('tampered'), that no seq is skipped ('missing', reported once per gap at its first
     * absent seq) and that `prev` is the stored hmac of the record before ('broken-link').
     *
     * It cannot notice that the newest records of a chain were removed: the shortened chain is
     * consistent. Compare the head (the highest seq) with a copy kept elsewhere to catch that.
     * All chains must share this instance's HMAC key: a record keyed otherwise reads as tampered.
     * No time limit: it reads the whole collection.
     */
    async verify(): Promise<AuditVerification> {
      const problems: AuditProblem[] = [];
      let found = 0;
      const report = (problem: AuditProblem) => {
        found++;
        if (problems.length < MAX_PROBLEMS) problems.push(problem);
      };
      let checked = 0;
      const chainIds = new Set<string>();
      let current: { chainId: string; expected: number; prev: string } | undefined;
      const cursor = collection.find({}, { allowDiskUse: true }).sort({ chainId: 1, seq: 1 });
      try {
        for await (const doc of cursor as AsyncIterable<Record<string, unknown>>) {
          checked++;
          const docChain = isString(doc.chainId) ? doc.chainId : String(doc.chainId ?? '');
          const docSeq = Number.isSafeInteger(doc.seq) ? (doc.seq as number) : -1;
          chainIds.add(docChain);
          if (current?.chainId !== docChain) current = { chainId: docChain, expected: 1, prev: GENESIS };
          const record = asRecord(doc);
          if (record === undefined || docSeq < current.expected) {
            // Malformed, or a seq seen already (or below 1): it cannot have been appended by us.
            report({ chainId: docChain, seq: docSeq, problem: 'tampered' });
            continue;
          }
          const { _id, hmac, ...unsigned } = record;
          const expectedMac = Buffer.from(mac(unsigned), 'utf8');
          const storedMac = Buffer.from(hmac, 'utf8');
          const intact = storedMac.length === expectedMac.length && timingSafeEqual(storedMac, expectedMac);
          if (!intact) report({ chainId: docChain, seq: docSeq, problem: 'tampered' });
          if (docSeq > current.expected) report({ chainId: docChain, seq: current.expected, problem: 'missing' });
          // Across a gap the link cannot be checked: the record it points to is gone.
          else if (intact && record.prev !== current.prev) report({ chainId: docChain, seq: docSeq, problem: 'broken-link' });
          current.expected = docSeq + 1;
          current.prev = hmac;
        }
      } catch (err) {
        readFailure(err);
      } finally {
        await cursor.close().catch(() => undefined);
      }
      return { valid: found === 0, checked, chains: chainIds.size, problems, truncated: found > problems.length };
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

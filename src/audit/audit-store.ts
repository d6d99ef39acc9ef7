/**
 * The audit trail as MongoDB holds it: records of every instance's chain, each chain's signed head
 * (the last record its instance wrote), and signed verification checkpoints. Lists pages, and
 * verifies the chains: from the last checkpoint by default, so a verification costs what is new,
 * or from the first record.
 */
import { MongoError, MongoServerError, type Collection, type Filter } from 'mongodb';
import { AppError } from '../errors.js';
import { asRecord, GENESIS, isString, type AuditRecord, type ChainHead, type RecordSigner } from './audit-record.js';

export interface AuditProblem {
  chainId: string;
  seq: number;
  /**
   * tampered: a record's fields do not match its hmac, or it is malformed; missing: a seq is
   * absent; broken-link: `prev` is not the hmac of the record before; truncated: the chain ends
   * before the head its instance published (its newest records were removed); head-tampered: the
   * published head's signature does not match; checkpoint-mismatch: the record a checkpoint
   * vouched for has changed since.
   */
  problem: 'tampered' | 'missing' | 'broken-link' | 'truncated' | 'head-tampered' | 'checkpoint-mismatch';
}

export interface AuditVerification {
  valid: boolean;
  /** Records read. */
  checked: number;
  /** Chains verified. */
  chains: number;
  /** Chains verified from a checkpoint rather than from their first record. */
  fromCheckpoint: number;
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

/** The last record an instance wrote to its chain, signed so the database cannot forge one. */
export interface HeadDocument {
  _id: string;
  seq: number;
  hmac: string;
  updatedAt: Date;
  sig: string;
}

/** How far a chain was verified, signed. */
export interface CheckpointDocument {
  _id: string;
  seq: number;
  hmac: string;
  verifiedAt: Date;
  sig: string;
}

export interface AuditStoreOptions {
  records: Collection<AuditRecord>;
  /** Without them, no head is published or checked and every verification starts at seq 1. */
  heads?: Collection<HeadDocument>;
  checkpoints?: Collection<CheckpointDocument>;
  signer: RecordSigner;
}

const MAX_LIST_LIMIT = 1000;
const MAX_PROBLEMS = 1000;
const READ_MAX_TIME_MS = 5000;
const INDEX_CONFLICTS = new Set([85, 86]);

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

/** Reads that fail on the database side are outages of the audit store, not bugs of the caller. */
export function readFailure(err: unknown): never {
  if (err instanceof MongoError) throw new AppError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  throw err;
}

/** Records a chain may hold out of seq order while one pass puts them back in order. */
const MAX_REORDER = 100_000;

/**
 * One chain's verification, fed its records in any order: each record's shape and HMAC, that no
 * seq is skipped, and that `prev` is the hmac of the record before. Starting at a checkpoint, the
 * first record must be the one it vouched for, unchanged.
 */
class ChainCheck {
  /** The first seq read: 1, or the checkpoint's own record. */
  readonly from: number;
  readonly fromCheckpoint: boolean;
  clean = true;
  private expected: number;
  private prev: string;
  private readonly vouched: ChainHead | undefined;
  private readonly waiting = new Map<number, Record<string, unknown>>();

  constructor(
    readonly chainId: string,
    private readonly signer: RecordSigner,
    private readonly report: (p: AuditProblem) => void,
    checkpoint: ChainHead | undefined,
  ) {
    this.vouched = checkpoint;
    this.fromCheckpoint = checkpoint !== undefined;
    this.from = checkpoint?.seq ?? 1;
    this.expected = this.from;
    this.prev = GENESIS;
  }

  private problem(seq: number, problem: AuditProblem['problem']): void {
    this.clean = false;
    this.report({ chainId: this.chainId, seq, problem });
  }

  feed(doc: Record<string, unknown>): void {
    const seq = Number.isSafeInteger(doc.seq) ? (doc.seq as number) : -1;
    if (seq < this.expected || this.waiting.has(seq)) {
      // Malformed, or a seq seen already: it cannot have been appended by an instance.
      this.problem(seq, 'tampered');
      return;
    }
    this.waiting.set(seq, doc);
    // Disorder beyond the bound: take the lowest waiting record as the next (a gap is reported).
    while (this.waiting.size > MAX_REORDER) {
      let lowest = Infinity;
      for (const key of this.waiting.keys()) lowest = Math.min(lowest, key);
      this.take(lowest);
    }
    while (this.waiting.has(this.expected)) this.take(this.expected);
  }

  /** Check the waiting record at `seq` as the next one of the chain. */
  private take(seq: number): void {
    const doc = this.waiting.get(seq)!;
    this.waiting.delete(seq);
    const record = asRecord(doc);
    if (record === undefined) {
      this.problem(seq, 'tampered');
      this.expected = seq + 1;
      return;
    }
    const intact = this.signer.intact(record);
    if (!intact) this.problem(seq, 'tampered');
    if (this.vouched !== undefined && seq === this.vouched.seq) {
      if (!intact || record.hmac !== this.vouched.hmac) this.problem(seq, 'checkpoint-mismatch');
    } else if (seq > this.expected) {
      this.problem(this.expected, this.vouched !== undefined && this.expected === this.vouched.seq ? 'checkpoint-mismatch' : 'missing');
    } else if (intact && record.prev !== this.prev) {
      // Across a gap the link cannot be checked: the record it points to is gone.
      this.problem(seq, 'broken-link');
    }
    this.expected = seq + 1;
    this.prev = record.hmac;
  }

  /** Check what is still waiting, in seq order; the last record checked. */
  finish(): ChainHead {
    for (const seq of [...this.waiting.keys()].sort((a, b) => a - b)) this.take(seq);
    return { seq: this.expected - 1, hmac: this.prev };
  }
}

export function createAuditStore({ records, heads, checkpoints, signer }: AuditStoreOptions) {
  const headSig = (chainId: string, seq: number, hmac: string) => signer.sign(['head', chainId, seq, hmac]);
  const checkpointSig = (chainId: string, seq: number, hmac: string) => signer.sign(['checkpoint', chainId, seq, hmac]);

  async function createIndexes(): Promise<void> {
    const specs = [
      { key: { chainId: 1, seq: 1 }, name: 'chainId_1_seq_1' },
      { key: { time: -1, _id: -1 }, name: 'time_-1__id_-1' },
    ] as const;
    for (const { key: spec, name } of specs) {
      try {
        await records.createIndex(spec, { name });
      } catch (err) {
        if (!(err instanceof MongoServerError && INDEX_CONFLICTS.has(err.code as number))) throw err;
      }
    }
  }

  // Made before the first write rather than at boot, so the service can start while the database
  // is briefly away; a failed attempt is retried by the next write.
  let indexes: Promise<void> | undefined;

  return {
    ensureIndexes(): Promise<void> {
      indexes ??= createIndexes().catch((err: unknown) => {
        indexes = undefined;
        throw err;
      });
      return indexes;
    },

    /**
     * Publish a chain's head: the newest record its instance knows is written. Heads only move
     * forward; verification reports a chain whose records end before its head.
     */
    async publishHead(chainId: string, head: ChainHead): Promise<void> {
      if (heads === undefined) return;
      await heads.updateOne(
        { _id: chainId, $or: [{ seq: { $lt: head.seq } }, { seq: { $exists: false } }] } as Filter<HeadDocument>,
        { $set: { seq: head.seq, hmac: head.hmac, updatedAt: new Date(), sig: headSig(chainId, head.seq, head.hmac) } },
        { upsert: true },
      ).catch((err: unknown) => {
        // The upsert lost to a newer head (its filter missed, the insert hit the _id): nothing to do.
        if (err instanceof MongoServerError && err.code === 11000) return;
        throw err;
      });
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
      const docs = await records
        .find(filter, { maxTimeMS: READ_MAX_TIME_MS })
        .sort({ time: -1, _id: -1 })
        .limit(limit + 1)
        .toArray()
        .catch(readFailure);
      const items = docs.slice(0, limit);
      return docs.length > limit ? { items, next: encodeCursor(items[items.length - 1]!) } : { items };
    },

    /**
     * Verify every chain: each record's shape and HMAC ('tampered'), that no seq is skipped
     * ('missing', once per gap at its first absent seq), that `prev` is the hmac of the record
     * before ('broken-link'), and that the chain reaches the head its instance published
     * ('truncated'). By default each chain starts at its last signed checkpoint, whose record must
     * still be the one it vouched for, so the cost is what was appended since; `full` starts every
     * chain at its first record. A chain found clean gets a new checkpoint.
     * All chains must share this key: a record keyed otherwise reads as tampered.
     */
    async verify(options: { full?: boolean } = {}): Promise<AuditVerification> {
      const problems: AuditProblem[] = [];
      let found = 0;
      const report = (problem: AuditProblem) => {
        found++;
        if (problems.length < MAX_PROBLEMS) problems.push(problem);
      };
      let headDocs: HeadDocument[] = [];
      let checkpointDocs: CheckpointDocument[] = [];
      let recordChains: string[] = [];
      try {
        [headDocs, checkpointDocs, recordChains] = await Promise.all([
          heads?.find({}).toArray() ?? [],
          checkpoints?.find({}).toArray() ?? [],
          // A full verification also finds the chains whose head was lost (or never published, by
          // an older version); an incremental one starts from the heads and checkpoints, because
          // `distinct` is a scan of the whole trail on servers without index use (FerretDB).
          options.full ? records.distinct('chainId').then((ids) => ids.filter(isString)) : [],
        ]);
      } catch (err) {
        readFailure(err);
      }
      const headOf = new Map(headDocs.map((h) => [h._id, h]));
      const chainIds = [...new Set([...headOf.keys(), ...checkpointDocs.map((c) => c._id), ...recordChains])].sort();
      const checks = new Map<string, ChainCheck>();
      for (const chainId of chainIds) {
        const checkpoint = checkpointDocs.find((c) => c._id === chainId);
        const trusted = !options.full && checkpoint !== undefined && checkpoint.sig === checkpointSig(chainId, checkpoint.seq, checkpoint.hmac);
        checks.set(chainId, new ChainCheck(chainId, signer, report, trusted ? { seq: checkpoint.seq, hmac: checkpoint.hmac } : undefined));
      }
      // One pass over every chain, in the server's natural order (no sort: FerretDB sorts without
      // an index, and a query per chain would read the collection once per chain); each chain
      // puts its records back in seq order as they come.
      const filter: Filter<AuditRecord> = [...checks.values()].every((c) => c.from === 1)
        ? {}
        : { $or: [...checks.values()].map((c) => ({ chainId: c.chainId, seq: { $gte: c.from } })) };
      const cursor = records.find(filter, { batchSize: 5000 });
      let checked = 0;
      try {
        for await (const doc of cursor as AsyncIterable<Record<string, unknown>>) {
          checked++;
          const chainId = isString(doc.chainId) ? doc.chainId : String(doc.chainId ?? '');
          let check = checks.get(chainId);
          if (check === undefined) checks.set(chainId, (check = new ChainCheck(chainId, signer, report, undefined)));
          check.feed(doc);
        }
      } catch (err) {
        readFailure(err);
      } finally {
        await cursor.close().catch(() => undefined);
      }
      let fromCheckpoint = 0;
      for (const check of checks.values()) {
        const last = check.finish();
        if (check.fromCheckpoint) fromCheckpoint++;
        const head = headOf.get(check.chainId);
        if (head !== undefined) {
          if (head.sig !== headSig(check.chainId, head.seq, head.hmac)) report({ chainId: check.chainId, seq: head.seq, problem: 'head-tampered' });
          else if (head.seq > last.seq) report({ chainId: check.chainId, seq: last.seq + 1, problem: 'truncated' });
        }
        if (checkpoints !== undefined && check.clean && last.seq > check.from) {
          const { seq, hmac } = last;
          await checkpoints
            .updateOne({ _id: check.chainId }, { $set: { seq, hmac, verifiedAt: new Date(), sig: checkpointSig(check.chainId, seq, hmac) } }, { upsert: true })
            .catch(readFailure);
        }
      }
      return { valid: found === 0, checked, chains: checks.size, fromCheckpoint, problems, truncated: found > problems.length };
    },
  };
}

export type AuditStore = ReturnType<typeof createAuditStore>;

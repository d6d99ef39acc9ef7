/**
 * The instance's local audit spool: an append-only journal of its own audit chain, in files on a
 * persistent volume. An append answers once its record is on disk (one synchronous-data write,
 * O_DSYNC, for every group of appends that arrived meanwhile: group commit), so the audit costs a local
 * disk flush per request instead of a journaled database write. A shipper copies the records into
 * MongoDB in order and tells the spool how far it got; the spool survives `kill -9` and restarts,
 * and a new process resumes the chain and the shipping where they stopped.
 *
 * Layout of the directory (one instance per directory, held by a lock file):
 *   chain-id          the chain this spool writes (created once, kept forever)
 *   lock              {pid, host}: a second live process on the same spool refuses to start
 *   shipped           {seq, hmac} of the last record known to be in MongoDB (a hint: re-shipping is safe)
 *   seg-000001.jsonl  segments: one record per line, preallocated with zeros so that a flush
 *                     writes data blocks only, not file-size metadata (about half the latency)
 *   quarantine-*.bin  bytes of a torn tail found at start-up, kept for inspection
 */
import { randomBytes } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import { asRecord, GENESIS, readEvent, type AuditEvent, type AuditRecord, type ChainHead, type EventFields, type RecordSigner } from './audit-record.js';

export interface AuditSpoolOptions {
  dir: string;
  signer: RecordSigner;
  /** The chain id of a new spool; `<host>-<random>` when absent. An existing spool keeps its own. */
  chainId?: string;
  /** Records written but not yet shipped beyond which appends fail closed. */
  maxBacklog: number;
  /**
   * 'fdatasync': a record is on disk before its append answers (survives a crash of the machine).
   * 'none': it is in the kernel's page cache (survives a crash of the process, not of the machine).
   */
  sync: 'fdatasync' | 'none';
  /** Bytes per segment file (default 16 MiB). */
  segmentBytes?: number;
  /** Told about what recovery found at start-up (a quarantined tail). */
  onRecovery?(report: RecoveryReport): void;
}

export interface RecoveryReport {
  /** A torn or corrupt tail was cut off and kept in this file. */
  quarantined?: { file: string; bytes: number; segment: string };
  /** Records found in the spool that were not yet shipped. */
  unshipped: number;
}

export class SpoolCorruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpoolCorruptError';
  }
}

/** The spool directory cannot hold a spool: not a directory, not writable, or its disk is full. */
export class SpoolUnusableError extends Error {
  constructor(dir: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    const why =
      code === 'EEXIST' || code === 'ENOTDIR'
        ? 'it is not a directory'
        : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
          ? 'it is not writable'
          : code === 'ENOSPC' || code === 'EDQUOT'
            ? 'its disk is full'
            : String((cause as Error | undefined)?.message ?? cause);
    super(`the audit spool directory ${dir} cannot be used: ${why} (AUDIT_SPOOL_DIR must be a writable directory on a persistent volume, one per instance)`, { cause });
    this.name = 'SpoolUnusableError';
  }
}

interface Pending {
  fields: EventFields;
  resolve(record: AuditRecord): void;
  reject(err: AppError): void;
}

interface Segment {
  name: string;
  handle: FileHandle;
  /** Where the next record goes. */
  offset: number;
  size: number;
  /** The highest seq in this segment (0 when empty). */
  lastSeq: number;
}

const DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;
/** Bytes per group write at most: a burst goes out in a few writes, not one huge one. */
const MAX_GROUP_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(1024 * 1024);
const segmentPattern = /^seg-(\d{6})\.jsonl$/;
const chainIdPattern = /^[A-Za-z0-9_.-]{1,128}$/;

const segmentName = (n: number) => `seg-${String(n).padStart(6, '0')}.jsonl`;

function unavailable(detail: string, cause?: unknown): AppError {
  return new AppError('AUDIT_UNAVAILABLE', undefined, { cause: cause ?? new Error(detail) });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A record as one line of JSON (time as ISO text), and back. */
function toLine(record: AuditRecord): string {
  return `${JSON.stringify({ ...record, time: record.time.toISOString() })}\n`;
}

function fromLine(line: string): AuditRecord | undefined {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || typeof parsed.time !== 'string') return undefined;
  return asRecord({ ...parsed, time: new Date(parsed.time) });
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Write zeros over [from, to) of a file, and flush them. */
async function zeroFill(handle: FileHandle, from: number, to: number): Promise<void> {
  for (let at = from; at < to; at += ZEROS.length) {
    const length = Math.min(ZEROS.length, to - at);
    await handle.write(ZEROS, 0, length, at);
  }
  await handle.datasync();
}

export function createAuditSpool(options: AuditSpoolOptions) {
  const { dir, signer, maxBacklog, sync } = options;
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  // O_DSYNC: each write returns once its data is on disk, as a write then fdatasync would, in one
  // system call (one trip to the thread pool instead of two).
  const writeFlags = constants.O_RDWR | (sync === 'fdatasync' ? constants.O_DSYNC : 0);
  // A group always fits in a fresh segment, so segments keep their preallocated size.
  const maxGroupBytes = Math.min(MAX_GROUP_BYTES, Math.floor(segmentBytes / 4));
  let chainId = '';
  let head: ChainHead = { seq: 0, hmac: GENESIS };
  let shipped: ChainHead = { seq: 0, hmac: GENESIS };
  /** Records on disk, not yet known to be in MongoDB, oldest first. */
  const unshipped: AuditRecord[] = [];
  let segments: Segment[] = [];
  let nextSegmentNumber = 1;
  /** The next segment, preallocated ahead of need; a promise while it is being made. */
  let spare: Promise<Segment> | undefined;
  const pending: Pending[] = [];
  let writing = false;
  let opened = false;
  let closed = false;
  /** Set when the spool cannot be trusted to append any more (a failed write it could not undo). */
  let broken: Error | undefined;
  const waiters = new Set<() => void>();

  async function makeSegment(n: number): Promise<Segment> {
    const name = segmentName(n);
    const path = join(dir, name);
    const tmp = `${path}.tmp`;
    // The zeros go through the page cache and are flushed once (one O_DSYNC write per MiB would
    // hold thread-pool threads for seconds, and appends wait behind them); appends then use a
    // handle of their own, O_DSYNC in fdatasync mode.
    const filler = await open(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      await zeroFill(filler, 0, segmentBytes);
      await rename(tmp, path);
      // The new name itself must survive a crash: records acknowledged in this file rely on it.
      await syncDirectory(dir);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    } finally {
      await filler.close().catch(() => undefined);
    }
    const handle = await open(path, writeFlags);
    return { name, handle, offset: 0, size: segmentBytes, lastSeq: 0 };
  }

  /** Start preallocating the next segment (once), so a rotation does not wait for zeros. */
  function prepareSpare(): Promise<Segment> {
    if (spare === undefined) {
      // The number is taken only once the segment exists: a failure is retried under the same name.
      const n = nextSegmentNumber;
      spare = makeSegment(n).then((segment) => {
        nextSegmentNumber = n + 1;
        return segment;
      });
      // A failure is seen by the rotation that needs it; the next rotation tries again.
      spare.catch(() => {
        spare = undefined;
      });
    }
    return spare;
  }

  function current(): Segment {
    return segments[segments.length - 1]!;
  }

  async function takeLock(): Promise<void> {
    const path = join(dir, 'lock');
    try {
      const lock = JSON.parse(await readFile(path, 'utf8')) as { pid?: number; host?: string };
      if (lock.host === hostname() && typeof lock.pid === 'number' && lock.pid !== process.pid && isAlive(lock.pid)) {
        throw new SpoolCorruptError(`the audit spool ${dir} is in use by process ${lock.pid}: give each instance its own AUDIT_SPOOL_DIR`);
      }
    } catch (err) {
      if (err instanceof SpoolCorruptError) throw err;
      // No lock, or an unreadable one: a crashed process left it, or there was none.
    }
    await writeFile(path, JSON.stringify({ pid: process.pid, host: hostname(), at: new Date().toISOString() }), { mode: 0o600 });
  }

  async function readChainId(): Promise<string> {
    const path = join(dir, 'chain-id');
    try {
      const stored = (await readFile(path, 'utf8')).trim();
      if (!chainIdPattern.test(stored)) throw new SpoolCorruptError(`${path} does not hold a chain id`);
      return stored;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 80) || 'instance';
    const created = options.chainId ?? `${host}-${randomBytes(4).toString('hex')}`;
    await writeFile(`${path}.tmp`, created, { mode: 0o600 });
    await rename(`${path}.tmp`, path);
    return created;
  }

  async function readShipped(): Promise<ChainHead> {
    try {
      const parsed = JSON.parse(await readFile(join(dir, 'shipped'), 'utf8')) as { seq?: unknown; hmac?: unknown };
      if (Number.isSafeInteger(parsed.seq) && typeof parsed.hmac === 'string') return { seq: parsed.seq as number, hmac: parsed.hmac };
    } catch {
      // None yet, or unreadable: everything in the spool is shipped again (duplicates are recognised).
    }
    return { seq: 0, hmac: GENESIS };
  }

  /**
   * Read every segment, check each record (shape, HMAC, link to the one before) and find where
   * the chain ends. A torn or corrupt tail (nothing valid after it) is cut off, kept in a
   * quarantine file and reported; a bad record with valid ones after it stops the spool.
   */
  async function recover(): Promise<RecoveryReport> {
    const report: RecoveryReport = { unshipped: 0 };
    const names = (await readdir(dir, { withFileTypes: true }))
      .filter((e: Dirent) => e.isFile() && segmentPattern.test(e.name))
      .map((e) => e.name)
      .sort();
    for (const stale of (await readdir(dir)).filter((n) => n.endsWith('.jsonl.tmp'))) await rm(join(dir, stale), { force: true }).catch(() => undefined);
    let prev: ChainHead = { seq: 0, hmac: GENESIS };
    let first = true;
    for (const [index, name] of names.entries()) {
      const handle = await open(join(dir, name), writeFlags);
      const bytes = await handle.readFile();
      // Up to the last non-zero byte, not the first zero: a write torn by a machine crash can
      // leave zeros with bytes after them, which must be seen (and cut off or reported), never
      // left behind the point where the next append writes.
      let dataEnd = bytes.length;
      const block = 64 * 1024;
      while (dataEnd >= block && bytes.subarray(dataEnd - block, dataEnd).equals(ZEROS.subarray(0, block))) dataEnd -= block;
      while (dataEnd > 0 && bytes[dataEnd - 1] === 0) dataEnd--;
      const segment: Segment = { name, handle, offset: 0, size: bytes.length, lastSeq: 0 };
      segments.push(segment);
      nextSegmentNumber = Number(segmentPattern.exec(name)![1]) + 1;
      let at = 0;
      while (at < dataEnd) {
        const newline = bytes.indexOf(0x0a, at);
        const end = newline === -1 || newline >= dataEnd ? -1 : newline;
        const record = end === -1 ? undefined : fromLine(bytes.subarray(at, end).toString('utf8'));
        // The first record seen may follow records already shipped and removed with their segments.
        const linked = record !== undefined && signer.intact(record) && (first ? record.seq >= 1 : record.seq === prev.seq + 1 && record.prev === prev.hmac);
        if (record === undefined || !linked || (chainId !== '' && record.chainId !== chainId)) {
          // A torn write can only leave its last line incomplete: whole records after the damage
          // mean the spool was changed, not cut short.
          const rest = bytes.subarray(end === -1 ? dataEnd : end + 1, dataEnd).toString('utf8').split('\n').slice(0, -1);
          if (rest.some((line) => fromLine(line) !== undefined)) {
            throw new SpoolCorruptError(`the audit spool segment ${join(dir, name)} holds a damaged record at byte ${at}, followed by others: the audit spool needs inspection`);
          }
          // Segments made ahead of need hold only zeros; one with data after the damage is not a torn tail.
          for (const later of names.slice(index + 1)) {
            const firstByte = Buffer.alloc(1);
            const other = await open(join(dir, later), constants.O_RDONLY);
            await other.read(firstByte, 0, 1, 0).finally(() => other.close());
            if (firstByte[0] !== 0) throw new SpoolCorruptError(`the audit spool segment ${join(dir, name)} holds a damaged record at byte ${at}, and ${later} follows with records: the audit spool needs inspection`);
          }
          const torn = bytes.subarray(at, dataEnd);
          const file = `quarantine-${Date.now()}-${name}.bin`;
          await writeFile(join(dir, file), torn, { mode: 0o600 });
          await zeroFill(handle, at, dataEnd);
          report.quarantined = { file, bytes: torn.length, segment: name };
          break;
        }
        first = false;
        prev = { seq: record.seq, hmac: record.hmac };
        segment.lastSeq = record.seq;
        if (record.seq > shipped.seq) unshipped.push(record);
        at = end + 1;
      }
      segment.offset = Math.min(at, dataEnd);
    }
    head = prev;
    // The shipped marker may be behind (it is a hint), never ahead of what the spool holds.
    if (shipped.seq > head.seq) shipped = { ...head };
    report.unshipped = unshipped.length;
    return report;
  }

  /** Remove segments whose every record is shipped (never the one being written). */
  async function dropShippedSegments(): Promise<void> {
    while (segments.length > 1 && segments[0]!.lastSeq <= shipped.seq) {
      const segment = segments.shift()!;
      await segment.handle.close().catch(() => undefined);
      await rm(join(dir, segment.name), { force: true });
    }
  }

  function scheduleWrite(): void {
    if (writing || pending.length === 0) return;
    writing = true;
    // A microtask later, so the appends made in this same tick go out in one group.
    queueMicrotask(() => void writeGroups());
  }

  async function writeGroups(): Promise<void> {
    try {
      while (pending.length > 0) await writeGroup();
    } finally {
      writing = false;
      scheduleWrite();
    }
  }

  /** Chain, write and flush the oldest pending appends as one group; answer each. */
  async function writeGroup(): Promise<void> {
    const group: Pending[] = [];
    let records: AuditRecord[] = [];
    let bytes = 0;
    let text = '';
    while (pending.length > 0 && bytes < maxGroupBytes) {
      const entry = pending.shift()!;
      const [record] = signer.chain(chainId, records.at(-1) ?? head, [entry.fields]);
      const line = toLine(record!);
      group.push(entry);
      records.push(record!);
      text += line;
      bytes += Buffer.byteLength(line);
    }
    try {
      if (broken) throw broken;
      const buffer = Buffer.from(text, 'utf8');
      let segment = current();
      if (segment.offset + buffer.length > segment.size) {
        segment = await prepareSpare();
        spare = undefined;
        segments.push(segment);
      }
      // Ahead of need: a rotation should find its segment ready.
      if (segment.offset + buffer.length > segment.size / 2) prepareSpare().catch(() => undefined);
      const at = segment.offset;
      try {
        await segment.handle.write(buffer, 0, buffer.length, at);
      } catch (err) {
        // Undo a partial write so the tail stays clean; if even that fails, stop appending.
        await zeroFill(segment.handle, at, at + buffer.length).catch((undoErr: unknown) => {
          broken = new Error('the audit spool could not undo a failed write', { cause: undoErr });
        });
        throw err;
      }
      segment.offset = at + buffer.length;
      segment.lastSeq = records.at(-1)!.seq;
      head = { seq: records.at(-1)!.seq, hmac: records.at(-1)!.hmac };
      unshipped.push(...records);
      group.forEach((entry, i) => entry.resolve({ ...records[i]! }));
      for (const wake of waiters) wake();
    } catch (err) {
      records = [];
      for (const entry of group) entry.reject(unavailable('the audit spool could not be written', err));
    }
  }

  const spool = {
    /** Open (or create) the spool: lock it, resume its chain, find what is left to ship. */
    async open(): Promise<RecoveryReport> {
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        await takeLock();
        chainId = await readChainId();
      } catch (err) {
        // Said plainly at boot, rather than as the errno of whichever file came first.
        if (err instanceof SpoolCorruptError || !(err as NodeJS.ErrnoException)?.code) throw err;
        throw new SpoolUnusableError(dir, err);
      }
      shipped = await readShipped();
      const report = await recover();
      if (segments.length === 0) segments.push(await makeSegment(nextSegmentNumber++));
      await dropShippedSegments();
      opened = true;
      options.onRecovery?.(report);
      return report;
    },

    get chainId(): string {
      return chainId;
    },

    /** The last record written, and the last one known shipped. */
    state(): { head: ChainHead; shipped: ChainHead; backlog: number; broken: boolean } {
      return { head: { ...head }, shipped: { ...shipped }, backlog: unshipped.length, broken: broken !== undefined };
    },

    /**
     * Write one event at the end of the chain; answers once it is on disk. Rejects with
     * AUDIT_UNAVAILABLE (the caller must then not do, or not answer, the audited operation) when
     * the spool cannot be written, or when more than maxBacklog records wait to be shipped.
     */
    append(event: AuditEvent): Promise<AuditRecord> {
      if (!opened || closed) return Promise.reject(unavailable('the audit spool is not open'));
      if (broken) return Promise.reject(unavailable('the audit spool is broken', broken));
      if (unshipped.length + pending.length >= maxBacklog) {
        return Promise.reject(unavailable(`${unshipped.length} audit records wait to be shipped to the database (limit ${maxBacklog})`));
      }
      let fields: EventFields;
      try {
        fields = readEvent(event);
      } catch (err) {
        return Promise.reject(err as Error);
      }
      return new Promise<AuditRecord>((resolve, reject) => {
        pending.push({ fields, resolve, reject });
        scheduleWrite();
      });
    },

    /** Up to `max` of the oldest records not yet shipped. */
    peek(max: number): AuditRecord[] {
      return unshipped.slice(0, max);
    },

    /**
     * The shipper has written every record up to `upTo` (inclusive) to the database. The marker
     * file is a hint (a stale one only ships records again, which is recognised): `persist: false`
     * spares its write.
     */
    async markShipped(upTo: ChainHead, { persist = true }: { persist?: boolean } = {}): Promise<void> {
      let n = 0;
      while (n < unshipped.length && unshipped[n]!.seq <= upTo.seq) n++;
      unshipped.splice(0, n);
      if (upTo.seq <= shipped.seq) return;
      shipped = { ...upTo };
      if (!persist) return;
      const path = join(dir, 'shipped');
      await writeFile(`${path}.tmp`, JSON.stringify(shipped), { mode: 0o600 });
      await rename(`${path}.tmp`, path);
      await dropShippedSegments();
    },

    /** Resolves when a record is appended (or after `ms`): the shipper's wake-up. */
    waitForAppend(ms: number): Promise<void> {
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        waiters.add(done);
      });
    },

    /** Wait for the appends under way, then close the files (the lock stays: it names a dead pid). */
    async close(): Promise<void> {
      while (writing || pending.length > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      closed = true;
      for (const wake of waiters) wake();
      const extra = spare;
      spare = undefined;
      await Promise.all([...segments.map((s) => s.handle.close().catch(() => undefined)), extra?.then((s) => s.handle.close()).catch(() => undefined)]);
    },
  };
  return spool;
}

export type AuditSpool = ReturnType<typeof createAuditSpool>;

/**
 * The fleet's change feed: how a security-relevant change made through one instance (a data key
 * deleted, rewrapped or renamed, a client revoked, disabled or regranted, a collection's key
 * rotation started or finished) reaches the caches of every other instance within a bound.
 *
 * Entries live in a MongoDB collection, `{ _id: seq, kind, ids, at }`, with consecutive `seq`s. The
 * writer records an entry after its change and before it answers (changes recorded at once by
 * one process share an entry, one per kind); every instance polls
 * `{ _id: { $gte: last } }` every `pollMs` (one indexed range query, answering one document when
 * nothing changed) and drops exactly the cache entries named.
 *
 * Sequence numbers are allocated by the insert itself: a writer reads the newest entry and inserts
 * newest + 1, and on a duplicate `_id` reads again. Only a unique `_id` arbitrates: FerretDB
 * applies concurrent conditional updates of one document without isolation (30 concurrent `$inc`
 * of one counter leave it at 6 on the stack's FerretDB, and 4 of 5 claimers "win" a conditional
 * `findOneAndUpdate`), so a counter document could hand one number to two writers. An entry is
 * inserted only once the entry before it is visible, so the feed has no gaps and is read in order.
 *
 * Polling, not change streams, on every server: one code path with one bound, and a change stream
 * (MongoDB replica sets only) would need the same fail-safe below for its own failures.
 *
 * Fail safe: `trusted()` is false when the last poll that reached the head of the feed was sent
 * more than `maxLagMs` ago (the database is away, the process stalled). Caches must then treat
 * what they hold as expired and read the database, rather than serve state that may have been
 * revoked. A reader that falls behind what was pruned, or finds the feed reset, cannot know what
 * it missed: it drops everything (`onReset`).
 */
import { MongoServerError, type Collection } from 'mongodb';

export type ChangeKind = 'key' | 'client' | 'schema';

export interface ChangeEntry {
  _id: number;
  kind: ChangeKind;
  /** Data key ids, client ids, or collection namespaces. */
  ids: string[];
  at: Date;
}

export interface ChangeFeedOptions {
  collection: Collection<ChangeEntry>;
  /** How often the feed is read. */
  pollMs: number;
  /** Caches are not trusted when the feed was last read up to its head longer ago than this. */
  maxLagMs: number;
  /** Entries older than this are pruned (the newest one is always kept). */
  retainMs?: number;
  /** How often this instance prunes (default about once a minute). */
  pruneEveryMs?: number;
  /** A poll failed (logged by the caller); `recovered` when it works again. */
  onPollError?(err: unknown): void;
  onPollRecovered?(): void;
  /** Entries applied, by kind; resets. */
  onApplied?(kind: ChangeKind | 'reset', count: number): void;
}

export interface ChangeFeedStatus {
  /** The newest entry applied (0: none yet). */
  seq: number;
  /** Milliseconds since the last poll that reached the head was sent. */
  lagMs: number;
  trusted: boolean;
}

const DUPLICATE_KEY = 11000;
/** Entries read per query. */
const BATCH = 500;
/** How long a record may keep losing numbers to other instances before it fails. */
const RECORD_DEADLINE_MS = 5_000;
const DEFAULT_RETAIN_MS = 3_600_000;
/** Pruning runs about once a minute per instance. */
const PRUNE_EVERY_MS = 60_000;

interface Change {
  kind: ChangeKind;
  id: string;
}

const KINDS: readonly ChangeKind[] = ['key', 'client', 'schema'];
/** Ids per entry: a rewrap of 10 000 keys is 10 entries (each well under the 16 MB document limit). */
const MAX_IDS = 1000;

const isDuplicate = (err: unknown) => err instanceof MongoServerError && err.code === DUPLICATE_KEY;

export function createChangeFeed(options: ChangeFeedOptions) {
  const { collection, pollMs, maxLagMs } = options;
  const retainMs = options.retainMs ?? DEFAULT_RETAIN_MS;
  const pruneEveryMs = options.pruneEveryMs ?? PRUNE_EVERY_MS;
  const handlers = new Map<ChangeKind, ((id: string) => void)[]>();
  const resetHandlers: (() => void)[] = [];
  /** The newest entry applied; undefined until the first read of the feed. */
  let last: number | undefined;
  /** performance.now() when the last poll that reached the head was sent: everything recorded before it is applied. */
  let syncedAt = Number.NEGATIVE_INFINITY;
  /** Changes this process made but could not record: retried at every poll. */
  const owed: Change[] = [];
  const queue: { changes: Change[]; done(): void; failed(err: unknown): void }[] = [];
  let writing: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;
  let failing = false;
  let lastPrune = Number.NEGATIVE_INFINITY;

  async function head(): Promise<number> {
    const newest = await collection.find({}, { projection: { _id: 1 } }).sort({ _id: -1 }).limit(1).toArray();
    return newest[0]?._id ?? 0;
  }

  function apply(entry: ChangeEntry): void {
    const ids = Array.isArray(entry.ids) ? entry.ids.filter((id) => typeof id === 'string') : [];
    for (const handler of handlers.get(entry.kind) ?? []) for (const id of ids) handler(id);
    options.onApplied?.(entry.kind, ids.length);
  }

  function reset(seq: number): void {
    for (const handler of resetHandlers) handler();
    options.onApplied?.('reset', 1);
    last = seq;
  }

  /**
   * Insert the changes as entries numbered from the head on, one entry per kind (and per
   * MAX_IDS ids), one `insertOne` each: FerretDB's ordered `insertMany` goes on after a duplicate
   * (it skips that sub-batch), which would leave gaps.
   */
  async function insert(changes: Change[]): Promise<void> {
    const entries: { kind: ChangeKind; ids: string[] }[] = [];
    for (const kind of KINDS) {
      const ids = [...new Set(changes.filter((change) => change.kind === kind).map((change) => change.id))];
      for (let i = 0; i < ids.length; i += MAX_IDS) entries.push({ kind, ids: ids.slice(i, i + MAX_IDS) });
    }
    for (const { kind, ids } of entries) {
      const deadline = performance.now() + RECORD_DEADLINE_MS;
      for (let attempt = 0; ; attempt++) {
        try {
          await collection.insertOne({ _id: Math.max(await head(), last ?? 0) + 1, kind, ids, at: new Date() });
          break;
        } catch (err) {
          if (!isDuplicate(err)) throw err;
          if (performance.now() > deadline) throw new Error('the change feed kept moving while changes were recorded', { cause: err });
          // Another instance took this number: read the head again (a random pause spreads a crowd).
          if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 2 ** attempt)));
        }
      }
    }
  }

  /**
   * One writer per process: changes recorded meanwhile wait and go in together (group commit),
   * so instances contend for numbers, not every request of one instance.
   */
  async function write(): Promise<void> {
    while (queue.length > 0) {
      const group = queue.splice(0, queue.length);
      try {
        await insert(group.flatMap((item) => item.changes));
        for (const item of group) item.done();
      } catch (err) {
        for (const item of group) item.failed(err);
      }
    }
    writing = undefined;
  }

  /** Record the changes a failed `record` left owed, oldest first. */
  async function settleOwed(): Promise<void> {
    if (owed.length === 0) return;
    const changes = owed.splice(0, owed.length);
    try {
      await insert(changes);
    } catch (err) {
      owed.unshift(...changes);
      throw err;
    }
  }

  /** Read the feed up to its head once, applying what is new. */
  async function poll(): Promise<void> {
    for (;;) {
      const sentAt = performance.now();
      if (last === undefined) {
        // Start at the head: this process has cached nothing yet, so it needs no history.
        last = await head();
        syncedAt = sentAt;
        return;
      }
      const from = last;
      const entries = await collection.find({ _id: { $gte: from } }).sort({ _id: 1 }).limit(BATCH + 1).toArray();
      // The entry last applied is read again: gone means pruned past this reader or the feed was
      // reset (dropped); either way what this process missed is unknown.
      if (from > 0 && entries[0]?._id !== from) {
        reset(entries.length === 0 ? await head() : entries.at(-1)!._id);
        syncedAt = sentAt;
        if (entries.length <= BATCH) return;
        continue;
      }
      for (const entry of entries) {
        if (entry._id <= from) continue;
        if (entry._id !== last + 1) {
          // Never expected (entries are inserted in order); if it happens, trust nothing cached.
          reset(entries.at(-1)!._id);
          break;
        }
        apply(entry);
        last = entry._id;
      }
      if (entries.length <= BATCH) {
        syncedAt = sentAt;
        return;
      }
    }
  }

  async function prune(): Promise<void> {
    if (last === undefined || performance.now() - lastPrune < pruneEveryMs) return;
    lastPrune = performance.now();
    // Below the newest entry this process has seen: the head is never pruned, so writers and
    // new instances always find where the sequence stands.
    await collection.deleteMany({ _id: { $lt: last }, at: { $lt: new Date(Date.now() - retainMs) } });
  }

  async function tick(): Promise<void> {
    await settleOwed().catch(() => undefined);
    try {
      await poll();
      if (failing) {
        failing = false;
        options.onPollRecovered?.();
      }
      await prune().catch(() => undefined);
    } catch (err) {
      if (!failing) {
        failing = true;
        options.onPollError?.(err);
      }
    }
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      running = tick().finally(() => {
        running = undefined;
        schedule();
      });
    }, pollMs);
    timer.unref();
  }

  return {
    /** Call `handler` with the id of every change of `kind` another instance (or this one) records. */
    on(kind: ChangeKind, handler: (id: string) => void): void {
      handlers.set(kind, [...(handlers.get(kind) ?? []), handler]);
    },

    /** Call `handler` when this process cannot know what it missed: drop every cached entry. */
    onReset(handler: () => void): void {
      resetHandlers.push(handler);
    },

    /**
     * Record a change, after making it and before answering. If it cannot be recorded now it is
     * kept and recorded at a later poll, and this throws: the caller's request fails (its change
     * was made) rather than claim a change the fleet may not see.
     */
    async record(kind: ChangeKind, ...ids: string[]): Promise<void> {
      if (ids.length === 0) return;
      const changes = ids.map((id) => ({ kind, id }));
      try {
        await new Promise<void>((done, failed) => {
          queue.push({ changes, done, failed });
          writing ??= write();
        });
      } catch (err) {
        // What went in before the failure is recorded again: harmless (invalidation is idempotent).
        owed.push(...changes);
        throw err;
      }
    },

    /** Whether caches may serve what they hold (see the module comment). */
    trusted(): boolean {
      return performance.now() - syncedAt <= maxLagMs;
    },

    status(): ChangeFeedStatus {
      const lagMs = performance.now() - syncedAt;
      return { seq: last ?? 0, lagMs: Number.isFinite(lagMs) ? Math.round(lagMs) : -1, trusted: lagMs <= maxLagMs };
    },

    /** One poll now (the timer's work; tests call it to step the feed). Throws what the read threw. */
    poll,

    /** Read the feed's head and start polling every `pollMs`. */
    async start(): Promise<void> {
      if (!stopped) return;
      stopped = false;
      running = tick().finally(() => {
        running = undefined;
        schedule();
      });
      await running;
    },

    /** Stop polling and wait for a poll under way. */
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
      await writing;
    },
  };
}

export type ChangeFeed = ReturnType<typeof createChangeFeed>;

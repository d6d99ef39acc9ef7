/**
 * Long operations run as jobs: a document per job in MongoDB with its state, progress and what it
 * needs to run (`spec`), so any instance can answer /jobs/:id and any instance can take a job over
 * when the one running it dies (src/jobs/job-leases.ts). A running job renews a heartbeat; one whose
 * heartbeat stopped for a minute (no instance is left to take it over) reads as `interrupted`.
 *
 * Only the instance holding a job's lease writes its document (its creator inserts it). A request
 * to cancel is a document of its own in another collection (`cancels`), inserted once by whichever
 * instance the request reached and read by the holder at its next look: FerretDB applies concurrent
 * updates of one document without isolation, so a cancel written into the job document could be
 * lost under the holder's next progress update.
 */
import { randomBytes } from 'node:crypto';
import { MongoServerError, type Collection, type Filter } from 'mongodb';
import { AppError } from '../errors.js';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';
/** A state a job keeps: no instance will change it again. */
export const FINISHED_STATES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

export interface CancelRequest {
  /** The job's id: one request per job, the first one counts. */
  _id: string;
  requestedBy: string;
  requestedAt: Date;
  /** The request that asked, to find its audit event. */
  requestId: string;
}

export interface JobRecord {
  _id: string;
  type: string;
  state: Exclude<JobState, 'interrupted'>;
  createdBy: string;
  params: Record<string, unknown>;
  /** What the job's type needs to run it, on any instance (never shown). */
  spec?: Record<string, unknown>;
  /** How many times an instance started running it (more than one: taken over). */
  runs?: number;
  progress: { total: number; done: number; failed: number; phase: string };
  result?: Record<string, unknown>;
  error?: { code: string; detail?: string };
  /** Who asked it to stop and when: on a cancelled job, written by the instance that stopped it. */
  cancel?: { requestedBy: string; requestedAt: Date };
  createdAt: Date;
  updatedAt: Date;
  heartbeatAt: Date;
  finishedAt?: Date;
}

export interface JobView extends Omit<JobRecord, '_id' | 'state' | 'spec' | 'cancel' | 'createdAt' | 'updatedAt' | 'heartbeatAt' | 'finishedAt'> {
  id: string;
  state: JobState;
  cancel?: { requestedBy: string; requestedAt: string };
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
}

/** Who may see which jobs: everyone's (`createdBy` not given), or one creator's. */
export interface JobViewer {
  createdBy?: string;
}

export interface JobListQuery {
  state?: JobState;
  type?: string;
  limit: number;
  /** The `next` of the previous page. */
  after?: string;
}

const STALE_MS = 60_000;
const DUPLICATE_KEY = 11000;
/** A page cursor: the last job's creation time (ms) and id, as jobs are listed newest first. */
const CURSOR = /^(\d{1,15})-(job_[0-9a-f]{24})$/;

export function toJobView(record: JobRecord, now = Date.now(), cancel?: CancelRequest | null): JobView {
  const { _id, state, spec: _spec, cancel: stopped, createdAt, updatedAt, heartbeatAt, finishedAt, ...rest } = record;
  const interrupted = state === 'running' && now - heartbeatAt.getTime() > STALE_MS;
  const asked = stopped ?? cancel ?? undefined;
  return {
    id: _id,
    state: interrupted ? 'interrupted' : state,
    ...rest,
    ...(asked ? { cancel: { requestedBy: asked.requestedBy, requestedAt: asked.requestedAt.toISOString() } } : {}),
    createdAt: createdAt.toISOString(),
    updatedAt: updatedAt.toISOString(),
    ...(finishedAt ? { finishedAt: finishedAt.toISOString() } : {}),
  };
}

/** The stored states (and heartbeat bound) a listed state stands for: `interrupted` is derived. */
function stateFilter(state: JobState | undefined, now: number): Filter<JobRecord> {
  if (state === undefined) return {};
  const stale = new Date(now - STALE_MS);
  if (state === 'running') return { state: 'running', heartbeatAt: { $gte: stale } };
  if (state === 'interrupted') return { state: 'running', heartbeatAt: { $lt: stale } };
  return { state };
}

export function createJobStore(collection: Collection<JobRecord>, cancels: Collection<CancelRequest>) {
  /** The pending cancel requests of those of `jobs` that are not finished. */
  async function cancelsOf(jobs: JobRecord[]): Promise<Map<string, CancelRequest>> {
    const open = jobs.filter((job) => !FINISHED_STATES.has(job.state)).map((job) => job._id);
    if (open.length === 0) return new Map();
    const found = await cancels.find({ _id: { $in: open } }).toArray();
    return new Map(found.map((request) => [request._id, request]));
  }

  /**
   * A job as stored, if `viewer` may see it: its creator, or anyone when `createdBy` is not given.
   * Another client's job is JOB_NOT_FOUND like a missing one, decided by the query itself, so
   * neither the answer nor its timing says whether it exists.
   */
  async function readVisible(id: string, viewer: JobViewer = {}): Promise<JobRecord> {
    const job = await collection.findOne(viewer.createdBy === undefined ? { _id: id } : { _id: id, createdBy: viewer.createdBy });
    if (job === null) throw new AppError('JOB_NOT_FOUND');
    return job;
  }

  return {
    async create(type: string, createdBy: string, params: Record<string, unknown>, total: number, spec: Record<string, unknown> = {}): Promise<JobRecord> {
      const now = new Date();
      const job: JobRecord = {
        _id: `job_${randomBytes(12).toString('hex')}`,
        type,
        state: 'queued',
        createdBy,
        params,
        spec,
        runs: 0,
        progress: { total, done: 0, failed: 0, phase: 'starting' },
        createdAt: now,
        updatedAt: now,
        heartbeatAt: now,
      };
      await collection.insertOne(job);
      return job;
    },
    async progress(id: string, progress: JobRecord['progress']): Promise<void> {
      const now = new Date();
      await collection.updateOne({ _id: id }, { $set: { progress, updatedAt: now, heartbeatAt: now } });
    },
    /** Jobs that may need an instance (queued or running), oldest first. */
    async unfinished(limit: number): Promise<JobRecord[]> {
      return collection.find({ state: { $in: ['queued', 'running'] } }).sort({ createdAt: 1 }).limit(limit).toArray();
    },
    /** The job as stored (any viewer), or null. */
    async read(id: string): Promise<JobRecord | null> {
      return collection.findOne({ _id: id });
    },
    /** An instance took the job's lease and starts running it (`runs` times so far). */
    async countRun(id: string, runs: number): Promise<void> {
      const now = new Date();
      await collection.updateOne({ _id: id }, { $set: { state: 'running', runs, updatedAt: now, heartbeatAt: now } });
    },
    async finish(
      id: string,
      outcome: { result: Record<string, unknown> } | { error: { code: string; detail?: string } } | { cancel: { requestedBy: string; requestedAt: Date } },
      progress: JobRecord['progress'],
    ): Promise<void> {
      const now = new Date();
      const state = 'result' in outcome ? 'succeeded' : 'error' in outcome ? 'failed' : 'cancelled';
      await collection.updateOne({ _id: id }, { $set: { ...outcome, state, progress, updatedAt: now, heartbeatAt: now, finishedAt: now } });
    },
    readVisible,
    /** The view of a job `viewer` may see (see `readVisible`), with a pending cancel request. */
    async get(id: string, viewer: JobViewer = {}): Promise<JobView> {
      const job = await readVisible(id, viewer);
      return toJobView(job, Date.now(), (await cancelsOf([job])).get(job._id));
    },
    /** The jobs `viewer` may see, newest first, a page at a time. */
    async list(query: JobListQuery, viewer: JobViewer = {}): Promise<{ items: JobView[]; next?: string }> {
      const now = Date.now();
      const filter: Filter<JobRecord> = { ...stateFilter(query.state, now) };
      if (query.type !== undefined) filter.type = query.type;
      if (viewer.createdBy !== undefined) filter.createdBy = viewer.createdBy;
      const cursor = query.after === undefined ? undefined : CURSOR.exec(query.after);
      if (query.after !== undefined && (cursor === null || cursor === undefined)) throw new AppError('VALIDATION_FAILED', 'after is not a cursor this service gave.');
      if (cursor) {
        const at = new Date(Number(cursor[1]));
        filter.$or = [{ createdAt: { $lt: at } }, { createdAt: at, _id: { $lt: cursor[2]! } }];
      }
      const docs = await collection.find(filter).sort({ createdAt: -1, _id: -1 }).limit(query.limit + 1).toArray();
      const page = docs.slice(0, query.limit);
      const pending = await cancelsOf(page);
      const items = page.map((job) => toJobView(job, now, pending.get(job._id)));
      const last = page.at(-1);
      return docs.length > query.limit && last ? { items, next: `${last.createdAt.getTime()}-${last._id}` } : { items };
    },
    /** Record that `requestedBy` asked the job to stop; a second request keeps the first. */
    async requestCancel(id: string, requestedBy: string, requestId: string): Promise<CancelRequest> {
      const request: CancelRequest = { _id: id, requestedBy, requestedAt: new Date(), requestId };
      try {
        await cancels.insertOne(request);
        return request;
      } catch (err) {
        if (!(err instanceof MongoServerError && err.code === DUPLICATE_KEY)) throw err;
        return (await cancels.findOne({ _id: id })) ?? request;
      }
    },
    /** The request to stop the job, if one was made. */
    async cancelRequest(id: string): Promise<CancelRequest | null> {
      return cancels.findOne({ _id: id });
    },
  };
}

export type JobStore = ReturnType<typeof createJobStore>;

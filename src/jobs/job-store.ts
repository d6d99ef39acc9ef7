/**
 * Long operations run as jobs: a document per job in MongoDB with its state, progress and what it
 * needs to run (`spec`), so any instance can answer /jobs/:id and any instance can take a job over
 * when the one running it dies (src/jobs/job-leases.ts). A running job renews a heartbeat; one whose
 * heartbeat stopped for a minute (no instance is left to take it over) reads as `interrupted`.
 */
import { randomBytes } from 'node:crypto';
import type { Collection } from 'mongodb';
import { AppError } from '../errors.js';

export type JobState = 'running' | 'succeeded' | 'failed' | 'interrupted';

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
  createdAt: Date;
  updatedAt: Date;
  heartbeatAt: Date;
  finishedAt?: Date;
}

export interface JobView extends Omit<JobRecord, '_id' | 'state' | 'spec' | 'createdAt' | 'updatedAt' | 'heartbeatAt' | 'finishedAt'> {
  id: string;
  state: JobState;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
}

const STALE_MS = 60_000;

export function toJobView(record: JobRecord, now = Date.now()): JobView {
  const { _id, state, spec: _spec, createdAt, updatedAt, heartbeatAt, finishedAt, ...rest } = record;
  const interrupted = state === 'running' && now - heartbeatAt.getTime() > STALE_MS;
  return {
    id: _id,
    state: interrupted ? 'interrupted' : state,
    ...rest,
    createdAt: createdAt.toISOString(),
    updatedAt: updatedAt.toISOString(),
    ...(finishedAt ? { finishedAt: finishedAt.toISOString() } : {}),
  };
}

export function createJobStore(collection: Collection<JobRecord>) {
  return {
    async create(type: string, createdBy: string, params: Record<string, unknown>, total: number, spec: Record<string, unknown> = {}): Promise<JobRecord> {
      const now = new Date();
      const job: JobRecord = {
        _id: `job_${randomBytes(12).toString('hex')}`,
        type,
        state: 'running',
        createdBy,
        params,
        spec,
        runs: 1,
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
    /** Jobs that may need an instance (running), oldest first. */
    async running(limit: number): Promise<JobRecord[]> {
      return collection.find({ state: 'running' }).sort({ createdAt: 1 }).limit(limit).toArray();
    },
    /** The job as stored (any viewer), or null. */
    async read(id: string): Promise<JobRecord | null> {
      return collection.findOne({ _id: id });
    },
    /** Another instance started running it (taken over). */
    async countRun(id: string, runs: number): Promise<void> {
      const now = new Date();
      await collection.updateOne({ _id: id }, { $set: { runs, updatedAt: now, heartbeatAt: now } });
    },
    async finish(id: string, outcome: { result: Record<string, unknown> } | { error: { code: string; detail?: string } }, progress: JobRecord['progress']): Promise<void> {
      const now = new Date();
      const state = 'result' in outcome ? 'succeeded' : 'failed';
      await collection.updateOne({ _id: id }, { $set: { ...outcome, state, progress, updatedAt: now, heartbeatAt: now, finishedAt: now } });
    },
    /**
     * A job, if `viewer` may see it: its creator, or anyone when `createdBy` is not given. Another
     * client's job is JOB_NOT_FOUND like a missing one, decided by the query itself, so neither
     * the answer nor its timing says whether it exists.
     */
    async get(id: string, viewer: { createdBy?: string } = {}): Promise<JobView> {
      const job = await collection.findOne(viewer.createdBy === undefined ? { _id: id } : { _id: id, createdBy: viewer.createdBy });
      if (job === null) throw new AppError('JOB_NOT_FOUND');
      return toJobView(job);
    },
  };
}

export type JobStore = ReturnType<typeof createJobStore>;

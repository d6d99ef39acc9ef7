/**
 * Long operations run as jobs: a document per job in MongoDB with its state and progress, so any
 * instance can answer /jobs/:id. A running job renews a heartbeat; one whose heartbeat stopped (its
 * process died) reads as `interrupted` and can be started again (the operations are resumable).
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
  progress: { total: number; done: number; failed: number; phase: string };
  result?: Record<string, unknown>;
  error?: { code: string; detail?: string };
  createdAt: Date;
  updatedAt: Date;
  heartbeatAt: Date;
  finishedAt?: Date;
}

export interface JobView extends Omit<JobRecord, '_id' | 'state' | 'createdAt' | 'updatedAt' | 'heartbeatAt' | 'finishedAt'> {
  id: string;
  state: JobState;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
}

const STALE_MS = 60_000;

export function toJobView(record: JobRecord, now = Date.now()): JobView {
  const { _id, state, createdAt, updatedAt, heartbeatAt, finishedAt, ...rest } = record;
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
    async create(type: string, createdBy: string, params: Record<string, unknown>, total: number): Promise<JobRecord> {
      const now = new Date();
      const job: JobRecord = {
        _id: `job_${randomBytes(12).toString('hex')}`,
        type,
        state: 'running',
        createdBy,
        params,
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

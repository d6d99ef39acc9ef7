/**
 * Starts a job's work in the background and records its progress and outcome. Work receives an
 * AbortSignal that a shutdown trips: it stops between units of work, and the job reads as failed
 * with code INTERRUPTED (the operations are resumable: start them again).
 */
import { isAppError } from '../errors.js';
import type { JobRecord, JobStore, JobView } from './job-store.js';
import { toJobView } from './job-store.js';

type Progress = JobRecord['progress'];

export interface JobWork {
  (context: { jobId: string; report(progress: Progress): Promise<void>; signal: AbortSignal }): Promise<{ progress: Progress; result: Record<string, unknown> }>;
}

export function createJobRunner(options: { store: JobStore; onFinished?: (job: { id: string; type: string; createdBy: string; ok: boolean; result?: Record<string, unknown>; code?: string }) => Promise<void>; logError(err: unknown, id: string): void }) {
  const { store } = options;
  const controller = new AbortController();
  const running = new Set<Promise<void>>();

  return {
    async start(type: string, createdBy: string, params: Record<string, unknown>, total: number, work: JobWork): Promise<JobView> {
      const job = await store.create(type, createdBy, params, total);
      let last: Progress = job.progress;
      const report = async (progress: Progress) => {
        last = progress;
        await store.progress(job._id, progress).catch((err: unknown) => options.logError(err, job._id));
      };
      const heartbeat = setInterval(() => void report(last), 15_000);
      heartbeat.unref();
      const run = (async () => {
        try {
          const { progress, result } = await work({ jobId: job._id, report, signal: controller.signal });
          await store.finish(job._id, { result }, progress);
          await options.onFinished?.({ id: job._id, type, createdBy, ok: true, result });
        } catch (err) {
          const error = controller.signal.aborted
            ? { code: 'INTERRUPTED', detail: 'Stopped by a shutdown; start it again to resume.' }
            : isAppError(err)
              ? { code: err.code, ...(err.status < 500 && err.detail ? { detail: err.detail } : {}) }
              : { code: 'INTERNAL_ERROR' };
          if (!isAppError(err)) options.logError(err, job._id);
          await store.finish(job._id, { error }, last).catch((e: unknown) => options.logError(e, job._id));
          await options.onFinished?.({ id: job._id, type, createdBy, ok: false, code: error.code }).catch(() => undefined);
        } finally {
          clearInterval(heartbeat);
        }
      })();
      running.add(run);
      void run.finally(() => running.delete(run));
      return toJobView(job);
    },
    get: store.get,
    /** Ask running jobs to stop at their next step, and wait for them. */
    async stop(): Promise<void> {
      controller.abort();
      await Promise.allSettled([...running]);
    },
  };
}

export type JobRunner = ReturnType<typeof createJobRunner>;

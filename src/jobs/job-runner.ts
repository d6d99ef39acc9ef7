/**
 * Runs background jobs across the fleet. A job is a record in MongoDB with its type and `spec`; its
 * work is defined per type (`define`), so any instance can run it. The instance that creates a job
 * runs it under a lease (src/jobs/job-leases.ts) renewed every third of `leaseMs`; every instance
 * looks for running jobs whose lease lapsed (about twice a lease) and takes them over: the
 * operations are resumable, so the new run picks up where the old one stopped.
 *
 * Work receives an AbortSignal, tripped by a shutdown or by losing the lease: it stops between
 * units of work. On shutdown the lease is let go at once, so another instance (or this one, back)
 * takes the job over without waiting for it to lapse.
 */
import { isAppError } from '../errors.js';
import type { JobLeases, Lease } from './job-leases.js';
import type { JobRecord, JobStore, JobView } from './job-store.js';
import { toJobView } from './job-store.js';

type Progress = JobRecord['progress'];

export interface JobContext {
  jobId: string;
  report(progress: Progress): Promise<void>;
  signal: AbortSignal;
  /** Whether an earlier run of this job was cut short (this run takes it over). */
  resumed: boolean;
}

/** The work of one job type, from its record (which carries `spec` and `createdBy`). */
export type JobWork = (job: JobRecord, context: JobContext) => Promise<{ progress: Progress; result: Record<string, unknown> }>;

/**
 * Whether this instance can run the job at all (it has the collection's schema, the KMS provider):
 * instances of a fleet may differ for a while (a rolling deploy), and one that cannot run a job must
 * leave it to one that can rather than take it over and fail it.
 */
export type JobCanRun = (job: JobRecord) => boolean;

export interface JobRunnerOptions {
  store: JobStore;
  leases: JobLeases;
  leaseMs: number;
  onFinished?: (job: { id: string; type: string; createdBy: string; ok: boolean; result?: Record<string, unknown>; code?: string }) => Promise<void>;
  logError(err: unknown, id: string): void;
  /** A job taken over from a lapsed lease (for the log). */
  onTakeover?(job: { id: string; type: string; runs: number }): void;
}

const SCAN_LIMIT = 100;

export function createJobRunner(options: JobRunnerOptions) {
  const { store, leases, leaseMs } = options;
  const types = new Map<string, { work: JobWork; canRun: JobCanRun }>();
  const shutdown = new AbortController();
  const running = new Map<string, Promise<void>>();
  let scanTimer: NodeJS.Timeout | undefined;
  let scanning: Promise<void> | undefined;

  function run(job: JobRecord, lease: Lease, resumed: boolean): void {
    const work = types.get(job.type)?.work;
    const lost = new AbortController();
    const signal = AbortSignal.any([shutdown.signal, lost.signal]);
    let last: Progress = job.progress;
    const report = async (progress: Progress) => {
      last = progress;
      await store.progress(job._id, progress).catch((err: unknown) => options.logError(err, job._id));
    };
    // The heartbeat renews the lease; a lease lost (renewed too late, or taken over) stops the work.
    const heartbeat = setInterval(() => {
      leases.renew(lease).then(
        (held) => {
          if (!held) lost.abort();
          else void report(last);
        },
        () => undefined, // the database is away: the deadline decides
      );
    }, Math.max(100, Math.floor(leaseMs / 3)));
    heartbeat.unref();

    const done = (async () => {
      try {
        if (work === undefined) throw new Error(`no work is defined for jobs of type ${job.type}`);
        const { progress, result } = await work(job, { jobId: job._id, report, signal, resumed });
        if (!(await leases.holds(lease))) return; // another instance has it now
        await store.finish(job._id, { result }, progress);
        await options.onFinished?.({ id: job._id, type: job.type, createdBy: job.createdBy, ok: true, result });
      } catch (err) {
        if (lost.signal.aborted) return; // another instance took it over and goes on
        if (shutdown.signal.aborted) {
          // Handed over: another instance (or this one, restarted) takes it over at once.
          await leases.release(lease).catch((e: unknown) => options.logError(e, job._id));
          return;
        }
        const error = isAppError(err)
          ? { code: err.code, ...(err.status < 500 && err.detail ? { detail: err.detail } : {}) }
          : { code: 'INTERNAL_ERROR' };
        if (!isAppError(err)) options.logError(err, job._id);
        await store.finish(job._id, { error }, last).catch((e: unknown) => options.logError(e, job._id));
        await options.onFinished?.({ id: job._id, type: job.type, createdBy: job.createdBy, ok: false, code: error.code }).catch(() => undefined);
      } finally {
        clearInterval(heartbeat);
        running.delete(job._id);
      }
    })();
    running.set(job._id, done);
  }

  /** Take over running jobs whose lease lapsed (their instance died or let them go). */
  async function scan(): Promise<void> {
    for (const job of await store.running(SCAN_LIMIT)) {
      if (shutdown.signal.aborted) return;
      if (running.has(job._id) || !(types.get(job.type)?.canRun(job) ?? false)) continue;
      const head = await leases.newest(job._id);
      // No lease yet: its creator may still be about to take it; it had a lease's time to do so.
      if (head === null ? Date.now() - job.createdAt.getTime() < leaseMs : !leases.lapsed(head)) continue;
      const lease = await leases.acquire(job._id, head);
      if (lease === undefined) continue; // another instance was quicker
      // Read it again: it may have finished between the listing and the lease.
      const fresh = await store.read(job._id);
      if (fresh === null || fresh.state !== 'running' || running.has(job._id)) {
        await leases.release(lease).catch(() => undefined);
        continue;
      }
      const runs = (fresh.runs ?? 1) + 1;
      await store.countRun(job._id, runs);
      options.onTakeover?.({ id: job._id, type: job.type, runs });
      run({ ...fresh, runs }, lease, true);
    }
  }

  function scheduleScan(): void {
    if (shutdown.signal.aborted) return;
    // About twice a lease, jittered so instances do not scan in step.
    const delay = Math.floor((leaseMs / 2) * (0.75 + Math.random() * 0.5));
    scanTimer = setTimeout(() => {
      scanning = scan()
        .catch((err: unknown) => options.logError(err, 'scan'))
        .finally(() => {
          scanning = undefined;
          scheduleScan();
        });
    }, delay);
    scanTimer.unref();
  }

  return {
    /** The work of a job type: what any instance runs to start or resume such a job. */
    define(type: string, work: JobWork, canRun: JobCanRun = () => true): void {
      types.set(type, { work, canRun });
    },

    /** Record a job and run it here, under a lease. */
    async start(type: string, createdBy: string, params: Record<string, unknown>, total: number, spec: Record<string, unknown> = {}): Promise<JobView> {
      if (!types.has(type)) throw new Error(`no work is defined for jobs of type ${type}`);
      const job = await store.create(type, createdBy, params, total, spec);
      const lease = await leases.acquire(job._id, null);
      // Unless a scan somewhere was quicker (it waits a lease's time first): then it runs there.
      if (lease !== undefined) run(job, lease, false);
      return toJobView(job);
    },

    get: store.get,

    /** Start looking for jobs to take over. */
    startScanning(): void {
      if (scanTimer === undefined) scheduleScan();
    },

    /** Stop scanning, ask running jobs to stop at their next step (handing them over), and wait for them. */
    async stop(): Promise<void> {
      shutdown.abort();
      clearTimeout(scanTimer);
      await scanning;
      await Promise.allSettled([...running.values()]);
    },
  };
}

export type JobRunner = ReturnType<typeof createJobRunner>;

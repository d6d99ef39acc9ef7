/**
 * Runs background jobs across the fleet. A job is a record in MongoDB with its type and `spec`; its
 * work is defined per type (`define`), so any instance can run it. The instance that creates a job
 * runs it under a lease (src/jobs/job-leases.ts) renewed every third of `leaseMs`; every instance
 * looks for unfinished jobs whose lease lapsed (about twice a lease) and takes them over: the
 * operations are resumable, so the new run picks up where the old one stopped.
 *
 * Work receives an AbortSignal, tripped by a shutdown, by losing the lease or by a cancel request:
 * it stops between units of work. On shutdown the lease is let go at once, so another instance (or
 * this one, back) takes the job over without waiting for it to lapse. A cancel request may reach
 * any instance: it is recorded in MongoDB, and the holder of the lease looks for it every
 * `CANCEL_POLL_MS`, so the job stops at its first checkpoint after that and ends `cancelled`,
 * with the units already done left as they are (each is whole: a key rewrapped, a document
 * re-encrypted). A job no instance runs is cancelled by the instance that got the request, once
 * it has taken the job's lease: the lease, not the request, decides who writes the job.
 */
import { allows, type Principal } from '../clients/scopes.js';
import { AppError, isAppError } from '../errors.js';
import type { JobLeases, Lease } from './job-leases.js';
import type { CancelRequest, JobListQuery, JobRecord, JobStore, JobView, JobViewer } from './job-store.js';
import { FINISHED_STATES, toJobView } from './job-store.js';

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

export interface JobDefinition {
  work: JobWork;
  /**
   * Whether this instance can run the job at all (it has the collection's schema, the KMS
   * provider): instances of a fleet may differ for a while (a rolling deploy), and one that cannot
   * run a job must leave it to one that can rather than take it over and fail it.
   */
  canRun?: (job: JobRecord) => boolean;
  /** The scope that starts such a job; its creator needs it to cancel it too (see `cancel`). */
  startScope: (job: JobRecord) => string;
}

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
/** How often the holder of a job looks for a cancel request made through another instance. */
export const CANCEL_POLL_MS = 1000;
/** The code a cancelled job's audit event carries. */
export const CANCELLED = 'JOB_CANCELLED';

export function createJobRunner(options: JobRunnerOptions) {
  const { store, leases, leaseMs } = options;
  const types = new Map<string, JobDefinition>();
  const shutdown = new AbortController();
  /** The jobs this instance runs: their end, and how to stop them at once for a cancel asked here. */
  const running = new Map<string, { done: Promise<void>; cancel: (request: CancelRequest) => void }>();
  let scanTimer: NodeJS.Timeout | undefined;
  let scanning: Promise<void> | undefined;

  /** End a job as cancelled (its lease held by the caller), and audit that. */
  async function finishCancelled(job: JobRecord, request: CancelRequest, progress: Progress): Promise<void> {
    await store.finish(job._id, { cancel: { requestedBy: request.requestedBy, requestedAt: request.requestedAt } }, progress);
    await options.onFinished?.({ id: job._id, type: job.type, createdBy: job.createdBy, ok: false, code: CANCELLED }).catch(() => undefined);
  }

  function run(job: JobRecord, lease: Lease, resumed: boolean): void {
    const work = types.get(job.type)?.work;
    const lost = new AbortController();
    const cancelled = new AbortController();
    let cancelRequest: CancelRequest | undefined;
    const cancel = (request: CancelRequest) => {
      cancelRequest ??= request;
      cancelled.abort();
    };
    const signal = AbortSignal.any([shutdown.signal, lost.signal, cancelled.signal]);
    let last: Progress = job.progress;
    const report = async (progress: Progress) => {
      last = progress;
      await store.progress(job._id, progress).catch((err: unknown) => options.logError(err, job._id));
    };
    const lookForCancel = async () => {
      const request = await store.cancelRequest(job._id);
      if (request !== null) cancel(request);
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
    const cancelWatch = setInterval(() => {
      lookForCancel().catch(() => undefined); // the database is away: the next look will tell
    }, CANCEL_POLL_MS);
    cancelWatch.unref();

    const done = (async () => {
      try {
        if (work === undefined) throw new Error(`no work is defined for jobs of type ${job.type}`);
        // A job cancelled while no instance ran it does no work at all.
        await lookForCancel().catch(() => undefined);
        signal.throwIfAborted();
        const { progress, result } = await work(job, { jobId: job._id, report, signal, resumed });
        if (!(await leases.holds(lease))) return; // another instance has it now
        await store.finish(job._id, { result }, progress);
        await options.onFinished?.({ id: job._id, type: job.type, createdBy: job.createdBy, ok: true, result });
      } catch (err) {
        if (lost.signal.aborted) return; // another instance took it over and goes on
        if (cancelRequest !== undefined) {
          // Whatever the work was doing when it stopped, it stopped because it was asked to.
          if (await leases.holds(lease)) await finishCancelled(job, cancelRequest, last).catch((e: unknown) => options.logError(e, job._id));
          return;
        }
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
        clearInterval(cancelWatch);
        running.delete(job._id);
      }
    })();
    running.set(job._id, { done, cancel });
  }

  /** Whether no instance holds the job: its lease lapsed, or it never had one in a lease's time. */
  async function orphaned(job: JobRecord) {
    const head = await leases.newest(job._id);
    const free = head === null ? Date.now() - job.createdAt.getTime() >= leaseMs : leases.lapsed(head);
    return { free, head };
  }

  /** Take over unfinished jobs whose lease lapsed (their instance died or let them go). */
  async function scan(): Promise<void> {
    for (const job of await store.unfinished(SCAN_LIMIT)) {
      if (shutdown.signal.aborted) return;
      if (running.has(job._id) || !(types.get(job.type)?.canRun?.(job) ?? types.has(job.type))) continue;
      // No lease yet: its creator may still be about to take it; it had a lease's time to do so.
      const { free, head } = await orphaned(job);
      if (!free) continue;
      const lease = await leases.acquire(job._id, head);
      if (lease === undefined) continue; // another instance was quicker
      // Read it again: it may have finished between the listing and the lease.
      const fresh = await store.read(job._id);
      if (fresh === null || FINISHED_STATES.has(fresh.state) || running.has(job._id)) {
        await leases.release(lease).catch(() => undefined);
        continue;
      }
      const runs = (fresh.runs ?? 0) + 1;
      await store.countRun(job._id, runs);
      if (runs > 1) options.onTakeover?.({ id: job._id, type: job.type, runs });
      run({ ...fresh, state: 'running', runs }, lease, runs > 1);
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

  /** Which jobs `principal` may see: every job with jobs:admin (the operator has it), else its own. */
  function viewerOf(principal: Principal): JobViewer {
    return allows(principal, 'jobs:admin') ? {} : { createdBy: principal.clientId };
  }

  return {
    /** The work of a job type: what any instance runs to start or resume such a job. */
    define(type: string, definition: JobDefinition): void {
      types.set(type, definition);
    },

    /** Record a job and run it here, under a lease. */
    async start(type: string, createdBy: string, params: Record<string, unknown>, total: number, spec: Record<string, unknown> = {}): Promise<JobView> {
      if (!types.has(type)) throw new Error(`no work is defined for jobs of type ${type}`);
      const job = await store.create(type, createdBy, params, total, spec);
      const lease = await leases.acquire(job._id, null);
      // Unless a scan somewhere was quicker (it waits a lease's time first): then it runs there.
      if (lease === undefined) return toJobView(job);
      await store.countRun(job._id, 1);
      const started: JobRecord = { ...job, state: 'running', runs: 1 };
      run(started, lease, false);
      return toJobView(started);
    },

    /** A job `principal` may see (404 JOB_NOT_FOUND otherwise, as for a missing one). */
    get: (id: string, principal: Principal) => store.get(id, viewerOf(principal)),

    /** The jobs `principal` may see, newest first. */
    list: (query: JobListQuery, principal: Principal) => store.list(query, viewerOf(principal)),

    /**
     * Ask a job to stop (see the file comment). Who may: jobs:admin (and the operator), on any job;
     * otherwise only the job's creator, and only while it holds the scope that starts such a job
     * (a client that may no longer start a migration may not stop one either, nor anyone else's).
     * Another client's job is JOB_NOT_FOUND, as for GET; a finished job is 409 JOB_FINISHED.
     * Answers the job as it is now: still running until its holder reaches a checkpoint, unless no
     * instance held it, in which case it is cancelled here and now.
     */
    async cancel(id: string, principal: Principal, requestId: string): Promise<JobView> {
      const viewer = viewerOf(principal);
      const job = await store.readVisible(id, viewer);
      if (FINISHED_STATES.has(job.state)) throw new AppError('JOB_FINISHED', `The job already ended ${job.state}.`);
      if (viewer.createdBy !== undefined) {
        const scope = types.get(job.type)?.startScope(job);
        if (scope === undefined || !allows(principal, scope)) {
          throw new AppError('FORBIDDEN', `Cancelling this job needs the ${scope === undefined ? 'jobs:admin' : `${scope} or the jobs:admin`} scope.`);
        }
      }
      const request = await store.requestCancel(id, principal.clientId, requestId);
      const here = running.get(id);
      if (here !== undefined) {
        here.cancel(request);
      } else {
        const { free, head } = await orphaned(job);
        const lease = free ? await leases.acquire(id, head) : undefined;
        if (lease !== undefined) {
          const fresh = await store.read(id);
          if (fresh !== null && !FINISHED_STATES.has(fresh.state)) await finishCancelled(fresh, request, fresh.progress);
          await leases.release(lease).catch(() => undefined);
        }
      }
      return store.get(id);
    },

    /** Start looking for jobs to take over. */
    startScanning(): void {
      if (scanTimer === undefined) scheduleScan();
    },

    /** Stop scanning, ask running jobs to stop at their next step (handing them over), and wait for them. */
    async stop(): Promise<void> {
      shutdown.abort();
      clearTimeout(scanTimer);
      await scanning;
      await Promise.allSettled([...running.values()].map((job) => job.done));
    },
  };
}

export type JobRunner = ReturnType<typeof createJobRunner>;

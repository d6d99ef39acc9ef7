/**
 * Periodic work that one instance of the fleet does once per period (the key-trash sweep, the
 * daily rotation reminder). Every instance wakes shortly after each period starts and tries to take
 * that period's lease (`<name>:<period>`, src/jobs/job-leases.ts); only the one that gets it runs
 * the work. As for jobs, only the insert of a new `_id` arbitrates, so two instances never both win
 * a period, and an instance that dies leaves the next period to whichever instance wakes first.
 *
 * A run that fails is not retried within its period: the next period's run does the same work.
 */
import type { JobLeases } from './job-leases.js';

export interface ScheduledTaskOptions {
  leases: JobLeases;
  /** Names the leases: one name per kind of work. */
  name: string;
  everyMs: number;
  run(): Promise<void>;
  onError(err: unknown): void;
}

/** Wake this long into a period (up to), so instances do not all hit the database at its first millisecond. */
const MAX_JITTER_MS = 5_000;
/** Likewise for the first run after start, kept short: a fleet's instances rarely start together. */
const MAX_FIRST_JITTER_MS = 1_000;
/** The first run after start: soon, but not within a boot that is closed at once (as `npm run openapi` does). */
const FIRST_RUN_MS = 1_000;

export function createScheduledTask(options: ScheduledTaskOptions) {
  const { leases, name, everyMs, run, onError } = options;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  /** Run the work if this instance takes the current period's lease; whether it ran. */
  async function runOnce(): Promise<boolean> {
    const period = Math.floor(Date.now() / everyMs);
    const lease = await leases.acquire(`${name}:${period}`, null);
    if (lease === undefined) return false;
    await run();
    // The leases of past periods are no use to anyone: keep the collection from growing.
    await leases.discard(`${name}:${period - 2}`);
    return true;
  }

  function schedule(delay: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce()
        .then(() => undefined, onError)
        .finally(() => {
          running = undefined;
          const next = (Math.floor(Date.now() / everyMs) + 1) * everyMs - Date.now();
          schedule(next + Math.random() * Math.min(MAX_JITTER_MS, everyMs / 10));
        });
    }, delay);
    timer.unref();
  }

  return {
    runOnce,
    start(): void {
      if (timer === undefined) schedule(FIRST_RUN_MS + Math.random() * Math.min(MAX_FIRST_JITTER_MS, everyMs / 10));
    },
    /** Stop waking up, and wait for a run under way. */
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

export type ScheduledTask = ReturnType<typeof createScheduledTask>;

/**
 * Background care of the key vault: the trash sweep (settle keys a crash left in both collections,
 * purge those whose retention ended), done by one instance of the fleet per period, and by every
 * instance once as it starts the settling part (a crashed instance, restarted, finishes what it
 * cut short without waiting for its fleet's next period); and the
 * rotation reminder: every instance keeps the `data_keys_rotation_due` gauge (a count in the key
 * vault every 10 minutes, never per scrape), and one instance a day logs a warning while it is not 0.
 */
import type { KeyVault } from '../key-vault/key-vault.js';
import type { Metrics } from '../metrics/metrics.js';
import type { JobLeases } from './job-leases.js';
import { createScheduledTask } from './scheduled-task.js';

export interface KeyMaintenanceLog {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

export interface KeyMaintenanceOptions {
  leases: JobLeases;
  keyVault: Pick<KeyVault, 'sweepTrash' | 'reconcileTrash' | 'countRotationDue' | 'rotationReport'>;
  trashRetentionMs: number;
  /** 0: no reminders (the gauge stays 0). */
  rotationPeriodDays: number;
  metrics: Pick<Metrics, 'rotationDue'>;
  log: KeyMaintenanceLog;
}

const DAY_MS = 86_400_000;
const ROTATION_COUNT_EVERY_MS = 10 * 60_000;

/** A quarter of the retention, so a key is purged at most a quarter late; between 1 s and 1 h. */
export function sweepPeriodMs(retentionMs: number): number {
  return Math.min(3_600_000, Math.max(1_000, Math.floor(retentionMs / 4)));
}

export function createKeyMaintenance(options: KeyMaintenanceOptions) {
  const { keyVault, rotationPeriodDays, metrics, log } = options;

  const sweep = createScheduledTask({
    leases: options.leases,
    name: 'keys.trashSweep',
    everyMs: sweepPeriodMs(options.trashRetentionMs),
    run: async () => {
      const result = await keyVault.sweepTrash();
      if (result.purged > 0 || result.reconciled > 0) log.info({ ...result }, 'key trash swept');
    },
    onError: (err) => log.error({ err }, 'key trash sweep failed; the next period retries'),
  });

  async function remind(): Promise<void> {
    const report = await keyVault.rotationReport(rotationPeriodDays);
    if (report.due === 0) return;
    const dueByProvider: Record<string, number> = {};
    for (const group of report.masterKeys) dueByProvider[group.masterKey.provider ?? 'unknown'] = (dueByProvider[group.masterKey.provider ?? 'unknown'] ?? 0) + group.due;
    log.warn(
      { due: report.due, dataKeys: report.dataKeys, olderThanDays: rotationPeriodDays, dueByProvider },
      `${report.due} of ${report.dataKeys} data keys are wrapped by a master key for longer than KEY_ROTATION_PERIOD_DAYS (${rotationPeriodDays}): rewrap them under a new master key (GET /keys/rotation-report, POST /keys/migrations)`,
    );
  }

  const reminder =
    rotationPeriodDays > 0
      ? createScheduledTask({ leases: options.leases, name: 'keys.rotationReminder', everyMs: DAY_MS, run: remind, onError: (err) => log.error({ err }, 'rotation reminder failed') })
      : undefined;

  /** Count the keys due and set the gauge; the count. */
  async function refreshRotationDue(): Promise<number> {
    const due = rotationPeriodDays > 0 ? await keyVault.countRotationDue(rotationPeriodDays) : 0;
    metrics.rotationDue(due);
    return due;
  }

  let gaugeTimer: NodeJS.Timeout | undefined;
  let counting: Promise<unknown> | undefined;
  let settleTimer: NodeJS.Timeout | undefined;
  let settling: Promise<unknown> | undefined;
  function scheduleCount(delay: number): void {
    gaugeTimer = setTimeout(() => {
      counting = refreshRotationDue()
        .catch((err: unknown) => log.warn({ err }, 'data keys due for rotation not counted; the gauge keeps its last value'))
        .finally(() => {
          counting = undefined;
          if (gaugeTimer !== undefined) scheduleCount(ROTATION_COUNT_EVERY_MS);
        });
    }, delay);
    gaugeTimer.unref();
  }

  return {
    /** Sweep now, if this instance takes the current period (tests; the schedule does it otherwise). */
    sweepNow: () => sweep.runOnce(),
    /** Log the reminder now if keys are due (tests; once a day otherwise). */
    remind,
    refreshRotationDue,

    start(): void {
      settleTimer = setTimeout(() => {
        settling = keyVault.reconcileTrash().then(
          (reconciled) => reconciled > 0 && log.info({ reconciled }, 'key moves cut short settled at start'),
          (err: unknown) => log.warn({ err }, 'key moves cut short not settled at start; the next sweep does'),
        );
      }, 1_000);
      settleTimer.unref();
      sweep.start();
      reminder?.start();
      if (rotationPeriodDays > 0) scheduleCount(1_000);
    },

    async stop(): Promise<void> {
      clearTimeout(gaugeTimer);
      clearTimeout(settleTimer);
      gaugeTimer = undefined;
      await Promise.all([sweep.stop(), reminder?.stop(), counting, settling]);
    },
  };
}

export type KeyMaintenance = ReturnType<typeof createKeyMaintenance>;

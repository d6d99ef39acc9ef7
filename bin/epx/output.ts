/**
 * What epx prints: the API's JSON with --json (for scripts), else short lines for people; and
 * waiting for a job, with a progress bar on a terminal and one plain line per change otherwise.
 */
import { Presets, SingleBar } from 'cli-progress';
import { api, EXIT, segment, type Context } from './client.js';

export function print(ctx: Context, data: unknown, lines: () => string[]): void {
  if (ctx.json) ctx.out(JSON.stringify(data, null, 2));
  else for (const line of lines()) ctx.out(line);
}

/** Rows as columns padded to their widest cell (the last column is not padded). */
export function columns(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

export interface Job {
  id: string;
  type: string;
  state: string;
  createdBy: string;
  params: Record<string, unknown>;
  progress: { total: number; done: number; failed: number; phase: string };
  result?: Record<string, unknown>;
  error?: { code: string; detail?: string };
  cancel?: { requestedBy: string; requestedAt: string };
  createdAt: string;
  finishedAt?: string;
}

const UNFINISHED = new Set(['queued', 'running', 'interrupted']);
export const isUnfinished = (job: Job) => UNFINISHED.has(job.state);

/** What a job works through, for the progress bar. */
const unitOf = (job: Job) => (job.type === 'documents.rotation' ? 'documents' : job.type === 'keys.migration' ? 'keys' : 'items');

export function progressLine(job: Job): string {
  const cancelling = job.cancel && isUnfinished(job) ? ', cancel requested' : '';
  return `job ${job.id} ${job.state}: ${job.progress.done}/${job.progress.total} ${unitOf(job)} (${job.progress.phase}${cancelling})`;
}

/** Poll a job until it has ended (an interrupted job is waited for too: an instance takes it over). */
export async function waitForJob(ctx: Context, id: string): Promise<Job> {
  const read = async () => (await api(ctx, 'GET', `/jobs/${segment(id)}`)) as Job;
  let job = await read();
  const bar =
    ctx.interactive && !ctx.json
      ? // On stdout, the terminal that was asked about (cli-progress draws on stderr by default).
        new SingleBar({ format: ` {bar} {value}/{total} ${unitOf(job)} | {phase}`, hideCursor: true, stream: process.stdout }, Presets.shades_classic)
      : undefined;
  bar?.start(Math.max(job.progress.total, 1), job.progress.done, { phase: job.progress.phase });
  let shown = '';
  try {
    for (;;) {
      if (bar) {
        bar.setTotal(Math.max(job.progress.total, 1));
        bar.update(job.progress.done, { phase: job.cancel ? `${job.progress.phase}, cancelling` : job.progress.phase });
      } else if (!ctx.json && isUnfinished(job) && progressLine(job) !== shown) {
        shown = progressLine(job);
        ctx.out(shown);
      }
      if (!isUnfinished(job)) return job;
      await new Promise((resolve) => setTimeout(resolve, ctx.pollMs));
      job = await read();
    }
  } finally {
    bar?.stop();
  }
}

/**
 * The end of a job, and the exit code: 0 when it ended as `wanted` (or is still under way), else
 * 4 (failed, or cancelled when it should have succeeded).
 */
export function reportJob(ctx: Context, job: Job, wanted: 'succeeded' | 'cancelled' = 'succeeded'): number {
  print(ctx, job, () => {
    if (isUnfinished(job)) return [progressLine(job)];
    if (job.state === 'succeeded') return [`job ${job.id} succeeded: ${JSON.stringify({ ...job.result, keyIds: undefined })}`];
    if (job.state === 'cancelled') {
      const by = job.cancel ? ` by ${job.cancel.requestedBy}` : '';
      return [`job ${job.id} cancelled${by} after ${job.progress.done}/${job.progress.total} ${unitOf(job)} (${job.progress.phase}); what was done stays valid`];
    }
    return [`job ${job.id} ${job.state}: ${job.error?.code ?? ''} ${job.error?.detail ?? ''}`.trim()];
  });
  return isUnfinished(job) || job.state === wanted ? EXIT.ok : EXIT.jobFailed;
}

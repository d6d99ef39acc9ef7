/** epx jobs …: background jobs (migrations, rotations): list, follow, cancel. */
import { api, EXIT, listPages, segment } from './client.js';
import { flag, integerOf, oneOf, required, stringOf, type CommandGroup, type Invocation } from './command.js';
import { columns, print, progressLine, reportJob, waitForJob, type Job } from './output.js';

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'] as const;

export function jobRow(job: Job): string[] {
  const outcome = job.error ? job.error.code : job.cancel && job.state !== 'cancelled' ? 'cancel requested' : '';
  return [job.id, job.type, job.state, `${job.progress.done}/${job.progress.total}`, job.createdAt, job.createdBy, outcome];
}

/** A job's state now, or with `wait` its end (exit 4 unless it ended as `wanted`). */
export async function showJob(invocation: Invocation, id: string, wanted: 'succeeded' | 'cancelled' = 'succeeded'): Promise<number> {
  const { ctx, values } = invocation;
  if (flag(values, 'wait')) return reportJob(ctx, await waitForJob(ctx, id), wanted);
  const job = (await api(ctx, 'GET', `/jobs/${segment(id)}`)) as Job;
  return reportJob(ctx, job, wanted);
}

async function list({ ctx, values }: Invocation) {
  const params = { state: oneOf(values, 'state', JOB_STATES), type: stringOf(values, 'type'), limit: integerOf(values, 'limit', 1, 200) ?? 50 };
  const page = await listPages<Job>(ctx, '/jobs', params, flag(values, 'all'));
  print(ctx, page, () =>
    page.items.length === 0 ? ['no jobs'] : [...columns(page.items.map(jobRow)), ...(page.next ? [`more: --all, or the API with after=${page.next}`] : [])],
  );
  return EXIT.ok;
}

async function status(invocation: Invocation) {
  return showJob(invocation, required(invocation.args, 0, 'the job', 'jobs status JOB_ID [--wait]'));
}

async function cancel(invocation: Invocation) {
  const { ctx, args, values } = invocation;
  const id = required(args, 0, 'the job', 'jobs cancel JOB_ID [--wait]');
  const job = (await api(ctx, 'POST', `/jobs/${segment(id)}/cancel`)) as Job;
  if (flag(values, 'wait')) return reportJob(ctx, await waitForJob(ctx, id), 'cancelled');
  print(ctx, job, () => [job.state === 'cancelled' ? `job ${job.id} cancelled` : `${progressLine(job)}: it stops at its next checkpoint (epx jobs status ${job.id} --wait)`]);
  return EXIT.ok;
}

export const jobs: CommandGroup = {
  name: 'jobs',
  usage: `  jobs list [--state ${JOB_STATES.join('|')}] [--type TYPE] [--limit N] [--all]
                                                    background jobs you may see, newest first
  jobs status JOB_ID [--wait]                       progress of a background job (--wait: until it ends)
  jobs cancel JOB_ID [--wait]                       stop a job at its next checkpoint (--wait: until it has)`,
  options: {
    state: { type: 'string' },
    type: { type: 'string' },
    limit: { type: 'string' },
    all: { type: 'boolean' },
    wait: { type: 'boolean' },
  },
  commands: { list, status, cancel },
};

/** epx rotations …: re-encrypt a collection's fields from one data key to another (a background job). */
import { api, EXIT, listPages, segment } from './client.js';
import { flag, integerOf, keyRef, required, stringOf, usageError, type CommandGroup, type Invocation } from './command.js';
import { jobRow, showJob } from './jobs.js';
import { columns, print, reportJob, waitForJob, type Job } from './output.js';

const JOB_ID = /^job_[0-9a-f]{24}$/;

async function start({ ctx, args, values }: Invocation) {
  const usage = 'rotations start NS --from KEY --to KEY';
  const ns = required(args, 0, 'the namespace (db.collection)', usage);
  const from = stringOf(values, 'from');
  const to = stringOf(values, 'to');
  if (from === undefined || to === undefined) throw usageError(`name both keys (an id or an alt name): epx ${usage}`);
  const batchSize = integerOf(values, 'batch-size', 1, 1000);
  const maxDocsPerSecond = integerOf(values, 'max-docs-per-second', 0, 100000);
  const body = {
    from: keyRef(from),
    to: keyRef(to),
    ...(batchSize === undefined ? {} : { batchSize }),
    ...(maxDocsPerSecond === undefined ? {} : { maxDocsPerSecond }),
  };
  const job = (await api(ctx, 'POST', `/documents/${segment(ns)}/rotations`, body)) as Job;
  if (flag(values, 'no-wait')) {
    print(ctx, job, () => [`started job ${job.id}: epx rotations status ${job.id} --wait`]);
    return EXIT.ok;
  }
  return reportJob(ctx, await waitForJob(ctx, job.id));
}

/** By job id, that job; by namespace, the rotations of that collection (newest first; --wait: the newest). */
async function status(invocation: Invocation) {
  const { ctx, args, values } = invocation;
  const target = required(args, 0, 'the job or the namespace', 'rotations status (JOB_ID | NS) [--wait]');
  if (JOB_ID.test(target)) return showJob(invocation, target);
  const page = await listPages<Job>(ctx, '/jobs', { type: 'documents.rotation', limit: 200 }, true);
  const mine = page.items.filter((job) => job.params.namespace === target);
  if (flag(values, 'wait') && mine[0] !== undefined) return reportJob(ctx, await waitForJob(ctx, mine[0].id));
  print(ctx, { items: mine }, () =>
    mine.length === 0 ? [`no rotation jobs of ${target} that you may see`] : columns(mine.map((job) => [...jobRow(job), `${job.params.fromKeyId} → ${job.params.toKeyId}`])),
  );
  return EXIT.ok;
}

export const rotations: CommandGroup = {
  name: 'rotations',
  usage: `  rotations start NS --from KEY --to KEY [--batch-size N] [--max-docs-per-second N] [--no-wait]
                                                    re-encrypt a collection's fields from one data key to another
                                                    (KEY: a key id or an alt name)
  rotations status (JOB_ID | NS) [--wait]           a rotation job, or the rotation jobs of a collection`,
  options: {
    from: { type: 'string' },
    to: { type: 'string' },
    'batch-size': { type: 'string' },
    'max-docs-per-second': { type: 'string' },
    'no-wait': { type: 'boolean' },
    wait: { type: 'boolean' },
  },
  commands: { start, status },
};

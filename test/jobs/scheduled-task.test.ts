/**
 * Scheduled tasks on the real FerretDB: of many instances waking in one period, exactly one runs
 * the work; the next period runs again; leases of past periods are removed.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import t from 'tap';
import { createJobLeases, type LeaseDocument } from '../../src/jobs/job-leases.js';
import { createScheduledTask } from '../../src/jobs/scheduled-task.js';
import { stack } from '../helpers/stack.js';

t.test('one run per period across instances, and past periods leave no lease behind', async (t) => {
  const client = new MongoClient(stack.mongodbUri);
  const db = client.db(`test_scheduled_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const collection = db.collection<LeaseDocument>('__jobLeases');
  const everyMs = 1500;
  const runs: string[] = [];
  const instances = ['a', 'b', 'c', 'd'].map((owner) =>
    createScheduledTask({
      leases: createJobLeases({ collection, leaseMs: 15_000, owner }),
      name: 'test.task',
      everyMs,
      run: async () => void runs.push(owner),
      onError: (err) => t.fail(String(err)),
    }),
  );
  // Start well inside a period, so all four wake in the same one.
  const intoPeriod = Date.now() % everyMs;
  if (intoPeriod > everyMs / 2) await new Promise((resolve) => setTimeout(resolve, everyMs - intoPeriod + 50));
  const first = await Promise.all(instances.map((task) => task.runOnce()));
  t.equal(first.filter(Boolean).length, 1, 'four instances in one period: one runs');
  t.equal(runs.length, 1);

  for (let period = 0; period < 3; period++) {
    await new Promise((resolve) => setTimeout(resolve, everyMs));
    await Promise.all(instances.map((task) => task.runOnce()));
  }
  t.equal(runs.length, 4, 'once in each of the next three periods');
  const kept = await collection.countDocuments({ jobId: /^test\.task:/ });
  t.ok(kept <= 2, `the leases of past periods are removed (${kept} left)`);
});

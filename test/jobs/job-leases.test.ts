/**
 * Job leases on the real FerretDB: instances are lease managers with different owners on one
 * collection.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import t from 'tap';
import { createJobLeases, type LeaseDocument } from '../../src/jobs/job-leases.js';
import { stack } from '../helpers/stack.js';
import { sleep } from '../faults/servers.js';

async function setup(t: { teardown(fn: () => unknown): void }, leaseMs: number) {
  const client = new MongoClient(stack.mongodbUri);
  const db = client.db(`test_leases_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const collection = db.collection<LeaseDocument>('__jobLeases');
  return (owner: string) => createJobLeases({ collection, leaseMs, owner });
}

t.test('one holder per generation; a lapsed lease is taken over by exactly one of many', async (t) => {
  const instance = await setup(t, 300);
  const [a, ...others] = ['a', 'b', 'c', 'd', 'e', 'f'].map(instance);
  const lease = await a!.acquire('job_1', null);
  t.ok(lease, 'a takes the first generation');
  t.equal(await others[0]!.acquire('job_1', null), undefined, 'nobody else takes it');
  t.ok(await a!.renew(lease!), 'its holder renews it');
  t.notOk(a!.lapsed((await a!.newest('job_1'))!), 'a renewed lease has not lapsed');

  await sleep(450);
  const head = (await others[0]!.newest('job_1'))!;
  t.ok(others[0]!.lapsed(head), 'not renewed for longer than the lease: lapsed');
  const takers = await Promise.all(others.map((o) => o.acquire('job_1', head)));
  t.equal(takers.filter(Boolean).length, 1, 'five instances try to take it over at once: one does');
  t.notOk(await a!.renew(lease!), 'the old holder learns it lost the lease');
  t.notOk(await a!.holds(lease!));
  const winner = others[takers.findIndex(Boolean)]!;
  t.ok(await winner.holds(takers.find(Boolean)!));
});

t.test('a released lease has lapsed at once', async (t) => {
  const instance = await setup(t, 60_000);
  const a = instance('a');
  const lease = (await a.acquire('job_2', null))!;
  t.notOk(a.lapsed((await a.newest('job_2'))!));
  await a.release(lease);
  t.ok(a.lapsed((await a.newest('job_2'))!), 'another instance may take it over now');
  t.ok(await instance('b').acquire('job_2', await a.newest('job_2')));
});

t.test('a holder that could not renew in time gives the lease up by itself', async (t) => {
  const instance = await setup(t, 200);
  const a = instance('a');
  const lease = (await a.acquire('job_3', null))!;
  await sleep(250);
  t.notOk(await a.renew(lease), 'past its deadline, a renewal is refused (another may have taken over)');
});

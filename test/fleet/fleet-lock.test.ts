/**
 * Fleet locks on the real FerretDB: lock managers on one collection stand for instances.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import t from 'tap';
import { createFleetLocks, type LockDocument } from '../../src/fleet/fleet-lock.js';
import { stack } from '../helpers/stack.js';
import { sleep } from '../faults/servers.js';

async function setup(t: { teardown(fn: () => unknown): void }) {
  const client = new MongoClient(stack.mongodbUri);
  const db = client.db(`test_locks_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  return db.collection<LockDocument>('__locks');
}

t.test('critical sections of three instances never overlap', async (t) => {
  const collection = await setup(t);
  const instances = [1, 2, 3].map(() => createFleetLocks({ collection }));
  let inside = 0;
  let most = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: 24 }, (_, i) =>
      instances[i % 3]!.withLock('client:x', async () => {
        inside++;
        most = Math.max(most, inside);
        await sleep(3);
        inside--;
        done++;
      }),
    ),
  );
  t.equal(done, 24);
  t.equal(most, 1, 'one holder at a time');
  t.ok((await collection.countDocuments({ name: 'client:x' })) < 24, 'older generations are pruned');
});

t.test('a lock whose holder died lapses after its ttl; waiting longer than waitMs gives up', async (t) => {
  const collection = await setup(t);
  // A holder that died: its generation was never let go.
  await collection.insertOne({ _id: 'client:y:0', name: 'client:y', generation: 0, owner: 'dead', until: new Date(Date.now() + 300) });
  const impatient = createFleetLocks({ collection, waitMs: 100 });
  await t.rejects(impatient.withLock('client:y', async () => undefined), { name: 'LockTimeoutError' });
  const patient = createFleetLocks({ collection, waitMs: 2000 });
  const started = Date.now();
  t.equal(await patient.withLock('client:y', async () => 'ran'), 'ran');
  t.ok(Date.now() - started < 1000, 'taken once the dead holder\'s lock lapsed');
});

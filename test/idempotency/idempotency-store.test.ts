import { randomBytes } from 'node:crypto';
import { MongoClient, type Collection } from 'mongodb';
import t from 'tap';
import { createIdempotencyStore, type IdempotencyRecord } from '../../src/idempotency/idempotency-store.js';

const uri = process.env.MONGODB_URI;
if (!uri) throw new Error('MONGODB_URI is not set: run the tests through `npm test` or `eval "$(scripts/stack up)"`.');

async function realCollection(t: { teardown(fn: () => unknown): void }): Promise<Collection<IdempotencyRecord>> {
  const client = new MongoClient(uri!);
  const db = client.db(`idem_store_${randomBytes(4).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  return db.collection<IdempotencyRecord>('__idempotency');
}

t.test('a pending claim whose request died is taken over once its lease ends', async (t) => {
  const collection = await realCollection(t);
  const store = createIdempotencyStore({ collection, ttlMs: 60_000, pendingMs: 300 });
  t.teardown(() => store.close());
  t.same(await store.claim('k1', 'h'), { kind: 'claimed' });
  await t.rejects(store.claim('k1', 'h'), { code: 'IDEMPOTENCY_IN_PROGRESS' }, 'while the lease runs, a retry waits');
  await new Promise((resolve) => setTimeout(resolve, 400));
  t.same(await store.claim('k1', 'h'), { kind: 'claimed' }, 'after it, the retry runs');
  t.equal(await collection.countDocuments({ _id: 'k1' }), 1, 'one claim, not two');
  await t.rejects(store.claim('k1', 'other'), { code: 'IDEMPOTENCY_KEY_REUSED' }, 'another request under the key is still refused');
});

t.test('a claim whose release could not reach MongoDB is taken over here at once and deleted later', async (t) => {
  const collection = await realCollection(t);
  // The database is "down" for the first release only: the rest goes to the real collection.
  let failNextDelete = false;
  const flaky = new Proxy(collection, {
    get(target, name, receiver) {
      if (name === 'deleteOne' && failNextDelete) {
        failNextDelete = false;
        return async () => {
          throw new Error('connection closed');
        };
      }
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const store = createIdempotencyStore({ collection: flaky, ttlMs: 60_000, pendingMs: 60_000 });
  const other = createIdempotencyStore({ collection, ttlMs: 60_000, pendingMs: 60_000 });
  t.teardown(() => store.close());

  t.same(await store.claim('k2', 'h'), { kind: 'claimed' });
  failNextDelete = true;
  await t.rejects(store.release('k2'), /connection closed/);
  t.equal(await collection.countDocuments({ _id: 'k2', state: 'pending' }), 1, 'the claim is still there');

  // Another instance cannot know the request is over until the claim is gone...
  const deadline = Date.now() + 3000;
  let removed = false;
  while (!removed && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    removed = (await collection.countDocuments({ _id: 'k2' })) === 0;
  }
  t.ok(removed, 'the release is retried in the background until MongoDB takes it');
  t.same(await other.claim('k2', 'h'), { kind: 'claimed' }, '...then it can run the retry');

  // ...while the instance that saw the failure takes the claim over at once.
  t.same(await store.claim('k3', 'h'), { kind: 'claimed' });
  failNextDelete = true;
  await t.rejects(store.release('k3'), /connection closed/);
  t.same(await store.claim('k3', 'h'), { kind: 'claimed' }, 'the same instance reruns its own failed request');
  t.equal(await collection.countDocuments({ _id: 'k3', state: 'pending' }), 1, 'one claim, owned again');
});

t.test('a claim whose insert landed but whose answer was lost does not block the retry', async (t) => {
  const collection = await realCollection(t);
  let loseNextAnswer = false;
  const lossy = new Proxy(collection, {
    get(target, name, receiver) {
      if (name === 'insertOne' && loseNextAnswer) {
        loseNextAnswer = false;
        return async (...args: Parameters<typeof collection.insertOne>) => {
          await target.insertOne(...args);
          throw new Error('connection closed before the answer');
        };
      }
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const store = createIdempotencyStore({ collection: lossy, ttlMs: 60_000, pendingMs: 60_000 });
  const other = createIdempotencyStore({ collection, ttlMs: 60_000, pendingMs: 60_000 });
  t.teardown(() => store.close());

  loseNextAnswer = true;
  await t.rejects(store.claim('k4', 'h'), /before the answer/);
  t.same(await store.claim('k4', 'h'), { kind: 'claimed' }, 'the same instance reruns the request at once');
  await store.complete('k4', { status: 201, contentType: 'application/json', body: '{}' });
  t.same(await other.claim('k4', 'h'), { kind: 'replay', status: 201, contentType: 'application/json', body: '{}' }, 'and its answer is kept');

  // Another instance's live claim is never removed by this one's clean-up.
  loseNextAnswer = true;
  await t.rejects(store.claim('k5', 'h'), /before the answer/);
  await collection.deleteOne({ _id: 'k5' }); // as if the lost insert had not landed after all
  t.same(await other.claim('k5', 'h'), { kind: 'claimed' }, 'another instance claims the key');
  await new Promise((resolve) => setTimeout(resolve, 1200)); // background clean-ups run meanwhile
  t.equal(await collection.countDocuments({ _id: 'k5', state: 'pending' }), 1, "the other instance's claim is intact");
  await t.rejects(store.claim('k5', 'h'), { code: 'IDEMPOTENCY_IN_PROGRESS' }, 'and this instance waits for it');
});


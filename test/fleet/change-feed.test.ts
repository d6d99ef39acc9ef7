/**
 * The change feed on the real FerretDB: two feeds on one collection stand for two instances.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import t from 'tap';
import { createChangeFeed, type ChangeEntry, type ChangeKind } from '../../src/fleet/change-feed.js';
import { stack } from '../helpers/stack.js';
import { sleep, startTcpProxy } from '../faults/servers.js';

async function setup(t: { teardown(fn: () => unknown): void }) {
  const client = new MongoClient(stack.mongodbUri);
  const db = client.db(`test_feed_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const collection = db.collection<ChangeEntry>('__changes');
  const feeds: ReturnType<typeof createChangeFeed>[] = [];
  const make = (options: Partial<Parameters<typeof createChangeFeed>[0]> = {}) => {
    const feed = createChangeFeed({ collection, pollMs: 50, maxLagMs: 1000, ...options });
    const seen: [ChangeKind, string][] = [];
    for (const kind of ['key', 'client', 'schema'] as const) feed.on(kind, (id) => seen.push([kind, id]));
    let resets = 0;
    feed.onReset(() => resets++);
    feeds.push(feed);
    t.teardown(() => feed.stop());
    return { feed, seen, resets: () => resets };
  };
  return { client, db, collection, make };
}

t.test('a change recorded by one instance reaches the other, exactly, in order', async (t) => {
  const { make, collection } = await setup(t);
  const a = make();
  const b = make();
  t.notOk(b.feed.trusted(), 'not trusted before it has read the feed');
  await a.feed.poll();
  await b.feed.poll();
  t.ok(b.feed.trusted(), 'trusted once it has read the head');
  await a.feed.record('key', 'k1');
  await a.feed.record('client', 'cl_1');
  await a.feed.record('schema', 'db.coll');
  await b.feed.poll();
  t.same(b.seen, [['key', 'k1'], ['client', 'cl_1'], ['schema', 'db.coll']]);
  await b.feed.poll();
  t.equal(b.seen.length, 3, 'nothing is applied twice');
  t.same((await collection.find({}).sort({ _id: 1 }).toArray()).map((e) => [e._id, e.kind, e.ids]), [[1, 'key', ['k1']], [2, 'client', ['cl_1']], [3, 'schema', ['db.coll']]]);
  t.equal(b.feed.status().seq, 3);
});

t.test('concurrent writers on two instances (single changes, and 700 at once) number entries without gaps; a reader sees each change once', async (t) => {
  const { make, collection } = await setup(t);
  const a = make();
  const b = make();
  const c = make();
  await Promise.all([a.feed.poll(), b.feed.poll(), c.feed.poll()]);
  const ids = Array.from({ length: 40 }, (_, i) => `k${i}`);
  // Read while they write: a reader must never skip an entry that becomes visible late.
  let reading = true;
  const reader = (async () => {
    while (reading) {
      await c.feed.poll();
      await sleep(5);
    }
  })();
  const many = Array.from({ length: 700 }, (_, i) => `m${i}`);
  await Promise.all([...ids.map((id, i) => (i % 2 === 0 ? a : b).feed.record('key', id)), a.feed.record('key', ...many)]);
  reading = false;
  await reader;
  await c.feed.poll();
  const entries = await collection.find({}).sort({ _id: 1 }).toArray();
  t.same(entries.map((e) => e._id), Array.from({ length: entries.length }, (_, i) => i + 1), 'numbered without gaps');
  t.same(entries.flatMap((e) => e.ids).sort(), [...ids, ...many].sort(), 'every change is in one entry');
  t.same(c.seen.map(([, id]) => id).sort(), [...ids, ...many].sort(), 'every change applied once');
  t.equal(c.resets(), 0);
});

t.test('trust lapses when the feed has not been read within maxLagMs', async (t) => {
  const { make } = await setup(t);
  const a = make({ maxLagMs: 150 });
  await a.feed.poll();
  t.ok(a.feed.trusted());
  await sleep(250);
  t.notOk(a.feed.trusted(), 'no poll for longer than the bound: caches are not trusted');
  t.ok(a.feed.status().lagMs >= 250);
  await a.feed.poll();
  t.ok(a.feed.trusted(), 'trusted again after a poll');
});

t.test('a reader that missed pruned entries, or a dropped feed, resets instead of guessing', async (t) => {
  const { make, collection } = await setup(t);
  const a = make();
  const b = make();
  await a.feed.poll();
  await a.feed.record('key', 'k1');
  await b.feed.poll();
  t.equal(b.feed.status().seq, 1);
  await a.feed.record('key', 'k2');
  await a.feed.record('key', 'k3');
  // Pruned past b: the entry b read last, and the next one, are gone.
  await collection.deleteMany({ _id: { $lte: 2 } });
  await b.feed.poll();
  t.equal(b.resets(), 1, 'b cannot know what it missed: it drops everything');
  t.equal(b.feed.status().seq, 3);
  t.same(b.seen, [], 'and applies nothing it cannot place');
  await a.feed.record('key', 'k4');
  await b.feed.poll();
  t.same(b.seen, [['key', 'k4']], 'then follows the feed again');

  await collection.drop();
  await b.feed.poll();
  t.equal(b.resets(), 2, 'a dropped feed is a reset too');
  await a.feed.record('client', 'cl_x');
  await b.feed.poll();
  t.same(b.seen.at(-1), ['client', 'cl_x']);
});

t.test('pruning keeps the newest entry, so the sequence never restarts', async (t) => {
  const { make, collection } = await setup(t);
  const a = make({ retainMs: 0, pruneEveryMs: 0 });
  await a.feed.poll();
  for (const id of ['k1', 'k2', 'k3']) await a.feed.record('key', id);
  await a.feed.start();
  await a.feed.stop();
  t.same((await collection.find({}).toArray()).map((e) => e._id), [3]);
  const b = make();
  await b.feed.poll();
  await a.feed.record('key', 'k4');
  await b.feed.poll();
  t.same(b.seen, [['key', 'k4']]);
  t.same((await collection.find({}).sort({ _id: 1 }).toArray()).map((e) => e._id), [3, 4]);
});

t.test('a change that cannot be recorded fails its request and is recorded once the database is back', async (t) => {
  const port = Number(new URL(stack.mongodbUri).port);
  const proxy = await startTcpProxy(t, { host: '127.0.0.1', port });
  const { make, db } = await setup(t);
  const viaProxy = new MongoClient(`mongodb://127.0.0.1:${proxy.port}/`, { serverSelectionTimeoutMS: 300 });
  t.teardown(() => viaProxy.close());
  const cut = createChangeFeed({ collection: viaProxy.db(db.databaseName).collection<ChangeEntry>('__changes'), pollMs: 50, maxLagMs: 400 });
  t.teardown(() => cut.stop());
  const b = make();
  await cut.start();
  await b.feed.poll();
  t.ok(cut.trusted());
  await proxy.close();
  await t.rejects(cut.record('key', 'k-owed'), 'the request that made the change is told it failed');
  await sleep(600);
  t.notOk(cut.trusted(), 'a feed it cannot read is not trusted after maxLagMs');
  await proxy.open();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !b.seen.some(([, id]) => id === 'k-owed')) {
    await sleep(100);
    await b.feed.poll();
  }
  t.same(b.seen, [['key', 'k-owed']], 'the owed change reached the other instance');
  t.ok(cut.trusted(), 'and the cut instance trusts its caches again');
});

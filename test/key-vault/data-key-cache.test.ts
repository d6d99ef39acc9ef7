import t from 'tap';
import { createDataKeyCache } from '../../src/key-vault/data-key-cache.js';

t.test('concurrent misses for one key share a single load', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 10 });
  let loads = 0;
  const load = async () => {
    loads++;
    await new Promise((resolve) => setTimeout(resolve, 20));
    return Buffer.alloc(96, 1);
  };
  const keys = await Promise.all(Array.from({ length: 200 }, () => cache.get('k', load)));
  t.equal(loads, 1);
  t.ok(keys.every((k) => k === keys[0]));
  await cache.get('k', load);
  t.equal(loads, 1, 'then served from the cache');
  t.match(cache.stats(), { size: 1 });
});

t.test('a failed load is not cached and is retried', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 10 });
  await t.rejects(cache.get('k', async () => Promise.reject(new Error('kms down'))));
  t.same(await cache.get('k', async () => Buffer.alloc(96, 2)), Buffer.alloc(96, 2));
});

t.test('evicted and expired keys are zeroised', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 30, maxEntries: 2 });
  const a = await cache.get('a', async () => Buffer.alloc(96, 0xaa));
  await cache.get('b', async () => Buffer.alloc(96, 0xbb));
  await cache.get('c', async () => Buffer.alloc(96, 0xcc));
  t.ok(a.every((byte) => byte === 0), 'the least recently used key was wiped when pushed out');
  const d = await cache.get('d', async () => Buffer.alloc(96, 0xdd));
  await new Promise((resolve) => setTimeout(resolve, 60));
  let reloaded = false;
  await cache.get('d', async () => {
    reloaded = true;
    return Buffer.alloc(96, 0xdd);
  });
  t.ok(reloaded, 'an expired key is loaded again');
  t.ok(d.every((byte) => byte === 0), 'and the expired copy was wiped');
  const e = await cache.get('e', async () => Buffer.alloc(96, 0xee));
  cache.delete('e');
  t.ok(e.every((byte) => byte === 0), 'deleting wipes too');
});

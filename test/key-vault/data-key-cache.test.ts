import t from 'tap';
import { createDataKeyCache } from '../../src/key-vault/data-key-cache.js';

const zeroed = (key: Buffer) => key.every((byte) => byte === 0);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('concurrent misses for one key share a single load', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 10 });
  let loads = 0;
  const load = async () => {
    loads++;
    await sleep(20);
    return Buffer.alloc(96, 1);
  };
  await Promise.all(Array.from({ length: 200 }, () => cache.withKeys(['k'], load, () => undefined)));
  t.equal(loads, 1);
  await cache.withKeys(['k'], load, (keys) => t.same(keys.get('k'), Buffer.alloc(96, 1)));
  t.equal(loads, 1, 'then served from the cache');
  t.match(cache.stats(), { size: 1, hits: 1 });
});

t.test('a failed load is reported per key, not cached, and retried', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 10 });
  await cache.withKeys(['bad', 'good'], async (id) => (id === 'bad' ? Promise.reject(new Error('kms down')) : Buffer.alloc(96, 2)), (keys) => {
    t.match(keys.get('bad'), /kms down/);
    t.same(keys.get('good'), Buffer.alloc(96, 2));
  });
  await cache.withKeys(['bad'], async () => Buffer.alloc(96, 3), (keys) => t.same(keys.get('bad'), Buffer.alloc(96, 3)));
});

t.test('one request needing more keys than the cache holds gets every key intact', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 2 });
  const loaded = new Map<string, Buffer>();
  const load = async (id: string) => {
    await sleep(Number(id) * 5);
    const key = Buffer.alloc(96, Number(id) + 1);
    loaded.set(id, key);
    return key;
  };
  await cache.withKeys(['0', '1', '2', '3', '4'], load, (keys) => {
    for (const id of ['0', '1', '2', '3', '4']) t.same(keys.get(id), Buffer.alloc(96, Number(id) + 1), `key ${id} is intact while in use`);
  });
  t.ok(zeroed(loaded.get('0')!) && zeroed(loaded.get('1')!) && zeroed(loaded.get('2')!), 'keys pushed out are wiped once the request is done');
  t.notOk(zeroed(loaded.get('4')!), 'keys still cached are not');
});

t.test('expired and deleted keys are wiped, but only after their last lease', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 30, maxEntries: 10 });
  const a = Buffer.alloc(96, 0xaa);
  await cache.withKeys(['a'], async () => a, async (keys) => {
    cache.delete('a');
    await sleep(5);
    t.notOk(zeroed(keys.get('a') as Buffer), 'a key deleted while leased stays usable for that request');
  });
  t.ok(zeroed(a), 'and is wiped when the request ends');

  const d = Buffer.alloc(96, 0xdd);
  await cache.withKeys(['d'], async () => d, () => undefined);
  await sleep(60);
  let reloaded = false;
  await cache.withKeys(['d'], async () => {
    reloaded = true;
    return Buffer.alloc(96, 0xdd);
  }, () => undefined);
  t.ok(reloaded, 'an expired key is loaded again');
  t.ok(zeroed(d), 'and the expired copy was wiped');
});

t.test('a key deleted while it loads is not put back in the cache', async (t) => {
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 10 });
  const pending = cache.withKeys(['x'], async () => {
    await sleep(20);
    return Buffer.alloc(96, 9);
  }, (keys) => keys.get('x'));
  await sleep(5);
  cache.delete('x');
  await pending;
  t.equal(cache.stats().size, 0);
});

t.test('while not trusted, a held key is confirmed against the vault (one read per key per interval), not unwrapped again', async (t) => {
  let trusted = true;
  const cache = createDataKeyCache({ ttlMs: 60_000, maxEntries: 10, trusted: () => trusted });
  let reads = 0;
  let unwraps = 0;
  let tag = 'v1';
  const load = async () => {
    reads++;
    return { tag, unwrap: async () => (unwraps++, Buffer.alloc(96, tag === 'v1' ? 1 : 2)) };
  };
  const use = () => cache.withKeys(['k'], load, (keys) => keys.get('k'));
  t.same(await use(), Buffer.alloc(96, 1));
  t.same([reads, unwraps], [1, 1]);
  await use();
  t.same([reads, unwraps], [1, 1], 'trusted: served from the cache');

  trusted = false;
  await new Promise((resolve) => setTimeout(resolve, 250));
  await Promise.all(Array.from({ length: 50 }, use));
  t.same([reads, unwraps], [2, 1], 'not trusted: one vault read for a burst, the wrapping unchanged, no unwrap');
  await use();
  t.same([reads, unwraps], [2, 1], 'and the confirmation holds for a moment');

  tag = 'v2';
  await new Promise((resolve) => setTimeout(resolve, 250));
  t.same(await use(), Buffer.alloc(96, 2), 'a changed wrapping is unwrapped afresh');
  t.same([reads, unwraps], [3, 2]);
});

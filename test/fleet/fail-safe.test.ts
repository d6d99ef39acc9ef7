/**
 * The change feed's fail-safe: an instance cut off from the database cannot hear of changes, so
 * after FLEET_MAX_LAG_MS it stops serving what it cached (it reads the database instead, which it
 * cannot reach: the request fails) rather than decrypt with a key deleted meanwhile. Once it reaches
 * the database again it applies what it missed and trusts its caches again.
 *
 * Instance A talks to the shared FerretDB directly; instance B through a TCP proxy the test cuts.
 */
import t from 'tap';
import { createTestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { sleep, startTcpProxy } from '../faults/servers.js';

const MAX_LAG_MS = 1000;

t.test('cut off from the database, an instance stops serving cached keys after FLEET_MAX_LAG_MS; back, it catches up', async (t) => {
  const proxy = await startTcpProxy(t, { host: '127.0.0.1', port: Number(new URL(stack.mongodbUri).port) });
  const env = { DATA_KEY_CACHE_TTL_MS: '60000', FLEET_MAX_LAG_MS: String(MAX_LAG_MS) };
  const a = await createTestApp(t, { env });
  // B gives up on an unreachable database quickly, so the test does not wait on timeouts.
  const b = await createTestApp(t, { share: a, env: { ...env, MONGODB_URI: `mongodb://127.0.0.1:${proxy.port}/`, MONGODB_SERVER_SELECTION_TIMEOUT_MS: '500' } });
  const newKey = async (name: string) => (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] })).json().id as string;
  const doomed = await newKey('failsafe-doomed');
  const kept = await newKey('failsafe-kept');
  const ct = (await a.call('POST', '/encrypt', { value: 'failsafe', algorithm: 'random', keyId: doomed })).json().ciphertext as string;
  const keptCt = (await a.call('POST', '/encrypt', { value: 'kept', algorithm: 'random', keyId: kept })).json().ciphertext as string;
  for (const c of [ct, keptCt]) t.equal((await b.call('POST', '/decrypt', { ciphertext: c })).statusCode, 200, 'B caches the key');
  await sleep(300);
  t.ok(b.app.fleet.trusted(), 'B follows the feed');

  await proxy.close();
  const cutAt = performance.now();
  t.equal((await a.call('DELETE', `/keys/${doomed}`)).statusCode, 204, 'the key is deleted through A meanwhile');
  // Right after the cut B may still serve from its cache (it cannot know yet); a request that
  // starts later than the bound must not be served from it (it fails: B cannot read the vault).
  const answers: { startedMs: number; status: number }[] = [];
  while (performance.now() - cutAt < MAX_LAG_MS + 1000) {
    const startedMs = performance.now() - cutAt;
    const res = await b.call('POST', '/decrypt', { ciphertext: ct });
    answers.push({ startedMs, status: res.statusCode });
    if (res.statusCode === 200) await sleep(20);
  }
  const lastServed = Math.max(...answers.filter((x) => x.status === 200).map((x) => x.startedMs));
  const late = answers.filter((x) => x.startedMs > MAX_LAG_MS && x.status === 200);
  t.same(late, [], `no request that started more than ${MAX_LAG_MS} ms after the cut was served from the cache`);
  t.ok(lastServed <= MAX_LAG_MS, `the last request served from the cache started ${Math.round(lastServed)} ms after the cut`);
  t.ok(answers.some((x) => x.status !== 200), 'and later ones were refused');
  t.notOk(b.app.fleet.trusted());
  t.not((await b.call('POST', '/decrypt', { ciphertext: keptCt })).statusCode, 200, 'no cached key is served while the feed cannot be read');

  await proxy.open();
  const openedAt = performance.now();
  while (!b.app.fleet.trusted() && performance.now() - openedAt < 15_000) await sleep(50);
  t.ok(b.app.fleet.trusted(), `B follows the feed again ${Math.round(performance.now() - openedAt)} ms after the database is back`);
  const after = await b.call('POST', '/decrypt', { ciphertext: ct });
  t.equal(after.json().code, 'DECRYPTION_FAILED', 'the deletion made while B was cut off is in force (one generic decryption error)');
  t.same((await b.call('POST', '/decrypt', { ciphertext: keptCt })).json(), { value: 'kept' });
  const stats = b.app.dataKeyCache.stats();
  t.equal((await b.call('POST', '/decrypt', { ciphertext: keptCt })).statusCode, 200);
  t.equal(b.app.dataKeyCache.stats().hits, stats.hits + 1, 'and serves from its cache again');
});

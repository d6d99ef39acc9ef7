/**
 * Key deletion and restore across instances: a key deleted through A is refused through B within
 * 1 s (B had it cached), and restored through A it works through B again within 1 s (B had learnt it
 * was missing). Caches live far longer than the bound, so only the change feed explains either.
 */
import t from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';

const BOUND_MS = 1000;
const LONG_CACHES = { AUTH_CACHE_TTL_MS: '60000', DATA_KEY_CACHE_TTL_MS: '60000' };

async function within(check: () => Promise<boolean>): Promise<number> {
  const since = performance.now();
  for (;;) {
    if (await check()) return performance.now() - since;
    if (performance.now() - since > BOUND_MS + 2000) return Infinity;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

t.test('deleted through A: refused through B; restored through A: served through B again; both within 1 s', async (t) => {
  const a = await createTestApp(t, { env: LONG_CACHES });
  const b = await createTestApp(t, { share: a, env: LONG_CACHES });
  await Promise.all([a.app.ready(), b.app.ready()]);
  const id = (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['fleet-trash'] })).json().id as string;
  const ciphertext = (await a.call('POST', '/encrypt', { value: 'fleet-value', algorithm: 'random', keyId: id })).json().ciphertext as string;
  const decryptB = (app: TestApp) => app.call('POST', '/decrypt', { ciphertext });
  t.equal((await decryptB(b)).statusCode, 200, 'B has the key cached');

  t.equal((await a.call('DELETE', `/keys/${id}`)).statusCode, 204);
  const refusedAfter = await within(async () => (await decryptB(b)).statusCode === 400);
  t.ok(refusedAfter <= BOUND_MS, `deleted: refused through B after ${Math.round(refusedAfter)} ms`);
  t.equal((await b.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId: id })).statusCode, 404, 'B now knows it as missing');

  t.equal((await a.call('POST', `/keys/${id}/restore`)).statusCode, 200);
  const servedAfter = await within(async () => (await decryptB(b)).statusCode === 200);
  t.ok(servedAfter <= BOUND_MS, `restored: served through B after ${Math.round(servedAfter)} ms (its missing-key cache lives 60 s)`);
  t.same((await decryptB(b)).json(), { value: 'fleet-value' });
  t.equal((await b.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'fleet-trash' })).statusCode, 200, 'and by its alt name');
});

/**
 * The change feed keeps the caches' savings (W5 of bench/): a cold burst of 200 concurrent
 * decrypts needing one AWS-wrapped data key costs one KMS call on a fresh instance, and the feed's
 * polling adds no key-vault reads to requests.
 */
import t from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

const BURST = 200;

async function awsUnwraps(app: TestApp): Promise<number> {
  const text = (await app.call('GET', '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith('kms_calls_total{provider="aws",operation="unwrap",outcome="ok"}'));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

t.test('a cold burst of 200 decrypts on a fresh instance: one KMS unwrap', async (t) => {
  const a = await createTestApp(t, { aws: stack.allowed });
  t.equal((await a.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['cold-burst'] })).statusCode, 201);
  const ct = (await a.call('POST', '/encrypt', { value: 'cold', algorithm: 'random', keyAltName: 'cold-burst' })).json().ciphertext as string;
  // Also a key changed through A meanwhile: its entry on the feed must not disturb the burst.
  const other = (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['cold-other'] })).json().id as string;

  const b = await createTestApp(t, { share: a, aws: stack.allowed });
  await b.app.ready();
  t.equal(await awsUnwraps(b), 0);
  const burst = Promise.all(Array.from({ length: BURST }, () => b.call('POST', '/decrypt', { ciphertext: ct })));
  await a.call('DELETE', `/keys/${other}`);
  const answers = await burst;
  t.ok(answers.every((res) => res.statusCode === 200 && res.json().value === 'cold'), 'every request answered');
  t.equal(await awsUnwraps(b), 1, 'one KMS unwrap for the whole burst');
  const stats = b.app.dataKeyCache.stats();
  t.ok(b.app.fleet.trusted(), 'the instance follows the feed');
  const again = await Promise.all(Array.from({ length: 50 }, () => b.call('POST', '/decrypt', { ciphertext: ct })));
  t.ok(again.every((res) => res.statusCode === 200));
  t.equal(b.app.dataKeyCache.stats().hits, stats.hits + 50, 'then served from the cache');
  t.equal(await awsUnwraps(b), 1);
});

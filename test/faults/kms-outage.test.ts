/**
 * Fault: AWS KMS becomes unreachable, then comes back; and KMS that answers too slowly.
 *
 * The app reaches the shared stack's moto (IAM enforced, the allowed identity) through a TCP proxy
 * of this test's own, which the test closes (connections cut, new ones refused), reopens or slows
 * down; moto itself, and every other test using it, is untouched.
 *
 * Expected (README "KMS trouble"): requests whose data key is cached keep working; a data key that
 * is not cached fails fast with 503 KMS_UNAVAILABLE and Retry-After once the circuit is open;
 * creating an AWS-wrapped key writes nothing; /health/ready stays 200 with kms: degraded while the
 * circuit is open (the instance keeps serving what its cache can), and /health/live 200; after KMS is back and KMS_BREAKER_RESET_MS has passed, everything works again.
 * A KMS slower than KMS_TIMEOUT_MS gives 503, not a hang.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { percentile, sleep, startTcpProxy, tally } from './servers.js';

const KMS_TIMEOUT_MS = 1000;
const BREAKER_RESET_MS = 3000;

function motoTarget() {
  const url = new URL(stack.kmsEndpoint);
  return { host: url.hostname, port: Number(url.port) };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: Math.round(performance.now() - started) };
}

const encrypt = (h: TestApp, keyAltName: string, value = 'CANARY-KMS-outage') =>
  h.call('POST', '/encrypt', { value, algorithm: 'random', keyAltName });

t.test('KMS unreachable: cached keys keep working, the rest fails fast with 503, and it all comes back', async (t) => {
  const proxy = await startTcpProxy(t, motoTarget());
  const env = {
    AWS_KMS_ENDPOINT: proxy.url,
    KMS_TIMEOUT_MS: String(KMS_TIMEOUT_MS),
    KMS_MAX_ATTEMPTS: '2',
    KMS_BREAKER_RESET_MS: String(BREAKER_RESET_MS),
  };
  const h = await createTestApp(t, { aws: stack.allowed, env });
  // Another instance on the same key vault, straight to moto: it creates and uses keys this app never saw.
  const other = await createTestApp(t, { share: h, aws: stack.allowed });

  const awsKey = (names: string[]) => ({ masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: names });
  t.equal((await h.call('POST', '/keys', awsKey(['warm']))).statusCode, 201, 'an AWS-wrapped key is created');
  t.equal((await h.call('POST', '/keys', awsKey(['cold']))).statusCode, 201, 'a second one, never used by this app');
  t.equal((await other.call('POST', '/keys', awsKey(['elsewhere']))).statusCode, 201, 'a third, created by the other instance');
  const warm = await encrypt(h, 'warm');
  t.equal(warm.statusCode, 200, 'warm-up: one encryption unwraps the warm key into the cache');
  const warmCiphertext = warm.json().ciphertext as string;
  const coldCiphertext = (await encrypt(other, 'cold')).json().ciphertext as string;
  const elsewhereCiphertext = (await encrypt(other, 'elsewhere')).json().ciphertext as string;
  t.equal((await h.app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 200, 'ready before the outage');
  const keysBefore = (await keyVaultDocs(h)).length;

  // The outage.
  await proxy.close();
  const outageStarted = Date.now();

  // Uncached keys: the first failures, until the circuit opens.
  const untilOpen: { status: number; code: string; ms: number; retryAfter?: string }[] = [];
  for (let i = 0; i < 8; i++) {
    const { value: res, ms } = await timed(() => encrypt(h, 'cold'));
    untilOpen.push({ status: res.statusCode, code: res.json().code, ms, retryAfter: res.headers['retry-after'] as string | undefined });
    if ((await h.app.inject({ method: 'GET', url: '/health/ready' })).json().kms === 'degraded') break;
  }
  const breakerOpenAfterMs = Date.now() - outageStarted;
  t.same(
    untilOpen.filter((r) => r.status !== 503 || r.code !== 'KMS_UNAVAILABLE' || !r.retryAfter),
    [],
    'an uncached AWS key fails with 503 KMS_UNAVAILABLE and Retry-After',
  );

  const ready = await h.app.inject({ method: 'GET', url: '/health/ready' });
  const live = await h.app.inject({ method: 'GET', url: '/health/live' });
  t.equal(ready.statusCode, 200, '/health/ready stays 200 while the KMS circuit is open: cached keys serve');
  t.equal(ready.json().kms, 'degraded', 'and says KMS is degraded');
  t.match((await h.call('GET', '/metrics')).body, /^kms_degraded 1$/m, 'a metric says so');
  t.ok(h.logs.some((line) => /KMS degraded/.test(line)), 'and a log line');
  t.equal(live.statusCode, 200, '/health/live stays 200');

  // With the circuit open: uncached keys fail fast; cached keys, and local keys, keep working.
  const fastFails: number[] = [];
  const fastCodes: string[] = [];
  for (let i = 0; i < 10; i++) {
    for (const call of [
      () => encrypt(h, 'cold'),
      () => h.call('POST', '/decrypt', { ciphertext: coldCiphertext }),
      () => h.call('POST', '/decrypt', { ciphertext: elsewhereCiphertext }),
    ]) {
      const { value: res, ms } = await timed(call);
      fastFails.push(ms);
      fastCodes.push(`${res.statusCode} ${res.json().code}${res.headers['retry-after'] ? '' : ' (no Retry-After)'}`);
    }
  }
  t.same([...new Set(fastCodes)], ['503 KMS_UNAVAILABLE'], 'uncached keys, to encrypt or decrypt: 503 KMS_UNAVAILABLE with Retry-After, never DECRYPTION_FAILED');
  t.ok(Math.max(...fastFails) < 1000, `with the circuit open they fail fast (max ${Math.max(...fastFails)} ms)`);

  const cached: string[] = [];
  for (let i = 0; i < 20; i++) {
    const enc = await encrypt(h, 'warm', `CANARY-KMS-warm-${i}`);
    cached.push(`encrypt ${enc.statusCode}`);
    const dec = await h.call('POST', '/decrypt', { ciphertext: enc.statusCode === 200 ? enc.json().ciphertext : warmCiphertext });
    cached.push(`decrypt ${dec.statusCode}`);
  }
  t.same(tally(cached, (c) => c), { 'encrypt 200': 20, 'decrypt 200': 20 }, 'the cached key encrypts and decrypts throughout');
  const local = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['local-during-outage'] });
  t.equal(local.statusCode, 201, 'local master keys are not affected');

  const { value: create, ms: createMs } = await timed(() => h.call('POST', '/keys', awsKey(['during-outage'])));
  t.equal(create.statusCode, 503, 'creating an AWS-wrapped key fails');
  t.equal(create.json().code, 'KMS_UNAVAILABLE');
  const keysDuring = await keyVaultDocs(h);
  t.equal(keysDuring.length, keysBefore + 1, 'and writes nothing (only the local key was added)');
  t.notOk(keysDuring.some((d) => d.keyAltNames?.includes('during-outage')), 'no key document for the failed creation');

  // KMS comes back: after the reset time the circuit lets a trial call through.
  await proxy.open();
  const backAt = Date.now();
  let recoveredMs: number | null = null;
  const duringRecovery: string[] = [];
  while (Date.now() - backAt < BREAKER_RESET_MS + 10_000) {
    const res = await encrypt(h, 'cold');
    if (res.statusCode === 200) {
      recoveredMs = Date.now() - backAt;
      break;
    }
    duringRecovery.push(`${res.statusCode} ${res.json().code}`);
    await sleep(250);
  }
  t.ok(recoveredMs !== null, `the uncached key works again ${recoveredMs} ms after KMS came back (reset ${BREAKER_RESET_MS} ms)`);
  t.same([...new Set(duringRecovery)].filter((c) => c !== '503 KMS_UNAVAILABLE'), [], 'until then: 503 KMS_UNAVAILABLE only');
  t.equal((await h.call('POST', '/decrypt', { ciphertext: elsewhereCiphertext })).statusCode, 200, 'the other instance\'s key decrypts');
  t.equal((await h.call('POST', '/keys', awsKey(['after-outage']))).statusCode, 201, 'AWS keys can be created again');
  const again = await h.app.inject({ method: 'GET', url: '/health/ready' });
  t.same([again.statusCode, again.json().kms], [200, 'ok'], 'KMS healthy again');

  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'kms-unreachable',
      kmsTimeoutMs: KMS_TIMEOUT_MS,
      maxAttempts: 2,
      breakerResetMs: BREAKER_RESET_MS,
      failuresBeforeOpen: untilOpen.length,
      firstFailuresMs: untilOpen.map((r) => r.ms),
      breakerOpenAfterMs,
      fastFail: { calls: fastFails.length, p50: percentile(fastFails, 50), p95: percentile(fastFails, 95), max: Math.max(...fastFails) },
      cachedKeyCalls: cached.length,
      cachedKeyErrors: cached.filter((c) => !c.endsWith('200')).length,
      createDuringOutage: { status: create.statusCode, code: create.json().code, ms: createMs, keysWritten: keysDuring.length - keysBefore - 1 },
      recoveredMsAfterKmsBack: recoveredMs,
    })}`,
  );
});

t.test('KMS answering slower than KMS_TIMEOUT_MS: 503 KMS_UNAVAILABLE, not a hang', async (t) => {
  const proxy = await startTcpProxy(t, motoTarget());
  const env = {
    AWS_KMS_ENDPOINT: proxy.url,
    KMS_TIMEOUT_MS: String(KMS_TIMEOUT_MS),
    KMS_MAX_ATTEMPTS: '2',
    KMS_BREAKER_RESET_MS: String(BREAKER_RESET_MS),
  };
  const h = await createTestApp(t, { aws: stack.allowed, env });
  const other = await createTestApp(t, { share: h, aws: stack.allowed });
  for (let i = 0; i < 4; i++) {
    t.equal((await other.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: [`slow-${i}`] })).statusCode, 201);
  }
  const keysBefore = (await keyVaultDocs(h)).length;
  // Booted and ready before the KMS slows down: what is timed is the KMS call, not the first request's start-up.
  t.equal((await h.app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 200, 'ready before the fault');

  proxy.setMode('delay', 3 * KMS_TIMEOUT_MS);
  const slow: { status: number; code: string; ms: number }[] = [];
  for (let i = 0; i < 4; i++) {
    const { value: res, ms } = await timed(() => encrypt(h, `slow-${i}`));
    slow.push({ status: res.statusCode, code: res.json().code, ms });
  }
  const { value: create, ms: createMs } = await timed(() =>
    h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['slow-create'] }),
  );
  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'kms-slow',
      delayMs: 3 * KMS_TIMEOUT_MS,
      kmsTimeoutMs: KMS_TIMEOUT_MS,
      encrypt: slow,
      create: { status: create.statusCode, code: create.json().code, ms: createMs },
    })}`,
  );
  t.same(slow.filter((s) => s.status !== 503 || s.code !== 'KMS_UNAVAILABLE'), [], 'every call on a slow KMS is 503 KMS_UNAVAILABLE');
  t.ok(Math.max(...slow.map((s) => s.ms)) < KMS_TIMEOUT_MS + 1000, `bounded by KMS_TIMEOUT_MS, retries included (max ${Math.max(...slow.map((s) => s.ms))} ms)`);
  t.equal(create.statusCode, 503, 'creating a key on a slow KMS is 503');
  t.ok(createMs < KMS_TIMEOUT_MS + 1000, `also bounded (${createMs} ms)`);
  t.equal((await keyVaultDocs(h)).length, keysBefore, 'and writes nothing');
  proxy.setMode('pass');
});

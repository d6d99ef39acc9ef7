/**
 * KMS reach is configured, not chosen by clients: a client naming a master key in a region or key
 * the server is not configured for reaches no KMS, and cannot make the fleet unready.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

// A region whose KMS endpoint (server configuration) refuses connections: what a bogus region looks
// like to the SDK (no such host), but fast and without DNS.
const NOWHERE = 'zz-nowhere-9';
const nowhereKey = (i: number) => `arn:aws:kms:${NOWHERE}:123456789012:key/00000000-0000-0000-0000-00000000000${i}`;
const env = { AWS_KMS_REGION_ENDPOINTS: `${NOWHERE}=http://127.0.0.1:1`, KMS_BREAKER_RESET_MS: '60000' };

t.test('a client cannot name a key outside AWS_KMS_ALLOWED_KEYS: 422, no KMS call, readiness unchanged', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed, env });
  const answers: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: nowhereKey(i) } });
    answers.push(`${res.statusCode} ${res.json().code}`);
  }
  t.same([...new Set(answers)], ['422 MASTER_KEY_NOT_ALLOWED'], 'refused before any KMS call');
  const rewrap = await h.call('POST', '/keys/rewrap', { filter: { provider: 'local' }, masterKey: { provider: 'aws', key: nowhereKey(9) } });
  t.equal(rewrap.json().code, 'MASTER_KEY_NOT_ALLOWED', 'rewrap too');
  t.same(await keyVaultDocs(h), [], 'nothing written');
  t.equal((await h.call('GET', '/health/ready')).statusCode, 200, 'still ready');
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn } })).statusCode, 201, 'a listed key works');
});

t.test('patterns: a listed account and region, any key id', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed, env: { AWS_KMS_ALLOWED_KEYS: stack.keyArn.replace(/key\/.*$/, 'key/*') } });
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn2 } })).statusCode, 201);
  const elsewhere = stack.keyArn.replace('us-east-1', 'us-west-2');
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: elsewhere } })).json().code, 'MASTER_KEY_NOT_ALLOWED', 'not another region');
});

t.test('readiness looks only at configured regions: a failing key in a wildcard region cannot turn it 503', async (t) => {
  const h = await createTestApp(t, {
    aws: stack.allowed,
    env: { ...env, AWS_KMS_ALLOWED_KEYS: `${stack.keyArn},arn:aws:kms:*:123456789012:key/*` },
  });
  const answers: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: nowhereKey(i) } });
    answers.push(`${res.statusCode} ${res.json().code}`);
  }
  t.same([...new Set(answers)], ['503 KMS_UNAVAILABLE'], 'the wildcard lets the key through, and its region fails (its circuit opens)');
  t.equal((await h.call('GET', '/health/ready')).statusCode, 200, 'the configured region (us-east-1) is fine, so the instance is ready');
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn } })).statusCode, 201);
});

t.test('an explicit * is accepted and logged as a warning at boot', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed, env: { AWS_KMS_ALLOWED_KEYS: '*' } });
  t.ok(h.logs.some((line) => line.includes('"level":40') && line.includes('AWS_KMS_ALLOWED_KEYS is *')), 'a warning names the setting');
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn } })).statusCode, 201);
});

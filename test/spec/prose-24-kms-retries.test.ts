/**
 * Spec prose test 24, "KMS Retry Tests", over HTTP with the aws provider. The spec's fail-point
 * KMS server is a test endpoint in front of moto (test/helpers/kms-endpoint.ts) that fails the
 * next requests with a connection reset or an HTTP 5xx, then forwards to moto again. With the
 * default KMS_MAX_ATTEMPTS (3), one failure is retried and the operation succeeds (cases 1 and 2:
 * creating an AWS-wrapped key, then encrypting with it on an instance that has not cached it, so
 * the data key is unwrapped through the failing endpoint); more failures than attempts fail
 * cleanly with 503 KMS_UNAVAILABLE after exactly KMS_MAX_ATTEMPTS requests, and write nothing
 * (case 3).
 */
import t, { type Test } from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { startKmsEndpoint } from '../helpers/kms-endpoint.js';
import { stack } from '../helpers/stack.js';
import { loadConfig } from '../../src/config.js';
import { proseSummary, SPEC_LOCAL_MASTER_KEY } from './prose.js';

const summary = proseSummary(t, 24);
summary.notApplicable('azure and gcp master keys: providers the service does not have');

// The configuration's default, which the apps below set explicitly (test apps otherwise use 1).
const MAX_ATTEMPTS = loadConfig({ ADMIN_TOKEN: 'x'.repeat(32), LOCAL_MASTER_KEY: SPEC_LOCAL_MASTER_KEY }).kms.maxAttempts;
const awsKey = () => ({ provider: 'aws', region: 'us-east-1', key: stack.keyArn });

async function apps(t: Test) {
  const endpoint = await startKmsEndpoint(t);
  const env = { AWS_KMS_ENDPOINT: endpoint.url, KMS_MAX_ATTEMPTS: String(MAX_ATTEMPTS) };
  const one = await createTestApp(t, { aws: stack.allowed, env });
  const two = await createTestApp(t, { aws: stack.allowed, env, share: one });
  return { endpoint, one, two };
}

for (const [name, kind, status] of [
  ['case 1: TCP retry (connection reset)', 'network', undefined],
  ['case 2: HTTP retry (500)', 'http', 500],
  ['case 2: HTTP retry (503)', 'http', 503],
] as const) {
  t.test(`${name}: one failure is retried, create and encrypt succeed`, async (t) => {
    summary.track(t);
    const { endpoint, one, two } = await apps(t);

    endpoint.setFailPoint(kind, 1, status);
    const created = await one.call('POST', '/keys', { masterKey: awsKey(), keyAltNames: ['retried'] });
    t.equal(created.statusCode, 201, `the key is created despite one failure: ${created.body}`);
    t.equal(endpoint.pending(), 0, 'the failure happened');
    t.equal(endpoint.requests(), 2, 'and was retried once');

    endpoint.setFailPoint(kind, 1, status);
    const before = endpoint.requests();
    const enc = await two.call('POST', '/encrypt', { value: { $numberInt: '123' }, algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic', keyAltName: 'retried' });
    t.equal(enc.statusCode, 200, `encrypting on an instance without the key cached succeeds: ${enc.body}`);
    t.equal(endpoint.pending(), 0, 'the unwrap met the failure');
    t.equal(endpoint.requests() - before, 2, 'and was retried once');

    const dec = await one.call('POST', '/decrypt', { ciphertext: enc.json().ciphertext });
    t.same(dec.json().value, 123, 'the value decrypts');
  });
}

for (const [name, kind, status] of [
  ['case 3: too many network failures', 'network', undefined],
  ['case 3 (HTTP): too many 500s', 'http', 500],
] as const) {
  t.test(`${name}: the create fails cleanly with 503 KMS_UNAVAILABLE after KMS_MAX_ATTEMPTS attempts, nothing written`, async (t) => {
    summary.track(t);
    const { endpoint, one } = await apps(t);
    endpoint.setFailPoint(kind, 4, status);
    const res = await one.call('POST', '/keys', { masterKey: awsKey(), keyAltNames: ['never'] });
    t.equal(res.statusCode, 503, res.body);
    t.equal(res.json().code, 'KMS_UNAVAILABLE', 'the stable code');
    t.ok(res.headers['retry-after'], 'with Retry-After');
    t.equal(endpoint.requests(), MAX_ATTEMPTS, `bounded: exactly ${MAX_ATTEMPTS} attempts`);
    t.equal(endpoint.pending(), 4 - MAX_ATTEMPTS, 'the rest of the fail point is untouched');
    t.same(await keyVaultDocs(one), [], 'no key document was written');
    t.notMatch(res.body, /fail point|InternalFailure|ECONNRESET|arn:aws/, 'nothing of the KMS answer reaches the client');
  });
}

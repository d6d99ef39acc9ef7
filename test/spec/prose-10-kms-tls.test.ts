/**
 * Spec prose test 10, "KMS TLS Tests", over HTTP with the aws provider. The spec's mock KMS servers
 * with ca.pem and expired.pem / wrong-host.pem are a TLS endpoint of the test's own in front of
 * moto (test/helpers/kms-endpoint.ts), under certificates made at test time by a CA the service
 * trusts through KMS_CA_FILE (test/helpers/test-certs.ts). Creating an AWS-wrapped key through it:
 * - with a valid certificate, succeeds (the control: TLS to moto works, so the failures below are
 *   the certificate's and nothing else), and fails without KMS_CA_FILE (an unknown CA);
 * - with the expired certificate, or one for another host name, fails with 502 KMS_ERROR at once
 *   (a certificate that does not verify is not an outage: no retry, no 503), no key written, the
 *   client's answer generic and the certificate error, as the spec asks of a driver's message
 *   ("certificate has expired", "not valid for 127.0.0.1"), in the operator's log.
 */
import t, { type Test } from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { startKmsEndpoint } from '../helpers/kms-endpoint.js';
import { stack } from '../helpers/stack.js';
import { makeTestCerts, type Leaf } from '../helpers/test-certs.js';
import { proseSummary } from './prose.js';

const summary = proseSummary(t, 10);
const certs = makeTestCerts(t);
const awsKey = () => ({ provider: 'aws', region: 'us-east-1', key: stack.keyArn });

async function attempt(t: Test, leaf: Leaf, trustCa = true) {
  const endpoint = await startKmsEndpoint(t, { tls: leaf });
  const env: Record<string, string> = { AWS_KMS_ENDPOINT: endpoint.url, KMS_MAX_ATTEMPTS: '3' };
  if (trustCa) env.KMS_CA_FILE = certs.caFile;
  const h = await createTestApp(t, { aws: stack.allowed, env });
  const res = await h.call('POST', '/keys', { masterKey: awsKey(), keyAltNames: ['over-tls'] });
  return { endpoint, h, res };
}

t.test('control: a certificate from the KMS_CA_FILE CA, for 127.0.0.1, works; without KMS_CA_FILE it does not', async (t) => {
  summary.track(t);
  const ok = await attempt(t, certs.valid);
  t.equal(ok.res.statusCode, 201, `an AWS-wrapped key is created over TLS: ${ok.res.body}`);
  const enc = await ok.h.call('POST', '/encrypt', { value: 'CANARY-kms-tls', algorithm: 'random', keyAltName: 'over-tls' });
  t.equal(enc.statusCode, 200, 'and used');

  const untrusted = await attempt(t, certs.valid, false);
  t.equal(untrusted.res.statusCode, 502, `without KMS_CA_FILE the CA is unknown: ${untrusted.res.body}`);
  t.equal(untrusted.res.json().code, 'KMS_ERROR');
  t.same(await keyVaultDocs(untrusted.h), [], 'nothing written');
});

for (const [name, leaf, logged] of [
  ['invalid KMS certificate (expired)', certs.expired, /CERT_HAS_EXPIRED|certificate has expired/],
  ['invalid host name in the KMS certificate', certs.wrongHost, /ERR_TLS_CERT_ALTNAME_INVALID|not in the cert's altnames|does not match certificate/],
] as const) {
  t.test(`${name}: 502 KMS_ERROR at once, nothing written, the reason in the log only`, async (t) => {
    summary.track(t);
    const { endpoint, h, res } = await attempt(t, leaf);
    t.equal(res.statusCode, 502, res.body);
    t.equal(res.json().code, 'KMS_ERROR', 'the stable code');
    t.notOk(res.headers['retry-after'], 'not an outage: no Retry-After');
    t.equal(endpoint.connections(), 1, 'one connection: a certificate that does not verify is not retried');
    t.equal(endpoint.requests(), 0, 'no request was sent over the refused connection');
    t.same(await keyVaultDocs(h), [], 'no key document was written');
    t.notMatch(res.body, /certificate|CERT|altname|arn:aws|127\.0\.0\.1/i, 'the answer is generic');
    t.match(h.logs.join(''), logged, 'the log says which certificate check failed');
  });
}

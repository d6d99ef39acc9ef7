/**
 * Spec prose test 16, "Rewrap", case 1, over HTTP with the providers this service has (local, aws):
 * for each pair, source and destination alike included, a key created under the source provider
 * encrypts "test"; POST /keys/rewrap with an empty filter moves every key to the destination's
 * master key (one key rewrapped); the ciphertext still decrypts to "test" on the instance that made
 * it and on a second instance that never saw the key (the spec's second ClientEncryption). AWS is
 * moto's KMS with IAM enforced, the allowed identity and moto's two CMKs (a second one for
 * aws → aws, so the rewrap really changes the master key).
 * Case 2 (the provider may not be omitted) holds by the request schema: masterKey.provider is
 * required, so a body without it is 400 VALIDATION_FAILED.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { proseSummary, SPEC_LOCAL_MASTER_KEY } from './prose.js';

const summary = proseSummary(t, 16);
summary.notApplicable('azure, gcp, kmip: providers the service does not have');

const env = { LOCAL_MASTER_KEY: SPEC_LOCAL_MASTER_KEY, KMS_MAX_ATTEMPTS: '3' };
const masterKeys = {
  local: (): { provider: string; key?: string } => ({ provider: 'local' }),
  aws: (second = false) => ({ provider: 'aws', region: 'us-east-1', key: second ? stack.keyArn2 : stack.keyArn }),
};

for (const src of ['local', 'aws'] as const) {
  for (const dst of ['local', 'aws'] as const) {
    t.test(`case 1: ${src} → ${dst}`, async (t) => {
      summary.track(t);
      const one = await createTestApp(t, { aws: stack.allowed, env });
      const created = await one.call('POST', '/keys', { masterKey: masterKeys[src]() });
      t.equal(created.statusCode, 201, created.body);
      const keyId = created.json().id as string;
      const enc = await one.call('POST', '/encrypt', { value: 'test', algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic', keyId });
      t.equal(enc.statusCode, 200, enc.body);
      const ciphertext = enc.json().ciphertext as string;
      const before = (await keyVaultDocs(one))[0]!;

      const two = await createTestApp(t, { aws: stack.allowed, env, share: one });
      const target = dst === 'aws' ? masterKeys.aws(src === 'aws') : masterKeys.local();
      // aws → local is a downgrade: the operator must say so (the spec has no such guard).
      const rewrap = await two.call('POST', '/keys/rewrap', { filter: {}, masterKey: target, ...(src === 'aws' && dst === 'local' ? { allowDowngrade: true } : {}) });
      t.equal(rewrap.statusCode, 200, rewrap.body);
      t.equal(rewrap.json().rewrapped, 1, 'one key rewrapped (the spec: modifiedCount 1)');

      const after = (await keyVaultDocs(one))[0]!;
      t.same(after.masterKey.provider, dst, `the key is now under ${dst}`);
      if (dst === 'aws') t.equal(after.masterKey.key, target.key, 'under the requested CMK');
      t.notSame(Buffer.from(after.keyMaterial.buffer), Buffer.from(before.keyMaterial.buffer), 'the wrapped key material changed');

      for (const [name, h] of [['the first instance', one], ['the second instance', two]] as const) {
        const dec = await h.call('POST', '/decrypt', { ciphertext });
        t.equal(dec.statusCode, 200, `${name}: ${dec.body}`);
        t.equal(dec.json().value, 'test', `${name} decrypts "test"`);
      }
      // A third instance has nothing cached: the value decrypts through the new master key alone.
      const three = await createTestApp(t, { aws: stack.allowed, env, share: one });
      t.equal((await three.call('POST', '/decrypt', { ciphertext })).json().value, 'test', 'a fresh instance decrypts it through the new master key');
    });
  }
}

t.test('case 2: the destination provider is not optional', async (t) => {
  summary.track(t);
  const h = await createTestApp(t, { env });
  const res = await h.call('POST', '/keys/rewrap', { filter: {}, masterKey: {} });
  t.equal(res.statusCode, 400, res.body);
  t.equal(res.json().code, 'VALIDATION_FAILED');
});

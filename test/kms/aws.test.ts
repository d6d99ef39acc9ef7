import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

const values = ['alpha', { $numberInt: '42' }, { $date: { $numberLong: '1700000000000' } }];

t.test('AWS KMS through moto with IAM enforced', async (t) => {
  // A key moto does not have, listed on purpose: KMS itself must refuse it.
  const missing = stack.keyArn.replace(/key\/.*/, 'key/00000000-0000-0000-0000-000000000000');
  const h = await createTestApp(t, { aws: stack.allowed, env: { AWS_KMS_ALLOWED_KEYS: [stack.keyArn, stack.keyArn2, missing].join(',') } });

  t.test('the service identity creates and uses AWS-wrapped keys', async (t) => {
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['aws-1'] });
    t.equal(res.statusCode, 201, res.body);
    t.same(res.json().masterKey, { provider: 'aws', key: stack.keyArn, region: 'us-east-1' });
    const doc = (await keyVaultDocs(h)).find((d) => d.keyAltNames?.includes('aws-1'));
    t.same(doc!.masterKey, { provider: 'aws', region: 'us-east-1', key: stack.keyArn }, 'stored as drivers store it, no endpoint');

    const ct = (await h.call('POST', '/encrypt', { value: 'hello', algorithm: 'random', keyAltName: 'aws-1' })).json().ciphertext;
    const cold = await createTestApp(t, { share: h, aws: stack.allowed });
    const dec = await cold.call('POST', '/decrypt', { ciphertext: ct });
    t.same(dec.json(), { value: 'hello' }, 'a cold instance unwraps the key through KMS Decrypt');
  });

  t.test('the denied identity is refused by KMS: a clear 5xx and no key document', async (t) => {
    const denied = await createTestApp(t, { share: h, aws: stack.denied });
    const before = (await keyVaultDocs(h)).length;
    const res = await denied.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['never'] });
    t.equal(res.statusCode, 502);
    t.equal(res.json().code, 'KMS_ACCESS_DENIED');
    t.notOk(res.json().detail, 'no KMS message leaks to the client');
    t.equal((await keyVaultDocs(h)).length, before);
  });

  t.test('an unknown master key is refused, nothing written', async (t) => {
    const before = (await keyVaultDocs(h)).length;
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: missing } });
    t.equal(res.statusCode, 422, res.body);
    t.equal(res.json().code, 'MASTER_KEY_UNUSABLE');
    t.equal((await keyVaultDocs(h)).length, before);
  });

  t.test('master keys outside the configured allow-list are refused', async (t) => {
    const strict = await createTestApp(t, { share: h, aws: stack.allowed, env: { AWS_KMS_ALLOWED_KEYS: stack.keyArn2 } });
    const res = await strict.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(res.statusCode, 422);
    t.equal(res.json().code, 'MASTER_KEY_NOT_ALLOWED');
    t.equal((await strict.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn2 } })).statusCode, 201);
  });
});

t.test('rewrap: local → AWS migration and CMK rotation, without touching any ciphertext', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed });
  const ids: string[] = [];
  for (const name of ['m-1', 'm-2']) {
    ids.push((await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] })).json().id);
  }
  const untouched = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['stays-local'] })).json().id;
  const encrypted: { det: string[]; rnd: string[] } = { det: [], rnd: [] };
  for (const value of values) {
    encrypted.det.push((await h.call('POST', '/encrypt', { value, algorithm: 'deterministic', keyId: ids[0] })).json().ciphertext);
    encrypted.rnd.push((await h.call('POST', '/encrypt', { value, algorithm: 'random', keyId: ids[1] })).json().ciphertext);
  }

  t.test('a denied identity rewraps nothing', async (t) => {
    const denied = await createTestApp(t, { share: h, aws: stack.denied });
    const before = await keyVaultDocs(h);
    const res = await denied.call('POST', '/keys/rewrap', { filter: { keyIds: ids }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(res.statusCode, 502);
    t.equal(res.json().code, 'KMS_ACCESS_DENIED');
    t.same(await keyVaultDocs(h), before, 'the key vault is unchanged');
  });

  t.test('local → AWS: matched and rewrapped counts, then an AWS-only server reads the old data', async (t) => {
    const res = await h.call('POST', '/keys/rewrap', { filter: { keyAltNames: ['m-1', 'm-2'] }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(res.statusCode, 200, res.body);
    t.equal(res.json().matched, 2);
    t.equal(res.json().rewrapped, 2);
    t.same(res.json().keyIds.sort(), [...ids].sort());
    t.equal((await h.call('GET', `/keys/${untouched}`)).json().masterKey.provider, 'local', 'keys outside the filter stay');

    const awsOnly = await createTestApp(t, { share: h, aws: stack.allowed, env: { KMS_PROVIDERS: 'aws' } });
    const dec = await awsOnly.call('POST', '/decrypt?format=canonical', {
      items: [...encrypted.det, ...encrypted.rnd].map((ciphertext) => ({ ciphertext })),
    });
    t.same(
      dec.json().items.map((i: { value: unknown }) => i.value),
      [...values, ...values],
      'every old ciphertext decrypts with no local master key at all',
    );
    const again = await awsOnly.call('POST', '/encrypt', { value: values[0], algorithm: 'deterministic', keyId: ids[0] });
    t.equal(again.json().ciphertext, encrypted.det[0], 'deterministic ciphertexts are unchanged, so equality queries still match');
    const view = (await awsOnly.call('GET', `/keys/${ids[0]}`)).json();
    t.same(view.masterKey, { provider: 'aws', key: stack.keyArn, region: 'us-east-1' });
    t.ok(new Date(view.updateDate) > new Date(view.creationDate), 'updateDate records the rewrap');
    t.equal(view.lastRewrapDate, view.updateDate);
    t.equal(view.wrapAgeDays, 0);
  });

  t.test('CMK rotation: AWS key → another AWS key, selected by current master key', async (t) => {
    const res = await h.call('POST', '/keys/rewrap', { filter: { masterKey: stack.keyArn }, masterKey: { provider: 'aws', key: stack.keyArn2 } });
    t.equal(res.statusCode, 200);
    t.equal(res.json().matched, 2);
    t.equal(res.json().rewrapped, 2);
    const listed = (await h.call('GET', `/keys?masterKey=${encodeURIComponent(stack.keyArn2)}`)).json().items;
    t.equal(listed.length, 2);
    const fresh = await createTestApp(t, { share: h, aws: stack.allowed, env: { KMS_PROVIDERS: 'aws' } });
    const dec = await fresh.call('POST', '/decrypt', { ciphertext: encrypted.rnd[0] });
    t.same(dec.json(), { value: 'alpha' });
  });
});

/**
 * deploy/iam-policy.json is enough for everything the service does with AWS KMS, and each of its
 * actions is needed: proven against moto with IAM enforced, with identities created for the test.
 *
 * What moto cannot evaluate, and how this test stays honest about it: moto checks a KMS request
 * against the resource "*" only (its KMS responses name no resource), so an Allow whose Resource
 * lists key ARNs never matches there and denies everything. The test shows that on the exact file
 * (placeholders filled in), then gives the service identity the exact file with only `Resource`
 * widened to "*": moto then proves the ACTIONS (enough, and each one needed). The RESOURCES are
 * proven apart, without moto's help: every KMS call the service made is recorded on the way to moto,
 * with the key ARN KMS reports having used, and each must be one of the exact file's actions on one
 * of its key ARNs. Not proven here: AWS's own evaluation of those ARNs (and of the key policy in
 * deploy/key-policy-statement.json, which moto does not evaluate at all).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import t from 'tap';
import { createTestApp, keyVaultDocs, recordSecret, type TestApp } from '../helpers/app.js';
import { startKmsRecorder, type KmsCall } from '../helpers/kms-recorder.js';
import { createIamUser, stack } from '../helpers/stack.js';

interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
}
interface Policy {
  Version: string;
  Statement: Statement[];
}
type Credentials = { accessKeyId: string; secretAccessKey: string };

const policyText = readFileSync(new URL('../../deploy/iam-policy.json', import.meta.url), 'utf8');
const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);

/** The file with its placeholders replaced by the moto keys' region, account and key ids. */
function filledIn(): Policy {
  const arn = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):key\/(.+)$/;
  const [, region, account, primary] = arn.exec(stack.keyArn)!;
  const next = arn.exec(stack.keyArn2)![3]!;
  return JSON.parse(
    policyText
      .replaceAll('NEXT_CMK_ID_DURING_ROTATION', next)
      .replaceAll('PRIMARY_CMK_ID', primary!)
      .replaceAll('ACCOUNT_ID', account!)
      .replaceAll('REGION', region!),
  );
}

/** The same document with every statement's Resource set to "*" (the one resource moto checks). */
function forMoto(policy: Policy, dropAction?: string): Policy {
  return {
    ...policy,
    Statement: policy.Statement.map((st) => ({ ...st, Action: list(st.Action).filter((a) => a !== dropAction), Resource: '*' })),
  };
}

/**
 * What the exact policy allows, for the plain form it has (Allow statements of literal actions and
 * ARNs, no wildcard, no condition; the first subtest holds it to that form): action and resource
 * each listed by one statement. KMS evaluates a request against the ARN of the key it uses.
 */
function allows(policy: Policy, action: string, keyArn: string): boolean {
  return policy.Statement.some((st) => st.Effect === 'Allow' && list(st.Action).includes(action) && list(st.Resource).includes(keyArn));
}

function newUser(label: string, policy: Policy): Credentials {
  const creds = createIamUser(`iam-policy-${label}-${randomBytes(4).toString('hex')}`, policy);
  recordSecret(creds.secretAccessKey);
  return creds;
}

async function waitForJob(h: TestApp, id: string) {
  for (let i = 0; i < 200; i++) {
    const job = (await h.call('GET', `/jobs/${id}`)).json();
    if (job.state !== 'running') return job;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('job did not finish');
}

/** The canonical text of a key document's `_id` (a BSON UUID). */
const keyIdText = (id: { toString(encoding: 'hex'): string }) => id.toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');

const values = ['alpha', { $numberInt: '42' }, { $date: { $numberLong: '1700000000000' } }];

t.test('deploy/iam-policy.json: exactly the access the service needs, proven against moto with IAM enforced', async (t) => {
  const recorder = await startKmsRecorder(stack.kmsEndpoint);
  t.teardown(() => recorder.close());
  const callsBy = (creds: Credentials) => recorder.calls.filter((c) => c.accessKeyId === creds.accessKeyId);
  const exact = filledIn();
  /** A test app whose AWS identity is `creds`, reaching moto through the recorder. */
  const appAs = (creds: Credentials, share?: TestApp, env: Record<string, string> = {}) =>
    createTestApp(t, { aws: creds, ...(share ? { share } : {}), env: { AWS_KMS_ENDPOINT: recorder.url, ...env } });

  t.test('the file allows kms:Encrypt and kms:Decrypt on the two placeholder key ARNs, and nothing else', async (t) => {
    const shipped = JSON.parse(policyText) as Policy;
    t.equal(shipped.Version, '2012-10-17');
    t.equal(shipped.Statement.length, 1);
    const [st] = shipped.Statement;
    t.equal(st!.Effect, 'Allow');
    t.same([...list(st!.Action)].sort(), ['kms:Decrypt', 'kms:Encrypt']);
    t.same(list(st!.Resource), ['arn:aws:kms:REGION:ACCOUNT_ID:key/PRIMARY_CMK_ID', 'arn:aws:kms:REGION:ACCOUNT_ID:key/NEXT_CMK_ID_DURING_ROTATION']);
    t.same(Object.keys(st!).sort(), ['Action', 'Effect', 'Resource', 'Sid'], 'no Condition, NotAction or NotResource');
    t.notOk(policyText.includes('*'), 'no wildcard anywhere');
    t.same(list(exact.Statement[0]!.Resource), [stack.keyArn, stack.keyArn2], 'filled in, the placeholders are exactly the key ARNs the service is configured with');
  });

  // moto's limit, shown rather than assumed: the exact document (key ARNs as Resource) and the same
  // document with Resource "*" differ in nothing else, and moto refuses only the first.
  const exactUser = newUser('exact', exact);
  const probe = async (creds: Credentials) => {
    const kms = new KMSClient({ region: 'us-east-1', endpoint: stack.kmsEndpoint, credentials: creds, maxAttempts: 1 });
    try {
      const out = await kms.send(new EncryptCommand({ KeyId: stack.keyArn, Plaintext: Buffer.from('probe') }));
      await kms.send(new DecryptCommand({ KeyId: stack.keyArn, CiphertextBlob: out.CiphertextBlob }));
      return 'allowed';
    } catch (err) {
      // moto answers a refusal with HTTP 403 and an XML body the JSON client cannot parse.
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      return e.$metadata?.httpStatusCode === 403 ? 'denied' : (e.name ?? 'error');
    } finally {
      kms.destroy();
    }
  };
  const motoChecksResources = (await probe(exactUser)) === 'allowed';
  const serviceUser = motoChecksResources ? exactUser : newUser('service', forMoto(exact));
  t.test("moto's evaluation of the exact document", async (t) => {
    if (motoChecksResources) {
      t.pass('moto evaluates key-ARN resources: the service identity below holds the exact document');
      return;
    }
    t.comment('moto evaluates KMS requests against resource "*" only: the exact document (key ARNs) is refused');
    t.equal(await probe(exactUser), 'denied');
    t.equal(await probe(serviceUser), 'allowed', 'the same document with Resource "*" is allowed: the resource is all moto cannot judge');
  });

  const ciphertexts: { aws: string[]; migrated: string[] } = { aws: [], migrated: [] };
  let awsKeyId = '';
  let h: TestApp;

  t.test('with the policy as its only permission, the service does everything it does with KMS', async (t) => {
    h = await appAs(serviceUser);

    const created = await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['iam-aws'] });
    t.equal(created.statusCode, 201, `key creation under AWS KMS: ${created.body}`);
    awsKeyId = created.json().id;

    for (const algorithm of ['deterministic', 'random']) {
      for (const value of values) {
        const res = await h.call('POST', '/encrypt', { value, algorithm, keyId: awsKeyId });
        t.equal(res.statusCode, 200, `encrypt (${algorithm})`);
        ciphertexts.aws.push(res.json().ciphertext);
      }
    }

    const decryptsBefore = callsBy(serviceUser).filter((c) => c.action === 'kms:Decrypt').length;
    const cold = await appAs(serviceUser, h);
    const dec = await cold.call('POST', '/decrypt?format=canonical', { items: ciphertexts.aws.map((ciphertext) => ({ ciphertext })) });
    t.equal(dec.statusCode, 200, `${dec.body} ${JSON.stringify(recorder.calls)} ${cold.logs.filter((l) => /"level":(40|50)/.test(l)).join('')}`);
    t.same(dec.json().items.map((i: { value: unknown }) => i.value), [...values, ...values], 'decryption by an instance with a cold cache');
    t.equal(callsBy(serviceUser).filter((c) => c.action === 'kms:Decrypt').length, decryptsBefore + 1, 'which really called KMS Decrypt (once, then cached)');

    const rewrap = await h.call('POST', '/keys/rewrap', { filter: { keyIds: [awsKeyId] }, masterKey: { provider: 'aws', key: stack.keyArn2 } });
    t.equal(rewrap.statusCode, 200, `rewrap to the second key: ${rewrap.body}`);
    t.equal(rewrap.json().rewrapped, 1);
    const coldAgain = await appAs(serviceUser, h);
    const dec2 = await coldAgain.call('POST', '/decrypt', { ciphertext: ciphertexts.aws[3] });
    t.same(dec2.json(), { value: 'alpha' }, 'a cold instance reads it under the second key');

    const localIds: string[] = [];
    for (const name of ['mig-1', 'mig-2', 'mig-3']) {
      const id = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] })).json().id;
      localIds.push(id);
      ciphertexts.migrated.push((await h.call('POST', '/encrypt', { value: name, algorithm: 'deterministic', keyId: id })).json().ciphertext);
    }
    const started = await h.call('POST', '/keys/migrations', { filter: { keyIds: localIds }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(started.statusCode, 202, started.body);
    const job = await waitForJob(h, started.json().id);
    t.equal(job.state, 'succeeded', `guided migration local → AWS: ${JSON.stringify(job)}`);
    t.equal(job.result.verified, 3, 'every migrated key verified (unwrapped again through KMS Decrypt)');

    const awsOnly = await appAs(serviceUser, h, { KMS_PROVIDERS: 'aws' });
    const dec3 = await awsOnly.call('POST', '/decrypt', { items: ciphertexts.migrated.map((ciphertext) => ({ ciphertext })) });
    t.same(dec3.json().items.map((i: { value: unknown }) => i.value), ['mig-1', 'mig-2', 'mig-3'], 'the migrated keys read with no local master key');
  });

  t.test('every KMS call the service made is one the exact document allows (action and key ARN)', async (t) => {
    const calls = callsBy(serviceUser);
    t.ok(calls.length >= 8, `${calls.length} calls recorded`);
    t.same([...new Set(calls.map((c) => c.action))].sort(), ['kms:Decrypt', 'kms:Encrypt'], 'both actions used, no other');
    const refused = calls.filter((c) => c.status !== 200);
    t.same(refused, [], 'none refused');
    for (const call of calls) {
      // KeyId is always the full key ARN the data key names (never an alias), and KMS reports that
      // very key as used: so the resource AWS would evaluate is that ARN.
      t.equal(call.requestKeyId, call.responseKeyId, `${call.action} names the key it uses`);
      t.ok(allows(exact, call.action, call.responseKeyId ?? ''), `${call.action} on ${call.responseKeyId} is allowed by the exact document`);
    }
    t.same(
      [...new Set(calls.map((c) => c.responseKeyId))].sort(),
      [stack.keyArn, stack.keyArn2].sort(),
      'both listed keys used (the current one and the next of a rotation), no other',
    );
  });

  t.test('without kms:Decrypt: keys can be made, nothing under AWS can be read, rewrapped or migrated', async (t) => {
    const noDecrypt = newUser('no-decrypt', forMoto(exact, 'kms:Decrypt'));
    const n = await appAs(noDecrypt, h);
    const created = await n.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['no-decrypt'] });
    t.equal(created.statusCode, 201, `creating a key needs only kms:Encrypt: ${created.body} ${n.logs.slice(-3).join('')}`);

    // Decryption keeps its one generic failure (no oracle; only KMS_UNAVAILABLE keeps its own
    // code on this path): the operator sees the refusal in the KMS metrics, and it is seen below
    // on the way to moto.
    const dec = await n.call('POST', '/decrypt', { ciphertext: ciphertexts.aws[0] });
    t.equal(dec.statusCode, 400, 'decryption with a cold cache fails');
    t.equal(dec.json().code, 'DECRYPTION_FAILED');
    const metrics = (await n.call('GET', '/metrics')).body.split('\n');
    t.ok(
      metrics.some((line) => /^kms_calls_total\{/.test(line) && line.includes('operation="unwrap"') && line.includes('outcome="denied"') && / [1-9]\d*$/.test(line)),
      'counted as a denied unwrap in kms_calls_total',
    );

    const before = await keyVaultDocs(h);
    const rewrap = await n.call('POST', '/keys/rewrap', { filter: { keyIds: [awsKeyId] }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(rewrap.statusCode, 502, 'rewrapping a key now under AWS is refused');
    t.equal(rewrap.json().code, 'KMS_ACCESS_DENIED');
    t.same(await keyVaultDocs(h), before, 'and changes nothing');

    const localIds: string[] = [];
    const kept: string[] = [];
    for (const name of ['no-decrypt-1', 'no-decrypt-2']) {
      localIds.push((await n.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] })).json().id);
      kept.push((await n.call('POST', '/encrypt', { value: name, algorithm: 'random', keyId: localIds.at(-1) })).json().ciphertext);
    }
    const started = await n.call('POST', '/keys/migrations', { filter: { keyIds: localIds }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(started.statusCode, 202);
    const job = await waitForJob(n, started.json().id);
    t.equal(job.state, 'failed', 'a migration cannot verify what it wrapped');
    t.equal(job.error.code, 'KMS_ACCESS_DENIED');
    const docs = (await keyVaultDocs(h)).filter((d) => localIds.includes(keyIdText(d._id)));
    t.same(
      docs.map((d) => d.masterKey),
      [{ provider: 'local' }, { provider: 'local' }],
      'the keys it could not verify are back under their old wrapping',
    );
    const fresh = await appAs(noDecrypt, h);
    const back = await fresh.call('POST', '/decrypt', { items: kept.map((ciphertext) => ({ ciphertext })) });
    t.same(back.json().items.map((i: { value: unknown }) => i.value), ['no-decrypt-1', 'no-decrypt-2'], 'and still readable by this very service');

    t.same(
      [...new Set(callsBy(noDecrypt).filter((c) => c.status !== 200).map((c) => `${c.action} ${c.errorType}`))],
      ['kms:Decrypt AccessDenied'],
      'each refusal was KMS denying kms:Decrypt',
    );
  });

  t.test('without kms:Encrypt: keys under AWS can be read, and nothing can be wrapped', async (t) => {
    const noEncrypt = newUser('no-encrypt', forMoto(exact, 'kms:Encrypt'));
    const n = await appAs(noEncrypt, h);
    const dec = await n.call('POST', '/decrypt', { ciphertext: ciphertexts.aws[0] });
    t.same(dec.json(), { value: 'alpha' }, 'reading needs only kms:Decrypt');

    const before = await keyVaultDocs(h);
    const created = await n.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['never'] });
    t.equal(created.statusCode, 502, 'key creation under AWS is refused');
    t.equal(created.json().code, 'KMS_ACCESS_DENIED');
    t.notOk(created.json().detail, 'no KMS message reaches the client');

    const rewrap = await n.call('POST', '/keys/rewrap', { filter: { keyIds: [awsKeyId] }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(rewrap.statusCode, 502, 'rewrap is refused');
    t.equal(rewrap.json().code, 'KMS_ACCESS_DENIED');
    t.same(await keyVaultDocs(h), before, 'nothing written');

    const localId = (await n.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['no-encrypt-local'] })).json().id;
    const started = await n.call('POST', '/keys/migrations', { filter: { keyIds: [localId] }, masterKey: { provider: 'aws', key: stack.keyArn } });
    const job = await waitForJob(n, started.json().id);
    t.equal(job.state, 'failed', 'a migration is refused');
    t.equal(job.error.code, 'KMS_ACCESS_DENIED');
    t.same((await keyVaultDocs(h)).find((d) => d.keyAltNames?.includes('no-encrypt-local'))!.masterKey, { provider: 'local' });

    t.same(
      [...new Set(callsBy(noEncrypt).filter((c) => c.status !== 200).map((c) => `${c.action} ${c.errorType}`))],
      ['kms:Encrypt AccessDenied'],
      'each refusal was KMS denying kms:Encrypt',
    );
  });

  t.test('an identity without the policy (the seeded denied user) can do nothing with AWS keys', async (t) => {
    const n = await appAs(stack.denied, h);
    const created = await n.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(created.statusCode, 502);
    t.equal(created.json().code, 'KMS_ACCESS_DENIED');
    const dec = await n.call('POST', '/decrypt', { ciphertext: ciphertexts.aws[0] });
    t.equal(dec.statusCode, 400);
    t.equal(dec.json().code, 'DECRYPTION_FAILED');
    t.same(
      callsBy(stack.denied).map((c) => `${c.action} ${c.status}`),
      ['kms:Encrypt 403', 'kms:Decrypt 403'],
      'both refused by KMS',
    );
  });
});

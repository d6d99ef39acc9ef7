/**
 * The migration promise, held with a real driver: pymongo's ClientEncryption (libmongocrypt) reads
 * data keys the service wrapped with AWS KMS, and keys it rewrapped from the local master key to
 * AWS, with only the aws provider configured; and the service reads keys pymongo wrapped with AWS.
 *
 * libmongocrypt reaches KMS over HTTPS only: a TLS endpoint made by the test (its own CA, passed in
 * kms_tls_options) stands in front of moto, IAM enforced. A key document naming no endpoint (as the
 * service writes them, as drivers do by default) makes libmongocrypt call the region's public host;
 * the peer opens that one connection to the test's endpoint (pymongo's kms_connect_callback), and
 * TLS is verified against the public host name all the same.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { pymongo, startKmsTlsEndpoint } from './pymongo-peer.js';

const deterministicValues = ['Ada Lovelace', '', 'ünïcødé 🔐', { $numberInt: '-12' }, { $numberLong: '9007199254740993' }, { $date: { $numberLong: '1700000000123' } }];
const randomOnlyValues = [{ $numberDouble: '3.25' }, true, { nested: { list: [{ $numberInt: '1' }, 'two'] } }];
const items = [
  ...deterministicValues.map((value) => ({ value, algorithm: 'deterministic' })),
  ...[...deterministicValues, ...randomOnlyValues].map((value) => ({ value, algorithm: 'random' })),
];
const region = /^arn:aws:kms:([a-z0-9-]+):/.exec(stack.keyArn)![1]!;
const publicHost = `kms.${region}.amazonaws.com`;
/** Output of the peer reaches its stdout listener on a later tick. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

t.test('pymongo (libmongocrypt) and the service share AWS-wrapped keys, KMS over TLS with a test CA', async (t) => {
  const tls = await startKmsTlsEndpoint(t, stack.kmsEndpoint, [publicHost, 'localhost']);
  const h = await createTestApp(t, { aws: stack.allowed });
  /** pymongo with the aws provider only: no local master key at all. */
  const awsOnly = { localKey: null, aws: { ...stack.allowed, caFile: tls.caFile, tlsEndpoint: `127.0.0.1:${tls.port}` } };

  async function serviceEncrypt(keyId: string): Promise<string[]> {
    const out: string[] = [];
    for (const item of items) {
      const res = await h.call('POST', '/encrypt', { ...item, keyId });
      t.equal(res.statusCode, 200, `service encrypts ${JSON.stringify(item.value)}`);
      out.push(res.json().ciphertext);
    }
    return out;
  }

  t.test('the TLS is real: with a CA that did not sign the endpoint, libmongocrypt refuses it', async (t) => {
    const other = await startKmsTlsEndpoint(t, stack.kmsEndpoint, [publicHost]);
    const keyId = (await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn } })).json().id;
    const ciphertext = (await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId })).json().ciphertext;
    t.throws(
      () => pymongo(h, { ...awsOnly, aws: { ...awsOnly.aws, caFile: other.caFile }, op: 'decrypt', items: [ciphertext] }),
      /certificate verify failed/,
    );
    t.same(pymongo(h, { ...awsOnly, op: 'decrypt', items: [ciphertext] }).items, ['x'], 'with the right CA it reads');
  });

  t.test('a data key the service wrapped with AWS KMS: pymongo decrypts, byte for byte the same ciphertexts', async (t) => {
    const created = await h.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn }, keyAltNames: ['svc-aws'] });
    t.equal(created.statusCode, 201, created.body);
    const keyId = created.json().id;
    const doc = (await keyVaultDocs(h)).find((d) => d.keyAltNames?.includes('svc-aws'));
    t.same(doc!.masterKey, { provider: 'aws', region, key: stack.keyArn }, 'the stored master key: what libmongocrypt needs, no endpoint');
    const ours = await serviceEncrypt(keyId);

    const before = tls.requests.length;
    const read = pymongo(h, { ...awsOnly, op: 'decrypt', items: ours });
    t.same(read.items, items.map((i) => i.value), 'pymongo decrypts deterministic and random ciphertexts, type for type');
    t.same(read.kmsHosts, [`${publicHost}:443`], 'libmongocrypt went to the public KMS host of the region the document names');
    await settle();
    t.same(tls.requests.slice(before), [{ host: publicHost, action: 'TrentService.Decrypt', status: 200 }], 'one KMS Decrypt, over TLS');

    const theirs = pymongo(h, { ...awsOnly, op: 'encrypt', items: items.map((i) => ({ ...i, keyId })) }).items as string[];
    const n = deterministicValues.length;
    t.same(theirs.slice(0, n), ours.slice(0, n), 'pymongo encrypts deterministically to the same bytes');
  });

  t.test('a local key the service rewrapped to AWS: pymongo without the local master key reads the old ciphertexts', async (t) => {
    const keyId = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['svc-local'] })).json().id;
    const old = await serviceEncrypt(keyId);
    t.throws(
      () => pymongo(h, { ...awsOnly, op: 'decrypt', items: old.slice(0, 1) }),
      /KMS provider `local` is not configured/,
      'before the rewrap, pymongo without the local master key cannot',
    );

    const rewrap = await h.call('POST', '/keys/rewrap', { filter: { keyIds: [keyId] }, masterKey: { provider: 'aws', key: stack.keyArn2 } });
    t.equal(rewrap.statusCode, 200, rewrap.body);
    t.equal(rewrap.json().rewrapped, 1);

    const read = pymongo(h, { ...awsOnly, op: 'decrypt', items: old });
    t.same(read.items, items.map((i) => i.value), 'after it, every old ciphertext decrypts through AWS KMS alone');
    t.same(read.kmsHosts, [`${publicHost}:443`]);
    const again = pymongo(h, { ...awsOnly, op: 'encrypt', items: items.slice(0, deterministicValues.length).map((i) => ({ ...i, keyId })) }).items;
    t.same(again, old.slice(0, deterministicValues.length), 'and deterministic ciphertexts are unchanged, so equality queries keep matching');
  });

  t.test('a data key pymongo wrapped with AWS KMS (an endpoint in its document): the service decrypts', async (t) => {
    const endpoint = `127.0.0.1:${tls.port}`;
    const created = pymongo(h, {
      ...awsOnly,
      op: 'createKey',
      provider: 'aws',
      masterKey: { region, key: stack.keyArn, endpoint },
      keyAltNames: ['py-aws'],
    });
    t.same(created.kmsHosts, [endpoint], "libmongocrypt called KMS Encrypt at the document's endpoint");
    const theirs = pymongo(h, { ...awsOnly, op: 'encrypt', items: items.map((i) => ({ ...i, keyAltName: 'py-aws' })) }).items as string[];

    const view = (await h.call('GET', `/keys/${created.id}`)).json();
    t.same(view.masterKey, { provider: 'aws', region, key: stack.keyArn, endpoint }, 'listed as pymongo wrote it');

    await settle();
    const before = tls.requests.length;
    const cold = await createTestApp(t, { share: h, aws: stack.allowed });
    const res = await cold.call('POST', '/decrypt?format=canonical', { items: theirs.map((ciphertext) => ({ ciphertext })) });
    t.equal(res.statusCode, 200);
    t.same(res.json().items.map((i: { value: unknown }) => i.value), items.map((i) => i.value), 'a cold service instance decrypts what pymongo encrypted');
    await settle();
    t.equal(tls.requests.length, before, "the service called its own configured KMS endpoint, never the one a key document names");

    const n = deterministicValues.length;
    const ours: string[] = [];
    for (const item of items.slice(0, n)) ours.push((await cold.call('POST', '/encrypt', { ...item, keyAltName: 'py-aws' })).json().ciphertext);
    t.same(ours, theirs.slice(0, n), 'and encrypts deterministically to the same bytes');
  });
});

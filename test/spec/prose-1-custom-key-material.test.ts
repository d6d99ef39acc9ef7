/**
 * Spec prose test 1, "Custom Key Material Test", over HTTP: a data key imported with the spec's key
 * material (POST /keys keyMaterial) under the spec's local master key, re-inserted with the _id
 * of sixteen zero bytes as the spec does, encrypts "test" deterministically to exactly the spec's
 * ciphertext: the same bytes a driver produces.
 */
import t from 'tap';
import { Binary } from 'mongodb';
import { createTestApp } from '../helpers/app.js';
import { proseSummary, SPEC_LOCAL_MASTER_KEY } from './prose.js';

const KEY_MATERIAL = 'xPTAjBRG5JiPm+d3fj6XLi2q5DMXUS/f1f+SMAlhhwkhDRL0kr8r9GDLIGTAGlvC+HVjSIgdL+RKwZCvpXSyxTICWSXTUYsWYPyu3IoHbuBZdmw2faM3WhcRIgbMReU5';
const EXPECTED = 'AQAAAAAAAAAAAAAAAAAAAAACz0ZOLuuhEYi807ZXTdhbqhLaS2/t9wLifJnnNYwiw79d75QYIZ6M/aYC1h9nCzCjZ7pGUpAuNnkUhnIXM3PjrA==';
const ZERO_ID = '00000000-0000-0000-0000-000000000000';

const summary = proseSummary(t, 1);

t.test('custom key material: deterministic "test" equals the spec ciphertext byte for byte', async (t) => {
  summary.track(t);
  const h = await createTestApp(t, { env: { LOCAL_MASTER_KEY: SPEC_LOCAL_MASTER_KEY } });
  const created = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyMaterial: KEY_MATERIAL });
  t.equal(created.statusCode, 201, created.body);

  // Steps 5-6: the key document moves to the all-zero _id, with majority write concern.
  const vault = h.mongo.db(h.keyVaultDb).collection<{ _id: Binary } & Record<string, unknown>>('__keyVault');
  const doc = await vault.findOne({ _id: new Binary(Buffer.from(created.json().id.replaceAll('-', ''), 'hex'), 4) });
  t.ok(doc, 'the key document is in the vault');
  await vault.deleteOne({ _id: doc!._id }, { writeConcern: { w: 'majority' } });
  await vault.insertOne({ ...doc, _id: new Binary(Buffer.alloc(16), 4) }, { writeConcern: { w: 'majority' } });

  const res = await h.call('POST', '/encrypt', { value: 'test', algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic', keyId: ZERO_ID });
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().ciphertext, EXPECTED, 'the ciphertext is the spec one');
  t.same(Buffer.from(res.json().ciphertext, 'base64'), Buffer.from(EXPECTED, 'base64'), 'byte for byte');

  const back = await h.call('POST', '/decrypt', { ciphertext: EXPECTED });
  t.equal(back.statusCode, 200, back.body);
  t.equal(back.json().value, 'test', 'and the spec ciphertext decrypts to "test"');
});

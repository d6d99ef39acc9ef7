import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import t from 'tap';
import { BSON } from 'mongodb';
import { aeadDecrypt, aeadDecryptMany, aeadEncrypt, AeadError } from '../../src/crypto/aead.js';
import { decryptPayloads, parsePayload } from '../../src/crypto/fle-payload.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

t.test('decrypting many at once gives exactly what decrypting one by one gives', async (t) => {
  const key = randomBytes(96);
  const items = Array.from({ length: 300 }, (_, i) => {
    const ad = randomBytes(18);
    return { ad, ciphertext: aeadEncrypt(key, randomBytes(i % 70), ad, i % 2 === 0) };
  });
  const many = aeadDecryptMany(key, items);
  items.forEach((item, i) => t.same(many[i], aeadDecrypt(key, item.ciphertext, item.ad), `item ${i}`));
});

t.test('a tampered, truncated or misattributed item fails alone', async (t) => {
  const key = randomBytes(96);
  const ad = randomBytes(18);
  const good = () => aeadEncrypt(key, Buffer.from('fine'), ad, false);
  const flipped = good();
  flipped[20]! ^= 1;
  const results = aeadDecryptMany(key, [
    { ciphertext: good(), ad },
    { ciphertext: flipped, ad },
    { ciphertext: good().subarray(0, 48), ad },
    { ciphertext: good(), ad: randomBytes(18) },
    { ciphertext: good(), ad },
  ]);
  t.same(results.map((r) => (r instanceof AeadError ? 'error' : r.toString())), ['fine', 'error', 'error', 'error', 'fine']);
});

t.test('bad padding behind a valid tag is an error, not a crash or a wrong plaintext', async (t) => {
  const key = randomBytes(96);
  const ad = Buffer.alloc(0);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key.subarray(32, 64), iv);
  cipher.setAutoPadding(false);
  const body = Buffer.concat([iv, cipher.update(Buffer.alloc(16, 0x00)), cipher.final()]); // last byte 0: no valid PKCS#7
  const al = Buffer.alloc(8);
  const tag = createHmac('sha512', key.subarray(0, 32)).update(ad).update(body).update(al).digest().subarray(0, 32);
  const [result] = aeadDecryptMany(key, [{ ciphertext: Buffer.concat([body, tag]), ad }]);
  t.ok(result instanceof AeadError);
});

t.test('decryptPayloads reads libmongocrypt ciphertexts exactly', async (t) => {
  const dataKey = Buffer.from(vectors.dataKey, 'base64');
  const all = [...vectors.deterministic, ...vectors.random];
  const values = decryptPayloads(all.map((v) => parsePayload(Buffer.from(v.ciphertext, 'base64'))), dataKey);
  t.same(values.map((v) => EJSON.serialize({ v }, { relaxed: false }).v), all.map((v) => v.value));
});

import { randomBytes } from 'node:crypto';
import t from 'tap';
import { BSON, Binary, Decimal128, Double, Int32, Long, MaxKey, MinKey, ObjectId, Code } from 'mongodb';
import { decryptPayload, encryptValue, parsePayload, UnsupportedTypeError } from '../../src/crypto/fle-payload.js';
import { AeadError } from '../../src/crypto/aead.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const dataKey = Buffer.from(vectors.dataKey, 'base64');
const keyId = Buffer.from(vectors.keyId.replaceAll('-', ''), 'hex');
const canonical = (v: unknown) => EJSON.serialize({ v }, { relaxed: false }).v;

t.test('deterministic ciphertexts are byte-identical to libmongocrypt', async (t) => {
  for (const vector of vectors.deterministic) {
    const value = EJSON.deserialize({ v: vector.value } as never, { relaxed: false }).v;
    const ours = encryptValue(value, keyId, dataKey, 'deterministic');
    t.equal(Buffer.from(ours.buffer).toString('base64'), vector.ciphertext, JSON.stringify(vector.value).slice(0, 40));
  }
});

t.test('decrypts libmongocrypt ciphertexts of every algorithm to the exact canonical value', async (t) => {
  for (const vector of [...vectors.deterministic, ...vectors.random]) {
    const parsed = parsePayload(Buffer.from(vector.ciphertext, 'base64'));
    t.same(Buffer.from(parsed.keyId).toString('hex'), keyId.toString('hex'));
    t.same(canonical(decryptPayload(parsed, dataKey)), vector.value);
  }
});

t.test('round-trips values of many BSON types, keeping their exact type', async (t) => {
  const key = randomBytes(96);
  const id = randomBytes(16);
  const values: unknown[] = [
    'text',
    new Int32(5),
    new Long(2n ** 40n),
    new Double(5),
    new Decimal128('1.50'),
    new Date(0),
    new ObjectId(),
    new Binary(Buffer.from('abc'), 4),
    true,
    { a: [1, { b: 'c' }] },
    [1, 2, 3],
    new Code('function () {}'),
  ];
  for (const value of values) {
    const ct = encryptValue(value, id, key, 'random');
    t.equal(ct.sub_type, 6);
    t.same(canonical(decryptPayload(parsePayload(ct.buffer), key)), canonical(value));
  }
});

t.test('refuses the types each algorithm must not encrypt', async (t) => {
  const key = randomBytes(96);
  const id = randomBytes(16);
  const refusedBoth = [null, undefined, new MinKey(), new MaxKey(), new Binary(Buffer.alloc(70), 6)];
  const refusedDeterministic = [new Double(1.5), new Decimal128('1'), true, { a: 1 }, [1], new Code('x', { s: 1 })];
  for (const value of refusedBoth) {
    t.throws(() => encryptValue(value, id, key, 'random'), UnsupportedTypeError);
    t.throws(() => encryptValue(value, id, key, 'deterministic'), UnsupportedTypeError);
  }
  for (const value of refusedDeterministic) {
    t.throws(() => encryptValue(value, id, key, 'deterministic'), UnsupportedTypeError);
    t.doesNotThrow(() => encryptValue(value, id, key, 'random'));
  }
});

t.test('tampering with any byte of a payload (key id, type, IV, body, tag) is rejected', async (t) => {
  const key = randomBytes(96);
  const id = randomBytes(16);
  const payload = Buffer.from(encryptValue('secret value', id, key, 'deterministic').buffer);
  let rejected = 0;
  for (let i = 0; i < payload.length; i++) {
    const tampered = Buffer.from(payload);
    tampered[i]! ^= 0x80;
    try {
      const parsed = parsePayload(tampered);
      // A flipped key id would look the key up elsewhere; with this key the tag must fail.
      decryptPayload(parsed, key);
    } catch (err) {
      if (err instanceof AeadError) rejected++;
    }
  }
  t.equal(rejected, payload.length);
});

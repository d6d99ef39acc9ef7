import { randomBytes } from 'node:crypto';
import t from 'tap';
import { aeadDecrypt, aeadEncrypt, AeadError, MIN_CIPHERTEXT_LENGTH } from '../../src/crypto/aead.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

const masterKey = Buffer.from(vectors.masterKey, 'base64');
const dataKey = Buffer.from(vectors.dataKey, 'base64');

t.test('unwraps a data key wrapped by libmongocrypt with a local master key', async (t) => {
  const unwrapped = aeadDecrypt(masterKey, Buffer.from(vectors.wrappedDataKey, 'base64'), Buffer.alloc(0));
  t.same(unwrapped, dataKey);
});

t.test('round-trips random and deterministic encryption for every plaintext length 0..80', async (t) => {
  const key = randomBytes(96);
  const ad = randomBytes(18);
  for (let length = 0; length <= 80; length++) {
    const plaintext = randomBytes(length);
    for (const deterministic of [false, true]) {
      const ciphertext = aeadEncrypt(key, plaintext, ad, deterministic);
      t.equal(ciphertext.length, 16 + (Math.floor(length / 16) + 1) * 16 + 32);
      t.same(aeadDecrypt(key, ciphertext, ad), plaintext);
    }
  }
});

t.test('deterministic output depends only on key, AD and plaintext; random output never repeats', async (t) => {
  const key = randomBytes(96);
  const ad = randomBytes(18);
  const p = Buffer.from('same plaintext');
  t.same(aeadEncrypt(key, p, ad, true), aeadEncrypt(key, p, ad, true));
  t.not(aeadEncrypt(key, p, ad, false).toString('hex'), aeadEncrypt(key, p, ad, false).toString('hex'));
  t.not(aeadEncrypt(key, p, randomBytes(18), true).toString('hex'), aeadEncrypt(key, p, ad, true).toString('hex'));
});

t.test('rejects every single-bit flip, every truncation, a wrong key and a wrong AD', async (t) => {
  const key = randomBytes(96);
  const ad = randomBytes(18);
  const ciphertext = aeadEncrypt(key, Buffer.from('attack at dawn, bring snacks'), ad, false);
  let rejected = 0;
  for (let bit = 0; bit < ciphertext.length * 8; bit++) {
    const tampered = Buffer.from(ciphertext);
    tampered[bit >> 3]! ^= 1 << (bit & 7);
    try {
      aeadDecrypt(key, tampered, ad);
    } catch (err) {
      if (err instanceof AeadError) rejected++;
    }
  }
  t.equal(rejected, ciphertext.length * 8, 'all bit flips rejected');
  for (let length = 0; length < ciphertext.length; length++) {
    t.throws(() => aeadDecrypt(key, ciphertext.subarray(0, length), ad), AeadError);
  }
  t.throws(() => aeadDecrypt(randomBytes(96), ciphertext, ad), AeadError);
  t.throws(() => aeadDecrypt(key, ciphertext, randomBytes(18)), AeadError);
  t.equal(MIN_CIPHERTEXT_LENGTH, 64);
});

t.test('every failure says the same thing', async (t) => {
  const key = randomBytes(96);
  const messages = new Set<string>();
  for (const input of [Buffer.alloc(10), Buffer.alloc(64), Buffer.alloc(65), randomBytes(96)]) {
    try {
      aeadDecrypt(key, input, Buffer.alloc(0));
    } catch (err) {
      messages.add((err as Error).message);
    }
  }
  t.same([...messages], ['decryption failed']);
});

t.test('refuses keys that are not 96 bytes', async (t) => {
  t.throws(() => aeadEncrypt(randomBytes(64), Buffer.alloc(1), Buffer.alloc(0), false), RangeError);
});

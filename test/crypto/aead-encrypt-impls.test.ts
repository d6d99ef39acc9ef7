// Every batch-encryption vector through both implementations: the native addon must give
// byte-identical ciphertext to the pure-JS path (the reference and the fallback), and each must
// decrypt what the other wrote.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import t from 'tap';
import { BSON } from 'mongodb';
import {
  aeadDecrypt,
  aeadDecryptManyJs,
  aeadDecryptManyNative,
  aeadEncrypt,
  aeadEncryptManyJs,
  aeadEncryptManyNative,
  AeadError,
  type AeadEncryptItem,
  type AeadEncryptMany,
} from '../../src/crypto/aead.js';
import { nativeAead } from '../../src/crypto/aead-native.js';
import { encryptValue, encryptValues, parsePayload, decryptPayload, UnsupportedTypeError } from '../../src/crypto/fle-payload.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const notBuilt = 'native addon not built (npm run build:native); the pure-JS path is tested alone';
const impls: [string, AeadEncryptMany][] = [
  ['js', aeadEncryptManyJs],
  ['native', aeadEncryptManyNative],
];

/** AD lengths 0..39 and plaintext lengths 0..69: every padding length, block multiples included. */
function mixedItems(n: number): AeadEncryptItem[] {
  return Array.from({ length: n }, (_, i) => ({ ad: randomBytes(i % 40), plaintext: randomBytes(i % 70), deterministic: i % 3 !== 0 }));
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

for (const [name, encryptMany] of impls) {
  t.test(name, { skip: name === 'native' && !nativeAead.loaded ? notBuilt : false }, async (t) => {
    t.test('deterministic items are byte-identical to aeadEncrypt, prefixed with their AD', async (t) => {
      const key = randomBytes(96);
      const items = mixedItems(300).map((item) => ({ ...item, deterministic: true }));
      const many = encryptMany(key, items);
      items.forEach(({ ad, plaintext }, i) => t.equal(hex(many[i]!), hex(Buffer.concat([ad, aeadEncrypt(key, plaintext, ad, true)])), `item ${i}`));
    });

    t.test('random items use the IV given for them and decrypt with aeadDecrypt', async (t) => {
      const key = randomBytes(96);
      const items = mixedItems(200);
      const ivs = randomBytes(16 * items.length);
      const many = encryptMany(key, items, ivs);
      let ok = 0;
      items.forEach(({ ad, plaintext, deterministic }, i) => {
        const payload = many[i]!;
        const ciphertext = payload.subarray(ad.length);
        if (!deterministic && hex(ciphertext.subarray(0, 16)) !== hex(ivs.subarray(16 * i, 16 * i + 16))) return;
        if (hex(payload.subarray(0, ad.length)) !== hex(ad)) return;
        if (hex(aeadDecrypt(key, ciphertext, ad)) === hex(plaintext)) ok++;
      });
      t.equal(ok, items.length);
    });

    t.test('without given IVs, random ciphertexts of one plaintext differ', async (t) => {
      const key = randomBytes(96);
      const ad = randomBytes(18);
      const plaintext = Buffer.from('same');
      const many = encryptMany(key, Array.from({ length: 50 }, () => ({ ad, plaintext, deterministic: false })));
      t.equal(new Set(many.map(hex)).size, 50);
    });

    t.test('an empty batch yields nothing', async (t) => {
      t.same(encryptMany(randomBytes(96), []), []);
    });

    t.test('refuses keys that are not 96 bytes and IVs that are not 16 bytes per item', async (t) => {
      const item = { ad: randomBytes(18), plaintext: randomBytes(5), deterministic: false };
      t.throws(() => encryptMany(randomBytes(64), [item]), RangeError);
      t.throws(() => encryptMany(randomBytes(96), [item], randomBytes(15)), RangeError);
    });

    t.test('encryptValues gives libmongocrypt deterministic ciphertexts exactly', async (t) => {
      const dataKey = Buffer.from(vectors.dataKey, 'base64');
      const keyId = Buffer.from(vectors.keyId.replaceAll('-', ''), 'hex');
      const values = vectors.deterministic.map((v) => ({ value: EJSON.deserialize({ v: v.value } as never, { relaxed: false }).v, algorithm: 'deterministic' as const }));
      const ours = encryptValues(values, keyId, dataKey, encryptMany);
      t.same(
        ours.map((b) => (b instanceof Error ? b.message : Buffer.from(b.buffer).toString('base64'))),
        vectors.deterministic.map((v) => v.ciphertext),
      );
    });

    t.test('encryptValues answers per value: a refused type fails alone, the rest match encryptValue', async (t) => {
      const key = randomBytes(96);
      const keyId = randomBytes(16);
      const values = [
        { value: 'a string', algorithm: 'deterministic' as const },
        { value: true, algorithm: 'deterministic' as const },
        { value: 'é\u{1F600}\ud800 lone surrogate', algorithm: 'deterministic' as const },
        { value: null, algorithm: 'random' as const },
        { value: { nested: [1, 'x'] }, algorithm: 'random' as const },
        { value: '', algorithm: 'deterministic' as const },
      ];
      const ours = encryptValues(values, keyId, key, encryptMany);
      t.type(ours[1], UnsupportedTypeError);
      t.type(ours[3], UnsupportedTypeError);
      for (const i of [0, 2, 5]) t.equal(hex(Buffer.from((ours[i] as { buffer: Uint8Array }).buffer)), hex(encryptValue(values[i]!.value, keyId, key, 'deterministic').buffer), `value ${i}`);
      const nested = ours[4] as { buffer: Uint8Array; sub_type: number };
      t.equal(nested.sub_type, 6);
      t.same(decryptPayload(parsePayload(nested.buffer), key), { nested: [1, 'x'] });
    });
  });
}

t.test('native and JS ciphertexts are interchangeable', { skip: nativeAead.loaded ? false : notBuilt }, async (t) => {
  const key = randomBytes(96);
  const items = mixedItems(300);
  const ivs = randomBytes(16 * items.length);
  const js = aeadEncryptManyJs(key, items, ivs);
  const native = aeadEncryptManyNative(key, items, ivs);
  t.same(native.map(hex), js.map(hex), 'byte-identical with the same IVs');
  const split = (payloads: Buffer[]) => payloads.map((p, i) => ({ ad: items[i]!.ad, ciphertext: p.subarray(items[i]!.ad.length) }));
  const plaintexts = items.map((item) => hex(item.plaintext));
  const show = (rs: (Buffer | AeadError)[]) => rs.map((r) => (r instanceof AeadError ? 'error' : hex(r)));
  t.same(show(aeadDecryptManyJs(key, split(aeadEncryptManyNative(key, items)))), plaintexts, 'JS decrypts native');
  t.same(show(aeadDecryptManyNative(key, split(aeadEncryptManyJs(key, items)))), plaintexts, 'native decrypts JS');
});

t.test('a flip of any byte or a truncation of natively encrypted output fails that item alone', { skip: nativeAead.loaded ? false : notBuilt }, async (t) => {
  const key = randomBytes(96);
  const items = ['before', 'the one under attack, 33 bytes...', 'after'].map((p, i) => ({ ad: randomBytes(18), plaintext: Buffer.from(p), deterministic: i === 1 }));
  const cts = aeadEncryptManyNative(key, items).map((p, i) => ({ ad: items[i]!.ad, ciphertext: Buffer.from(p.subarray(18)) }));
  const expected = items.map((i) => hex(i.plaintext));
  const victim = cts[1]!;
  let rejected = 0;
  let attempts = 0;
  const check = (tampered: { ad: Buffer; ciphertext: Buffer }) => {
    const results = aeadDecryptManyNative(key, [cts[0]!, tampered, cts[2]!]).map((r) => (r instanceof AeadError ? 'error' : hex(r)));
    attempts++;
    if (results[1] === 'error' && results[0] === expected[0] && results[2] === expected[2]) rejected++;
  };
  for (const part of ['ad', 'ciphertext'] as const) {
    for (let byte = 0; byte < victim[part].length; byte++) {
      const tampered = { ...victim, [part]: Buffer.from(victim[part]) };
      tampered[part][byte]! ^= 0x01 << byte % 8;
      check(tampered);
    }
  }
  for (let length = 0; length < victim.ciphertext.length; length++) check({ ...victim, ciphertext: victim.ciphertext.subarray(0, length) });
  t.equal(rejected, attempts, 'every flip and truncation rejected, neighbours untouched');
});

t.test('the addon refuses a layout that does not fit its buffers instead of reading or writing past them', { skip: nativeAead.loaded ? false : notBuilt }, async (t) => {
  const addon = createRequire(import.meta.url)(nativeAead.path!) as {
    encryptMany(key: Uint8Array, input: Uint8Array, layout: Int32Array, ivs: Uint8Array, out: Uint8Array): void;
  };
  const key = randomBytes(96);
  const input = randomBytes(40);
  // One item of AD 18 and plaintext 22 (two blocks): 18 + 16 + 32 + 32 = 98 bytes out.
  const call = (layout: number[], out = Buffer.alloc(98), ivs = Buffer.alloc(16 * Math.floor(layout.length / 3))) =>
    addon.encryptMany(key, input, Int32Array.from(layout), ivs, out);
  t.doesNotThrow(() => call([18, 22, 1]));
  t.throws(() => call([18, 23, 1]), RangeError, 'reads past input');
  t.throws(() => call([-1, 22, 1]), RangeError);
  t.throws(() => call([18, -1, 1]), RangeError);
  t.throws(() => call([18, 22, 2]), RangeError, 'neither deterministic nor random');
  t.throws(() => call([18, 22, 1], Buffer.alloc(97)), RangeError, 'out too short');
  t.throws(() => call([18, 22, 1], Buffer.alloc(99)), RangeError, 'out not what the layout says');
  t.throws(() => call([18, 22, 1], Buffer.alloc(98), Buffer.alloc(15)), RangeError, 'IVs short');
  t.throws(() => call([18, 22]), RangeError);
  t.throws(() => addon.encryptMany(key.subarray(0, 64), input, Int32Array.from([18, 22, 1]), Buffer.alloc(16), Buffer.alloc(98)), RangeError);
  t.throws(() => addon.encryptMany(key, input, Uint32Array.from([18, 22, 1]) as never, Buffer.alloc(16), Buffer.alloc(98)), TypeError);
  t.throws(() => (addon.encryptMany as (...a: unknown[]) => void)(key, input), TypeError);
});

// Every batch-decryption vector through both implementations: the native addon must be
// indistinguishable from the pure-JS path, which stays the reference and the fallback.
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { BSON } from 'mongodb';
import {
  aeadDecrypt,
  aeadDecryptManyJs,
  aeadDecryptManyNative,
  aeadEncrypt,
  AeadError,
  nativeAeadInUse,
  useNativeAead,
  type AeadDecryptMany,
} from '../../src/crypto/aead.js';
import { nativeAead } from '../../src/crypto/aead-native.js';
import { decryptAll, decryptPayloads, encryptValue, parsePayload } from '../../src/crypto/fle-payload.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const builtAddon = fileURLToPath(new URL('../../native/build/Release/aead_native.node', import.meta.url));
const notBuilt = 'native addon not built (npm run build:native); the pure-JS path is tested alone';

const impls: [string, AeadDecryptMany][] = [
  ['js', aeadDecryptManyJs],
  ['native', aeadDecryptManyNative],
];

const show = (results: (Buffer | AeadError)[]) => results.map((r) => (r instanceof AeadError ? 'error' : r.toString('hex')));

/** A ciphertext with a valid tag over a body whose PKCS#7 padding is whatever `lastBlock` says. */
function withPadding(key: Buffer, ad: Buffer, lastBlock: Buffer): Buffer {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key.subarray(32, 64), iv);
  cipher.setAutoPadding(false);
  const body = Buffer.concat([iv, cipher.update(Buffer.concat([randomBytes(16), lastBlock])), cipher.final()]);
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(ad.length * 8));
  const tag = createHmac('sha512', key.subarray(0, 32)).update(ad).update(body).update(al).digest().subarray(0, 32);
  return Buffer.concat([body, tag]);
}

for (const [name, decryptMany] of impls) {
  t.test(name, { skip: name === 'native' && !nativeAead.loaded ? notBuilt : false }, async (t) => {
    t.test('decrypting many at once gives exactly what decrypting one by one gives', async (t) => {
      const key = randomBytes(96);
      const items = Array.from({ length: 300 }, (_, i) => {
        const ad = randomBytes(i % 40); // AD lengths 0..39: the AL field must follow it
        return { ad, ciphertext: aeadEncrypt(key, randomBytes(i % 70), ad, i % 2 === 0) };
      });
      const many = decryptMany(key, items);
      items.forEach((item, i) => t.same(many[i], aeadDecrypt(key, item.ciphertext, item.ad), `item ${i}`));
    });

    t.test('an empty batch yields nothing', async (t) => {
      t.same(decryptMany(randomBytes(96), []), []);
    });

    t.test('a tampered, truncated or misattributed item fails alone', async (t) => {
      const key = randomBytes(96);
      const ad = randomBytes(18);
      const good = () => aeadEncrypt(key, Buffer.from('fine'), ad, false);
      const flipped = good();
      flipped[20]! ^= 1;
      const results = decryptMany(key, [
        { ciphertext: good(), ad },
        { ciphertext: flipped, ad },
        { ciphertext: good().subarray(0, 48), ad },
        { ciphertext: good(), ad: randomBytes(18) },
        { ciphertext: good(), ad },
      ]);
      t.same(
        results.map((r) => (r instanceof AeadError ? 'error' : r.toString())),
        ['fine', 'error', 'error', 'error', 'fine'],
      );
    });

    t.test('a flip of any byte of the AD or ciphertext, or any truncation, fails that item alone', async (t) => {
      const key = randomBytes(96);
      const plaintexts = [Buffer.from('before'), Buffer.from('the one under attack, 33 bytes...'), Buffer.from('after')];
      const ads = plaintexts.map(() => randomBytes(18));
      const items = plaintexts.map((p, i) => ({ ad: ads[i]!, ciphertext: aeadEncrypt(key, p, ads[i]!, i === 0) }));
      const expected = plaintexts.map((p) => p.toString('hex'));
      const victim = items[1]!;
      let rejected = 0;
      let attempts = 0;
      for (const part of ['ad', 'ciphertext'] as const) {
        for (let byte = 0; byte < victim[part].length; byte++) {
          const tampered = { ...victim, [part]: Buffer.from(victim[part]) };
          tampered[part][byte]! ^= 0x01 << byte % 8;
          const results = show(decryptMany(key, [items[0]!, tampered, items[2]!]));
          attempts++;
          if (results[1] === 'error' && results[0] === expected[0] && results[2] === expected[2]) rejected++;
        }
      }
      for (let length = 0; length < victim.ciphertext.length; length++) {
        const results = show(decryptMany(key, [items[0]!, { ...victim, ciphertext: victim.ciphertext.subarray(0, length) }, items[2]!]));
        attempts++;
        if (results[1] === 'error' && results[0] === expected[0] && results[2] === expected[2]) rejected++;
      }
      t.equal(rejected, attempts, 'every flip and truncation rejected, neighbours untouched');
      t.same(show(decryptMany(key, items)), expected, 'the untampered batch still decrypts');
    });

    t.test('a wrong key fails every item', async (t) => {
      const key = randomBytes(96);
      const ad = randomBytes(18);
      const items = [0, 1, 2].map(() => ({ ad, ciphertext: aeadEncrypt(key, randomBytes(20), ad, false) }));
      t.same(show(decryptMany(randomBytes(96), items)), ['error', 'error', 'error']);
    });

    t.test('bad padding behind a valid tag is an error, not a crash or a wrong plaintext', async (t) => {
      const key = randomBytes(96);
      const ad = randomBytes(18);
      const block = (...tail: number[]) => Buffer.concat([Buffer.alloc(16 - tail.length, 0x41), Buffer.from(tail)]);
      const bad = [block(0), block(17), block(0xff), block(3, 2, 3), block(1, 2)];
      const good = [block(1), block(2, 2), Buffer.alloc(16, 16)];
      const results = decryptMany(key, [...bad, ...good].map((last) => ({ ad, ciphertext: withPadding(key, ad, last) })));
      t.same(results.slice(0, bad.length).map((r) => r instanceof AeadError), bad.map(() => true));
      t.same(results.slice(bad.length).map((r) => (r instanceof AeadError ? -1 : r.length)), [31, 30, 16]);
    });

    t.test('refuses keys that are not 96 bytes', async (t) => {
      t.throws(() => decryptMany(randomBytes(64), []), RangeError);
    });

    t.test('decryptPayloads reads libmongocrypt ciphertexts exactly', async (t) => {
      const dataKey = Buffer.from(vectors.dataKey, 'base64');
      const all = [...vectors.deterministic, ...vectors.random];
      const values = decryptPayloads(all.map((v) => parsePayload(Buffer.from(v.ciphertext, 'base64'))), dataKey, decryptMany);
      t.same(values.map((v) => EJSON.serialize({ v }, { relaxed: false }).v), all.map((v) => v.value));
    });

    t.test('decryptAll batches by key and leaves items with no key undefined', async (t) => {
      const keys = new Map([0, 1, 2].map((k) => [randomBytes(16).toString('hex'), randomBytes(96)]));
      const ids = [...keys.keys()];
      const payloads = Array.from({ length: 30 }, (_, i) => {
        const id = ids[i % 3]!;
        return encryptValue(`value ${i}`, Buffer.from(id, 'hex'), keys.get(id)!, i % 2 ? 'random' : 'deterministic');
      });
      const values = decryptAll(
        payloads.map((p) => parsePayload(p.buffer)),
        (keyId) => (keyId.toString('hex') === ids[2] ? undefined : keys.get(keyId.toString('hex'))),
        decryptMany,
      );
      t.same(values, payloads.map((_, i) => (i % 3 === 2 ? undefined : `value ${i}`)));
    });
  });
}

t.test('the native addon is loaded whenever it was built', { skip: existsSync(builtAddon) ? false : notBuilt }, async (t) => {
  t.ok(nativeAead.loaded, `loaded ${nativeAead.path}${nativeAead.error ? `: ${nativeAead.error.message}` : ''}`);
  t.ok(nativeAeadInUse(), 'aeadDecryptMany prefers it');
  t.equal(useNativeAead(false), false, 'can be switched off');
  t.equal(useNativeAead(true), true, 'and on again');
});

t.test('without the addon, aeadDecryptManyNative refuses and the default is pure JS', { skip: nativeAead.loaded ? 'the addon is loaded' : false }, async (t) => {
  t.equal(nativeAeadInUse(), false);
  t.throws(() => aeadDecryptManyNative(randomBytes(96), []), /not loaded/);
});

t.test('the addon refuses a layout that does not fit its input instead of reading past it', { skip: nativeAead.loaded ? false : notBuilt }, async (t) => {
  const addon = createRequire(import.meta.url)(nativeAead.path!) as {
    decryptMany(key: Uint8Array, input: Uint8Array, layout: Int32Array, out: Uint8Array, results: Int32Array): void;
  };
  const key = randomBytes(96);
  const input = randomBytes(100);
  const call = (layout: number[], out = Buffer.alloc(100), results = new Int32Array(layout.length)) =>
    addon.decryptMany(key, input, Int32Array.from(layout), out, results);
  t.throws(() => call([18, 83]), RangeError);
  t.throws(() => call([-1, 64]), RangeError);
  t.throws(() => call([50, 50, 1, 0]), RangeError);
  t.throws(() => call([18, 64], Buffer.alloc(99)), RangeError);
  t.throws(() => call([18]), RangeError);
  t.throws(() => addon.decryptMany(key.subarray(0, 63), input, new Int32Array(0), Buffer.alloc(100), new Int32Array(0)), RangeError);
  t.throws(() => addon.decryptMany(key, input, new Uint32Array(2) as never, Buffer.alloc(100), new Int32Array(2)), TypeError);
  const results = new Int32Array(2);
  call([18, 82], Buffer.alloc(100), results);
  t.equal(results[1], -1, 'random bytes are refused, not decrypted');
});

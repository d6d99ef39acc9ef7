/**
 * Properties of the AEAD and the CSFLE payload format, for arbitrary keys, associated data,
 * plaintexts and BSON values (pure functions: no server needed).
 */
import t from 'tap';
import fc from 'fast-check';
import { aeadDecrypt, aeadDecryptMany, aeadEncrypt, aeadEncryptManyJs, aeadEncryptManyNative, AeadError } from '../../src/crypto/aead.js';
import { nativeAead } from '../../src/crypto/aead-native.js';
import { encodeValue } from '../../src/crypto/bson-value.js';
import { BSON } from 'mongodb';
import { toEjson } from '../../src/ejson.js';
import { decryptPayload, encryptValue, parsePayload, UnsupportedTypeError } from '../../src/crypto/fle-payload.js';
import { canonical, decimalArb, deterministicValueArb, doubleArb, randomValueArb, seed } from './arbitraries.js';

const key = fc.uint8Array({ minLength: 96, maxLength: 96 }).map((b) => Buffer.from(b));
const keyId = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b));
const ad = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b));
const plaintext = fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b));
const params = { seed, numRuns: 100 };

function rejects(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    if (err instanceof AeadError) return true;
    throw err;
  }
}

t.test('AEAD round-trips, random and deterministic', async (t) => {
  fc.assert(
    fc.property(key, ad, plaintext, fc.boolean(), (k, a, p, deterministic) => {
      const ct = aeadEncrypt(k, p, a, deterministic);
      return ct.length === 16 + (Math.floor(p.length / 16) + 1) * 16 + 32 && aeadDecrypt(k, ct, a).equals(p);
    }),
    params,
  );
  t.pass('holds');
});

const batch = fc.array(fc.record({ ad, plaintext, deterministic: fc.boolean() }), { maxLength: 20 });
const encryptManyImpls = nativeAead.loaded ? [aeadEncryptManyJs, aeadEncryptManyNative] : [aeadEncryptManyJs];

t.test('batch encryption (JS and native) is AD ‖ what aeadEncrypt gives, and decrypts item by item', async (t) => {
  fc.assert(
    fc.property(key, batch, (k, items) => {
      const ivs = Buffer.alloc(16 * items.length, 7);
      const outputs = encryptManyImpls.map((encryptMany) => encryptMany(k, items, ivs));
      return outputs.every((payloads) =>
        items.every(({ ad: a, plaintext: p, deterministic }, i) => {
          const payload = payloads[i]!;
          const ct = payload.subarray(a.length);
          const sameAsJs = payload.equals(outputs[0]![i]!);
          const detOk = !deterministic || ct.equals(aeadEncrypt(k, p, a, true));
          const randomOk = deterministic || ct.subarray(0, 16).equals(ivs.subarray(16 * i, 16 * i + 16));
          return sameAsJs && detOk && randomOk && payload.subarray(0, a.length).equals(a) && aeadDecrypt(k, ct, a).equals(p);
        }),
      );
    }),
    params,
  );
  t.pass('holds');
});

t.test('batch-encrypted output with any byte flipped fails alone in batch decryption', async (t) => {
  fc.assert(
    fc.property(key, batch.filter((b) => b.length > 0), fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (k, items, which, at, x) => {
      return encryptManyImpls.every((encryptMany) => {
        const victim = which % items.length;
        const cts = encryptMany(k, items).map((payload, i) => ({ ad: items[i]!.ad, ciphertext: Buffer.from(payload.subarray(items[i]!.ad.length)) }));
        const target = cts[victim]!;
        target.ciphertext[at % target.ciphertext.length]! ^= x;
        const results = aeadDecryptMany(k, cts);
        return results.every((r, i) => (i === victim ? r instanceof AeadError : !(r instanceof AeadError) && r.equals(items[i]!.plaintext)));
      });
    }),
    params,
  );
  t.pass('holds');
});

t.test('a string encodes to the bytes the BSON serializer gives it (lone surrogates included)', async (t) => {
  const text = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.string());
  fc.assert(
    fc.property(text, (s) => {
      const doc = Buffer.from(BSON.serialize({ '': s }));
      const { type, bytes } = encodeValue(s);
      return type === doc[4] && bytes.equals(doc.subarray(6, doc.length - 1));
    }),
    params,
  );
  t.pass('holds');
});

t.test('deterministic output is a function of (key, AD, plaintext), and each of them matters', async (t) => {
  fc.assert(
    fc.property(key, ad, plaintext, key, ad, plaintext, (k, a, p, k2, a2, p2) => {
      const ct = aeadEncrypt(k, p, a, true);
      if (!ct.equals(aeadEncrypt(Buffer.from(k), Buffer.from(p), Buffer.from(a), true))) return false;
      const same = k.equals(k2) && a.equals(a2) && p.equals(p2);
      return same === ct.equals(aeadEncrypt(k2, p2, a2, true));
    }),
    params,
  );
  t.pass('holds');
});

t.test('tampering with any byte (xor with any non-zero byte) is rejected with AeadError', async (t) => {
  // Every position of every generated ciphertext, each with its own arbitrary non-zero mask.
  fc.assert(
    fc.property(
      key,
      ad,
      plaintext,
      fc.boolean(),
      fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 300 }),
      (k, a, p, deterministic, masks) => {
        const ct = aeadEncrypt(k, p, a, deterministic);
        for (let pos = 0; pos < ct.length; pos++) {
          const tampered = Buffer.from(ct);
          tampered[pos]! ^= masks[pos % masks.length]!;
          if (!rejects(() => aeadDecrypt(k, tampered, a))) return false;
        }
        return true;
      },
    ),
    { ...params, numRuns: 50 },
  );
  t.pass('holds');
});

t.test('truncation to every shorter length, extension, a wrong key and a changed AD are rejected', async (t) => {
  fc.assert(
    fc.property(key, ad, plaintext, fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 48 }), key, ad, (k, a, p, deterministic, extra, k2, a2) => {
      const ct = aeadEncrypt(k, p, a, deterministic);
      for (let length = 0; length < ct.length; length++) {
        if (!rejects(() => aeadDecrypt(k, ct.subarray(0, length), a))) return false;
      }
      if (!rejects(() => aeadDecrypt(k, Buffer.concat([ct, extra]), a))) return false;
      if (!k2.equals(k) && !rejects(() => aeadDecrypt(k2, ct, a))) return false;
      if (!a2.equals(a) && !rejects(() => aeadDecrypt(k, ct, a2))) return false;
      return true;
    }),
    { ...params, numRuns: 50 },
  );
  t.pass('holds');
});

t.test('arbitrary bytes never decrypt, and fail only with AeadError', async (t) => {
  fc.assert(
    fc.property(key, ad, fc.uint8Array({ maxLength: 200 }), (k, a, bytes) => rejects(() => aeadDecrypt(k, bytes, a))),
    params,
  );
  t.pass('holds');
});

t.test('payload round-trip: deterministic values decrypt to the same canonical Extended JSON, byte-stably', async (t) => {
  fc.assert(
    fc.property(keyId, key, deterministicValueArb, (id, k, value) => {
      const ct = encryptValue(value, id, k, 'deterministic');
      if (ct.sub_type !== 6) return false;
      if (!Buffer.from(ct.buffer).equals(Buffer.from(encryptValue(value, id, k, 'deterministic').buffer))) return false;
      const parsed = parsePayload(ct.buffer);
      return parsed.algorithm === 'deterministic' && canonical(decryptPayload(parsed, k)) === canonical(value);
    }),
    { ...params, numRuns: 200 },
  );
  t.pass('holds');
});

t.test('payload round-trip: random values (nested documents and arrays, -0, NaN, ±Infinity) decrypt exactly', async (t) => {
  fc.assert(
    fc.property(keyId, key, randomValueArb, (id, k, value) => {
      const ct = encryptValue(value, id, k, 'random');
      const parsed = parsePayload(ct.buffer);
      return parsed.algorithm === 'random' && parsed.keyId.equals(id) && canonical(decryptPayload(parsed, k)) === canonical(value);
    }),
    { ...params, numRuns: 200 },
  );
  t.pass('holds');
});

t.test('deterministic refuses doubles, decimals, booleans, documents and arrays', async (t) => {
  const refused = fc.oneof(doubleArb, decimalArb, fc.boolean(), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.stringMatching(/^[a-z]{1,4}$/), fc.string(), { maxKeys: 2 }));
  fc.assert(
    fc.property(keyId, key, refused, (id, k, value) => {
      try {
        encryptValue(value, id, k, 'deterministic');
        return false;
      } catch (err) {
        return err instanceof UnsupportedTypeError;
      }
    }),
    params,
  );
  t.pass('holds');
});

t.test('a tampered payload (any byte, the AD included) is rejected with AeadError', async (t) => {
  fc.assert(
    fc.property(
      keyId,
      key,
      fc.oneof(deterministicValueArb.map((v) => [v, 'deterministic'] as const), randomValueArb.map((v) => [v, 'random'] as const)),
      fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 64 }),
      (id, k, [value, algorithm], masks) => {
        const payload = Buffer.from(encryptValue(value, id, k, algorithm).buffer);
        for (let pos = 0; pos < payload.length; pos++) {
          const tampered = Buffer.from(payload);
          tampered[pos]! ^= masks[pos % masks.length]!;
          if (!rejects(() => decryptPayload(parsePayload(tampered), k))) return false;
        }
        return true;
      },
    ),
    { ...params, numRuns: 30 },
  );
  t.pass('holds');
});

t.test('authentic plaintext bytes that are not a value of the named type fail with AeadError only', async (t) => {
  // A key holder could write such a payload; decryption must not crash with another error.
  fc.assert(
    fc.property(keyId, key, fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 40 }), fc.constantFrom(1, 2), (id, k, type, bytes, subtype) => {
      const adBytes = Buffer.alloc(18);
      adBytes[0] = subtype;
      adBytes.set(id, 1);
      adBytes[17] = type;
      const payload = Buffer.concat([adBytes, aeadEncrypt(k, bytes, adBytes, subtype === 1)]);
      let value: unknown;
      try {
        value = decryptPayload(parsePayload(payload), k);
      } catch (err) {
        if (!(err instanceof AeadError)) throw err;
        return true;
      }
      // What decrypts must also print as the answer (POST /decrypt), in both formats.
      toEjson(value, 'canonical');
      toEjson(value, 'relaxed');
      return true;
    }),
    { ...params, numRuns: 300 },
  );
  t.pass('holds');
});

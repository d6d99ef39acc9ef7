/**
 * AEAD_AES_256_CBC_HMAC_SHA_512, the cipher of MongoDB's client-side field level encryption
 * (and of locally wrapped data keys), byte-compatible with libmongocrypt.
 *
 * key (96 bytes) = MAC key (32) ‖ AES key (32) ‖ IV key (32)
 * ciphertext     = IV (16) ‖ AES-256-CBC(PKCS#7(plaintext)) ‖ HMAC-SHA-512(MAC key, AD ‖ IV ‖ S ‖ AL)[0..32]
 * AL             = bit length of AD as an 8-byte big-endian integer
 * deterministic IV = HMAC-SHA-512(IV key, AD ‖ AL ‖ plaintext)[0..16]
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';
import { nativeAead, nativeDecryptMany, nativeEncryptMany } from './aead-native.js';

export const KEY_LENGTH = 96;
export const IV_LENGTH = 16;
export const TAG_LENGTH = 32;
const BLOCK = 16;
/** IV + at least one padded block + tag. */
export const MIN_CIPHERTEXT_LENGTH = IV_LENGTH + BLOCK + TAG_LENGTH;

export class AeadError extends Error {
  constructor() {
    // One message for every failure: callers must not learn which check failed.
    super('decryption failed');
    this.name = 'AeadError';
  }
}

function splitKey(key: Uint8Array): { macKey: Buffer; encKey: Buffer; ivKey: Buffer } {
  if (key.length !== KEY_LENGTH) throw new RangeError(`AEAD key must be ${KEY_LENGTH} bytes`);
  const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return { macKey: k.subarray(0, 32), encKey: k.subarray(32, 64), ivKey: k.subarray(64, 96) };
}

function adBitLength(ad: Uint8Array): Buffer {
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(ad.length) * 8n);
  return al;
}

function computeTag(macKey: Buffer, ad: Uint8Array, ivAndS: Uint8Array, al: Buffer): Buffer {
  return createHmac('sha512', macKey).update(ad).update(ivAndS).update(al).digest().subarray(0, TAG_LENGTH);
}

/**
 * Encrypt with a random IV, or with the synthetic IV derived from the plaintext when
 * `deterministic` is set. Deterministic encryption reveals equality of plaintexts under one key:
 * use it only where equality queries are needed.
 */
export function aeadEncrypt(key: Uint8Array, plaintext: Uint8Array, ad: Uint8Array, deterministic: boolean): Buffer {
  const { macKey, encKey, ivKey } = splitKey(key);
  const iv = deterministic ? deterministicIv(ivKey, ad, plaintext) : randomBytes(IV_LENGTH);
  return encryptWithIv(macKey, encKey, plaintext, ad, iv);
}

function deterministicIv(ivKey: Buffer, ad: Uint8Array, plaintext: Uint8Array): Buffer {
  return createHmac('sha512', ivKey).update(ad).update(adBitLength(ad)).update(plaintext).digest().subarray(0, IV_LENGTH);
}

function encryptWithIv(macKey: Buffer, encKey: Buffer, plaintext: Uint8Array, ad: Uint8Array, iv: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-256-cbc', encKey, iv);
  const body = Buffer.concat([iv, cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([body, computeTag(macKey, ad, body, adBitLength(ad))]);
}

export interface AeadEncryptItem {
  plaintext: Uint8Array;
  ad: Uint8Array;
  deterministic: boolean;
}

/**
 * Encrypt many items under one key; each result is AD ‖ ciphertext, which is the CSFLE payload
 * when AD is its 18-byte prefix (so no caller copies it again). `randomIvs` (16 bytes per item,
 * read only for random items) exists for tests that compare implementations; by default they
 * are drawn from the CSPRNG in one call.
 */
export type AeadEncryptMany = (key: Uint8Array, items: AeadEncryptItem[], randomIvs?: Uint8Array) => Buffer[];

function ivsFor(items: AeadEncryptItem[], randomIvs: Uint8Array | undefined): Uint8Array {
  if (randomIvs !== undefined) {
    if (randomIvs.length !== items.length * IV_LENGTH) throw new RangeError(`randomIvs must hold ${IV_LENGTH} bytes per item`);
    return randomIvs;
  }
  const ivs = Buffer.allocUnsafe(items.length * IV_LENGTH);
  return items.some((item) => !item.deterministic) ? randomFillSync(ivs) : ivs.fill(0);
}

/** aeadEncryptMany one item at a time with node's crypto: the reference and the fallback. */
export function aeadEncryptManyJs(key: Uint8Array, items: AeadEncryptItem[], randomIvs?: Uint8Array): Buffer[] {
  const { macKey, encKey, ivKey } = splitKey(key);
  const ivs = ivsFor(items, randomIvs);
  return items.map(({ plaintext, ad, deterministic }, i) => {
    const iv = deterministic ? deterministicIv(ivKey, ad, plaintext) : ivs.subarray(i * IV_LENGTH, (i + 1) * IV_LENGTH);
    return Buffer.concat([ad, encryptWithIv(macKey, encKey, plaintext, ad, iv)]);
  });
}

/**
 * aeadEncryptMany in C (native/aead_native.c): byte-identical results, a fraction of the per-value
 * cost. Results are views into one buffer per batch. Throws if the addon is not loaded.
 */
export function aeadEncryptManyNative(key: Uint8Array, items: AeadEncryptItem[], randomIvs?: Uint8Array): Buffer[] {
  if (key.length !== KEY_LENGTH) throw new RangeError(`AEAD key must be ${KEY_LENGTH} bytes`);
  const payloads = nativeEncryptMany(key, items, ivsFor(items, randomIvs));
  if (payloads === undefined) throw new Error('the native AEAD addon is not loaded');
  return payloads;
}

/** Verify the tag, then decrypt. Throws `AeadError` for any failure, always the same one. */
export function aeadDecrypt(key: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array): Buffer {
  const { macKey, encKey } = splitKey(key);
  const length = ciphertext.length;
  if (length < MIN_CIPHERTEXT_LENGTH || (length - IV_LENGTH - TAG_LENGTH) % BLOCK !== 0) throw new AeadError();
  const body = ciphertext.subarray(0, length - TAG_LENGTH);
  const tag = ciphertext.subarray(length - TAG_LENGTH);
  const expected = computeTag(macKey, ad, body, adBitLength(ad));
  if (!timingSafeEqual(expected, tag)) throw new AeadError();
  try {
    const decipher = createDecipheriv('aes-256-cbc', encKey, body.subarray(0, IV_LENGTH));
    return Buffer.concat([decipher.update(body.subarray(IV_LENGTH)), decipher.final()]);
  } catch {
    throw new AeadError();
  }
}

export interface AeadItem {
  ciphertext: Uint8Array;
  ad: Uint8Array;
}

export type AeadDecryptMany = (key: Uint8Array, items: AeadItem[]) => (Buffer | AeadError)[];

/**
 * Decrypt many ciphertexts under one key, as aeadDecrypt would one by one, much faster: every tag
 * is verified first (per item, in constant time), then all authenticated bodies go through ONE
 * AES-256-ECB decipher call and the CBC chaining is undone here. Node's per-call cost of a cipher
 * (a few µs) otherwise dominates a document with many encrypted fields. Each item yields its
 * plaintext or an AeadError; padding is checked only after authentication, so it is no oracle.
 */
export function aeadDecryptManyJs(key: Uint8Array, items: AeadItem[]): (Buffer | AeadError)[] {
  const { macKey, encKey } = splitKey(key);
  const results: (Buffer | AeadError)[] = new Array(items.length);
  const accepted: number[] = [];
  let bodyBytes = 0;
  items.forEach(({ ciphertext, ad }, i) => {
    const length = ciphertext.length;
    if (length < MIN_CIPHERTEXT_LENGTH || (length - IV_LENGTH - TAG_LENGTH) % BLOCK !== 0) {
      results[i] = new AeadError();
      return;
    }
    const body = ciphertext.subarray(0, length - TAG_LENGTH);
    const expected = computeTag(macKey, ad, body, adBitLength(ad));
    if (!timingSafeEqual(expected, ciphertext.subarray(length - TAG_LENGTH))) {
      results[i] = new AeadError();
      return;
    }
    accepted.push(i);
    bodyBytes += length - IV_LENGTH - TAG_LENGTH;
  });
  if (accepted.length === 0) return results;

  const bodies = Buffer.allocUnsafe(bodyBytes);
  let offset = 0;
  for (const i of accepted) {
    const c = items[i]!.ciphertext;
    bodies.set(c.subarray(IV_LENGTH, c.length - TAG_LENGTH), offset);
    offset += c.length - IV_LENGTH - TAG_LENGTH;
  }
  const decipher = createDecipheriv('aes-256-ecb', encKey, null);
  decipher.setAutoPadding(false);
  const blocks = Buffer.concat([decipher.update(bodies), decipher.final()]);
  bodies.fill(0);

  offset = 0;
  for (const i of accepted) {
    const c = items[i]!.ciphertext;
    const n = c.length - IV_LENGTH - TAG_LENGTH;
    // CBC: plaintext block k = D(C_k) xor C_(k-1), with C_(-1) the IV: the ciphertext byte 16 before.
    for (let b = 0; b < n; b++) blocks[offset + b]! ^= c[b]!;
    const pad = blocks[offset + n - 1]!;
    let padOk = pad >= 1 && pad <= BLOCK;
    for (let b = 1; padOk && b <= pad; b++) padOk = blocks[offset + n - b] === pad;
    results[i] = padOk ? Buffer.from(blocks.subarray(offset, offset + n - pad)) : new AeadError();
    offset += n;
  }
  blocks.fill(0);
  return results;
}

/**
 * aeadDecryptMany in C (native/aead_native.c): same checks, same results, about a tenth of the
 * per-field cost. Plaintexts are views into one buffer per batch. Throws if the addon is not
 * loaded; see `nativeAead`.
 */
export function aeadDecryptManyNative(key: Uint8Array, items: AeadItem[]): (Buffer | AeadError)[] {
  if (key.length !== KEY_LENGTH) throw new RangeError(`AEAD key must be ${KEY_LENGTH} bytes`);
  const plaintexts = nativeDecryptMany(key, items);
  if (plaintexts === undefined) throw new Error('the native AEAD addon is not loaded');
  return plaintexts.map((plaintext) => plaintext ?? new AeadError());
}

let preferNative = true;

/**
 * Choose whether aeadEncryptMany and aeadDecryptMany use the native addon when it is loaded (the default) or always
 * the pure-JS path. Returns whether the native one is now in use. Configuration decides; this
 * module reads no environment.
 */
export function useNativeAead(prefer: boolean): boolean {
  preferNative = prefer;
  return nativeAeadInUse();
}

export function nativeAeadInUse(): boolean {
  return preferNative && nativeAead.loaded;
}

/** Encrypt many items under one key: the native addon when loaded and chosen, else pure JS. */
export function aeadEncryptMany(key: Uint8Array, items: AeadEncryptItem[], randomIvs?: Uint8Array): Buffer[] {
  return nativeAeadInUse() ? aeadEncryptManyNative(key, items, randomIvs) : aeadEncryptManyJs(key, items, randomIvs);
}

/** Decrypt many items under one key: the native addon when loaded and chosen, else pure JS. */
export function aeadDecryptMany(key: Uint8Array, items: AeadItem[]): (Buffer | AeadError)[] {
  return nativeAeadInUse() ? aeadDecryptManyNative(key, items) : aeadDecryptManyJs(key, items);
}

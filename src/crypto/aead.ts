/**
 * AEAD_AES_256_CBC_HMAC_SHA_512, the cipher of MongoDB's client-side field level encryption
 * (and of locally wrapped data keys), byte-compatible with libmongocrypt.
 *
 * key (96 bytes) = MAC key (32) ‖ AES key (32) ‖ IV key (32)
 * ciphertext     = IV (16) ‖ AES-256-CBC(PKCS#7(plaintext)) ‖ HMAC-SHA-512(MAC key, AD ‖ IV ‖ S ‖ AL)[0..32]
 * AL             = bit length of AD as an 8-byte big-endian integer
 * deterministic IV = HMAC-SHA-512(IV key, AD ‖ AL ‖ plaintext)[0..16]
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

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
  const al = adBitLength(ad);
  const iv = deterministic
    ? createHmac('sha512', ivKey).update(ad).update(al).update(plaintext).digest().subarray(0, IV_LENGTH)
    : randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-cbc', encKey, iv);
  const body = Buffer.concat([iv, cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([body, computeTag(macKey, ad, body, al)]);
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

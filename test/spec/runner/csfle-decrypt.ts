/**
 * An independent reading of CSFLE ciphertext (BSON Binary subtype 6) for the spec runners, written
 * from the client-side encryption spec, not with the product's engine: it checks what the service
 * stored decrypts, under the spec's data keys, with a valid HMAC.
 *   blob = subtype (1 deterministic, 2 random) | key UUID (16) | BSON type (1) | IV (16) | AES-256-CBC | HMAC-SHA-512/256
 */
import { createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';

export interface Decrypted {
  subtype: number;
  keyId: string;
  bsonType: number;
  plaintext: Buffer;
}

/** The blob decrypted with the data key its key id names (`keys`: base64 key id → 96-byte key), or why not. */
export function decryptBlob(blob: Buffer, keys: Map<string, Buffer>): Decrypted | string {
  if (blob.length < 18 + 16 + 16 + 32) return 'too short';
  const subtype = blob[0]!;
  if (subtype !== 1 && subtype !== 2) return `blob subtype ${subtype}`;
  const keyId = blob.subarray(1, 17).toString('base64');
  const key = keys.get(keyId);
  if (!key) return `unknown data key ${keyId}`;
  const ad = blob.subarray(0, 18);
  const body = blob.subarray(18);
  const tag = body.subarray(body.length - 32);
  const ivAndCiphertext = body.subarray(0, body.length - 32);
  const al = Buffer.alloc(8);
  al.writeBigUInt64BE(BigInt(ad.length * 8));
  const mac = createHmac('sha512', key.subarray(0, 32)).update(Buffer.concat([ad, ivAndCiphertext, al])).digest().subarray(0, 32);
  if (!timingSafeEqual(mac, tag)) return 'HMAC does not verify';
  const decipher = createDecipheriv('aes-256-cbc', key.subarray(32, 64), ivAndCiphertext.subarray(0, 16));
  const plaintext = Buffer.concat([decipher.update(ivAndCiphertext.subarray(16)), decipher.final()]);
  return { subtype, keyId, bsonType: blob[17]!, plaintext };
}

/** Unwrap a local-provider key document's keyMaterial with the 96-byte local master key. */
export function unwrapLocal(keyMaterial: Buffer, masterKey: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-cbc', masterKey.subarray(32, 64), keyMaterial.subarray(0, 16));
  return Buffer.concat([decipher.update(keyMaterial.subarray(16, keyMaterial.length - 32)), decipher.final()]);
}

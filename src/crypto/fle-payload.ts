/**
 * The CSFLE ciphertext: BSON Binary subtype 6 whose payload is
 *   blob subtype (1: deterministic, 2: random) ‖ data-key UUID (16) ‖ original BSON type (1) ‖ AEAD ciphertext
 * The first 18 bytes are the AEAD's associated data, so the key id and the type are authenticated.
 */
import { Binary } from 'mongodb';
import {
  aeadDecrypt,
  aeadDecryptMany,
  aeadEncryptMany,
  AeadError,
  MIN_CIPHERTEXT_LENGTH,
  type AeadDecryptMany,
  type AeadEncryptItem,
  type AeadEncryptMany,
} from './aead.js';
import { BsonType, bsonTypeName, decodeValue, encodeValue, type BsonTypeName } from './bson-value.js';

export const ENCRYPTED_SUBTYPE = 6;
export const AD_LENGTH = 18;

export const Algorithm = {
  deterministic: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic',
  random: 'AEAD_AES_256_CBC_HMAC_SHA_512-Random',
} as const;
export type AlgorithmName = keyof typeof Algorithm;

const blobSubtype: Record<AlgorithmName, number> = { deterministic: 1, random: 2 };

/** Types deterministic encryption refuses: equality on them is ill-defined or leaks too much. */
const refusedDeterministic = new Set<number>([
  BsonType.double,
  BsonType.decimal,
  BsonType.bool,
  BsonType.document,
  BsonType.array,
  BsonType.javascriptWithScope,
]);
/** Types neither algorithm encrypts: they carry no information, or are already ciphertext. */
const refusedAlways = new Set<number>([BsonType.null, BsonType.undefined, BsonType.minKey, BsonType.maxKey]);

export class UnsupportedTypeError extends Error {
  readonly bsonType: string;
  readonly algorithm: AlgorithmName;
  constructor(bsonType: string, algorithm: AlgorithmName) {
    super(`${algorithm} encryption does not support BSON type ${bsonType}`);
    this.name = 'UnsupportedTypeError';
    this.bsonType = bsonType;
    this.algorithm = algorithm;
  }
}

function checkType(type: number, bytes: Uint8Array, algorithm: AlgorithmName): void {
  const name = bsonTypeName(type) ?? `0x${type.toString(16)}`;
  if (refusedAlways.has(type)) throw new UnsupportedTypeError(name, algorithm);
  if (type === BsonType.binary && bytes[4] === ENCRYPTED_SUBTYPE) throw new UnsupportedTypeError('binData subtype 6', algorithm);
  if (algorithm === 'deterministic' && refusedDeterministic.has(type)) throw new UnsupportedTypeError(name, algorithm);
}

/** Whether a value of this BSON type may be encrypted with the algorithm (subtype 6 aside). */
export function algorithmAllowsType(algorithm: AlgorithmName, type: BsonTypeName): boolean {
  const code = BsonType[type];
  return !refusedAlways.has(code) && !(algorithm === 'deterministic' && refusedDeterministic.has(code));
}

/**
 * Encrypt one BSON value under a data key. `keyId` is the data key's 16-byte UUID, `key` its
 * unwrapped 96 bytes. Throws `UnsupportedTypeError` for types the algorithm refuses.
 */
export function encryptValue(value: unknown, keyId: Uint8Array, key: Uint8Array, algorithm: AlgorithmName): Binary {
  // A batch of one: the batch path is the faster one even for a single value (one native call
  // instead of three node crypto objects), and gives the same bytes.
  const [result] = encryptValues([{ value, algorithm }], keyId, key);
  if (result instanceof Error) throw result;
  return result!;
}

export interface ValueToEncrypt {
  value: unknown;
  algorithm: AlgorithmName;
}

/**
 * Encrypt many values under one data key (see aeadEncryptMany): exactly what encryptValue gives
 * for each, with one crypto call for the batch. A value that cannot be encrypted (refused type,
 * unserializable) yields its error and does not affect the others. `encryptMany` picks an
 * implementation (tests and benchmarks compare them).
 */
export function encryptValues(
  values: readonly ValueToEncrypt[],
  keyId: Uint8Array,
  key: Uint8Array,
  encryptMany: AeadEncryptMany = aeadEncryptMany,
): (Binary | Error)[] {
  const results: (Binary | Error)[] = new Array(values.length);
  const items: AeadEncryptItem[] = [];
  const positions: number[] = [];
  // All ADs in one allocation: 18 bytes each, the same but for the algorithm and type bytes.
  const ads = Buffer.allocUnsafe(values.length * AD_LENGTH);
  values.forEach(({ value, algorithm }, i) => {
    try {
      const { type, bytes } = encodeValue(value);
      checkType(type, bytes, algorithm);
      const ad = ads.subarray(i * AD_LENGTH, (i + 1) * AD_LENGTH);
      ad[0] = blobSubtype[algorithm];
      ad.set(keyId, 1);
      ad[17] = type;
      items.push({ plaintext: bytes, ad, deterministic: algorithm === 'deterministic' });
      positions.push(i);
    } catch (err) {
      results[i] = err instanceof Error ? err : new Error(String(err));
    }
  });
  if (items.length > 0) {
    try {
      const payloads = encryptMany(key, items);
      positions.forEach((i, j) => (results[i] = new Binary(payloads[j]!, ENCRYPTED_SUBTYPE)));
    } finally {
      for (const { plaintext } of items) plaintext.fill(0);
    }
  }
  return results;
}

export interface ParsedPayload {
  algorithm: AlgorithmName;
  keyId: Buffer;
  type: number;
  ad: Buffer;
  ciphertext: Buffer;
}

/** Split a subtype-6 payload into its parts without decrypting. Throws `AeadError` if malformed. */
export function parsePayload(payload: Uint8Array): ParsedPayload {
  // The driver already hands out Buffers; wrapping one again costs more than the rest of the parse.
  const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  if (buf.length < AD_LENGTH + MIN_CIPHERTEXT_LENGTH) throw new AeadError();
  const algorithm = buf[0] === 1 ? 'deterministic' : buf[0] === 2 ? 'random' : undefined;
  if (algorithm === undefined) throw new AeadError();
  return {
    algorithm,
    keyId: buf.subarray(1, 17),
    type: buf[17]!,
    ad: buf.subarray(0, AD_LENGTH),
    ciphertext: buf.subarray(AD_LENGTH),
  };
}

/** Decrypt a parsed payload with its unwrapped data key. Throws `AeadError` for any failure. */
export function decryptPayload(parsed: ParsedPayload, key: Uint8Array): unknown {
  const plaintext = aeadDecrypt(key, parsed.ciphertext, parsed.ad);
  try {
    return decodeValue(parsed.type, plaintext);
  } catch {
    throw new AeadError();
  }
}

/**
 * Decrypt many parsed payloads under one data key (see aeadDecryptMany); each yields its value or
 * an AeadError. `decryptMany` picks an implementation (tests and benchmarks compare them).
 */
export function decryptPayloads(parsed: ParsedPayload[], key: Uint8Array, decryptMany: AeadDecryptMany = aeadDecryptMany): (unknown | AeadError)[] {
  // A parsed payload is already an AeadItem (ciphertext, ad): no per-field copy of the pair.
  const plaintexts = decryptMany(key, parsed);
  return plaintexts.map((plaintext, i) => {
    if (plaintext instanceof AeadError) return plaintext;
    try {
      return decodeValue(parsed[i]!.type, plaintext);
    } catch {
      return new AeadError();
    } finally {
      plaintext.fill(0);
    }
  });
}

function sameKeyId(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Decrypt payloads under whatever data keys they name, one batch per key. `keyOf` gives the
 * unwrapped key for a key id, or undefined when it is unavailable (that item is then undefined).
 */
export function decryptAll(
  parsed: ParsedPayload[],
  keyOf: (keyId: Buffer) => Uint8Array | undefined,
  decryptMany: AeadDecryptMany = aeadDecryptMany,
): (unknown | AeadError | undefined)[] {
  const results: (unknown | AeadError | undefined)[] = new Array(parsed.length).fill(undefined);
  const groups = new Map<string, number[]>();
  // Fields of a document mostly share one key: compare with the last key id before hashing it.
  let lastId: Buffer | undefined;
  let lastGroup: number[] = [];
  parsed.forEach((p, i) => {
    if (lastId !== undefined && sameKeyId(lastId, p.keyId)) {
      lastGroup.push(i);
      return;
    }
    const id = p.keyId.toString('hex');
    let group = groups.get(id);
    if (group === undefined) groups.set(id, (group = []));
    group.push(i);
    lastId = p.keyId;
    lastGroup = group;
  });
  for (const indexes of groups.values()) {
    const key = keyOf(parsed[indexes[0]!]!.keyId);
    if (key === undefined) continue;
    const values = decryptPayloads(indexes.map((i) => parsed[i]!), key, decryptMany);
    indexes.forEach((i, j) => (results[i] = values[j]));
  }
  return results;
}

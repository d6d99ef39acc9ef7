/**
 * The bare BSON bytes of a single value, as CSFLE encrypts them: no document framing, no name.
 * A value is framed as the document { "": value } and cut out of it, which keeps every type
 * (and the driver's own serializer) in charge of the encoding.
 */
import { BSON } from 'mongodb';

export const BsonType = {
  double: 0x01,
  string: 0x02,
  document: 0x03,
  array: 0x04,
  binary: 0x05,
  undefined: 0x06,
  objectId: 0x07,
  bool: 0x08,
  date: 0x09,
  null: 0x0a,
  regex: 0x0b,
  dbPointer: 0x0c,
  javascript: 0x0d,
  symbol: 0x0e,
  javascriptWithScope: 0x0f,
  int: 0x10,
  timestamp: 0x11,
  long: 0x12,
  decimal: 0x13,
  minKey: 0xff,
  maxKey: 0x7f,
} as const;

export type BsonTypeName = keyof typeof BsonType;

const typeNames = new Map<number, BsonTypeName>(
  Object.entries(BsonType).map(([name, code]) => [code, name as BsonTypeName]),
);

export function bsonTypeName(code: number): BsonTypeName | undefined {
  return typeNames.get(code);
}

export interface EncodedValue {
  type: number;
  bytes: Buffer;
}

/** Below this many UTF-16 units a string's UTF-8 (at most 3 bytes a unit) fits any BSON document. */
const DIRECT_STRING_LIMIT = 4 * 1024 * 1024;

/** Serialize one value to its BSON type byte and bare value bytes. */
export function encodeValue(value: unknown): EncodedValue {
  // Strings are most encrypted values: write int32 length, UTF-8, NUL directly instead of framing
  // and serializing a document per value. Buffer#write is the encoder bson itself uses, so lone
  // surrogates become U+FFFD here exactly as there; longer strings take the general path, which
  // keeps its size limit.
  if (typeof value === 'string' && value.length < DIRECT_STRING_LIMIT) {
    const length = Buffer.byteLength(value, 'utf8');
    const bytes = Buffer.allocUnsafe(length + 5);
    bytes.writeInt32LE(length + 1, 0);
    bytes.write(value, 4, 'utf8');
    bytes[length + 4] = 0;
    return { type: BsonType.string, bytes };
  }
  const doc = Buffer.from(BSON.serialize({ '': value }, { ignoreUndefined: false }));
  // int32 length, type byte, empty name (one NUL), value bytes, trailing NUL.
  return { type: doc[4]!, bytes: doc.subarray(6, doc.length - 1) };
}

// ignoreBOM: a leading U+FEFF is part of the value, not a byte-order mark to drop.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Rebuild a value from its type byte and bare bytes; throws if the bytes do not parse as that type. */
export function decodeValue(type: number, bytes: Uint8Array): unknown {
  // Strings are most encrypted fields: read them directly (length, UTF-8 checked, NUL) instead of
  // framing a document for the general parser.
  if (type === BsonType.string) {
    // int32 LE read by hand: wrapping the bytes in a Buffer to read it costs more than the decode.
    const length = bytes.length >= 5 ? bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! << 24) : -1;
    if (length !== bytes.length - 4 || bytes[bytes.length - 1] !== 0) throw new Error('not a BSON string');
    // A plain Uint8Array view: Buffer#subarray costs more than the decode of a short string.
    return strictUtf8.decode(new Uint8Array(bytes.buffer, bytes.byteOffset + 4, bytes.length - 5));
  }
  const doc = Buffer.alloc(bytes.length + 7);
  doc.writeInt32LE(doc.length, 0);
  doc[4] = type;
  doc[5] = 0;
  doc.set(bytes, 6);
  doc[doc.length - 1] = 0;
  const parsed = BSON.deserialize(doc, { promoteValues: false, bsonRegExp: true, validation: { utf8: true } });
  const keys = Object.keys(parsed);
  if (keys.length !== 1 || keys[0] !== '') throw new Error('not a single BSON value');
  return parsed[''];
}

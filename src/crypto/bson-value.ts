/**
 * The bare BSON bytes of a single value, as CSFLE encrypts them: no document framing, no name.
 * A value is framed as the document { "": value } and cut out of it, which keeps every type
 * (and the driver's own serializer) in charge of the encoding.
 */
import { BSON, ObjectId } from 'mongodb';
import { BSONUndefined, containsLegacyValue, DBPointer } from './legacy-bson-types.js';

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
  if (value instanceof DBPointer) return { type: BsonType.dbPointer, bytes: encodeDbPointer(value) };
  if (value instanceof BSONUndefined) return { type: BsonType.undefined, bytes: Buffer.alloc(0) };
  if (containsLegacyValue(value)) return encodeContainer(value as object);
  return encodeWithBson(value);
}

function encodeWithBson(value: unknown): EncodedValue {
  const doc = Buffer.from(BSON.serialize({ '': value }, { ignoreUndefined: false }));
  // int32 length, type byte, empty name (one NUL), value bytes, trailing NUL.
  return { type: doc[4]!, bytes: doc.subarray(6, doc.length - 1) };
}

/** A dbPointer's value bytes: its namespace as a BSON string, then the 12 ObjectId bytes. */
function encodeDbPointer(pointer: DBPointer): Buffer {
  const length = Buffer.byteLength(pointer.namespace, 'utf8');
  const bytes = Buffer.alloc(length + 5 + 12);
  bytes.writeInt32LE(length + 1, 0);
  bytes.write(pointer.namespace, 4, 'utf8');
  bytes[length + 4] = 0;
  bytes.set(pointer.oid.id, length + 5);
  return bytes;
}

const MAX_DEPTH = 100;

/**
 * A document or array holding a dbPointer or undefined, element by element: bson cannot write
 * those, so each other element is still written by bson and only the framing is done here.
 */
function encodeContainer(value: object): EncodedValue {
  const parts: Buffer[] = [Buffer.alloc(4)];
  const entries: [string, unknown][] = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  for (const [name, element] of entries) {
    if (name.includes('\0')) throw new TypeError('A field name cannot contain a NUL byte.');
    const { type, bytes } = encodeValue(element);
    parts.push(Buffer.from([type]), Buffer.from(`${name}\0`, 'utf8'), bytes);
  }
  parts.push(Buffer.from([0]));
  const bytes = Buffer.concat(parts);
  bytes.writeInt32LE(bytes.length, 0);
  return { type: Array.isArray(value) ? BsonType.array : BsonType.document, bytes };
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
  if (type === BsonType.dbPointer) return decodeDbPointer(bytes);
  if (type === BsonType.undefined) {
    if (bytes.length !== 0) throw new Error('not BSON undefined');
    return new BSONUndefined();
  }
  if ((type === BsonType.document || type === BsonType.array) && hasLegacyValue(bytes, 0)) return decodeContainer(type, bytes);
  return decodeWithBson(type, bytes);
}

function decodeWithBson(type: number, bytes: Uint8Array): unknown {
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

function int32At(bytes: Uint8Array, offset: number): number {
  if (offset + 4 > bytes.length) throw new Error('truncated BSON');
  return bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24);
}

function decodeDbPointer(bytes: Uint8Array): DBPointer {
  const length = int32At(bytes, 0);
  if (length < 1 || length + 4 + 12 !== bytes.length || bytes[length + 3] !== 0) throw new Error('not a BSON dbPointer');
  const namespace = decodeValue(BsonType.string, bytes.subarray(0, length + 4)) as string;
  return new DBPointer(namespace, new ObjectId(Buffer.from(bytes.subarray(length + 4))));
}

const fixedSizes = new Map<number, number>([
  [BsonType.double, 8],
  [BsonType.undefined, 0],
  [BsonType.objectId, 12],
  [BsonType.bool, 1],
  [BsonType.date, 8],
  [BsonType.null, 0],
  [BsonType.int, 4],
  [BsonType.timestamp, 8],
  [BsonType.long, 8],
  [BsonType.decimal, 16],
  [BsonType.minKey, 0],
  [BsonType.maxKey, 0],
]);

function cstringEnd(bytes: Uint8Array, offset: number, end: number): number {
  const nul = bytes.indexOf(0, offset);
  if (nul < 0 || nul >= end) throw new Error('truncated BSON');
  return nul;
}

/** The length of the value of `type` that starts at `offset` (its bytes are checked by its decoder). */
function valueLength(type: number, bytes: Uint8Array, offset: number, end: number): number {
  const fixed = fixedSizes.get(type);
  if (fixed !== undefined) return fixed;
  switch (type) {
    case BsonType.string:
    case BsonType.javascript:
    case BsonType.symbol:
      return 4 + int32At(bytes, offset);
    case BsonType.document:
    case BsonType.array:
    case BsonType.javascriptWithScope:
      return int32At(bytes, offset);
    case BsonType.binary:
      return 5 + int32At(bytes, offset);
    case BsonType.dbPointer:
      return 4 + int32At(bytes, offset) + 12;
    case BsonType.regex:
      return cstringEnd(bytes, cstringEnd(bytes, offset, end) + 1, end) + 1 - offset;
    default:
      throw new Error('unknown BSON type');
  }
}

/** The elements of a document: type, name and value bytes each. Throws if the framing is off. */
function* elementsOf(bytes: Uint8Array): Generator<{ type: number; name: string; value: Uint8Array }> {
  if (bytes.length < 5 || int32At(bytes, 0) !== bytes.length || bytes[bytes.length - 1] !== 0) throw new Error('not a BSON document');
  const end = bytes.length - 1;
  let offset = 4;
  while (offset < end) {
    const type = bytes[offset]!;
    const nameEnd = cstringEnd(bytes, offset + 1, end);
    const name = strictUtf8.decode(bytes.subarray(offset + 1, nameEnd));
    const start = nameEnd + 1;
    const length = valueLength(type, bytes, start, end);
    if (length < 0 || start + length > end) throw new Error('truncated BSON');
    yield { type, name, value: bytes.subarray(start, start + length) };
    offset = start + length;
  }
}

/** Whether a document's bytes hold a dbPointer or undefined, in it or in a nested document or array. */
function hasLegacyValue(bytes: Uint8Array, depth: number): boolean {
  if (depth > MAX_DEPTH) throw new Error('BSON nested too deeply');
  for (const { type, value } of elementsOf(bytes)) {
    if (type === BsonType.dbPointer || type === BsonType.undefined) return true;
    if ((type === BsonType.document || type === BsonType.array) && hasLegacyValue(value, depth + 1)) return true;
  }
  return false;
}

/** A document or array holding a dbPointer or undefined, element by element; every other element is read by bson. */
function decodeContainer(type: number, bytes: Uint8Array): unknown {
  const out: Record<string, unknown> = {};
  const items: unknown[] = [];
  for (const element of elementsOf(bytes)) {
    const value = decodeValue(element.type, element.value);
    if (type === BsonType.array) {
      if (element.name !== String(items.length)) throw new Error('array keys out of order');
      items.push(value);
    } else {
      // defineProperty: a field named __proto__ is a field, not the object's prototype.
      Object.defineProperty(out, element.name, { value, enumerable: true, writable: true, configurable: true });
    }
  }
  return type === BsonType.array ? items : out;
}

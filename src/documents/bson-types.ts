/** The BSON type of a deserialized value, by MongoDB's $jsonSchema alias. */
import { containsDbPointer } from '../crypto/db-pointer.js';
import { AppError } from '../errors.js';

export function bsonTypeAlias(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return Number.isInteger(value) && Math.abs(value) <= 2147483647 ? 'int' : 'double';
  if (typeof value === 'bigint') return 'long';
  if (value instanceof Date) return 'date';
  if (value instanceof RegExp) return 'regex';
  if (Array.isArray(value)) return 'array';
  const tag = (value as { _bsontype?: string })._bsontype;
  switch (tag) {
    case undefined:
      return 'object';
    case 'Int32':
      return 'int';
    case 'Double':
      return 'double';
    case 'Long':
      return 'long';
    case 'Decimal128':
      return 'decimal';
    case 'ObjectId':
      return 'objectId';
    case 'Binary':
      return 'binData';
    case 'BSONRegExp':
      return 'regex';
    case 'Timestamp':
      return 'timestamp';
    case 'Code':
      return (value as { scope?: unknown }).scope ? 'javascriptWithScope' : 'javascript';
    case 'BSONSymbol':
      return 'symbol';
    case 'DBRef':
      return 'object';
    case 'DBPointer':
      return 'dbPointer';
    case 'MinKey':
      return 'minKey';
    case 'MaxKey':
      return 'maxKey';
    default:
      return 'object';
  }
}

/** Whether a value matches a $jsonSchema bsonType (a name or a list; "number" covers all four). */
export function matchesBsonType(value: unknown, bsonType: string | string[]): boolean {
  const actual = bsonTypeAlias(value);
  const wanted = Array.isArray(bsonType) ? bsonType : [bsonType];
  return wanted.some((t) => t === actual || (t === 'number' && ['int', 'long', 'double', 'decimal'].includes(actual)));
}

/** Whether a value is a plain sub-document (not a BSON scalar wrapper, not an array). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof RegExp) && !('_bsontype' in value);
}

/** Whether a value is CSFLE ciphertext (BSON Binary subtype 6). */
export function isCiphertext(value: unknown): value is { _bsontype: 'Binary'; sub_type: number; buffer: Uint8Array } {
  return typeof value === 'object' && value !== null && (value as { _bsontype?: string })._bsontype === 'Binary' && (value as { sub_type: number }).sub_type === 6;
}

/**
 * The driver cannot write a dbPointer (its bson has no such type): one left in plaintext after
 * encryption is refused with a 400 rather than failing inside the driver. Encrypted, it is a
 * Binary like any other value.
 */
export function refuseUnencryptedDbPointer(value: unknown): void {
  if (containsDbPointer(value)) {
    throw new AppError('UNSUPPORTED_BSON_TYPE', 'A dbPointer can be written or queried only in an encrypted field: the database driver cannot write that deprecated type.');
  }
}

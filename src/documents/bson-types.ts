/** The BSON type of a deserialized value, by MongoDB's $jsonSchema alias. */
import { containsLegacyValue } from '../crypto/legacy-bson-types.js';
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
    case 'BSONUndefined':
      return 'undefined';
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
 * The driver cannot write a dbPointer or undefined faithfully (its bson has no dbPointer, and
 * writes undefined as null): one left in plaintext after encryption is refused with a 400 rather
 * than failing inside the driver or changing type. Encrypted, it is a Binary like any other value.
 */
export function refuseUnwritableTypes(value: unknown): void {
  if (containsLegacyValue(value)) {
    throw new AppError('UNSUPPORTED_BSON_TYPE', 'A dbPointer can be written or queried only as an encrypted value, and undefined only inside an encrypted document or array: the database driver cannot write these deprecated types.');
  }
}

/**
 * Documents read for a client keep their BSON types: an int64 7 or a double 2.0 is not a JavaScript
 * number, and a regex's flags are not a RegExp's. Only on the reads: the driver would apply these to
 * the server's error replies too (an error code as an Int32).
 */
export const exactTypes = { promoteValues: false, bsonRegExp: true } as const;

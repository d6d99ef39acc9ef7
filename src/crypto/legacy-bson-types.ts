/**
 * BSON's deprecated types that the driver's bson cannot carry faithfully: DBPointer (0x0C), which
 * it reads as a DBRef and would write back as an embedded document, and undefined (0x06), which it
 * reads as JavaScript undefined and writes as null. These classes keep them what they are;
 * bson-value.ts encodes and decodes them byte by byte, and ejson.ts maps them to and from
 * {"$dbPointer": ...} and {"$undefined": true}.
 */
import type { ObjectId } from 'mongodb';

export class DBPointer {
  readonly namespace: string;
  readonly oid: ObjectId;

  constructor(namespace: string, oid: ObjectId) {
    this.namespace = namespace;
    this.oid = oid;
  }

  /**
   * A BSON value, not a sub-document, to everything that walks values (`'_bsontype' in value`).
   * The driver's serializer refuses it (it knows no such type), so one never reaches the database
   * unencrypted by accident.
   */
  get _bsontype(): 'DBPointer' {
    return 'DBPointer';
  }
}

/** BSON undefined: not JavaScript's undefined, which the driver would drop or write as null. */
export class BSONUndefined {
  /** As DBPointer's: a value, refused by the driver's serializer. */
  get _bsontype(): 'BSONUndefined' {
    return 'BSONUndefined';
  }
}

export function isLegacyValue(value: unknown): value is DBPointer | BSONUndefined {
  return value instanceof DBPointer || value instanceof BSONUndefined;
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !('_bsontype' in value) && !(value instanceof Date) && !(value instanceof RegExp);
}

/** Whether a value is a dbPointer or BSON undefined, or a document or array holding one (at most `maxDepth` deep). */
export function containsLegacyValue(value: unknown, maxDepth = 100): boolean {
  if (isLegacyValue(value)) return true;
  if (!isContainer(value) || maxDepth <= 0) return false;
  return Object.values(value).some((v) => containsLegacyValue(v, maxDepth - 1));
}

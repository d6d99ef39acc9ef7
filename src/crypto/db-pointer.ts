/**
 * BSON's deprecated DBPointer (type 0x0C): a namespace and an ObjectId. The driver's bson has no
 * type for it: it reads one as a DBRef and writes a DBRef back as an embedded document, so a
 * dbPointer would silently become an object. This class keeps it what it is; bson-value.ts
 * encodes and decodes it byte by byte, and ejson.ts maps it to and from {"$dbPointer": ...}.
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

export function isDBPointer(value: unknown): value is DBPointer {
  return value instanceof DBPointer;
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !('_bsontype' in value) && !(value instanceof Date) && !(value instanceof RegExp);
}

/** Whether a value is a dbPointer or a document or array holding one (nested at most `maxDepth` deep). */
export function containsDbPointer(value: unknown, maxDepth = 100): boolean {
  if (value instanceof DBPointer) return true;
  if (!isContainer(value) || maxDepth <= 0) return false;
  return Object.values(value).some((v) => containsDbPointer(v, maxDepth - 1));
}

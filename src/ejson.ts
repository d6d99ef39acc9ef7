/**
 * Values cross the HTTP boundary as MongoDB Extended JSON v2. Input may be relaxed or canonical;
 * plain JSON numbers keep the type a driver would give them (int32, int64, else double).
 */
import { BSON, Double, Int32, Long, ObjectId } from 'mongodb';
import { BSONUndefined, containsLegacyValue, DBPointer } from './crypto/legacy-bson-types.js';
import { AppError } from './errors.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

export type EjsonFormat = 'relaxed' | 'canonical';

const INT32 = /^-?\d{1,10}$/;
const INT64 = /^-?\d{1,19}$/;
const DOUBLE = /^(-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|-?Infinity|NaN)$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const SUBTYPE = /^[0-9a-fA-F]{1,2}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const UINT32_MAX = 4294967295;
const OID = /^[0-9a-fA-F]{24}$/;

function isInt64(text: unknown): boolean {
  if (typeof text !== 'string' || !INT64.test(text)) return false;
  const n = BigInt(text);
  return n >= -(2n ** 63n) && n < 2n ** 63n;
}

function fail(what: string): never {
  throw new AppError('INVALID_EXTENDED_JSON', `Malformed ${what}.`);
}

const INT64_LIMIT = 2 ** 63;

/** A JavaScript Date holds ±8.64e15 ms around the epoch; beyond, bson would store 1970 instead. */
const MAX_DATE_MS = 8.64e15;

/** The keys each type wrapper may carry: anything else beside them would be silently dropped. */
const wrapperKeys: Record<string, string[]> = {
  $numberInt: ['$numberInt'],
  $numberLong: ['$numberLong'],
  $numberDouble: ['$numberDouble'],
  $numberDecimal: ['$numberDecimal'],
  $date: ['$date'],
  $oid: ['$oid'],
  $symbol: ['$symbol'],
  $timestamp: ['$timestamp'],
  $regularExpression: ['$regularExpression'],
  $minKey: ['$minKey'],
  $maxKey: ['$maxKey'],
  $undefined: ['$undefined'],
  $uuid: ['$uuid'],
  $binary: ['$binary', '$type'],
  $code: ['$code', '$scope'],
  $regex: ['$regex', '$options'],
  $dbPointer: ['$dbPointer'],
};

/**
 * The bson parser is lenient where a silent change of value would be data corruption:
 * `{"$numberInt": "abc"}` becomes 0 and `{"$date": "nope"}` an invalid date. Refuse those first.
 */
function checkStrict(json: unknown, depth = 0): void {
  if (depth > 100) throw new AppError('INVALID_EXTENDED_JSON', 'The value is nested too deeply.');
  // A plain integer between 2^53 and 2^63 would become an int64 whose digits JSON.parse already
  // rounded: refused. (Beyond 2^63 it is a double, as drivers read it.)
  if (typeof json === 'number' && Number.isInteger(json) && !Number.isSafeInteger(json) && Math.abs(json) <= INT64_LIMIT) {
    throw new AppError('INVALID_EXTENDED_JSON', 'An integer beyond 2^53 must be sent as {"$numberLong": "..."} (or {"$numberDouble": "..."}).');
  }
  if (json === null || typeof json !== 'object') return;
  if (Array.isArray(json)) {
    for (const item of json) checkStrict(item, depth + 1);
    return;
  }
  const obj = json as Record<string, unknown>;
  const keys = Object.keys(obj);
  for (const key of keys) {
    const allowed = Object.hasOwn(wrapperKeys, key) ? wrapperKeys[key] : undefined;
    if (allowed !== undefined && keys.some((k) => !allowed.includes(k))) fail(`${key} (extra keys beside it)`);
  }
  if (('$minKey' in obj && obj.$minKey !== 1) || ('$maxKey' in obj && obj.$maxKey !== 1)) fail('$minKey/$maxKey');
  if ('$undefined' in obj && obj.$undefined !== true) fail('$undefined');
  if ('$numberInt' in obj) {
    const text = obj.$numberInt;
    const n = typeof text === 'string' && INT32.test(text) ? Number(text) : NaN;
    if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647) throw new AppError('INVALID_EXTENDED_JSON', 'Malformed $numberInt.');
  }
  if ('$numberDouble' in obj) {
    const text = obj.$numberDouble;
    if (typeof text !== 'string' || !DOUBLE.test(text)) fail('$numberDouble');
    if (!Number.isFinite(Number(text)) && !/^-?Infinity$|^NaN$/.test(text)) fail('$numberDouble (out of range)');
  }
  if ('$numberLong' in obj && !isInt64(obj.$numberLong)) fail('$numberLong');
  if ('$date' in obj) {
    const date = obj.$date as unknown;
    if (typeof date === 'string' && (!ISO_DATE.test(date) || Number.isNaN(Date.parse(date)))) fail('$date');
    if (typeof date === 'object' && date !== null) {
      const ms = (date as { $numberLong?: unknown }).$numberLong;
      if (!isInt64(ms) || Math.abs(Number(ms)) > MAX_DATE_MS) fail('$date (out of range)');
    }
    if (typeof date === 'number' && (!Number.isSafeInteger(date) || Math.abs(date) > MAX_DATE_MS)) fail('$date (out of range)');
  }
  if ('$binary' in obj) {
    const binary = obj.$binary as { base64?: unknown; subType?: unknown } | string;
    const base64 = typeof binary === 'string' ? binary : binary?.base64;
    const subType = typeof binary === 'string' ? obj.$type : binary?.subType;
    if (typeof base64 !== 'string' || !BASE64.test(base64) || typeof subType !== 'string' || !SUBTYPE.test(subType)) fail('$binary');
  }
  if ('$timestamp' in obj) {
    const ts = obj.$timestamp as { t?: unknown; i?: unknown };
    for (const part of [ts?.t, ts?.i]) if (!Number.isInteger(part) || (part as number) < 0 || (part as number) > UINT32_MAX) fail('$timestamp');
  }
  if ('$code' in obj && typeof obj.$code !== 'string') fail('$code');
  if ('$symbol' in obj && typeof obj.$symbol !== 'string') fail('$symbol');
  if ('$dbPointer' in obj) {
    const pointer = obj.$dbPointer as { $ref?: unknown; $id?: { $oid?: unknown } } | null;
    const keys = typeof pointer === 'object' && pointer !== null ? Object.keys(pointer).sort().join() : '';
    const oidKeys = typeof pointer?.$id === 'object' && pointer.$id !== null ? Object.keys(pointer.$id).join() : '';
    if (keys !== '$id,$ref' || typeof pointer!.$ref !== 'string' || oidKeys !== '$oid' || typeof pointer!.$id!.$oid !== 'string' || !OID.test(pointer!.$id!.$oid)) {
      fail('$dbPointer (it is {"$dbPointer": {"$ref": "<namespace>", "$id": {"$oid": "<24 hex digits>"}}})');
    }
  }
  for (const value of Object.values(obj)) checkStrict(value, depth + 1);
}

/** Below this many UTF-16 units a string's UTF-8 (at most 3 bytes a unit) fits any BSON document. */
const DIRECT_STRING_LIMIT = 4 * 1024 * 1024;

/**
 * The common scalars, converted as EJSON.deserialize would without its JSON.stringify/parse round
 * trip (most of the per-value cost of a batch); undefined for anything else. -0 is left to the
 * general path, which turns it into Int32 0 through that round trip.
 */
function scalarFromJson(json: unknown): { value: unknown } | undefined {
  if ((typeof json === 'string' && json.length < DIRECT_STRING_LIMIT) || typeof json === 'boolean' || json === null) return { value: json };
  if (typeof json === 'number' && Number.isInteger(json) && json >= -2147483648 && json <= 2147483647 && !Object.is(json, -0)) {
    return { value: new Int32(json) };
  }
  return undefined;
}

function hasLegacyJson(json: unknown, depth = 0): boolean {
  if (json === null || typeof json !== 'object' || depth > 100) return false;
  if (!Array.isArray(json) && ('$dbPointer' in json || '$undefined' in json)) return true;
  return Object.values(json).some((v) => hasLegacyJson(v, depth + 1));
}

/**
 * Extended JSON holding a dbPointer or undefined: bson's parser would turn {"$dbPointer": ...}
 * into a DBRef (an object, once written) and {"$undefined": true} into null, so those are made
 * here and everything around them by the parser.
 */
function withLegacyValues(json: unknown): unknown {
  // A part without them is the parser's alone, in one piece.
  if (!hasLegacyJson(json)) return parseEjson(json);
  if (Array.isArray(json)) return json.map(withLegacyValues);
  const obj = json as Record<string, unknown>;
  if ('$dbPointer' in obj) {
    const { $ref, $id } = obj.$dbPointer as { $ref: string; $id: { $oid: string } };
    return new DBPointer($ref, new ObjectId($id.$oid));
  }
  if ('$undefined' in obj) return new BSONUndefined();
  // Another type's wrapper (or a DBRef) holding one (a $code's scope): it has no faithful form there.
  if (Object.keys(obj).some((k) => Object.hasOwn(wrapperKeys, k) || k === '$ref')) {
    fail('$dbPointer or $undefined (only as a value, or inside documents and arrays)');
  }
  const out: Record<string, unknown> = {};
  // defineProperty: a field named __proto__ is a field, not the object's prototype.
  for (const [k, v] of Object.entries(obj)) Object.defineProperty(out, k, { value: withLegacyValues(v), enumerable: true, writable: true, configurable: true });
  return out;
}

/** Parse one Extended JSON value (already JSON-parsed) into a BSON value. */
export function fromEjson(json: unknown): unknown {
  const scalar = scalarFromJson(json);
  if (scalar !== undefined) return scalar.value;
  checkStrict(json);
  return hasLegacyJson(json) ? withLegacyValues(json) : parseEjson(json);
}

function parseEjson(json: unknown): unknown {
  try {
    const value = EJSON.deserialize({ v: json } as never, { relaxed: false }).v;
    // What parses must also serialize: some values only fail there.
    BSON.serialize({ v: value });
    return value;
  } catch (err) {
    // The parser's message can quote the input, which may be plaintext: keep it out of the answer.
    throw new AppError('INVALID_EXTENDED_JSON', undefined, { cause: err });
  }
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Relaxed output writes int64 as a JSON number; beyond 2^53 that would lose digits, so keep those canonical. */
function keepLargeLongs(value: unknown): unknown {
  // Exactly Long: Timestamp extends Long and has its own Extended JSON form.
  if (value instanceof Long && (value as { _bsontype?: string })._bsontype === 'Long') {
    const n = value.toBigInt();
    return n > SAFE || n < -SAFE ? { $numberLong: n.toString() } : value;
  }
  // An integral double beyond 2^53 as a plain number would read back as an int64 (or be refused).
  if ((value as { _bsontype?: string } | null)?._bsontype === 'Double') {
    const n = (value as Double).valueOf();
    return Number.isInteger(n) && !Number.isSafeInteger(n) ? { $numberDouble: String(n) } : value;
  }
  if (Array.isArray(value)) return value.map(keepLargeLongs);
  if (typeof value === 'object' && value !== null && !('_bsontype' in value) && !(value instanceof Date) && !(value instanceof RegExp)) {
    const out: Record<string, unknown> = {};
    // defineProperty: a field named __proto__ is a field, not the object's prototype.
    for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: keepLargeLongs(v), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return value;
}

/**
 * The Extended JSON of a dbPointer and of undefined (the same in both formats), written before
 * bson's serializer, which knows no dbPointer and writes undefined as null.
 */
function legacyAsEjson(value: unknown): unknown {
  if (value instanceof DBPointer) return { $dbPointer: { $ref: value.namespace, $id: value.oid } };
  if (value instanceof BSONUndefined) return { $undefined: true };
  if (!containsLegacyValue(value)) return value;
  if (Array.isArray(value)) return value.map(legacyAsEjson);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as object)) Object.defineProperty(out, k, { value: legacyAsEjson(v), enumerable: true, writable: true, configurable: true });
  return out;
}

/** Serialize a BSON value to Extended JSON in the requested format. */
export function toEjson(value: unknown, format: EjsonFormat = 'relaxed'): unknown {
  // The common scalars directly, as EJSON.serialize writes them, without its JSON round trip.
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return value;
  if (value instanceof Int32) return format === 'relaxed' ? value.value : { $numberInt: String(value.value) };
  const input = legacyAsEjson(format === 'relaxed' ? keepLargeLongs(value) : value);
  return (EJSON.serialize({ v: input }, { relaxed: format === 'relaxed' }) as { v: unknown }).v;
}

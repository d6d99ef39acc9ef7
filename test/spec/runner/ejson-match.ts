/**
 * Matching an actual value against a spec test's expected value, after the unified test format's
 * "Evaluating Matches" rules (which the legacy format's README points to as well): numbers compare
 * by value whatever their BSON type, field order does not matter, a root-level actual document may
 * hold extra fields (embedded ones may not), and the special operators $$exists, $$type,
 * $$unsetOrMatches are honoured. Both sides are first brought to one comparable form (`canon`).
 */
import { BSON, Binary, Decimal128, Double, Int32, Long, ObjectId, Timestamp, BSONSymbol } from 'mongodb';

const { EJSON } = BSON;

/** Extended JSON (relaxed or canonical) from a spec file or an HTTP answer, as BSON values. */
export function fromEjson(value: unknown): unknown {
  return EJSON.deserialize({ v: value } as never, { relaxed: false }).v;
}

/** One comparable form of a BSON value: numbers as numbers, binaries as {$binary}, dates as {$date}. */
export function canon(value: unknown): unknown {
  if (value === null || value === undefined) return value ?? null;
  if (typeof value === 'number') return value;
  if (value instanceof Int32 || value instanceof Double) return value.valueOf();
  if (value instanceof Long) return Number(value.toString());
  if (value instanceof Decimal128) return { $numberDecimal: value.toString() };
  if (value instanceof Binary) return { $binary: Buffer.from(value.buffer).toString('base64'), subType: value.sub_type };
  if (value instanceof Date) return { $date: value.getTime() };
  if (value instanceof ObjectId) return { $oid: value.toHexString() };
  if (value instanceof Timestamp) return { $timestamp: value.toString() };
  if (value instanceof BSONSymbol) return { $symbol: value.valueOf() };
  if (Array.isArray(value)) return value.map(canon);
  if (typeof value === 'object') {
    const bsontype = (value as { _bsontype?: string })._bsontype;
    if (bsontype !== undefined) return JSON.parse(EJSON.stringify(value as never, { relaxed: false }));
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, canon(v)]));
  }
  return value;
}

/** The BSON type names $$type may ask for, by how `canon` shows a value. */
function typeNames(actual: unknown): string[] {
  if (actual === null) return ['null'];
  if (typeof actual === 'number') return Number.isInteger(actual) ? ['int', 'long', 'double', 'number'] : ['double', 'number'];
  if (typeof actual === 'string') return ['string'];
  if (typeof actual === 'boolean') return ['bool'];
  if (Array.isArray(actual)) return ['array'];
  if (typeof actual === 'object') {
    const keys = Object.keys(actual as object);
    if (keys.includes('$binary')) return ['binData'];
    if (keys.includes('$date')) return ['date'];
    if (keys.includes('$oid')) return ['objectId'];
    if (keys.includes('$numberDecimal')) return ['decimal', 'number'];
    if (keys.includes('$timestamp')) return ['timestamp'];
    return ['object'];
  }
  return [];
}

function isOperator(expected: unknown): expected is Record<string, unknown> {
  return typeof expected === 'object' && expected !== null && !Array.isArray(expected) && Object.keys(expected).length === 1 && Object.keys(expected)[0]!.startsWith('$$');
}

/**
 * Why `actual` does not match `expected` (a path and a reason), or undefined when it does. Both are
 * in `canon` form. `root` documents may hold extra fields; `absent` is true when the field is missing.
 */
export function mismatch(expected: unknown, actual: unknown, path = '', root = true, absent = false): string | undefined {
  if (isOperator(expected)) {
    const [op, arg] = Object.entries(expected)[0]!;
    switch (op) {
      case '$$exists':
        return (arg ? !absent : absent) ? undefined : `${path || '(root)'}: expected ${arg ? 'present' : 'absent'}`;
      case '$$unsetOrMatches':
        return absent ? undefined : mismatch(arg, actual, path, root);
      case '$$type': {
        if (absent) return `${path}: missing (expected type ${JSON.stringify(arg)})`;
        const wanted = Array.isArray(arg) ? (arg as string[]) : [arg as string];
        return wanted.some((w) => typeNames(actual).includes(w)) ? undefined : `${path}: ${JSON.stringify(actual)} is not of type ${wanted.join('|')}`;
      }
      default:
        return `${path}: unsupported match operator ${op}`;
    }
  }
  if (absent) return `${path}: missing, expected ${JSON.stringify(expected)}`;
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${path}: expected an array, got ${JSON.stringify(actual)}`;
    if (actual.length !== expected.length) return `${path}: expected ${expected.length} items, got ${actual.length}: ${JSON.stringify(actual).slice(0, 400)}`;
    for (let i = 0; i < expected.length; i++) {
      const why = mismatch(expected[i], actual[i], `${path}[${i}]`, root);
      if (why) return why;
    }
    return undefined;
  }
  if (typeof expected === 'object' && expected !== null) {
    if (typeof actual !== 'object' || actual === null || Array.isArray(actual)) return `${path}: expected a document, got ${JSON.stringify(actual)}`;
    const exp = expected as Record<string, unknown>;
    const act = actual as Record<string, unknown>;
    const special = Object.keys(exp).some((k) => k.startsWith('$') && !k.startsWith('$$'));
    for (const [k, v] of Object.entries(exp)) {
      const why = mismatch(v, act[k], `${path}.${k}`, false, !(k in act));
      if (why) return why;
    }
    if (!root || special) {
      const extra = Object.keys(act).filter((k) => !(k in exp));
      if (extra.length > 0) return `${path || '(root)'}: unexpected field(s) ${extra.join(', ')}`;
    }
    return undefined;
  }
  return expected === actual ? undefined : `${path || '(root)'}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

/** Match Extended JSON `expected` (from a spec file) against BSON-valued `actual`. */
export function matchEjson(expected: unknown, actual: unknown, options: { root?: boolean } = {}): string | undefined {
  return mismatch(canon(fromEjson(expected)), canon(actual), '', options.root ?? true);
}

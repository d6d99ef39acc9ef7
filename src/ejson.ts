/**
 * Values cross the HTTP boundary as MongoDB Extended JSON v2. Input may be relaxed or canonical;
 * plain JSON numbers keep the type a driver would give them (int32, int64, else double).
 */
import { EJSON } from 'bson';
import { AppError } from './errors.js';

export type EjsonFormat = 'relaxed' | 'canonical';

const INT32 = /^-?\d{1,10}$/;
const DOUBLE = /^(-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|-?Infinity|NaN)$/;

/**
 * The bson parser is lenient where a silent change of value would be data corruption:
 * `{"$numberInt": "abc"}` becomes 0 and `{"$date": "nope"}` an invalid date. Refuse those first.
 */
function checkStrict(json: unknown, depth = 0): void {
  if (depth > 100) throw new AppError('INVALID_EXTENDED_JSON', 'The value is nested too deeply.');
  if (json === null || typeof json !== 'object') return;
  if (Array.isArray(json)) {
    for (const item of json) checkStrict(item, depth + 1);
    return;
  }
  const obj = json as Record<string, unknown>;
  if ('$numberInt' in obj) {
    const text = obj.$numberInt;
    const n = typeof text === 'string' && INT32.test(text) ? Number(text) : NaN;
    if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647) throw new AppError('INVALID_EXTENDED_JSON', 'Malformed $numberInt.');
  }
  if ('$numberDouble' in obj && (typeof obj.$numberDouble !== 'string' || !DOUBLE.test(obj.$numberDouble))) {
    throw new AppError('INVALID_EXTENDED_JSON', 'Malformed $numberDouble.');
  }
  if ('$date' in obj) {
    const date = obj.$date;
    if (typeof date === 'string' && Number.isNaN(Date.parse(date))) throw new AppError('INVALID_EXTENDED_JSON', 'Malformed $date.');
  }
  for (const value of Object.values(obj)) checkStrict(value, depth + 1);
}

/** Parse one Extended JSON value (already JSON-parsed) into a BSON value. */
export function fromEjson(json: unknown): unknown {
  checkStrict(json);
  try {
    return EJSON.deserialize({ v: json } as never, { relaxed: false }).v;
  } catch (err) {
    // The parser's message can quote the input, which may be plaintext: keep it out of the answer.
    throw new AppError('INVALID_EXTENDED_JSON', undefined, { cause: err });
  }
}

/** Serialize a BSON value to Extended JSON in the requested format. */
export function toEjson(value: unknown, format: EjsonFormat = 'relaxed'): unknown {
  return (EJSON.serialize({ v: value }, { relaxed: format === 'relaxed' }) as { v: unknown }).v;
}

/**
 * Values cross the HTTP boundary as MongoDB Extended JSON v2. Input may be relaxed or canonical;
 * plain JSON numbers keep the type a driver would give them (int32, int64, else double).
 */
import { EJSON } from 'bson';
import { AppError } from './errors.js';

export type EjsonFormat = 'relaxed' | 'canonical';

/** Parse one Extended JSON value (already JSON-parsed) into a BSON value. */
export function fromEjson(json: unknown): unknown {
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

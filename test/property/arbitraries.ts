/**
 * fast-check arbitraries for BSON values, shared by the property tests. Values are built with the
 * bson wrappers (Int32, Double, Long …) so the BSON type is explicit: a bare JS number would be
 * serialized as int32 or double depending on its value, which is not what we want to test.
 */
import fc from 'fast-check';
import { BSON, Binary, BSONRegExp, BSONSymbol, Code, Decimal128, Double, Int32, Long, ObjectId, Timestamp } from 'mongodb';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

/** Canonical Extended JSON as a string: the exact-type comparison of two BSON values. */
export function canonical(value: unknown): string {
  return JSON.stringify(EJSON.serialize({ v: value }, { relaxed: false }));
}

/** Every property file reads FC_SEED (to replay a CI failure) and otherwise runs a fixed seed. */
export const seed = process.env.FC_SEED === undefined ? 20240611 : Number(process.env.FC_SEED);

/** Any string of well-formed UTF-16 (every code point, astral included), and some that stress UTF-8. */
export const stringArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', '\u0000', 'a\u0000b', '\u{1F600}', 'é', 'e\u0301', '\uFEFF', '$numberLong', '{"$oid":1}'),
);

export const int32Arb = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((n) => new Int32(n));

export const int64Arb = fc
  .oneof(
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    // Around the 2^53 edge, where relaxed JSON numbers stop being exact.
    fc.bigInt({ min: 2n ** 53n - 4n, max: 2n ** 53n + 4n }),
    fc.bigInt({ min: -(2n ** 53n) - 4n, max: -(2n ** 53n) + 4n }),
    fc.constantFrom(0n, -1n, 2n ** 63n - 1n, -(2n ** 63n)),
  )
  .map((n) => Long.fromBigInt(n));

/** Finite doubles, and -0, NaN and ±Infinity. */
export const doubleArb = fc
  .oneof(fc.double(), fc.constantFrom(-0, 0, NaN, Infinity, -Infinity, 1, 2 ** 53, 5e-324, Number.MAX_VALUE))
  .map((n) => new Double(n));

/** Every millisecond a JS Date can hold (±8.64e15). */
export const dateArb = fc
  .oneof(fc.integer({ min: -8.64e15, max: 8.64e15 }), fc.constantFrom(0, -1, 8.64e15, -8.64e15, 253402300800000))
  .map((ms) => new Date(ms));

export const objectIdArb = fc.uint8Array({ minLength: 12, maxLength: 12 }).map((bytes) => new ObjectId(Buffer.from(bytes)));

/**
 * Binaries of every subtype except 6 (ciphertext) and 9 (vector, whose bytes bson validates).
 * UUIDs (subtype 4) are 16 bytes: bson refuses `{"$binary": …, "subType": "04"}` of another length
 * as Extended JSON input, so such a value could not round-trip through the API at all.
 */
export const binarySubtypeArb = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 7, 8), fc.integer({ min: 0x80, max: 0xff }));
export const binaryArb = fc
  .tuple(fc.uint8Array({ maxLength: 40 }), binarySubtypeArb, fc.uint8Array({ minLength: 16, maxLength: 16 }))
  .map(([bytes, subtype, uuid]) => new Binary(Buffer.from(subtype === 4 ? uuid : bytes), subtype));

export const decimalArb = fc
  .oneof(
    fc.tuple(fc.bigInt({ min: -(10n ** 33n), max: 10n ** 33n }), fc.integer({ min: -6000, max: 6000 })).map(([c, e]) => `${c}E${e}`),
    fc.constantFrom('0', '-0', '1.50', 'NaN', 'Infinity', '-Infinity', '9.999999999999999999999999999999999E+6144'),
  )
  .map((text) => Decimal128.fromString(text));

export const timestampArb = fc
  .tuple(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }))
  .map(([t, i]) => new Timestamp({ t, i }));

export const regexArb = fc
  .tuple(fc.stringMatching(/^[a-z.*+?()[\]\\^$|]{0,10}$/), fc.subarray(['i', 'l', 'm', 's', 'u', 'x']))
  .map(([pattern, flags]) => new BSONRegExp(pattern, flags.join('')));

export const codeArb = stringArb.map((code) => new Code(code));
export const symbolArb = stringArb.map((s) => new BSONSymbol(s));

/**
 * Field names a document may have: no NUL (BSON cannot hold it), no leading `$` (Extended JSON
 * would read the object as a type wrapper) and no `__proto__`.
 */
export const fieldNameArb = fc
  .string({ unit: 'binary', maxLength: 8 })
  .filter((k) => !k.includes('\u0000') && !k.startsWith('$') && k !== '__proto__');

/** Values deterministic encryption accepts. */
export const deterministicValueArb: fc.Arbitrary<unknown> = fc.oneof(
  stringArb,
  int32Arb,
  int64Arb,
  dateArb,
  objectIdArb,
  binaryArb,
  timestampArb,
  regexArb,
  codeArb,
  symbolArb,
);

/** Scalars random encryption accepts (deterministic's plus double, decimal and bool). */
export const randomScalarArb: fc.Arbitrary<unknown> = fc.oneof(deterministicValueArb, doubleArb, decimalArb, fc.boolean());

/** Any value random encryption accepts, with nested documents and arrays (which may hold null). */
export const randomValueArb: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown; nested: unknown }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, randomScalarArb, tie('nested')),
  nested: fc.oneof(
    fc.array(fc.oneof({ weight: 4, arbitrary: tie('value') }, { weight: 1, arbitrary: fc.constant(null) }), { maxLength: 4 }),
    fc
      .uniqueArray(fc.tuple(fieldNameArb, fc.oneof({ weight: 4, arbitrary: tie('value') }, { weight: 1, arbitrary: fc.constant(null) })), {
        maxLength: 4,
        selector: ([k]) => k,
      })
      .map((entries) => Object.fromEntries(entries)),
  ),
})).value;

// Relaxed output is lossless except for numbers: an int64 in int32 range comes back int32, and an
// integral double in int64 range comes back int32 or int64; -0.0 loses its sign in JSON text.
const int64OutsideInt32 = int64Arb.filter((l) => l.greaterThan(Long.fromInt(2147483647)) || l.lessThan(Long.fromInt(-2147483648)));
const relaxedDouble = fc
  .oneof(
    fc.double({ noDefaultInfinity: false }).filter((d) => !Number.isInteger(d) || Math.abs(d) > 2 ** 64),
    fc.constantFrom(NaN, Infinity, -Infinity, 0.5, 1e300, -1e-300),
  )
  .map((d) => new Double(d));
const relaxedScalar = fc.oneof(
  stringArb,
  objectIdArb,
  binaryArb,
  dateArb,
  fc.boolean(),
  regexArb,
  decimalArb,
  timestampArb,
  codeArb,
  symbolArb,
  int32Arb,
  int64OutsideInt32,
  relaxedDouble,
);
export const relaxedLosslessArb: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    relaxedScalar,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.uniqueArray(fc.tuple(fieldNameArb, tie('value')), { maxLength: 4, selector: ([k]) => k }).map((e) => Object.fromEntries(e)),
  ),
})).value;

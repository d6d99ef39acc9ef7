/**
 * Properties of the Extended JSON boundary (src/ejson.ts): canonical output always parses back to
 * the same value, relaxed output does where relaxed is lossless, int64 stays exact in relaxed
 * output, and no input makes fromEjson fail with anything but INVALID_EXTENDED_JSON.
 */
import t from 'tap';
import fc from 'fast-check';
import { BSON, Int32, Long, MaxKey, MinKey, Timestamp } from 'mongodb';
import { fromEjson, toEjson } from '../../src/ejson.js';
import { AppError } from '../../src/errors.js';
import { encodeValue } from '../../src/crypto/bson-value.js';
import {
  canonical,
  randomValueArb,
  relaxedLosslessArb,
  seed,
} from './arbitraries.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const params = { seed, numRuns: 300 };

/** Throws (so fast-check reports both sides in canonical form) unless the two are the same value. */
function sameAfter(value: unknown, back: unknown): true {
  if (canonical(back) !== canonical(value)) throw new Error(`${canonical(value)} came back as ${canonical(back)}`);
  return true;
}

/** What an HTTP client sends back: the JSON text of the output, parsed again. */
const overJson = (json: unknown) => JSON.parse(JSON.stringify(json)) as unknown;

t.test('strings, booleans, null and int32 take a shortcut that gives exactly what the general path gives', async (t) => {
  const scalar = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.string(),
    fc.boolean(),
    fc.constant(null),
    fc.integer(),
    fc.constantFrom(-0, 2147483647, -2147483648, 2147483648, -2147483649, 0.5, 1e300),
  );
  fc.assert(
    fc.property(scalar, (json) => {
      const general = EJSON.deserialize({ v: json } as never, { relaxed: false }).v;
      const ours = fromEjson(json);
      const bsonOf = (v: unknown) => Buffer.from(BSON.serialize({ v })).toString('hex');
      if (bsonOf(ours) !== bsonOf(general)) throw new Error(`${JSON.stringify(json)}: ${bsonOf(ours)} vs ${bsonOf(general)}`);
      // toEjson's shortcut covers these; keepLargeLongs leaves them alone on the general path.
      const shortcut = typeof general === 'string' || typeof general === 'boolean' || general === null || general instanceof Int32;
      for (const format of shortcut ? (['relaxed', 'canonical'] as const) : []) {
        const expected = JSON.stringify(EJSON.serialize({ v: general }, { relaxed: format === 'relaxed' }).v);
        if (JSON.stringify(toEjson(ours, format)) !== expected) throw new Error(`${JSON.stringify(json)} ${format}: ${JSON.stringify(toEjson(ours, format))} vs ${expected}`);
      }
      return true;
    }),
    params,
  );
  t.equal(fromEjson(7) instanceof Int32, true);
  t.same(toEjson(new Int32(7), 'canonical'), { $numberInt: '7' });
  t.pass('holds');
});

t.test('canonical output parses back to the same value, for every value', async (t) => {
  const anyValue = fc.oneof(randomValueArb, fc.constantFrom(null, new MinKey(), new MaxKey()));
  fc.assert(
    fc.property(anyValue, (value) => sameAfter(value, fromEjson(overJson(toEjson(value, 'canonical'))))),
    params,
  );
  t.pass('canonical round-trip');
});


// Relaxed output is lossless except for numbers (see relaxedLosslessArb).
t.test('relaxed output parses back to the same value where relaxed is lossless', async (t) => {
  fc.assert(
    fc.property(relaxedLosslessArb, (value) => sameAfter(value, fromEjson(overJson(toEjson(value, 'relaxed'))))),
    params,
  );
  t.pass('relaxed round-trip');
});

t.test('int64 beyond 2^53 stays exact in relaxed output, also nested', async (t) => {
  const big = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).filter((n) => n > 2n ** 53n - 1n || n < -(2n ** 53n - 1n));
  fc.assert(
    fc.property(big, (n) => {
      const long = Long.fromBigInt(n);
      const expected = JSON.stringify({ $numberLong: n.toString() });
      return (
        JSON.stringify(toEjson(long, 'relaxed')) === expected &&
        JSON.stringify(toEjson({ a: [long] }, 'relaxed')) === `{"a":[${expected}]}` &&
        canonical(fromEjson(overJson(toEjson(long, 'relaxed')))) === canonical(long)
      );
    }),
    params,
  );
  // Up to 2^53 - 1 a relaxed int64 is a plain, exact JSON number.
  fc.assert(
    fc.property(fc.bigInt({ min: -(2n ** 53n - 1n), max: 2n ** 53n - 1n }), (n) => toEjson(Long.fromBigInt(n), 'relaxed') === Number(n)),
    params,
  );
  t.pass('int64 exact');
});

/** JSON that looks like Extended JSON: type-wrapper keys with arbitrary (often wrong) contents. */
const wrapperKeys = [
  '$numberInt', '$numberLong', '$numberDouble', '$numberDecimal', '$date', '$oid', '$binary', '$type', '$uuid',
  '$regularExpression', '$regex', '$options', '$timestamp', '$code', '$scope', '$symbol', '$minKey', '$maxKey',
  '$undefined', '$dbPointer', '$ref', '$id', '$db', 'base64', 'subType', 't', 'i', 'pattern', 'options', '$numberLong',
];
const scalarJson = fc.oneof(
  fc.constantFrom('1', '-1', '0', '2147483648', '9223372036854775808', '1.5', 'NaN', 'Infinity', '-0', 'abc', '', 'AAAA', '00', '04', '80',
    '1970-01-01T00:00:00Z', '65a1b2c3d4e5f60718293a4b', '00000000-0000-0000-0000-000000000000', 'i', 'x'),
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.double(),
  // Integers a JS Date cannot hold, and int64 edges.
  fc.constantFrom(8.64e15 + 1, 9e15, -9e15, 2 ** 53, 2 ** 63, '8640000000000001', '9223372036854775807'),
  fc.boolean(),
  fc.constant(null),
);
const ejsonGarbage: fc.Arbitrary<unknown> = fc.letrec<{ json: unknown }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small' },
    scalarJson,
    fc.array(tie('json'), { maxLength: 3 }),
    fc.dictionary(fc.oneof(fc.constantFrom(...wrapperKeys), fc.string({ maxLength: 4 })), tie('json'), { maxKeys: 3, noNullPrototype: true }),
  ),
})).json;

t.test('arbitrary JSON into fromEjson yields a value or INVALID_EXTENDED_JSON, never anything else', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue({ maxDepth: 4 }), ejsonGarbage), (json) => {
      let value: unknown;
      try {
        value = fromEjson(overJson(json));
      } catch (err) {
        if (err instanceof AppError && err.code === 'INVALID_EXTENDED_JSON') return true;
        throw err;
      }
      // Whatever parses must serialize (to BSON, for encryption) and print (for answers) too…
      BSON.serialize({ v: value });
      encodeValue(value);
      toEjson(value, 'relaxed');
      // …and what it prints must parse back to the same value: nothing was silently changed.
      return sameAfter(value, fromEjson(overJson(toEjson(value, 'canonical'))));
    }),
    { seed, numRuns: 1000 },
  );
  t.pass('never another error');
});

// Regressions the properties above found (each is a one-line fix in src/ejson.ts).

t.test('a BSON timestamp stays a timestamp in relaxed output', async (t) => {
  // Timestamp extends Long in bson, and keepLargeLongs took every realistic timestamp
  // (t >= 2^21 seconds) for an int64 beyond 2^53: {"$numberLong":"7301444403200000001"}.
  const ts = new Timestamp({ t: 1700000000, i: 1 });
  t.same(toEjson(ts, 'relaxed'), { $timestamp: { t: 1700000000, i: 1 } });
  t.same(toEjson({ a: [ts] }, 'relaxed'), { a: [{ $timestamp: { t: 1700000000, i: 1 } }] });
});

t.test('a date a JS Date cannot hold is refused, not stored as the epoch', async (t) => {
  // BSON.serialize writes an Invalid Date as 0 (1970-01-01), and toEjson prints {"$numberLong":"NaN"}.
  for (const date of [{ $numberLong: '9000000000000000' }, { $numberLong: '-9223372036854775808' }, 9e15]) {
    t.throws(() => fromEjson({ $date: date }), { code: 'INVALID_EXTENDED_JSON' }, JSON.stringify(date));
  }
  t.same(toEjson(fromEjson({ $date: { $numberLong: '8640000000000000' } }), 'canonical'), { $date: { $numberLong: '8640000000000000' } });
});

t.test('a field named __proto__ (legal in BSON, e.g. written by a driver) survives relaxed output', async (t) => {
  // keepLargeLongs copied fields with out[k] = v, which sets the prototype for "__proto__".
  const doc = BSON.deserialize(BSON.serialize(JSON.parse('{"__proto__": {"x": 1}, "a": 2}')));
  t.same(Object.keys(doc), ['__proto__', 'a']);
  t.equal(JSON.stringify(toEjson(doc, 'relaxed')), '{"__proto__":{"x":1},"a":2}');
});

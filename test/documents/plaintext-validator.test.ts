/**
 * The plaintext validator (a unit test): documents are checked against the schema's
 * non-encryption keywords before anything is encrypted. A message names the path and what was
 * wanted, never the value (it may be the very plaintext the schema protects).
 */
import t from 'tap';
import { Decimal128, Double, Int32, Long, ObjectId } from 'mongodb';
import { SchemaError } from '../../src/documents/encryption-plan.js';
import { createPlaintextValidator } from '../../src/documents/plaintext-validator.js';
import { unitSchema } from '../helpers/unit-schemas.js';

const CANARY = 'CANARY-validator-plaintext';

function strictSchema() {
  const schema = unitSchema() as Record<string, any>;
  schema.additionalProperties = false;
  schema.required = ['name', 'ssn'];
  schema.properties.medical.required = ['ward'];
  schema.properties.medical.additionalProperties = false;
  schema.properties.count = { bsonType: 'long' };
  schema.properties.amount = { bsonType: ['double', 'decimal'] };
  schema.properties.ratio = { bsonType: 'number', maximum: 1 };
  schema.properties.kind = { enum: ['a', 'b'] };
  return schema;
}

t.test('valid documents pass, with BSON types kept apart', async (t) => {
  const v = createPlaintextValidator(strictSchema(), '$');
  t.equal(v.validate({ name: 'Ann', ssn: CANARY }), undefined);
  t.equal(
    v.validate({
      _id: new ObjectId(),
      name: 'Ann',
      ssn: CANARY,
      level: new Int32(3),
      badge: 7,
      salary: new Int32(1),
      medical: { ward: 'w', diagnosis: CANARY, allergies: ['x'] },
      count: Long.fromNumber(5),
      amount: new Double(1.5),
      ratio: new Int32(1),
      kind: 'b',
      note_x: CANARY,
      tags: [],
    }),
    undefined,
  );
  t.equal(v.validate({ name: 'Ann', ssn: 's', amount: Decimal128.fromString('1.5') }), undefined, 'either of two bsonTypes');
});

t.test('each violation names the path and never the value', async (t) => {
  const v = createPlaintextValidator(strictSchema(), '$');
  const base = { name: 'Ann', ssn: 's' };
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['a missing required field', { name: 'Ann' }, 'ssn', /required/],
    ['a missing required field in a subtree', { ...base, medical: {} }, 'medical.ward', /required/],
    ['an extra field', { ...base, [`x${CANARY}`]: 1 }, `x${CANARY}`, /additional/],
    ['an extra field in a subtree', { ...base, medical: { ward: 'w', extra: CANARY } }, 'medical.extra', /additional/],
    ['a plain field of the wrong type', { ...base, name: 5 }, 'name', /bsonType "string"/],
    ['an encrypted field of the wrong type', { ...base, ssn: new Int32(5) }, 'ssn', /bsonType "string"/],
    ['a nested encrypted field of the wrong type', { ...base, medical: { ward: 'w', diagnosis: 5 } }, 'medical.diagnosis', /bsonType "string"/],
    ['a pattern field of the wrong type', { ...base, note_1: true }, 'note_1', /bsonType "string"/],
    ['int, not long', { ...base, count: new Int32(5) }, 'count', /bsonType "long"/],
    ['long, not int', { ...base, level: Long.fromNumber(5) }, 'level', /bsonType "int"/],
    ['double, not int', { ...base, level: new Double(5) }, 'level', /bsonType "int"/],
    ['not one of two types', { ...base, amount: new Int32(1) }, 'amount', /bsonType \["double","decimal"\]/],
    ['too long', { ...base, name: CANARY.repeat(3) }, 'name', /must NOT have more than 20 characters/],
    ['below the minimum (an Int32 compared as a number)', { ...base, level: new Int32(0) }, 'level', /must be >= 1/],
    ['above the maximum of a "number"', { ...base, ratio: new Double(1.5) }, 'ratio', /must be <= 1/],
    ['not in the enum', { ...base, kind: CANARY }, 'kind', /allowed values/],
    ['an array where a string is wanted', { ...base, ssn: [CANARY] }, 'ssn', /bsonType "string"/],
  ];
  for (const [what, doc, path, message] of cases) {
    const problem = v.validate(doc);
    t.equal(problem?.path, path, what);
    t.match(problem?.message, message, what);
    t.notMatch(problem?.message ?? '', /CANARY/, `${what}: no value in the message`);
  }
  t.match(v.validate([] as never)?.message, /bsonType "object"|must be object/, 'the document itself');
});

t.test('validateAt: one $set value against the sub-schema at its path', async (t) => {
  const v = createPlaintextValidator(strictSchema(), '$');
  t.equal(v.validateAt('name', 'Bob'), undefined);
  t.same(v.validateAt('name', 5), { path: 'name', message: 'must be of bsonType "string"' });
  t.same(v.validateAt('medical.ward', new Int32(5)), { path: 'medical.ward', message: 'must be of bsonType "string"' });
  t.same(v.validateAt('medical', { ward: 5 }), { path: 'medical.ward', message: 'must be of bsonType "string"' }, 'a whole subtree');
  t.same(v.validateAt('medical', { diagnosis: CANARY }), { path: 'medical.ward', message: "must have required property 'ward'" });
  t.same(v.validateAt('medical.diagnosis', new Int32(1)), { path: 'medical.diagnosis', message: 'must be of bsonType "string"' });
  t.equal(v.validateAt('note_abc', CANARY), undefined, 'a pattern field');
  t.same(v.validateAt('note_abc', new Int32(1)), { path: 'note_abc', message: 'must be of bsonType "string"' });
  t.same(v.validateAt('level', Long.fromNumber(2)), { path: 'level', message: 'must be of bsonType "int"' }, 'BSON types kept at a path too');
  t.same(v.validateAt('level', new Int32(0)), { path: 'level', message: 'must be >= 1' });
  t.same(v.validateAt('unknown', 1), { path: 'unknown', message: 'is not allowed by the schema' }, 'additionalProperties: false at the top');
  t.same(v.validateAt('medical.unknown', 1), { path: 'medical.unknown', message: 'is not allowed by the schema' }, 'and in a subtree');
  t.equal(v.validateAt('tags.0', 1), undefined, 'below a field without sub-schemas: nothing to check');
  const problem = v.validateAt('name', CANARY.repeat(2));
  t.notMatch(problem?.message ?? '', /CANARY/, 'no value in the message');

  const open = createPlaintextValidator(unitSchema(), '$');
  t.equal(open.validateAt('anything.at.all', CANARY), undefined, 'without additionalProperties: false, unknown paths are free');
  t.same(open.validateAt('profile.contact.city', 5), { path: 'profile.contact.city', message: 'must be of bsonType "string"' });
});

t.test('isRequired, for $unset', async (t) => {
  const v = createPlaintextValidator(strictSchema(), '$');
  t.equal(v.isRequired('name'), true);
  t.equal(v.isRequired('ssn'), true);
  t.equal(v.isRequired('level'), false);
  t.equal(v.isRequired('medical.ward'), true, 'required in a subtree');
  t.equal(v.isRequired('medical.diagnosis'), false);
  t.equal(v.isRequired('nothing.here'), false);
  t.equal(v.isRequired('medical'), false, 'a subtree is required only if the schema says so');
});

t.test('a schema ajv cannot compile is a SchemaError naming the place', async (t) => {
  t.throws(() => createPlaintextValidator({ type: 'nonsense' }, '$.file'), SchemaError);
  t.throws(() => createPlaintextValidator({ properties: { a: { minLength: 'x' } } }, '$.file'), { message: /^\$\.file: not a valid JSON schema/ });
});

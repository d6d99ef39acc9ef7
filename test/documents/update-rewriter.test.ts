/**
 * The update rules of mongocryptd's query analysis against a compiled plan (a unit test: no
 * database, no key): which writes get encrypted, which operators are refused on encrypted fields,
 * $rename between fields of equal metadata only, positional paths and arrayFilters on plaintext
 * arrays only, and pipeline updates that never read or write an encrypted path.
 */
import t from 'tap';
import { Int32 } from 'mongodb';
import { planUpdateWrite } from '../../src/documents/update-rewriter.js';
import { compilePlan } from '../../src/documents/encryption-plan.js';
import { KEY_IDS } from '../helpers/fake-key-vault.js';
import { DET, RND, keyIdOf, unitPlan, unitSchema } from '../helpers/unit-schemas.js';
import { errorOf } from '../helpers/errors.js';

const plan = unitPlan();


t.test('$set and $setOnInsert of encrypted fields are marked for encryption; plaintext ones are not', async (t) => {
  const result = planUpdateWrite({ $set: { ssn: 's', name: 'n', 'medical.diagnosis': 'd' }, $setOnInsert: { salary: new Int32(1), medical: { ward: 'w' } } }, plan);
  t.equal(result.kind, 'operators');
  if (result.kind !== 'operators') return;
  t.same(
    result.encrypted.map((e) => [e.op, e.path, e.node.kind]),
    [['$set', 'ssn', 'encrypt'], ['$set', 'medical.diagnosis', 'encrypt'], ['$setOnInsert', 'salary', 'encrypt'], ['$setOnInsert', 'medical', 'object']],
  );
  t.same(result.plainWrites.map((w) => w.path), ['name']);
  t.same(planUpdateWrite({ $unset: { ssn: '', medical: '' } }, plan), { kind: 'operators', encrypted: [], plainWrites: [], unset: ['ssn', 'medical'], written: [], renames: [] }, '$unset of an encrypted field needs no key (the spec allows it)');
});

t.test('operators that compute on a stored value: fine on plaintext, refused on encrypted fields', async (t) => {
  const plainValues: Record<string, unknown> = {
    $inc: 1, $mul: 2, $min: 1, $max: 9, $currentDate: true, $push: 'x', $addToSet: 'x', $pull: 'x', $pullAll: ['x'], $pop: 1,
  };
  for (const [op, value] of Object.entries(plainValues)) {
    const path = ['$inc', '$mul', '$min', '$max'].includes(op) ? 'level' : op === '$currentDate' ? 'updatedAt' : 'tags';
    t.doesNotThrow(() => planUpdateWrite({ [op]: { [path]: value } }, plan), `${op} on a plaintext field`);
    for (const target of ['ssn', 'salary', 'medical', 'medical.allergies', 'note_x', 'profile.contact.secret_a']) {
      const error = errorOf(() => planUpdateWrite({ [op]: { [target]: value } }, plan));
      t.equal(error.code, 'ENCRYPTED_FIELD_NOT_WRITABLE', `${op} on ${target}`);
      t.match(error.detail, target);
    }
  }
  t.equal(errorOf(() => planUpdateWrite({ $set: { 'ssn.x': 1 } }, plan)).code, 'ENCRYPTED_FIELD_NOT_WRITABLE', 'inside ciphertext');
  t.equal(errorOf(() => planUpdateWrite({ $inc: { level: 'x' } }, plan)).code, 'INVALID_QUERY');
  t.equal(errorOf(() => planUpdateWrite({ $pop: { tags: 2 } }, plan)).code, 'INVALID_QUERY');
  t.equal(errorOf(() => planUpdateWrite({ $currentDate: { d: 'yes' } }, plan)).code, 'INVALID_QUERY');
  t.equal(errorOf(() => planUpdateWrite({ $pull: { tags: { $where: 'sleep(1)' } } }, plan)).code, 'QUERY_OPERATOR_NOT_ALLOWED', 'server-side JavaScript stays out');
  t.equal(errorOf(() => planUpdateWrite({ $push: { tags: { $each: [1], $unknown: 1 } } }, plan)).code, 'QUERY_OPERATOR_NOT_ALLOWED');
  t.equal(errorOf(() => planUpdateWrite({ $addToSet: { tags: { $each: [1], $position: 0 } } }, plan)).code, 'QUERY_OPERATOR_NOT_ALLOWED');
  t.doesNotThrow(() => planUpdateWrite({ $push: { tags: { $each: [1, 2], $position: 0, $slice: -5, $sort: 1 } } }, plan));
  t.equal(errorOf(() => planUpdateWrite({ $where: { a: 1 } }, plan)).code, 'QUERY_OPERATOR_NOT_ALLOWED');
  t.equal(errorOf(() => planUpdateWrite({ name: 'x' }, plan)).code, 'INVALID_QUERY', 'a replacement is not an update');
  t.equal(errorOf(() => planUpdateWrite({ $set: { _id: 1 } }, plan)).code, 'INVALID_QUERY');
});

t.test('$rename: between plaintext fields, or encrypted fields of identical metadata only', async (t) => {
  const schema = unitSchema() as { properties: Record<string, unknown> };
  schema.properties.ssnCopy = { encrypt: { bsonType: 'string', algorithm: DET, keyId: keyIdOf(KEY_IDS.fixture) } };
  schema.properties.ssnOtherKey = { encrypt: { bsonType: 'string', algorithm: DET, keyId: keyIdOf(KEY_IDS.other) } };
  schema.properties.ssnRandom = { encrypt: { bsonType: 'string', algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } };
  const renamePlan = compilePlan(schema)!;
  t.doesNotThrow(() => planUpdateWrite({ $rename: { name: 'fullName' } }, renamePlan));
  t.doesNotThrow(() => planUpdateWrite({ $rename: { ssn: 'ssnCopy' } }, renamePlan), 'same key, algorithm and type');
  for (const [from, to] of [['ssn', 'ssnOtherKey'], ['ssn', 'ssnRandom'], ['ssn', 'plain'], ['name', 'ssn'], ['medical', 'med2'], ['tenantSecret', 'tenantSecret2'], ['ssn', 'badge']]) {
    const error = errorOf(() => planUpdateWrite({ $rename: { [from!]: to } }, renamePlan));
    t.equal(error.code, 'RENAME_ENCRYPTION_MISMATCH', `${from} → ${to}`);
  }
});

t.test('pointer-keyed fields cannot be written by an update', async (t) => {
  t.equal(errorOf(() => planUpdateWrite({ $set: { tenantSecret: 'x' } }, plan)).code, 'KEY_POINTER_NOT_WRITABLE');
  t.equal(errorOf(() => planUpdateWrite({ $setOnInsert: { tenantSecret: 'x' } }, plan)).code, 'KEY_POINTER_NOT_WRITABLE');
});

t.test('positional paths and arrayFilters reach plaintext arrays only', async (t) => {
  t.doesNotThrow(() => planUpdateWrite({ $set: { 'tags.$': 'x' } }, plan));
  t.doesNotThrow(() => planUpdateWrite({ $set: { 'tags.$[].a': 1 } }, plan));
  const positional = planUpdateWrite({ $inc: { 'tags.$[i].n': 1 } }, plan, [{ 'i.n': { $gt: 1 } }]);
  t.same(positional.written, ['tags'], 'the schema is asked about the array, not its elements');
  for (const path of ['ssn.$', 'medical.allergies.$[]', 'medical.$[i].diagnosis', 'profile.$[]']) {
    const error = errorOf(() => planUpdateWrite({ $set: { [path]: 'x' } }, plan, path.includes('[i]') ? [{ i: 1 }] : undefined));
    t.equal(error.code, 'ENCRYPTED_FIELD_NOT_WRITABLE', path);
  }
  t.equal(errorOf(() => planUpdateWrite({ $set: { 'tags.$[i]': 1 } }, plan)).code, 'INVALID_QUERY', 'an identifier without its filter');
  t.equal(errorOf(() => planUpdateWrite({ $set: { 'tags.$[i]': 1 } }, plan, [{ j: 1 }])).code, 'INVALID_QUERY', 'a filter for another identifier');
  t.equal(errorOf(() => planUpdateWrite({ $set: { 'tags.$[i]': 1 } }, plan, [{ i: { $where: 'x' } }])).code, 'QUERY_OPERATOR_NOT_ALLOWED');
  t.equal(errorOf(() => planUpdateWrite({ $set: { 'tags.$[I-x]': 1 } }, plan, [{ i: 1 }])).code, 'INVALID_QUERY');
  t.equal(errorOf(() => planUpdateWrite({ $set: { 'medical.0.diagnosis': 'x' } }, plan)).code, 'INVALID_DOCUMENT_SHAPE');
});

t.test('pipeline updates: plaintext in, plaintext out', async (t) => {
  const ok = planUpdateWrite([{ $set: { total: { $add: ['$level', 1] }, label: 'x' } }, { $unset: ['tags'] }, { $project: { old: 0 } }], plan);
  t.same(ok, { kind: 'pipeline', plainWrites: [{ op: '$set', path: 'label', value: 'x' }], unset: ['tags', 'old'], written: ['total', 'label'], renames: [] });
  t.doesNotThrow(() => planUpdateWrite([{ $addFields: { at: '$$NOW', copy: '$$CURRENT.name' } }], plan));
  const refused: [unknown[], string][] = [
    [[{ $set: { ssn: 'x' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { medical: { ward: 'x' } } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: '$ssn' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: { $concat: ['$medical.diagnosis', 'x'] } } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: '$medical' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: '$$ROOT' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: '$$CURRENT.ssn' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: { $getField: 'ssn' } } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: { $function: { body: 'x', args: [], lang: 'js' } } } }], 'QUERY_OPERATOR_NOT_ALLOWED'],
    [[{ $replaceWith: { a: 1 } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $project: { name: 1 } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $unset: 'ssn.x' }], 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [[], 'INVALID_QUERY'],
  ];
  for (const [pipeline, code] of refused) t.equal(errorOf(() => planUpdateWrite(pipeline, plan)).code, code, JSON.stringify(pipeline));
  t.doesNotThrow(() => planUpdateWrite([{ $set: { copy: { $literal: '$ssn' } } }], plan), '$literal is a value, not a path');
  t.equal(errorOf(() => planUpdateWrite([{ $set: { a: 1 } }], plan, [{ i: 1 }])).code, 'INVALID_QUERY', 'no arrayFilters with a pipeline');
});

t.test('shapes carried over from the first update rules: what is encrypted, what is refused, naming the path', async (t) => {
  const result = planUpdateWrite(
    {
      $set: { name: 'n', ssn: 'a', medical: { diagnosis: 'd' }, 'medical.diagnosis2': 1, 'profile.contact.secret_a': 's', 'profile.contact': {}, 'tags.0': 'x', 'medical.ward': 'w' },
      $unset: { salary: '', 'medical.allergies': '' },
      $inc: { level: 1, 'stats.count': new Int32(2) },
    },
    plan,
  );
  t.same(
    result.kind === 'operators' ? result.encrypted.map((s) => [s.path, s.node.kind]) : [],
    [['ssn', 'encrypt'], ['medical', 'object'], ['profile.contact.secret_a', 'encrypt'], ['profile.contact', 'object']],
  );
  t.same(planUpdateWrite({ $set: { ssn: 'x' } }, undefined), { kind: 'operators', encrypted: [], plainWrites: [{ op: '$set', path: 'ssn', value: 'x' }], unset: [], written: ['ssn'], renames: [] }, 'no plan: nothing to encrypt');
  const refused: [string, unknown, string, RegExp][] = [
    ['$inc of a deterministic field', { $inc: { badge: 1 } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /badge/],
    ['$inc of a pattern field', { $inc: { note_1: 1 } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /note_1/],
    ['$inc of a non-number', { $inc: { level: 'x' } }, 'INVALID_QUERY', /level/],
    ['$set inside an encrypted array', { $set: { 'medical.allergies.0': 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /medical\.allergies/],
    ['$unset inside an encrypted value', { $unset: { 'note_a.b': '' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /note_a/],
    ['$set of an element of the subtree', { $set: { 'medical.0': { diagnosis: 'x' } } }, 'INVALID_DOCUMENT_SHAPE', /medical/],
    ['$set of an element two levels down', { $set: { 'profile.contact.3': 'x' } }, 'INVALID_DOCUMENT_SHAPE', /profile\.contact/],
    ['$set of an element of the middle level', { $set: { 'profile.0.contact.email': 'x' } }, 'INVALID_DOCUMENT_SHAPE', /profile/],
    ['$unset of an element of the subtree', { $unset: { 'medical.1': '' } }, 'INVALID_DOCUMENT_SHAPE', /medical/],
    ['$inc of an element of the subtree', { $inc: { 'medical.1': 1 } }, 'INVALID_DOCUMENT_SHAPE', /medical/],
    ['a field of _id', { $unset: { '_id.a': '' } }, 'INVALID_QUERY', /_id/],
    ['the positional operator into a subtree', { $set: { 'medical.$.diagnosis': 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /medical/],
    ['a $ field name', { $set: { $where: 'x' } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['a $ segment', { $set: { 'a.$where.b': 'x' } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['an empty path segment', { $set: { 'a..b': 1 } }, 'INVALID_QUERY', /path/],
    ['an unknown operator', { $foo: { a: 1 } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$foo/],
    ['an operator beside a replacement field', { $set: { name: 'x' }, ssn: 'y' }, 'INVALID_QUERY', /replace/],
    ['an empty update', {}, 'INVALID_QUERY', /update/],
    ['an empty $set', { $set: {} }, 'INVALID_QUERY', /\$set/],
    ['$set of no object', { $set: ['a'] }, 'INVALID_QUERY', /\$set/],
    ['a path updated twice', { $set: { level: 1 }, $inc: { level: 1 } }, 'INVALID_QUERY', /level/],
  ];
  for (const [what, update, code, detail] of refused) {
    const err = errorOf(() => planUpdateWrite(update, plan));
    t.equal(err.code, code, what);
    t.match(err.detail ?? '', detail, `${what}: the detail names it`);
  }
  t.equal(errorOf(() => planUpdateWrite(null, plan)).code, 'INVALID_QUERY');
  // An index below a plain field is MongoDB's business: only fields with encrypted fields below are guarded.
  t.doesNotThrow(() => planUpdateWrite({ $set: { 'tags.0': 'x', 'medical.ward.0': 'y', 'other.1.deep': 2 } }, plan));
});

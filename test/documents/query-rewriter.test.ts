/**
 * The query rewriter against a compiled plan (a unit test: no database, no key). Filters: which
 * values become equality slots, and everything that would compute on an encrypted field is refused
 * naming the path. Sorts and projections. (Updates: update-rewriter.test.ts.)
 */
import t from 'tap';
import fc from 'fast-check';
import { BSONRegExp, Int32 } from 'mongodb';
import { checkProjection, checkSort, planFilter, resolvePath, type EqualitySlot } from '../../src/documents/query-rewriter.js';
import { compilePlan } from '../../src/documents/encryption-plan.js';
import { KEY_IDS } from '../helpers/fake-key-vault.js';
import { DET, RND, keyIdOf, unitPlan } from '../helpers/unit-schemas.js';
import { seed } from '../property/arbitraries.js';
import { errorOf } from '../helpers/errors.js';

const plan = unitPlan();


const slotSummary = (slots: EqualitySlot[]) => slots.map((s) => ({ path: s.path, key: s.key, value: (s.container as Record<string | number, unknown>)[s.key] }));

t.test('resolvePath: plain, encrypted, subtree, inside, through patternProperties', async (t) => {
  t.same(resolvePath(plan, 'name'), { kind: 'plain' });
  t.same(resolvePath(plan, 'nothing.below'), { kind: 'plain' });
  t.equal(resolvePath(plan, 'ssn').kind, 'encrypted');
  t.equal(resolvePath(plan, 'medical').kind, 'subtree');
  t.equal(resolvePath(plan, 'medical.diagnosis').kind, 'encrypted');
  t.same(resolvePath(plan, 'medical.ward'), { kind: 'plain' });
  t.equal(resolvePath(plan, 'profile.contact').kind, 'subtree');
  t.equal(resolvePath(plan, 'profile.contact.secret_x').kind, 'encrypted', 'a pattern two levels down');
  t.equal(resolvePath(plan, 'note_1').kind, 'encrypted', 'a top-level pattern');
  const inside = resolvePath(plan, 'medical.diagnosis.x.y');
  t.equal(inside.kind, 'inside');
  t.equal(inside.kind === 'inside' && inside.encryptedPath, 'medical.diagnosis');
  t.same(resolvePath(undefined, 'ssn'), { kind: 'plain' }, 'a collection without a plan has only plain paths');

  // Two patterns claiming one name: refused rather than guessed at.
  const ambiguous = compilePlan({
    properties: {},
    patternProperties: {
      '^a': { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } },
      'b$': { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.other) } },
    },
  });
  t.equal(errorOf(() => resolvePath(ambiguous, 'ab')).code, 'SCHEMA_RULE_CONFLICT');
});

t.test('planFilter: equality on deterministic fields becomes slots, wherever it is', async (t) => {
  const filter: Record<string, unknown> = {
    ssn: 'a',
    badge: new Int32(7),
    name: { $regex: '^A' },
    level: { $gte: 2 },
    'profile.contact.email': { $in: ['e1', 'e2'] },
    $or: [{ ssn: { $ne: 'b' } }, { $and: [{ badge: { $nin: [1, 2] } }, { $nor: [{ ssn: { $not: { $eq: 'c' } } }] }] }],
  };
  const slots = planFilter(filter, plan);
  t.same(slotSummary(slots), [
    { path: 'ssn', key: 'ssn', value: 'a' },
    { path: 'badge', key: 'badge', value: new Int32(7) },
    { path: 'profile.contact.email', key: 0, value: 'e1' },
    { path: 'profile.contact.email', key: 1, value: 'e2' },
    { path: 'ssn', key: '$ne', value: 'b' },
    { path: 'badge', key: 0, value: 1 },
    { path: 'badge', key: 1, value: 2 },
    { path: 'ssn', key: '$eq', value: 'c' },
  ]);
  t.ok(slots.every((s) => s.node.algorithm === 'deterministic'));
  t.equal(slots[0]!.container, filter, 'a bare value is replaced in the filter itself');
  t.same(filter.name, { $regex: '^A' }, 'plaintext conditions are left alone');

  t.same(planFilter({}, plan), [], 'an empty filter');
  t.same(planFilter({ name: 'x', 'medical.ward': { $in: ['a'] }, tags: { $elemMatch: { $gt: 1 } }, medical: { $exists: true } }, plan), []);
  t.same(planFilter({ ssn: { $exists: true }, salary: { $exists: false } }, plan), [], 'presence of an encrypted field needs no value');
  t.same(planFilter({ ssn: 'a' }, undefined), [], 'no plan: nothing is encrypted');
});

t.test('planFilter refuses what would compute on an encrypted field, naming the path', async (t) => {
  const refused: [string, unknown, string, RegExp][] = [
    ['a random field', { salary: 5 }, 'QUERY_ON_RANDOM_FIELD', /^salary/],
    ['a random field in a subtree', { 'medical.diagnosis': 'x' }, 'QUERY_ON_RANDOM_FIELD', /^medical\.diagnosis/],
    ['a random pattern field', { note_a: { $in: ['x'] } }, 'QUERY_ON_RANDOM_FIELD', /^note_a/],
    ['a random pattern field two levels down', { 'profile.contact.secret_1': 'x' }, 'QUERY_ON_RANDOM_FIELD', /secret_1/],
    ['a random field under $or', { $or: [{ name: 'x' }, { salary: 1 }] }, 'QUERY_ON_RANDOM_FIELD', /salary/],
    ['a regex value', { ssn: /^1/ }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['a BSON regex value', { ssn: new BSONRegExp('^1', 'i') }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['a regex under $in', { ssn: { $in: [/^1/] } }, 'INVALID_QUERY', /ssn/],
    ['$regex', { ssn: { $regex: '^1' } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['a range', { ssn: { $gt: 'a' } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['a range beside equality', { badge: { $eq: 1, $lt: 5 } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['$type on an encrypted field', { ssn: { $type: 'string' } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$elemMatch on an encrypted field', { ssn: { $elemMatch: { $eq: 'a' } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['a range under $not', { ssn: { $not: { $gt: 'a' } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['a whole subtree compared', { medical: { diagnosis: 'x' } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /^medical/],
    ['a subtree with $eq', { 'profile.contact': { $eq: { email: 'x' } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /profile\.contact/],
    ['a subtree with $in', { profile: { $in: [{}] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /profile/],
    ['a subtree with $exists and more', { medical: { $exists: true, $ne: null } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /medical/],
    ['a path inside a deterministic value', { 'ssn.length': 3 }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /^ssn/],
    ['a path inside a random value', { 'medical.allergies.0': 'nuts' }, 'QUERY_ON_RANDOM_FIELD', /medical\.allergies/],
    ['an unknown operator on an encrypted field', { ssn: { $foo: 1 } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$foo/],
    ['$where', { $where: 'this.ssn == "1"' }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['$expr on a deterministic field', { $expr: { $eq: ['$ssn', 'x'] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$expr on a random field', { $expr: { $gt: ['$salary', 1] } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
    ['$expr on a subtree', { $expr: { $eq: ['$medical', {}] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /medical/],
    ['$expr inside a random value', { $expr: { $eq: ['$medical.diagnosis.x', 1] } }, 'QUERY_ON_RANDOM_FIELD', /medical\.diagnosis/],
    ['$expr on $$ROOT', { $expr: { $eq: [{ $size: { $objectToArray: '$$ROOT' } }, 3] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /whole document/],
    ['$expr on $$CURRENT.ssn', { $expr: { $eq: ['$$CURRENT.ssn', 'x'] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$expr with $getField (a field named at run time)', { $expr: { $eq: [{ $getField: 'ssn' }, 'x'] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /whole document/],
    ['$expr with $function', { $expr: { $function: { body: 'return true', args: [], lang: 'js' } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$function/],
    ['$function deep in $expr', { $expr: { $and: [{ $eq: ['$level', 1] }, { $or: [{ $function: {} }] }] } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$function/],
    ['$where deep in $and/$or/$nor', { $and: [{ $or: [{ $nor: [{ $where: 'x' }] }] }] }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['$where under $not', { name: { $not: { $where: 'x' } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['$where under $elemMatch on an encrypted field', { ssn: { $elemMatch: { $where: 'x' } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['$bitsAllSet on an encrypted field', { badge: { $bitsAllSet: 3 } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['$near on an encrypted field', { ssn: { $near: [0, 0] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$geoWithin on a random field', { salary: { $geoWithin: { $box: [[0, 0], [1, 1]] } } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
    ['$mod on an encrypted field', { badge: { $mod: [3, 1] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['$size on an encrypted field', { ssn: { $size: 2 } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$function in a plain $elemMatch', { tags: { $elemMatch: { $function: { body: 'x' } } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$function/],
    ['$where under a plain field', { name: { $where: 'x' } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['$jsonSchema', { $jsonSchema: {} }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$jsonSchema/],
    ['$text', { $text: { $search: 'x' } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$text/],
    ['$comment that is no string', { $comment: { x: 1 } }, 'INVALID_QUERY', /\$comment/],
    ['$expr on an encrypted field deep in $and/$or/$nor', { $and: [{ $or: [{ $nor: [{ $expr: { $eq: ['$badge', 1] } }] }] }] }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['a wrong value type', { ssn: 5 }, 'INVALID_QUERY', /ssn/],
    ['a wrong value type under $in', { badge: { $in: [1, 'x'] } }, 'INVALID_QUERY', /badge/],
    ['null', { ssn: null }, 'INVALID_QUERY', /ssn/],
    ['a document that is no operator object', { ssn: { $eq: 'a', b: 1 } }, 'INVALID_QUERY', /ssn/],
    ['$in without an array', { ssn: { $in: 'a' } }, 'INVALID_QUERY', /ssn/],
    ['$not without an operator object', { ssn: { $not: 'a' } }, 'INVALID_QUERY', /ssn/],
    ['$not with two operators', { ssn: { $not: { $eq: 'a', $in: ['b'] } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$and that is no array', { $and: { ssn: 'a' } }, 'INVALID_QUERY', /\$and/],
    ['an empty $or', { $or: [] }, 'INVALID_QUERY', /\$or/],
    ['a filter under $nor that is no object', { $nor: ['x'] }, 'INVALID_QUERY', /filter/],
    ['an empty path segment', { 'a..b': 1 }, 'INVALID_QUERY', /path/],
    ['a $ path segment', { 'a.$b': 1 }, 'INVALID_QUERY', /path/],
  ];
  for (const [what, filter, code, detail] of refused) {
    // Each filter is used once (planFilter may rewrite it); no clone, which would drop BSON classes.
    const err = errorOf(() => planFilter(filter, plan));
    t.equal(err.code, code, what);
    t.match(err.detail ?? '', detail, `${what}: the detail names the path or operator`);
  }
  for (const notAFilter of [null, 'x', 5, ['a']]) t.equal(errorOf(() => planFilter(notAFilter, plan)).code, 'INVALID_QUERY');
});

t.test('several operators on one encrypted field are split into $and parts, one operator each', async (t) => {
  const filter: Record<string, unknown> = { name: 'n', ssn: { $eq: 'a', $in: ['b'] }, $and: [{ level: 1 }] };
  const slots = planFilter(filter, plan);
  t.same(filter, { name: 'n', $and: [{ level: 1 }, { ssn: { $eq: 'a' } }, { ssn: { $in: ['b'] } }] });
  t.same(slotSummary(slots), [
    { path: 'ssn', key: '$eq', value: 'a' },
    { path: 'ssn', key: 0, value: 'b' },
  ]);

  const nested: Record<string, unknown> = { $or: [{ badge: { $ne: 1, $nin: [2, 3] } }] };
  planFilter(nested, plan);
  t.same(nested, { $or: [{ $and: [{ badge: { $ne: 1 } }, { badge: { $nin: [2, 3] } }] }] }, 'inside $or too');

  const single: Record<string, unknown> = { ssn: { $ne: 'a' } };
  planFilter(single, plan);
  t.same(single, { ssn: { $ne: 'a' } }, 'one operator: left as it is');
});

/** MongoDB's meaning of the operators the rewriter lets through, on one scalar field (undefined: missing). */
function matches(filter: Record<string, unknown>, doc: Record<string, unknown>): boolean {
  return Object.entries(filter).every(([key, condition]) => {
    if (key === '$and') return (condition as Record<string, unknown>[]).every((f) => matches(f, doc));
    if (key === '$or') return (condition as Record<string, unknown>[]).some((f) => matches(f, doc));
    if (key === '$nor') return !(condition as Record<string, unknown>[]).some((f) => matches(f, doc));
    return holds(condition, doc[key]);
  });
}

function holds(condition: unknown, value: unknown): boolean {
  const isOperators = typeof condition === 'object' && condition !== null && !Array.isArray(condition) && Object.keys(condition).every((k) => k.startsWith('$'));
  if (!isOperators) return value === condition;
  return Object.entries(condition as Record<string, unknown>).every(([op, arg]) => {
    switch (op) {
      case '$eq':
        return value === arg;
      case '$ne':
        return value !== arg;
      case '$in':
        return (arg as unknown[]).includes(value);
      case '$nin':
        return !(arg as unknown[]).includes(value);
      case '$not':
        return !holds(arg, value);
      default:
        throw new Error(`no model for ${op}`);
    }
  });
}

t.test('the split filter means what the filter meant', async (t) => {
  const valueArb = fc.constantFrom('a', 'b', 'c');
  const opArb = fc.oneof(
    valueArb.map((v) => ['$eq', v] as const),
    valueArb.map((v) => ['$ne', v] as const),
    fc.array(valueArb, { maxLength: 3 }).map((v) => ['$in', v] as const),
    fc.array(valueArb, { maxLength: 3 }).map((v) => ['$nin', v] as const),
    valueArb.map((v) => ['$not', { $eq: v }] as const),
    fc.array(valueArb, { maxLength: 3 }).map((v) => ['$not', { $in: v }] as const),
  );
  const conditionArb = fc.uniqueArray(opArb, { minLength: 1, maxLength: 4, selector: ([op]) => op }).map((ops) => Object.fromEntries(ops));
  const filterArb = fc.oneof(
    conditionArb.map((ssn) => ({ ssn })),
    fc.tuple(conditionArb, conditionArb).map(([a, b]) => ({ $or: [{ ssn: a }, { ssn: b }] })),
    fc.tuple(conditionArb, conditionArb).map(([a, b]) => ({ $nor: [{ ssn: a }], $and: [{ ssn: b }] })),
  );
  const docs = [{ ssn: 'a' }, { ssn: 'b' }, { ssn: 'c' }, {}];
  await fc.assert(
    fc.property(filterArb, (filter) => {
      const rewritten = structuredClone(filter) as Record<string, unknown>;
      planFilter(rewritten, plan);
      for (const doc of docs) {
        if (matches(filter, doc) !== matches(rewritten, doc)) throw new Error(`${JSON.stringify(filter)} became ${JSON.stringify(rewritten)}, which differs on ${JSON.stringify(doc)}`);
      }
      // Every condition left on the encrypted field has one operator, so each slot can be widened alone.
      const conditions: unknown[] = [];
      const collect = (f: Record<string, unknown>) => {
        for (const [k, v] of Object.entries(f)) {
          if (k === '$and' || k === '$or' || k === '$nor') (v as Record<string, unknown>[]).forEach(collect);
          else conditions.push(v);
        }
      };
      collect(rewritten);
      return conditions.every((c) => typeof c === 'string' || Object.keys(c as object).length === 1);
    }),
    { seed, numRuns: 300 },
  );
  t.pass('holds');
});

t.test('checkSort', async (t) => {
  t.doesNotThrow(() => checkSort({ name: 1, 'medical.ward': -1, _id: 1 }, plan));
  const refused: [unknown, string][] = [
    [{ ssn: 1 }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    [{ salary: -1 }, 'QUERY_ON_RANDOM_FIELD'],
    [{ note_x: 1 }, 'QUERY_ON_RANDOM_FIELD'],
    [{ medical: 1 }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    [{ 'profile.contact': 1 }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    [{ 'ssn.x': 1 }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    [{ 'medical.diagnosis.x': 1 }, 'QUERY_ON_RANDOM_FIELD'],
    [{ name: 2 }, 'INVALID_QUERY'],
    [{ name: { $meta: 'textScore' } }, 'INVALID_QUERY'],
    [{ $natural: 1 }, 'QUERY_OPERATOR_NOT_ALLOWED'],
    [{ 'a..b': 1 }, 'INVALID_QUERY'],
    [[['name', 1]], 'INVALID_QUERY'],
  ];
  for (const [sort, code] of refused) {
    const err = errorOf(() => checkSort(sort, plan));
    t.equal(err.code, code, JSON.stringify(sort));
  }
  t.match(errorOf(() => checkSort({ 'profile.contact.email': 1 }, plan)).detail, /profile\.contact\.email/);
});

t.test('checkProjection', async (t) => {
  // Whole encrypted fields may be projected: they are decrypted afterwards, or masked.
  t.doesNotThrow(() => checkProjection({ ssn: 1, medical: 1, 'medical.diagnosis': 1, _id: 0 }, plan));
  t.doesNotThrow(() => checkProjection({ salary: 0, 'profile.contact': 0, _id: 1 }, plan));
  const refused: [unknown, string][] = [
    [{ 'ssn.x': 1 }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    [{ 'medical.allergies.0': 1 }, 'QUERY_ON_RANDOM_FIELD'],
    [{ name: 1, level: 0 }, 'INVALID_QUERY'],
    [{ name: { $slice: 1 } }, 'QUERY_OPERATOR_NOT_ALLOWED'],
    [{ ssn: { $elemMatch: {} } }, 'QUERY_OPERATOR_NOT_ALLOWED'],
    [{ name: 'yes' }, 'QUERY_OPERATOR_NOT_ALLOWED'],
    [{ $expr: 1 }, 'QUERY_OPERATOR_NOT_ALLOWED'],
    [{ 'a..b': 1 }, 'INVALID_QUERY'],
    ['name', 'INVALID_QUERY'],
  ];
  for (const [projection, code] of refused) {
    const err = errorOf(() => checkProjection(projection, plan));
    t.equal(err.code, code, JSON.stringify(projection));
  }
  // The positional projection works on a plaintext array, and nowhere an encrypted value is.
  t.doesNotThrow(() => checkProjection({ 'tags.$': 1, name: 1 }, plan));
  t.equal(errorOf(() => checkProjection({ 'ssn.$': 1 }, plan)).code, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD');
  t.equal(errorOf(() => checkProjection({ 'medical.allergies.$': 1 }, plan)).code, 'QUERY_ON_RANDOM_FIELD');
  t.equal(errorOf(() => checkProjection({ 'medical.$': 1 }, plan)).code, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD');
  t.equal(errorOf(() => checkProjection({ 'tags.$': 1, name: 0 }, plan)).code, 'INVALID_QUERY', 'positional is an inclusion');
});

t.test('a plan built from the same rules with other keys gives the same slots (the key is the node\'s)', async (t) => {
  const other = compilePlan({ properties: { ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyId: keyIdOf(KEY_IDS.other) } } } });
  const [slot] = planFilter({ ssn: 'x' }, other);
  t.same(slot!.node.key, { kind: 'id', id: KEY_IDS.other });
});

t.test('no over-refusal: what query analysis allows on unencrypted fields passes unchanged', async (t) => {
  const allowed: [string, Record<string, unknown>][] = [
    ['$bitsAllClear', { level: { $bitsAllClear: 35 } }],
    ['$bitsAllSet', { level: { $bitsAllSet: 35 } }],
    ['$bitsAnyClear', { level: { $bitsAnyClear: [1, 5] } }],
    ['$bitsAnySet', { level: { $bitsAnySet: 35 } }],
    ['$geoWithin $geometry', { place: { $geoWithin: { $geometry: { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1], [0, 0]]] } } } }],
    ['$geoWithin $box', { place: { $geoWithin: { $box: [[0, 0], [1, 1]] } } }],
    ['$geoWithin $centerSphere', { place: { $geoWithin: { $centerSphere: [[0, 0], 0.1] } } }],
    ['$geoIntersects', { place: { $geoIntersects: { $geometry: { type: 'Point', coordinates: [0, 0] } } } }],
    ['$near', { place: { $near: { $geometry: { type: 'Point', coordinates: [0, 0] }, $maxDistance: 10, $minDistance: 1 } } }],
    ['$nearSphere', { place: { $nearSphere: [0, 0] } }],
    ['$regex with $options', { name: { $regex: '^A', $options: 'i' } }],
    ['$exists on an encrypted field', { ssn: { $exists: false } }],
    ['$type', { name: { $type: 'string' } }],
    ['$elemMatch', { tags: { $elemMatch: { $gte: 1, $lt: 9 } } }],
    ['$size', { tags: { $size: 2 } }],
    ['$all', { tags: { $all: ['a', 'b'] } }],
    ['$mod', { level: { $mod: [3, 1] } }],
    ['$not with $regex', { name: { $not: { $regex: 'x' } } }],
    ['$expr on plaintext fields', { $expr: { $gt: ['$level', { $size: '$tags' }] } }],
    ['$expr on a plaintext field beside encrypted ones', { $expr: { $eq: ['$medical.ward', 'A'] } }],
    ['$expr with a $literal that looks like a field', { $expr: { $eq: ['$name', { $literal: '$ssn' }] } }],
    ['$expr with variables', { $expr: { $let: { vars: { l: '$level' }, in: { $gt: ['$$l', 1] } } } }],
    ['$comment', { $comment: 'why this query' }],
  ];
  for (const [what, filter] of allowed) {
    const before = JSON.stringify(filter);
    t.same(planFilter(filter, plan), [], what);
    t.equal(JSON.stringify(filter), before, `${what}: sent unchanged`);
  }
  // The same operators beside an equality on a deterministic field: the equality is still rewritten.
  const slots = planFilter({ level: { $bitsAnySet: 1 }, ssn: 'x', $expr: { $eq: ['$name', 'A'] } }, plan);
  t.same(slots.map((s) => s.path), ['ssn']);
});

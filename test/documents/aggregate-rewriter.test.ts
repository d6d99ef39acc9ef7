/**
 * Query analysis of aggregation pipelines against a compiled plan (a unit test: no database, no
 * key): which $match values become equality slots, how the plan follows the stages, and which
 * stages are refused, with which code, naming the stage and the path.
 */
import t from 'tap';
import { planPipeline } from '../../src/documents/aggregate-rewriter.js';
import { unitPlan } from '../helpers/unit-schemas.js';
import { errorOf } from '../helpers/errors.js';

const plan = unitPlan();


t.test('$match slots, in every place a filter is: top level, after plaintext stages, inside $facet and $geoNear', async (t) => {
  const { slots, stages } = planPipeline(
    [
      { $geoNear: { near: [0, 0], distanceField: 'd', query: { badge: 3 } } },
      { $match: { ssn: { $in: ['a', 'b'] } } },
      { $project: { ssn: 1, name: 1 } },
      { $set: { team: { $concat: ['$name', '-x'] } } },
      { $match: { $or: [{ ssn: 'c' }, { team: 'y' }] } },
      { $facet: { one: [{ $match: { 'profile.contact.email': 'e' } }], two: [{ $count: 'n' }] } },
    ],
    plan,
  );
  t.same(slots.map((s) => s.path), ['badge', 'ssn', 'ssn', 'ssn', 'profile.contact.email']);
  t.same(stages.map((s) => [s.stage, s.encrypted]), [
    ['$geoNear', ['badge']],
    ['$match', ['ssn']],
    ['$project', []],
    ['$set', []],
    ['$match', ['ssn']],
    ['$facet', ['profile.contact.email']],
  ]);
});

t.test('after a $group, $count, $bucket or $replaceRoot nothing is encrypted: later stages are plaintext', async (t) => {
  for (const stage of [
    { $group: { _id: '$level', ssn: { $sum: 1 } } },
    { $count: 'ssn' },
    { $sortByCount: '$name' },
    { $bucket: { groupBy: '$level', boundaries: [0, 5], output: { ssn: { $sum: 1 } } } },
    { $replaceRoot: { newRoot: { ssn: '$name' } } },
  ]) {
    const { slots, stages } = planPipeline([stage, { $match: { ssn: 'x' } }, { $sort: { ssn: 1 } }], plan);
    t.same(slots, [], `${Object.keys(stage)[0]}: a later ssn is a computed plaintext field`);
    t.same(stages.map((s) => s.encryptedAfter), [false, false, false]);
  }
});

t.test('refusals: the code, and the detail naming the stage and the path', async (t) => {
  const refused: [string, unknown[], string, RegExp][] = [
    ['$group by a subtree', [{ $group: { _id: '$profile.contact' } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /Stage 0 \(\$group\): profile\.contact/],
    ['$group pushing the document', [{ $group: { _id: null, all: { $push: '$$ROOT' } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /whole document/],
    ['$getField (a field named at run time)', [{ $set: { x: { $getField: { field: 'ssn', input: '$$CURRENT' } } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /whole document/],
    ['$project nested rename', [{ $project: { a: { b: '$ssn' } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$project a literal over an encrypted field', [{ $project: { ssn: { $literal: 1 } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$project inside a ciphertext', [{ $project: { 'ssn.x': 1 } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$set inside a random subtree value', [{ $set: { 'medical.ward': '$medical.diagnosis' } }], 'QUERY_ON_RANDOM_FIELD', /medical\.diagnosis/],
    ['$unset inside a ciphertext', [{ $unset: 'salary.x' }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /salary/],
    ['$unwind to an index over an encrypted field', [{ $unwind: { path: '$tags', includeArrayIndex: 'ssn' } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$redact on an encrypted field', [{ $redact: { $cond: [{ $eq: ['$badge', 1] }, '$$PRUNE', '$$KEEP'] } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    // Descending into medical, "$diagnosis" is medical.diagnosis: one bit per document about its ciphertext.
    ['$redact descending onto a nested encrypted field', [{ $redact: { $cond: { if: { $eq: [{ $binarySize: '$diagnosis' }, 0] }, then: '$$PRUNE', else: '$$DESCEND' } } }], 'QUERY_ON_RANDOM_FIELD', /diagnosis/],
    // MongoDB descends whenever the expression yields the string, not only through the variable.
    ['$redact descending through a computed "descend"', [{ $redact: { $cond: { if: { $eq: [{ $binarySize: '$diagnosis' }, 0] }, then: '$$PRUNE', else: { $toLower: 'DESCEND' } } } }], 'QUERY_ON_RANDOM_FIELD', /diagnosis/],
    ['$topN sorted by an encrypted field', [{ $group: { _id: null, top: { $topN: { n: 2, sortBy: { level: 1, ssn: 1 }, output: '$_id' } } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$bottom sorted by an encrypted field', [{ $bucketAuto: { groupBy: '$level', buckets: 2, output: { b: { $bottom: { sortBy: { badge: -1 }, output: '$level' } } } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['$geoNear on an encrypted key', [{ $geoNear: { near: [0, 0], key: 'ssn', distanceField: 'd' } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$geoNear not first', [{ $match: {} }, { $geoNear: { near: [0, 0], distanceField: 'd' } }], 'INVALID_QUERY', /first/],
    ['$facet nested', [{ $facet: { a: [{ $facet: { b: [] } }] } }], 'PIPELINE_STAGE_NOT_ALLOWED', /nested/],
    ['$lookup inside $facet', [{ $facet: { a: [{ $lookup: { from: 'x', as: 'y', pipeline: [] } }] } }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$lookup/],
    ['$setWindowFields (not supported)', [{ $setWindowFields: { output: {} } }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$setWindowFields/],
    ['JavaScript as a Code value', [{ $match: { name: 'x' } }, { $set: { f: { $function: { body: 'return 1', args: [], lang: 'js' } } } }], 'QUERY_OPERATOR_NOT_ALLOWED', /\$function/],
    ['a stage that is no object', ['$match'], 'INVALID_QUERY', /Stage 0/],
    ['$limit of zero', [{ $limit: 0 }], 'INVALID_QUERY', /\$limit/],
    ['$count with a dot', [{ $count: 'a.b' }], 'INVALID_QUERY', /\$count/],
    ['$group without _id', [{ $group: { n: { $sum: 1 } } }], 'INVALID_QUERY', /_id/],
  ];
  for (const [what, pipeline, code, detail] of refused) {
    const err = errorOf(() => planPipeline(pipeline, plan));
    t.equal(err.code, code, what);
    t.match(err.detail, detail, what);
  }
});

t.test('a collection without encrypted fields: the whole document may be read', async (t) => {
  t.doesNotThrow(() => planPipeline([{ $replaceWith: { doc: '$$ROOT' } }, { $group: { _id: null, all: { $push: '$$ROOT' } } }], undefined));
  t.equal(errorOf(() => planPipeline([{ $set: { x: { $function: {} } } }], undefined)).code, 'QUERY_OPERATOR_NOT_ALLOWED', 'JavaScript stays refused');
});

t.test('what stays allowed: $redact and sorted accumulators on plaintext fields', async (t) => {
  // $$DESCEND over a field that is plaintext at every level of the schema.
  t.doesNotThrow(() => planPipeline([{ $redact: { $cond: { if: { $eq: ['$level', 9] }, then: '$$PRUNE', else: '$$DESCEND' } } }], plan));
  t.doesNotThrow(() => planPipeline([{ $redact: { $cond: [{ $eq: ['$level', 9] }, '$$PRUNE', '$$KEEP'] } }], plan));
  t.doesNotThrow(() => planPipeline([{ $group: { _id: null, top: { $topN: { n: 2, sortBy: { level: -1 }, output: '$name' } } } }], plan));
});

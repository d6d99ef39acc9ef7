/**
 * The write operations of automatic encryption, over HTTP against the real servers (FerretDB and
 * the key vault): every update operator on plaintext and on encrypted fields, upserts, replace by
 * filter, findOneAnd*, bulk writes and their dry run. What reaches the database is read back with
 * the plain driver: ciphertext, never a CANARY.
 */
import t, { type Test } from 'tap';
import { BSON, Binary, Collection } from 'mongodb';
import { createDocumentsApp, type DocumentsTestApp } from '../helpers/documents.js';
import { writesSchema } from '../helpers/writes-schema.js';

const { EJSON } = BSON;
const int = (n: number) => ({ $numberInt: String(n) });

async function setup(t: Test) {
  const h = await createDocumentsApp(t, writesSchema, { env: { MAX_BATCH_ITEMS: '20' } });
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  return { h, url, raw };
}

const isCiphertext = (value: unknown) => value instanceof Binary && value.sub_type === 6;

async function insert(h: DocumentsTestApp, url: string, document: unknown) {
  const res = await h.call('POST', url, { document });
  if (res.statusCode !== 201) throw new Error(res.body);
  return res.json().insertedId;
}

t.test('every update operator works on plaintext fields; the encrypted ones stay ciphertext', async (t) => {
  const { h, url, raw } = await setup(t);
  await insert(h, url, { name: 'A', ssn: 'CANARY-ssn-A', salary: int(100), level: int(5), tags: ['b', 'c'], items: [{ x: 1 }], medical: { diagnosis: 'CANARY-diag-A', ward: 'w' } });
  const steps: [string, unknown][] = [
    ['$inc', { $inc: { level: 2 } }],
    ['$mul', { $mul: { level: 2 } }],
    ['$min', { $min: { level: 10 } }],
    ['$max', { $max: { level: 12 } }],
    ['$currentDate', { $currentDate: { seenAt: true, seenTs: { $type: 'timestamp' } } }],
    ['$push with $each/$position/$slice', { $push: { tags: { $each: ['a'], $position: 0, $slice: 5 } } }],
    ['$push with $sort', { $push: { items: { $each: [{ x: 0 }], $sort: { x: 1 } } } }],
    ['$addToSet with $each', { $addToSet: { tags: { $each: ['c', 'd'] } } }],
    ['$pull', { $pull: { tags: 'b' } }],
    ['$pullAll', { $pullAll: { tags: ['z', 'c'] } }],
    ['$pop', { $pop: { items: -1 } }],
    ['$rename of plaintext', { $rename: { 'medical.ward': 'medical.room' } }],
    ['$setOnInsert without upsert changes nothing', { $setOnInsert: { level: 99 } }],
    ['$set of encrypted fields', { $set: { ssn: 'CANARY-ssn-A2', salary: int(200), 'medical.diagnosis': 'CANARY-diag-A2' } }],
  ];
  for (const [what, update] of steps) {
    const res = await h.call('POST', `${url}/update`, { filter: { name: 'A' }, update });
    t.equal(res.statusCode, 200, `${what}: ${res.body}`);
    t.equal(res.json().matched, 1, what);
  }
  const stored = (await raw.findOne({ name: 'A' }))!;
  t.notMatch(EJSON.stringify(stored), /CANARY/, 'no plaintext of an encrypted field reached the database');
  t.ok(isCiphertext(stored.ssn) && isCiphertext(stored.salary) && isCiphertext(stored.medical.diagnosis));
  t.equal(stored.level, 12);
  t.same(stored.tags, ['a', 'd']);
  // MongoDB sorts on $push with $sort, leaving [{x: 1}] after the $pop; FerretDB ignores $sort silently.
  t.ok([JSON.stringify([{ x: 1 }]), JSON.stringify([{ x: 0 }])].includes(JSON.stringify(stored.items)), JSON.stringify(stored.items));
  t.equal(stored.medical.room, 'w');
  t.ok(stored.seenAt instanceof Date);
  const found = await h.call('POST', `${url}/find`, { filter: { ssn: 'CANARY-ssn-A2' } });
  t.same(found.json().items.map((d: Record<string, unknown>) => [d.salary, (d.medical as Record<string, unknown>).diagnosis]), [[200, 'CANARY-diag-A2']]);
});

t.test('operators that compute on encrypted values are refused, writing nothing', async (t) => {
  const { h, url, raw } = await setup(t);
  await insert(h, url, { name: 'B', ssn: 'CANARY-ssn-B', salary: int(1), medical: { diagnosis: 'CANARY-d', ward: 'w' } });
  const before = EJSON.stringify(await raw.findOne({ name: 'B' }));
  const refused: [unknown, string][] = [
    [{ $inc: { salary: 1 } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $mul: { salary: 2 } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $min: { ssn: 'a' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $max: { ssn: 'z' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $currentDate: { ssn: true } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $push: { ssn: 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $addToSet: { medical: 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $pull: { 'medical.diagnosis': 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $pullAll: { ssn: ['x'] } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $pop: { salary: 1 } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $set: { 'ssn.$': 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $set: { 'medical.$[i].diagnosis': 'x' } }, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    [{ $rename: { ssn: 'salary' } }, 'RENAME_ENCRYPTION_MISMATCH'],
    [{ $rename: { ssn: 'plainSsn' } }, 'RENAME_ENCRYPTION_MISMATCH'],
    [{ $rename: { name: 'ssn' } }, 'RENAME_ENCRYPTION_MISMATCH'],
    [{ $set: { tenantSecret: 'CANARY-t' } }, 'KEY_POINTER_NOT_WRITABLE'],
    [[{ $set: { copy: '$ssn' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { ssn: 'x' } }], 'PIPELINE_UPDATE_NOT_SUPPORTED'],
    [[{ $set: { copy: { $function: { body: 'function() {}', args: [], lang: 'js' } } } }], 'QUERY_OPERATOR_NOT_ALLOWED'],
    [{ $set: { ssn: ['CANARY-array'] } }, 'DOCUMENT_VALIDATION_FAILED'],
    [{ $push: { hobbies: 'x' }, $set: { level: 'not an int' } }, 'DOCUMENT_VALIDATION_FAILED'],
  ];
  for (const [update, code] of refused) {
    const res = await h.call('POST', `${url}/update`, { filter: { name: 'B' }, update, ...(JSON.stringify(update).includes('$[i]') ? { arrayFilters: [{ i: 1 }] } : {}) });
    t.equal(res.statusCode, 400, JSON.stringify(update));
    t.equal(res.json().code, code, `${JSON.stringify(update)}: ${res.body}`);
  }
  t.equal(EJSON.stringify(await raw.findOne({ name: 'B' })), before, 'the document is unchanged');

  const renamed = await h.call('POST', `${url}/update`, { filter: { name: 'B' }, update: { $rename: { ssn: 'ssnCopy' } } });
  t.same(renamed.json(), { matched: 1, modified: 1 }, '$rename between fields of identical metadata, as the spec allows');
  const stored = (await raw.findOne({ name: 'B' }))!;
  t.ok(isCiphertext(stored.ssnCopy) && stored.ssn === undefined);
  t.equal((await h.call('POST', `${url}/count`, { filter: { ssnCopy: 'CANARY-ssn-B' } })).json().count, 1, 'the moved ciphertext still matches');
  const unset = await h.call('POST', `${url}/update`, { filter: { name: 'B' }, update: { $unset: { salary: '' } } });
  t.same(unset.json(), { matched: 1, modified: 1 }, '$unset of an encrypted field');
});

t.test('upserts insert an encrypted, validated document', async (t) => {
  const { h, url, raw } = await setup(t);
  const res = await h.call('POST', `${url}/update`, {
    filter: { ssn: 'CANARY-up-ssn', name: 'U' },
    update: { $set: { salary: int(5) }, $setOnInsert: { medical: { diagnosis: 'CANARY-up-diag' }, level: int(3) }, $inc: { visits: 1 } },
    upsert: true,
  });
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().matched, 0);
  t.ok(res.json().upsertedId, 'the new _id is answered');
  const stored = (await raw.findOne({ name: 'U' }))!;
  t.notMatch(EJSON.stringify(stored), /CANARY/, 'filter equalities and $setOnInsert values land encrypted');
  t.ok(isCiphertext(stored.ssn) && isCiphertext(stored.salary) && isCiphertext(stored.medical.diagnosis));
  t.equal(stored.level, 3);
  const found = await h.call('POST', `${url}/find`, { filter: { ssn: 'CANARY-up-ssn' } });
  t.same(found.json().items[0].medical, { diagnosis: 'CANARY-up-diag' });

  const again = await h.call('POST', `${url}/update`, { filter: { ssn: 'CANARY-up-ssn', name: 'U' }, update: { $set: { salary: int(6) }, $setOnInsert: { level: int(9) } }, upsert: true });
  t.same(again.json(), { matched: 1, modified: 1 }, 'a match updates; $setOnInsert is not applied');
  t.equal((await raw.findOne({ name: 'U' }))!.level, 3);

  const invalid = await h.call('POST', `${url}/update`, { filter: { ssn: 'CANARY-nameless' }, update: { $set: { level: int(1) } }, upsert: true });
  t.equal(invalid.json().code, 'DOCUMENT_VALIDATION_FAILED', 'the document an upsert would insert lacks the required name');
  t.equal(await raw.countDocuments({}), 1, 'nothing inserted');

  const replaced = await h.call('POST', `${url}/replace`, { filter: { ssn: 'CANARY-up-ssn' }, replacement: { name: 'U2', ssn: 'CANARY-rep-ssn', salary: int(7) } });
  t.same(replaced.json(), { matched: 1, modified: 1 }, replaced.body);
  const upserted = await h.call('POST', `${url}/replace`, { filter: { ssn: 'CANARY-none' }, replacement: { name: 'R', ssn: 'CANARY-rep-2' }, upsert: true });
  t.equal(upserted.json().matched, 0);
  t.ok(upserted.json().upsertedId);
  t.notMatch(EJSON.stringify(await raw.find().toArray()), /CANARY/);
  const badReplacement = await h.call('POST', `${url}/replace`, { filter: { name: 'R' }, replacement: { ssn: 'x' } });
  t.equal(badReplacement.json().code, 'DOCUMENT_VALIDATION_FAILED');
  const operatorReplacement = await h.call('POST', `${url}/replace`, { filter: { name: 'R' }, replacement: { $set: { name: 'x' } } });
  t.equal(operatorReplacement.statusCode, 400);
});

t.test('findOneAndUpdate, findOneAndReplace, findOneAndDelete return the document decrypted', async (t) => {
  const { h, url, raw } = await setup(t);
  await insert(h, url, { name: 'F', ssn: 'CANARY-f-1', salary: int(10), level: int(1) });
  await insert(h, url, { name: 'F', ssn: 'CANARY-f-2', salary: int(20), level: int(2) });
  const before = await h.call('POST', `${url}/find-one-and-update`, { filter: { ssn: 'CANARY-f-1' }, update: { $set: { salary: int(11) } } });
  t.equal(before.statusCode, 200, before.body);
  t.same(before.json(), { document: { _id: before.json().document._id, name: 'F', ssn: 'CANARY-f-1', salary: 10, level: 1 }, matched: 1 }, 'returnDocument before is the default');
  const after = await h.call('POST', `${url}/find-one-and-update`, { filter: { name: 'F' }, sort: { level: -1 }, update: { $inc: { level: 1 } }, returnDocument: 'after' });
  t.equal(after.json().document.ssn, 'CANARY-f-2', 'the sort chose the document');
  t.equal(after.json().document.level, 3);
  const upsert = await h.call('POST', `${url}/find-one-and-update`, { filter: { ssn: 'CANARY-f-3' }, update: { $set: { name: 'F', salary: int(30) } }, upsert: true, returnDocument: 'after' });
  t.equal(upsert.json().document.salary, 30, upsert.body);
  t.ok(upsert.json().upsertedId);
  t.equal(upsert.json().matched, 0);
  const none = await h.call('POST', `${url}/find-one-and-update`, { filter: { name: 'nobody' }, update: { $set: { level: int(1) } } });
  t.same(none.json(), { document: null, matched: 0 });
  const refused = await h.call('POST', `${url}/find-one-and-update`, { filter: { salary: 10 }, update: { $set: { level: int(1) } } });
  t.equal(refused.json().code, 'QUERY_ON_RANDOM_FIELD', 'filters are checked as find checks them');
  const badSort = await h.call('POST', `${url}/find-one-and-update`, { filter: { name: 'F' }, sort: { ssn: 1 }, update: { $set: { level: int(1) } } });
  t.equal(badSort.json().code, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD');

  const replaced = await h.call('POST', `${url}/find-one-and-replace`, { filter: { ssn: 'CANARY-f-2' }, replacement: { name: 'G', ssn: 'CANARY-g', salary: int(40) }, returnDocument: 'after' });
  t.equal(replaced.json().document.ssn, 'CANARY-g', replaced.body);
  t.notMatch(EJSON.stringify(await raw.find().toArray()), /CANARY/);
  const deleted = await h.call('POST', `${url}/find-one-and-delete`, { filter: { ssn: 'CANARY-g' } });
  t.equal(deleted.json().document.salary, 40);
  t.equal(await raw.countDocuments({ name: 'G' }), 0);

  // FerretDB does not implement findAndModify projections; MongoDB would apply it.
  const projected = await h.call('POST', `${url}/find-one-and-update`, { filter: { name: 'F' }, projection: { ssn: 1 }, update: { $set: { level: int(5) } } });
  if (projected.statusCode === 200) t.same(Object.keys(projected.json().document).sort(), ['_id', 'ssn']);
  else t.equal(projected.json().code, 'DATABASE_UNSUPPORTED_OPERATION', projected.body);
  const projectedInside = await h.call('POST', `${url}/find-one-and-delete`, { filter: { name: 'F' }, projection: { 'salary.x': 1 } });
  t.equal(projectedInside.json().code, 'QUERY_ON_RANDOM_FIELD');
});

t.test('bulk writes: per-operation answers, nothing sent when ordered and one is refused', async (t) => {
  const { h, url, raw } = await setup(t);
  const ops = [
    { insertOne: { document: { _id: 1, name: 'K', ssn: 'CANARY-k-1', salary: int(1) } } },
    { insertOne: { document: { _id: 2, name: 'K', ssn: 'CANARY-k-2' } } },
    { updateOne: { filter: { ssn: 'CANARY-k-1' }, update: { $set: { salary: int(2) } } } },
    { updateMany: { filter: { name: 'K' }, update: { $inc: { level: 1 } } } },
    { updateOne: { filter: { ssn: 'CANARY-k-3' }, update: { $setOnInsert: { name: 'K3', salary: int(3) } }, upsert: true } },
    { replaceOne: { filter: { _id: 2 }, replacement: { name: 'K', ssn: 'CANARY-k-2b' } } },
    { deleteOne: { filter: { ssn: 'CANARY-k-2b' } } },
    { deleteMany: { filter: { name: 'nobody' } } },
  ];
  const res = await h.call('POST', `${url}/bulk`, { operations: ops });
  t.equal(res.statusCode, 200, res.body);
  const body = res.json();
  t.match(body, { ok: true, inserted: 2, matched: 4, modified: 4, deleted: 1, upserted: 1, failed: 0, skipped: 0 });
  t.same(body.items.map((i: { op: string; status: string }) => `${i.op}:${i.status}`), ops.map((o) => `${Object.keys(o)[0]}:ok`));
  t.same(body.items[3], { index: 3, op: 'updateMany', status: 'ok', matched: 2, modified: 2 });
  t.ok(body.items[4].upsertedId);
  t.notMatch(EJSON.stringify(await raw.find().toArray()), /CANARY/);
  const k1 = await h.call('POST', `${url}/find`, { filter: { ssn: 'CANARY-k-1' } });
  t.same([k1.json().items[0].salary, k1.json().items[0].level], [2, 1]);

  const count = await raw.countDocuments({});
  const orderedRefused = await h.call('POST', `${url}/bulk`, {
    operations: [
      { insertOne: { document: { name: 'L', ssn: 'CANARY-l' } } },
      { updateOne: { filter: { name: 'K' }, update: { $inc: { salary: 1 } } } },
      { deleteMany: { filter: { name: 'K' } } },
    ],
  });
  t.same(orderedRefused.json().items.map((i: { status: string }) => i.status), ['skipped', 'failed', 'skipped']);
  t.equal(orderedRefused.json().items[1].error.code, 'ENCRYPTED_FIELD_NOT_WRITABLE');
  t.equal(orderedRefused.json().ok, false);
  t.equal(await raw.countDocuments({}), count, 'ordered: one refused operation, none sent');

  const unordered = await h.call('POST', `${url}/bulk`, {
    ordered: false,
    operations: [
      { insertOne: { document: { _id: 1, name: 'dup', ssn: 'CANARY-dup' } } },
      { updateOne: { filter: { name: 'K' }, update: { $inc: { salary: 1 } } } },
      { insertOne: { document: { _id: 10, name: 'M', ssn: 'CANARY-m' } } },
    ],
  });
  t.same(unordered.json().items.map((i: { status: string; error?: { code: string } }) => i.error?.code ?? i.status), ['DUPLICATE_DOCUMENT', 'ENCRYPTED_FIELD_NOT_WRITABLE', 'ok']);
  t.match(unordered.json(), { inserted: 1, failed: 2, skipped: 0 });

  // Inserts sent together (one insertMany) are still answered each with its own mapped error.
  const unsupported = await h.call('POST', `${url}/bulk`, {
    ordered: false,
    operations: [
      { insertOne: { document: { _id: 20, name: 'P', ssn: 'CANARY-p' } } },
      { insertOne: { document: { _id: 21, name: 'Q', tags: [['nested']] } } },
      { insertOne: { document: { _id: 22, name: 'R', ssn: 'CANARY-r' } } },
    ],
  });
  t.same(
    unsupported.json().items.map((i: { status: string; error?: { code: string } }) => i.error?.code ?? i.status),
    ['ok', 'DATABASE_UNSUPPORTED_OPERATION', 'ok'],
    `a value FerretDB cannot store (nested arrays) fails that insert only, with its code: ${unsupported.body.slice(0, 300)}`,
  );
  t.same(await Promise.all([20, 21, 22].map((id) => raw.countDocuments({ _id: id as never }))), [1, 0, 1]);

  const orderedDbFailure = await h.call('POST', `${url}/bulk`, {
    operations: [
      { insertOne: { document: { _id: 11, name: 'N', ssn: 'CANARY-n' } } },
      { insertOne: { document: { _id: 11, name: 'N', ssn: 'CANARY-n' } } },
      { insertOne: { document: { _id: 12, name: 'N', ssn: 'CANARY-n' } } },
    ],
  });
  t.same(orderedDbFailure.json().items.map((i: { status: string }) => i.status), ['ok', 'failed', 'skipped'], 'ordered: the first database refusal stops the rest');
  t.equal(await raw.countDocuments({ _id: 12 as never }), 0);

  const tooMany = await h.call('POST', `${url}/bulk`, { operations: Array.from({ length: 21 }, () => ({ deleteOne: { filter: { name: 'x' } } })) });
  t.equal(tooMany.statusCode, 400, 'the batch limit holds');
  const unknownOp = await h.call('POST', `${url}/bulk`, { operations: [{ dropCollection: {} }] });
  t.equal(unknownOp.statusCode, 400);
});

t.test('dry run: what an update or a replacement would encrypt or be refused with, writing nothing', async (t) => {
  const { h, url, raw } = await setup(t);
  const res = await h.call('POST', `${url}/explain`, { filter: { ssn: 'CANARY-x' }, update: { $set: { salary: int(1), medical: { diagnosis: 'CANARY-y' } }, $inc: { level: 1 } }, upsert: true });
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().valid, false, 'the upsert would insert a document without its required name');
  t.equal(res.json().refused.code, 'DOCUMENT_VALIDATION_FAILED');
  const ok = await h.call('POST', `${url}/explain`, { filter: { ssn: 'CANARY-x' }, update: { $set: { salary: int(1), medical: { diagnosis: 'CANARY-y' } }, $inc: { level: 1 } } });
  t.equal(ok.json().valid, true);
  t.same(ok.json().fields.map((f: { path: string }) => f.path), ['ssn', 'salary', 'medical.diagnosis']);
  t.notMatch(ok.body, /CANARY/, 'no value is echoed');
  const refused = await h.call('POST', `${url}/explain`, { update: { $inc: { salary: 1 } } });
  t.same(refused.json().refused.code, 'ENCRYPTED_FIELD_NOT_WRITABLE');
  const replacement = await h.call('POST', `${url}/explain`, { filter: { name: 'a' }, replacement: { name: 'a', ssn: 'CANARY-z' } });
  t.same(replacement.json().fields.map((f: { path: string }) => f.path), ['ssn']);
  t.equal(await raw.countDocuments({}), 0, 'nothing written');
});

t.test('positional paths, arrayFilters and pipelines: the right command is sent; FerretDB refusals are a clean 422', async (t) => {
  const { h, url, raw } = await setup(t);
  await insert(h, url, { name: 'P', ssn: 'CANARY-p', tags: ['a', 'b'], items: [{ x: 1 }, { x: 2 }], level: int(1) });
  const sent: { update: unknown; options: Record<string, unknown> | undefined }[] = [];
  const original = Collection.prototype.updateOne;
  Collection.prototype.updateOne = function (this: Collection, filter: never, update: never, options?: never) {
    if (this.collectionName === 'employees') sent.push({ update: EJSON.serialize({ u: update }, { relaxed: true }).u, options });
    return original.call(this, filter, update, options);
  } as typeof original;
  t.teardown(() => {
    Collection.prototype.updateOne = original;
  });
  const cases: [string, Record<string, unknown>][] = [
    ['positional $', { filter: { name: 'P', tags: 'a' }, update: { $set: { 'tags.$': 'A' } } }],
    ['all positional $[]', { filter: { name: 'P' }, update: { $inc: { 'items.$[].x': 1 } } }],
    ['arrayFilters', { filter: { name: 'P' }, update: { $set: { 'items.$[i].x': 0 } }, arrayFilters: [{ 'i.x': { $gt: 1 } }] }],
    ['$currentDate of a dotted path', { filter: { name: 'P' }, update: { $currentDate: { 'sub.at': true } } }],
    ['pipeline', { filter: { name: 'P' }, update: [{ $set: { level: { $add: ['$level', 1] } } }, { $unset: 'tags' }] }],
  ];
  for (const [what, body] of cases) {
    const res = await h.call('POST', `${url}/update`, body);
    const last = sent.at(-1)!;
    t.same(last.update, body.update, `${what}: the update is sent as given`);
    if (body.arrayFilters) t.same(EJSON.serialize({ a: last.options?.arrayFilters }, { relaxed: true }).a, body.arrayFilters, `${what}: with its arrayFilters`);
    if (res.statusCode === 200) t.equal(res.json().matched, 1, what);
    else t.same([res.statusCode, res.json().code], [422, 'DATABASE_UNSUPPORTED_OPERATION'], `${what}: ${res.body}`);
  }
  t.notMatch(EJSON.stringify(await raw.find().toArray()), /CANARY/);
});

t.test('dry run of a bulk write: operation by operation', async (t) => {
  const { h, url, raw } = await setup(t);
  const res = await h.call('POST', `${url}/explain`, {
    operations: [
      { insertOne: { document: { name: 'a', ssn: 'CANARY-b1' } } },
      { updateOne: { filter: { ssn: 'CANARY-b2' }, update: { $set: { salary: int(1) } } } },
      { updateMany: { filter: { name: 'a' }, update: { $push: { hobbies: 'x' }, $inc: { salary: 1 } } } },
      { replaceOne: { filter: { name: 'a' }, replacement: { ssn: 'CANARY-b3' } } },
      { deleteOne: { filter: { random: 1, ssn: 'CANARY-b4' } } },
    ],
  });
  t.equal(res.statusCode, 200, res.body);
  const ops = res.json().operations as { op: string; valid: boolean; fields: { path: string }[]; refused?: { code: string } }[];
  t.equal(res.json().valid, false);
  t.same(ops.map((o) => [o.op, o.valid, o.refused?.code ?? o.fields.map((f) => f.path).join(',')]), [
    ['insertOne', true, 'ssn'],
    ['updateOne', true, 'ssn,salary'],
    ['updateMany', false, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
    ['replaceOne', false, 'DOCUMENT_VALIDATION_FAILED'],
    ['deleteOne', true, 'ssn'],
  ]);
  t.notMatch(res.body, /CANARY/);
  t.equal(await raw.countDocuments({}), 0, 'nothing written');
  const unknown = await h.call('POST', `${url}/explain`, { operations: [{ dropDatabase: {} }] });
  t.equal(unknown.statusCode, 400);
});

t.test('an upsert during a key rotation still writes the filter\'s encrypted equality, under the new key', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  for (let i = 0; i < 20; i++) await h.call('POST', url, { document: { name: `e${i}`, tenantKey: 'tenant-a', ssn: `SSN-${i}` } });
  const newKey = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-det-2'] })).json().id as string;
  const started = await h.call('POST', `${url}/rotations`, { from: { keyAltName: 'hr-det' }, to: { keyId: newKey }, batchSize: 1, maxDocsPerSecond: 1 });
  t.equal(started.statusCode, 202, started.body);
  const jobUrl = started.headers.location as string;
  t.teardown(() => h.call('POST', `${jobUrl}/cancel`));
  t.equal((await h.call('GET', jobUrl)).json().state, 'running');
  // Wait (bounded) until this instance writes under the new key: the rotation is then in force here.
  const newHex = newKey.replaceAll('-', '');
  const keyHexOf = (value: Binary) => Buffer.from(value.buffer.subarray(1, 17)).toString('hex');
  for (let i = 0; i < 50; i++) {
    await h.call('POST', url, { document: { _id: `probe-${i}`, name: 'probe', tenantKey: 'tenant-a', ssn: 'probe' } });
    if (keyHexOf((await raw.findOne({ _id: `probe-${i}` as never }))!.ssn) === newHex) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  // The filter's equality is an $in of the value under both keys now, which an upsert does not copy.
  const res = await h.call('POST', `${url}/update`, { filter: { ssn: 'CANARY-rotating', name: 'R', tenantKey: 'tenant-a' }, update: { $set: { level: int(1) } }, upsert: true });
  t.equal(res.statusCode, 200, res.body);
  t.ok(res.json().upsertedId);
  const stored = (await raw.findOne({ name: 'R' }))!;
  t.ok(stored.ssn instanceof Binary, 'the new document has its ssn');
  t.equal(keyHexOf(stored.ssn), newHex, 'under the new key');
  t.equal((await h.call('POST', `${url}/count`, { filter: { ssn: 'CANARY-rotating' } })).json().count, 1);
  t.equal((await h.call('GET', jobUrl)).json().state, 'running', 'the rotation was running throughout');
});

t.test('findOneAnd* answer an unreadable value as find does: 422 by default (the write noted as applied), null and listed on report', async (t) => {
  const { h, url, raw } = await setup(t);
  await insert(h, url, { _id: 1, name: 'bad', ssn: 'CANARY-unreadable', level: int(1) });
  const stored = (await raw.findOne({ _id: 1 as never }))!.ssn as Binary;
  const bytes = Buffer.from(stored.buffer);
  bytes[bytes.length - 1] = bytes.at(-1)! ^ 0xff;
  await raw.updateOne({ _id: 1 as never }, { $set: { ssn: new Binary(bytes, 6) } });

  const failed = await h.call('POST', `${url}/find-one-and-update`, { filter: { name: 'bad' }, update: { $inc: { level: 1 } }, returnDocument: 'after' });
  t.equal(failed.statusCode, 422, failed.body);
  t.equal(failed.json().code, 'UNREADABLE_VALUE');
  t.match(failed.json().detail, /^The write was applied\. .*ssn/);
  t.notMatch(failed.body, /CANARY|bad"/);
  t.equal((await raw.findOne({ _id: 1 as never }))!.level, 2, 'the update landed');

  const reported = await h.call('POST', `${url}/find-one-and-update?onUnreadable=report`, { filter: { name: 'bad' }, update: { $inc: { level: 1 } }, returnDocument: 'after' });
  t.equal(reported.statusCode, 200, reported.body);
  t.same([reported.json().document.ssn, reported.json().document.level, reported.json().unreadable], [null, 3, ['ssn']]);
});

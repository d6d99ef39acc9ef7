/**
 * Aggregate and distinct over HTTP against the real database, through the one encryption engine:
 * equality on deterministic fields reaches the database as ciphertext, stages that would compute
 * on encrypted values are refused with stable codes, results are decrypted with masking, and a
 * limited token cannot use either route as an oracle around masking.
 */
import t, { type Test } from 'tap';
import { Binary, Collection, type Document } from 'mongodb';
import { createDocumentsApp, type DocumentsTestApp } from '../helpers/documents.js';

function as(h: DocumentsTestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'POST', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

async function client(t: Test, h: DocumentsTestApp, grants: unknown[]) {
  const res = await h.call('POST', '/clients', { name: `limited-${Math.random().toString(36).slice(2, 8)}`, grants });
  t.equal(res.statusCode, 201, res.body);
  return as(h, res.json().token);
}

/** The pipelines the app hands the driver for `collection` while `fn` runs. */
async function pipelinesTo(collection: string, fn: () => Promise<unknown>): Promise<Document[][]> {
  const seen: Document[][] = [];
  const proto = Collection.prototype as unknown as { aggregate: (...args: unknown[]) => unknown };
  const original = proto.aggregate;
  proto.aggregate = function (this: Collection, ...args: unknown[]) {
    if (this.collectionName === collection) seen.push(args[0] as Document[]);
    return original.apply(this, args);
  };
  try {
    await fn();
  } finally {
    proto.aggregate = original;
  }
  return seen;
}

const isCiphertext = (v: unknown) => v instanceof Binary && v.sub_type === 6;

async function seeded(t: Test) {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const people = [
    { _id: 1, name: 'Ann', ssn: '111-11-1111', badge: 7, level: 1, tenantKey: 'tenant-a', salary: 50, medical: { diagnosis: 'flu', ward: 'A' } },
    { _id: 2, name: 'Bob', ssn: '222-22-2222', badge: 8, level: 2, tenantKey: 'tenant-a', salary: 60, medical: { diagnosis: 'cold', ward: 'B' } },
    { _id: 3, name: 'Cid', ssn: '111-11-1111', badge: 9, level: 2, tenantKey: 'tenant-b', salary: 70, medical: { diagnosis: 'ok', ward: 'A' } },
  ];
  const res = await h.call('POST', url, { documents: people });
  t.equal(res.json().inserted, 3, res.body);
  return { h, url, raw: h.mongo.db(h.keyVaultDb).collection('employees') };
}

t.test('aggregate: equality $match on deterministic fields reaches the database as ciphertext; results are decrypted', async (t) => {
  const { h, url } = await seeded(t);
  let res!: Awaited<ReturnType<typeof h.call>>;
  const sent = await pipelinesTo('employees', async () => {
    res = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: { ssn: '111-11-1111' } }, { $sort: { _id: 1 } }] });
  });
  t.equal(res.statusCode, 200, res.body);
  t.same(res.json().items.map((d: { _id: number; ssn: string; salary: number }) => [d._id, d.ssn, d.salary]), [[1, '111-11-1111', 50], [3, '111-11-1111', 70]]);
  t.equal(res.json().truncated, false);
  t.equal(sent.length, 1);
  const match = (sent[0]![0] as { $match: { ssn: unknown } }).$match;
  t.ok(isCiphertext(match.ssn), 'the equality value was sent as ciphertext');
  t.notMatch(JSON.stringify(sent), /111-11-1111/, 'no plaintext of an encrypted field reaches the database');

  const operators: [string, unknown, number[]][] = [
    ['$eq', { ssn: { $eq: '222-22-2222' } }, [2]],
    ['$in', { ssn: { $in: ['222-22-2222', '000'] } }, [2]],
    ['$ne', { ssn: { $ne: '111-11-1111' } }, [2]],
    ['$nin', { badge: { $nin: [7, 9] } }, [2]],
    ['$or of encrypted and plain', { $or: [{ badge: 7 }, { name: 'Bob' }] }, [1, 2]],
    ['$not of $eq', { ssn: { $not: { $eq: '111-11-1111' } } }, [2]],
  ];
  for (const [what, filter, ids] of operators) {
    const r = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: filter }, { $sort: { _id: 1 } }] });
    t.equal(r.statusCode, 200, `${what}: ${r.body}`);
    t.same(r.json().items.map((d: { _id: number }) => d._id), ids, what);
  }

  // Stages on plaintext fields: grouping, counting, projecting, unwinding, paging.
  const grouped = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: { ssn: '111-11-1111' } }, { $group: { _id: '$level', n: { $sum: 1 } } }, { $sort: { _id: 1 } }] });
  t.same(grouped.json().items, [{ _id: 1, n: 1 }, { _id: 2, n: 1 }], grouped.body);
  const counted = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: { badge: { $in: [7, 8] } } }, { $count: 'n' }] });
  t.same(counted.json().items, [{ n: 2 }]);
  const projected = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $project: { ssn: 1, 'medical.ward': 1 } }, { $skip: 1 }, { $limit: 1 }] });
  t.same(projected.json().items, [{ _id: 2, ssn: '222-22-2222', medical: { ward: 'B' } }], 'an encrypted field projected through is decrypted');
  const set = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: { _id: 1 } }, { $set: { team: 'red' } }, { $unset: ['salary', 'medical'] }] });
  t.same(set.json().items[0], { _id: 1, name: 'Ann', ssn: '111-11-1111', badge: 7, level: 1, tenantKey: 'tenant-a', team: 'red' }, set.body);
  const empty = await h.call('POST', `${url}/aggregate`, { pipeline: [] });
  t.equal(empty.json().items.length, 3, 'an empty pipeline reads every document, decrypted');
  t.equal(empty.json().items[0].ssn, '111-11-1111');
});

t.test('aggregate: stages that would compute on encrypted values are refused with stable codes, before the database', async (t) => {
  const { h, url } = await seeded(t);
  const refused: [string, unknown[], string, RegExp][] = [
    ['$match on a random field', [{ $match: { salary: 50 } }], 'QUERY_ON_RANDOM_FIELD', /salary/],
    ['a range on a deterministic field', [{ $match: { ssn: { $gt: '1' } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$group by an encrypted field', [{ $group: { _id: '$ssn', n: { $sum: 1 } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /Stage 0 \(\$group\).*ssn/],
    ['$group accumulating an encrypted field', [{ $group: { _id: null, all: { $addToSet: '$badge' } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['$sortByCount on an encrypted field', [{ $sortByCount: '$ssn' }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$bucket on an encrypted field', [{ $bucket: { groupBy: '$badge', boundaries: [0, 8, 10] } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /badge/],
    ['$sort on an encrypted field', [{ $sort: { ssn: 1 } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$sort on a random field after a $match', [{ $match: { level: 2 } }, { $sort: { salary: -1 } }], 'QUERY_ON_RANDOM_FIELD', /Stage 1 \(\$sort\).*salary/],
    ['$project computing on an encrypted field', [{ $project: { len: { $strLenBytes: '$ssn' } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$project renaming an encrypted field', [{ $project: { copy: '$ssn' } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$addFields over an encrypted field', [{ $addFields: { ssn: 'plain' } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$addFields from a subtree', [{ $addFields: { m: '$medical' } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /medical/],
    ['$unwind an encrypted field', [{ $unwind: '$medical.allergies' }], 'QUERY_ON_RANDOM_FIELD', /medical\.allergies/],
    ['$replaceRoot with $$ROOT', [{ $replaceRoot: { newRoot: { doc: '$$ROOT' } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /whole document/],
    ['$expr on an encrypted field in $match', [{ $match: { $expr: { $eq: ['$ssn', '$name'] } } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$lookup', [{ $lookup: { from: 'other', localField: 'name', foreignField: 'name', as: 'x' } }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$lookup/],
    ['$graphLookup', [{ $graphLookup: { from: 'employees', startWith: '$name', connectFromField: 'name', connectToField: 'name', as: 'x' } }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$graphLookup/],
    ['$unionWith', [{ $unionWith: 'other' }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$unionWith/],
    ['$out', [{ $match: {} }, { $out: 'copy' }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$out/],
    ['$merge', [{ $merge: { into: 'copy' } }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$merge/],
    ['$facet not last', [{ $facet: { a: [{ $count: 'n' }] } }, { $limit: 1 }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$facet/],
    ['$facet grouping an encrypted field', [{ $facet: { a: [{ $group: { _id: '$ssn' } }] } }], 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    ['$currentOp', [{ $currentOp: {} }], 'PIPELINE_STAGE_NOT_ALLOWED', /\$currentOp/],
    ['$function in $addFields', [{ $addFields: { x: { $function: { body: 'function() { return 1 }', args: [], lang: 'js' } } } }], 'QUERY_OPERATOR_NOT_ALLOWED', /\$function/],
    ['$accumulator in $group', [{ $group: { _id: null, x: { $accumulator: { init: 'function() {}' } } } }], 'QUERY_OPERATOR_NOT_ALLOWED', /\$accumulator/],
    ['$where in $match', [{ $match: { $where: 'true' } }], 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['$where deep in $facet', [{ $facet: { a: [{ $match: { $or: [{ $nor: [{ $where: 'true' }] }] } }] } }], 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    ['a stage with two operators', [{ $match: {}, $limit: 1 }], 'VALIDATION_FAILED', /./],
  ];
  for (const [what, pipeline, code, detail] of refused) {
    const sent = await pipelinesTo('employees', async () => {
      const res = await h.call('POST', `${url}/aggregate`, { pipeline });
      t.equal(res.statusCode, 400, `${what}: ${res.body}`);
      t.equal(res.json().code, code, what);
      t.match(res.json().detail ?? res.json().title, detail, `${what}: the detail names it`);
    });
    t.equal(sent.length, 0, `${what}: nothing was sent to the database`);
  }
  t.equal(await h.mongo.db(h.keyVaultDb).listCollections({ name: 'copy' }).toArray().then((l) => l.length), 0, 'no $out collection was written');
});

t.test('aggregate explain: what would be sent as ciphertext, or why it is refused; nothing runs', async (t) => {
  const { h, url } = await seeded(t);
  let ok!: Awaited<ReturnType<typeof h.call>>;
  let bad!: Awaited<ReturnType<typeof h.call>>;
  const sent = await pipelinesTo('employees', async () => {
    ok = await h.call('POST', `${url}/aggregate`, { explain: true, pipeline: [{ $match: { ssn: 'x', badge: { $in: [1] } } }, { $group: { _id: '$level' } }, { $match: { _id: 2 } }] });
    bad = await h.call('POST', `${url}/aggregate`, { explain: true, pipeline: [{ $match: {} }, { $group: { _id: '$ssn' } }] });
  });
  t.equal(ok.statusCode, 200, ok.body);
  t.same(ok.json(), {
    valid: true,
    stages: [
      { index: 0, stage: '$match', encrypted: ['ssn', 'badge'], encryptedAfter: true },
      { index: 1, stage: '$group', encrypted: [], encryptedAfter: false },
      { index: 2, stage: '$match', encrypted: [], encryptedAfter: false },
    ],
  });
  t.equal(bad.statusCode, 200);
  t.equal(bad.json().valid, false);
  t.equal(bad.json().refused.code, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD');
  t.match(bad.json().refused.detail, /Stage 1 \(\$group\).*ssn/);
  t.equal(sent.length, 0, 'explain runs nothing');
});

t.test('distinct: plaintext values, decrypted deterministic values, random fields refused', async (t) => {
  const { h, url } = await seeded(t);
  const plain = await h.call('POST', `${url}/distinct`, { key: 'level' });
  t.equal(plain.statusCode, 200, plain.body);
  t.same([...plain.json().values].sort(), [1, 2]);
  const ward = await h.call('POST', `${url}/distinct`, { key: 'medical.ward', filter: { level: 2 } });
  t.same([...ward.json().values].sort(), ['A', 'B']);

  const ssn = await h.call('POST', `${url}/distinct`, { key: 'ssn' });
  t.equal(ssn.statusCode, 200, ssn.body);
  t.same([...ssn.json().values].sort(), ['111-11-1111', '222-22-2222'], 'deterministic values are decrypted, each once');
  const filtered = await h.call('POST', `${url}/distinct`, { key: 'name', filter: { ssn: '111-11-1111' } });
  t.same([...filtered.json().values].sort(), ['Ann', 'Cid'], 'an equality filter on an encrypted field is rewritten');
  const canonical = await h.call('POST', `${url}/distinct?format=canonical`, { key: 'badge', filter: { name: 'Ann' } });
  t.same(canonical.json().values, [{ $numberInt: '7' }]);

  const refused: [unknown, string, RegExp][] = [
    [{ key: 'salary' }, 'QUERY_ON_RANDOM_FIELD', /salary/],
    [{ key: 'medical.diagnosis' }, 'QUERY_ON_RANDOM_FIELD', /medical\.diagnosis/],
    [{ key: 'medical' }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /medical/],
    [{ key: 'ssn.x' }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
    [{ key: 'tenantSecret' }, 'QUERY_ON_RANDOM_FIELD', /tenantSecret/],
    [{ key: 'ssn', filter: { salary: 50 } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
    [{ key: 'name', filter: { $where: 'true' } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
    [{ key: '$ssn' }, 'INVALID_QUERY', /path/],
  ];
  for (const [body, code, detail] of refused) {
    const res = await h.call('POST', `${url}/distinct`, body);
    t.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
    t.equal(res.json().code, code);
    t.match(res.json().detail, detail);
  }
});

t.test('a limited token cannot use aggregate or distinct as an oracle around masking', async (t) => {
  const { h, url } = await seeded(t);
  const readOnly = await client(t, h, [{ scope: `documents:${h.ns}:read` }]);

  // Reading is allowed and masked, as find.
  const all = await readOnly('POST', `${url}/aggregate`, { pipeline: [{ $match: { level: 2 } }, { $sort: { _id: 1 } }] });
  t.equal(all.statusCode, 200, all.body);
  t.same(all.json().items.map((d: { ssn: unknown }) => d.ssn), [null, null]);
  t.same(all.json().masked[0].paths.sort(), ['badge', 'medical.diagnosis', 'salary', 'ssn', 'tenantSecret'].filter((p) => p !== 'tenantSecret'));
  t.notMatch(all.body, /222-22-2222|111-11-1111/);

  const probes: [string, unknown, number, string][] = [
    ['aggregate', { pipeline: [{ $match: { ssn: '111-11-1111' } }, { $count: 'n' }] }, 403, 'FORBIDDEN'],
    ['aggregate', { pipeline: [{ $match: { $or: [{ name: 'x' }, { badge: { $in: [7, 8] } }] } }] }, 403, 'FORBIDDEN'],
    ['aggregate', { pipeline: [{ $facet: { n: [{ $match: { ssn: { $ne: '111-11-1111' } } }, { $count: 'n' }] } }] }, 403, 'FORBIDDEN'],
    ['aggregate', { pipeline: [{ $group: { _id: '$ssn', n: { $sum: 1 } } }] }, 400, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['aggregate', { pipeline: [{ $sortByCount: '$badge' }] }, 400, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['aggregate', { pipeline: [{ $group: { _id: null, n: { $addToSet: '$ssn' } } }, { $project: { c: { $size: '$n' } } }] }, 400, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['aggregate', { pipeline: [{ $match: { ssn: { $in: [] } } }, { $count: 'n' }] }, 403, 'FORBIDDEN'],
    ['aggregate', { pipeline: [{ $match: { badge: { $nin: [] } } }] }, 403, 'FORBIDDEN'],
    ['distinct', { key: 'ssn' }, 403, 'FORBIDDEN'],
    ['distinct', { key: 'name', filter: { ssn: '111-11-1111' } }, 403, 'FORBIDDEN'],
  ];
  for (const [route, body, status, code] of probes) {
    const sent = await pipelinesTo('employees', async () => {
      const res = await readOnly('POST', `${url}/${route}`, body);
      t.equal(res.statusCode, status, `${route} ${JSON.stringify(body)}: ${res.body}`);
      t.equal(res.json().code, code);
    });
    t.equal(sent.length, 0, 'nothing reached the database');
  }
  const emptyIn = await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: { badge: { $in: [] } } }] });
  t.same([emptyIn.statusCode, emptyIn.json().items], [200, []], 'with decrypt, an empty $in on an encrypted field matches nothing, as in MongoDB');
  // Distinct refuses before reading: an empty answer would say no document has the field.
  const none = await readOnly('POST', `${url}/distinct`, { key: 'ssn', filter: { name: 'nobody' } });
  t.equal(none.statusCode, 403);

  // Plaintext work stays open to it.
  const plain = await readOnly('POST', `${url}/aggregate`, { pipeline: [{ $group: { _id: '$level', n: { $sum: 1 } } }, { $sort: { _id: 1 } }] });
  t.same(plain.json().items, [{ _id: 1, n: 1 }, { _id: 2, n: 2 }]);
  t.same([...(await readOnly('POST', `${url}/distinct`, { key: 'name' })).json().values].sort(), ['Ann', 'Bob', 'Cid']);

  // With decrypt on hr-det: equality and distinct on ssn; salary (another key) stays masked.
  const reader = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: 'decrypt', keyAltNames: ['hr-det'] }]);
  const matched = await reader('POST', `${url}/aggregate`, { pipeline: [{ $match: { ssn: '222-22-2222' } }] });
  t.equal(matched.statusCode, 200, matched.body);
  t.equal(matched.json().items[0].ssn, '222-22-2222');
  t.equal(matched.json().items[0].salary, null);
  t.same([...(await reader('POST', `${url}/distinct`, { key: 'badge' })).json().values].sort(), [7, 8, 9]);

  // No read scope on the collection: nothing at all.
  const writer = await client(t, h, [{ scope: `documents:${h.ns}:write` }]);
  t.equal((await writer('POST', `${url}/aggregate`, { pipeline: [] })).statusCode, 403);
  t.equal((await writer('POST', `${url}/distinct`, { key: 'name' })).statusCode, 403);
});

t.test('aggregate and distinct are audited as reads', async (t) => {
  const { h, url } = await seeded(t);
  await h.call('POST', `${url}/aggregate`, { pipeline: [{ $match: { ssn: '111-11-1111' } }] });
  await h.call('POST', `${url}/distinct`, { key: 'ssn' });
  const audit = await h.call('GET', '/audit?limit=50');
  t.equal(audit.statusCode, 200, audit.body);
  const actions = audit.json().items.map((e: { action: string }) => e.action);
  t.ok(actions.includes('documents.aggregate'), 'aggregate is in the audit trail');
  t.ok(actions.includes('documents.distinct'), 'distinct is in the audit trail');
  t.notMatch(audit.body, /111-11-1111/, 'no value is in the audit trail');
});

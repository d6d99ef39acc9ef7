/**
 * Issue 11, as an attacker with a valid but limited token tried it over HTTP: equality queries as
 * an oracle around masking, plaintext carried to an encrypted path by an unexpected shape, and the
 * rotation rewrite that put a plaintext value into a filter.
 */
import t, { type Test } from 'tap';
import { Collection } from 'mongodb';
import { createDocumentsApp, type DocumentsTestApp } from '../helpers/documents.js';

function as(h: DocumentsTestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

async function client(t: Test, h: DocumentsTestApp, grants: unknown[]) {
  const res = await h.call('POST', '/clients', { name: 'limited', grants });
  t.equal(res.statusCode, 201, res.body);
  return as(h, res.json().token);
}

/** Every string anywhere in a command's filter-like fields. */
function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value !== null && typeof value === 'object' && !('_bsontype' in value)) for (const v of Object.values(value)) strings(v, out);
  return out;
}

type Call = { method: string; filter: unknown; options: Record<string, unknown> | undefined };
const spied = ['find', 'findOne', 'countDocuments', 'updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany'] as const;

/** What the app hands the driver for a collection while `fn` runs: each operation's filter and options. */
async function callsTo(collection: string, fn: () => Promise<unknown>): Promise<Call[]> {
  const seen: Call[] = [];
  const proto = Collection.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = spied.map((method) => [method, proto[method]!] as const);
  for (const [method, original] of originals) {
    proto[method] = function (this: Collection, ...args: unknown[]) {
      if (this.collectionName === collection) {
        const options = (method.startsWith('update') || method === 'replaceOne' ? args[2] : args[1]) as Record<string, unknown> | undefined;
        seen.push({ method, filter: args[0], options });
      }
      return original.apply(this, args);
    };
  }
  try {
    await fn();
  } finally {
    for (const [method, original] of originals) proto[method] = original;
  }
  return seen;
}

t.test('a query on an encrypted field is a read of it: no decrypt right, no answer', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  for (const ssn of ['111-11-1111', '222-22-2222']) {
    t.equal((await h.call('POST', url, { document: { name: 'E', ssn, tenantKey: 'tenant-a' } })).statusCode, 201);
  }
  const masked = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: `documents:${h.ns}:write` }]);
  const guesses = { ssn: { $in: ['000-00-0000', '111-11-1111'] } };

  const probes: [string, string, unknown][] = [
    ['POST', `${url}/count`, { filter: guesses }],
    ['POST', `${url}/find`, { filter: guesses }],
    ['GET', `${url}?filter=${encodeURIComponent(JSON.stringify(guesses))}`, undefined],
    ['POST', `${url}/update`, { filter: guesses, update: { $set: { level: 2 } } }],
    ['POST', `${url}/delete`, { filter: guesses }],
    ['POST', `${url}/count`, { filter: { $or: [{ name: 'x' }, { ssn: { $ne: '111-11-1111' } }] } }],
    ['POST', `${url}/count`, { filter: { badge: 7 } }],
  ];
  for (const [method, path, body] of probes) {
    const res = await masked(method, path, body);
    t.equal(res.statusCode, 403, `${method} ${path.split('?')[0]} with a filter on an encrypted field`);
    t.equal(res.json().code, 'FORBIDDEN');
    t.match(res.json().detail, /ssn|badge/, 'the detail names the path');
  }
  t.equal(await h.mongo.db(h.keyVaultDb).collection('employees').countDocuments({}), 2, 'the refused delete deleted nothing');

  // Still masked in every answer; plaintext filters still work.
  const plain = await masked('POST', `${url}/find`, { filter: { name: 'E' } });
  t.equal(plain.statusCode, 200);
  t.same(plain.json().items.map((d: { ssn: unknown }) => d.ssn), [null, null]);
  t.equal((await masked('POST', `${url}/count`, { filter: { name: 'E' } })).json().count, 2);

  // With decrypt on the field's key, the same query answers.
  const reader = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: 'decrypt', keyAltNames: ['hr-det'] }]);
  t.equal((await reader('POST', `${url}/count`, { filter: guesses })).json().count, 1);
  // A decrypt right on another key is not enough.
  const other = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: 'decrypt', keyAltNames: ['tenant-*'] }]);
  t.equal((await other('POST', `${url}/count`, { filter: guesses })).statusCode, 403);
});

t.test('no plaintext at an encrypted path, whatever the shape', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const base = { name: 'Shape', ssn: 'S-1', tenantKey: 'tenant-a' };
  const CANARY = 'CANARY-diagnosis-plaintext';

  const badMedical: [string, unknown][] = [
    ['a DBRef-shaped object', { $ref: 'x', $id: 1, diagnosis: CANARY }],
    ['an array of documents', [{ diagnosis: CANARY }]],
    ['a scalar', CANARY],
    ['null', null],
    ['an operator-shaped key', { diagnosis: 'd', $where: CANARY }],
    ['a dotted name', { 'diagnosis.x': CANARY }],
  ];
  for (const [what, medical] of badMedical) {
    const res = await h.call('POST', url, { document: { ...base, medical } });
    t.equal(res.statusCode, 400, `insert with medical as ${what}`);
    t.equal(res.json().code, 'INVALID_DOCUMENT_SHAPE', res.body);
    t.match(res.json().detail, /^medical/, 'the detail names the path');
    t.notMatch(res.body, new RegExp(CANARY));
  }
  const batch = await h.call('POST', url, { documents: [{ ...base, medical: [{ diagnosis: CANARY }] }, { ...base, medical: { diagnosis: 'ok' } }] });
  t.equal(batch.json().items[0].error.code, 'INVALID_DOCUMENT_SHAPE');
  t.equal(batch.json().inserted, 1);

  const created = await h.call('POST', url, { document: { ...base, name: 'Target', medical: { diagnosis: 'before' } } });
  const id = created.json().insertedId.$oid as string;
  const before = await raw.findOne({ name: 'Target' });
  const badUpdates: [string, unknown][] = [
    ['$set of the parent to an array', { $set: { medical: [{ diagnosis: CANARY }] } }],
    ['$set of the parent to a DBRef', { $set: { medical: { $ref: 'x', $id: 1, diagnosis: CANARY } } }],
    ['$set of an array element below it', { $set: { 'medical.0': { diagnosis: CANARY } } }],
    ['$set of an element of an element', { $set: { 'medical.0.diagnosis': CANARY } }],
  ];
  for (const [what, update] of badUpdates) {
    const byId = await h.call('PATCH', `${url}/${id}`, { update });
    t.equal(byId.statusCode, 400, what);
    t.equal(byId.json().code, 'INVALID_DOCUMENT_SHAPE', byId.body);
    const byFilter = await h.call('POST', `${url}/update`, { filter: { name: 'Target' }, update });
    t.equal(byFilter.statusCode, 400, `${what}, by filter`);
  }
  const replaced = await h.call('PUT', `${url}/${id}`, { document: { ...base, name: 'Target', medical: [{ diagnosis: CANARY }] } });
  t.equal(replaced.statusCode, 400);
  t.same(await raw.findOne({ name: 'Target' }), before, 'no refused write changed the document');

  // What is allowed still is: a plain document, and a dotted $set of an encrypted child.
  t.equal((await h.call('PATCH', `${url}/${id}`, { update: { $set: { medical: { diagnosis: 'new', ward: 'w2' } } } })).statusCode, 200);
  t.equal((await h.call('PATCH', `${url}/${id}`, { update: { $set: { 'medical.diagnosis': 'newer' } } })).statusCode, 200);
  const after = await raw.findOne({ name: 'Target' });
  t.equal((after!.medical as { diagnosis: { sub_type: number } }).diagnosis.sub_type, 6);
  const all = await raw.find({}).toArray();
  t.notMatch(JSON.stringify(all), new RegExp(CANARY), 'no canary reached the database');
});

t.test('during a rotation each filter operator keeps its meaning, and no plaintext reaches the database', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  for (const ssn of ['a', 'b']) await h.call('POST', url, { document: { name: ssn, ssn, tenantKey: 'tenant-a' } });
  const newKey = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-det-2'] })).json().id as string;
  // A rotation of hr-det in progress for this collection (as the rotation job records it).
  await h.mongo
    .db(h.keyVaultDb)
    .collection('__rotations')
    .insertOne({ _id: `${h.ns}|${h.keys['hr-det']}` as never, namespace: h.ns, fromKeyId: h.keys['hr-det'], toKeyId: newKey, state: 'running', startedAt: new Date() });

  const count = async (filter: unknown) => {
    const res = await h.call('POST', `${url}/count`, { filter });
    t.equal(res.statusCode, 200, res.body);
    return res.json().count as number;
  };
  const seen = await callsTo('employees', async () => {
    t.equal(await count({ ssn: { $eq: 'a', $in: ['b'] } }), 0, '$eq a AND $in [b] matches nothing');
    t.equal(await count({ ssn: { $eq: 'a', $in: ['a', 'b'] } }), 1);
    t.equal(await count({ ssn: { $ne: 'a', $nin: ['b'] } }), 0);
    t.equal(await count({ ssn: { $ne: 'a', $in: ['a', 'b'] } }), 1);
    t.equal(await count({ ssn: { $not: { $eq: 'a' } } }), 1);
  });
  t.ok(seen.length >= 5, 'the counts were seen');
  for (const call of seen) {
    const sent = strings(call.filter);
    t.notOk(sent.includes('a') || sent.includes('b'), `no plaintext value in ${JSON.stringify(call.filter).slice(0, 300)}`);
  }
  const twoOps = await h.call('POST', `${url}/count`, { filter: { ssn: { $not: { $eq: 'a', $in: ['b'] } } } });
  t.equal(twoOps.statusCode, 400, '$not with two operators on an encrypted field is refused');
});

t.test('document queries carry a server-side time limit tied to the request timeout', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const id = (await h.call('POST', url, { document: { name: 'T', ssn: 's', tenantKey: 'tenant-a' } })).json().insertedId.$oid;
  const seen = await callsTo('employees', async () => {
    await h.call('POST', `${url}/find`, { filter: { name: 'T' } });
    await h.call('POST', `${url}/count`, { filter: { name: 'T' } });
    await h.call('GET', `${url}/${id}`);
    await h.call('POST', `${url}/update`, { filter: { name: 'T' }, update: { $set: { level: 2 } } });
    await h.call('POST', `${url}/delete`, { filter: { name: 'nobody' } });
  });
  const names = seen.map((call) => call.method);
  for (const method of ['find', 'countDocuments', 'findOne', 'updateOne', 'deleteOne']) t.ok(names.includes(method), `${method} in ${names.join(',')}`);
  for (const call of seen) t.equal(call.options?.maxTimeMS, h.app.config.requestTimeoutMs, `${call.method} carries maxTimeMS`);
});

t.test('a key named by the document is the writer choosing a key: it needs encrypt on that key', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const writer = await client(t, h, [{ scope: `documents:${h.ns}:write` }]);
  const doc = { name: 'W', ssn: 's', tenantKey: 'tenant-b', tenantSecret: 'CANARY-chosen-key' };
  const refused = await writer('POST', url, { document: doc });
  t.equal(refused.statusCode, 422, 'as for a name no key has: no way to tell which keys exist');
  t.equal(refused.json().code, 'UNKNOWN_KEY_ALT_NAME');
  t.match(refused.json().detail, /tenantSecret/);
  t.equal(await raw.countDocuments({}), 0, 'nothing written');
  t.equal((await writer('POST', url, { document: { name: 'W', ssn: 's', tenantKey: 'tenant-b' } })).statusCode, 201, 'keys the schema names need the collection grant only');
  const tenantA = await client(t, h, [{ scope: `documents:${h.ns}:write` }, { scope: 'encrypt', keyAltNames: ['tenant-a'] }]);
  t.equal((await tenantA('POST', url, { document: { ...doc, tenantKey: 'tenant-a' } })).statusCode, 201);
  t.equal((await tenantA('POST', url, { document: doc })).statusCode, 422, 'another tenant\'s key stays out of reach');
});

t.test('filters: presence of an encrypted field is fine; a path indexing into encrypted fields is refused', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  await h.call('POST', url, { document: { name: 'E', ssn: 's', tenantKey: 'tenant-a', medical: { diagnosis: 'd' } } });
  const present = await h.call('POST', `${url}/count`, { filter: { ssn: { $exists: true }, salary: { $exists: false } } });
  t.equal(present.statusCode, 200, present.body);
  t.equal(present.json().count, 1);
  const indexed = await h.call('POST', `${url}/count`, { filter: { 'medical.0.diagnosis': 'CANARY-indexed' } });
  t.equal(indexed.statusCode, 400);
  t.equal(indexed.json().code, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD');
});

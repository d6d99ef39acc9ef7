/**
 * The write operations as an attacker with a valid but limited token tries them over HTTP:
 * read-only tokens cannot write through them, write-only tokens cannot read through
 * findOneAnd*, a token without decrypt on a key gets masked values back (before or after), and
 * filters on encrypted fields still need decrypt. And an idempotent retry is answered, not redone.
 */
import t, { type Test } from 'tap';
import { BSON } from 'mongodb';
import { createDocumentsApp, type DocumentsTestApp } from '../helpers/documents.js';
import { writesSchema } from '../helpers/writes-schema.js';

const { EJSON } = BSON;

function as(h: DocumentsTestApp, token: string) {
  return (url: string, body: unknown, headers: Record<string, string> = {}) =>
    h.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, ...headers }, payload: body as object });
}

async function client(t: Test, h: DocumentsTestApp, grants: unknown[]) {
  const res = await h.call('POST', '/clients', { name: `limited-${Math.random()}`, grants });
  t.equal(res.statusCode, 201, res.body);
  return as(h, res.json().token);
}

t.test('limited tokens cannot write, escalate or unmask through the new write operations', async (t) => {
  const h = await createDocumentsApp(t, writesSchema);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const add = await h.call('POST', url, { document: { name: 'E', ssn: 'CANARY-auth-ssn', salary: { $numberInt: '100' }, level: { $numberInt: '1' } } });
  t.equal(add.statusCode, 201, add.body);
  const snapshot = async () => EJSON.stringify(await raw.find().toArray());

  const reader = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: 'decrypt' }]);
  const before = await snapshot();
  const writes: [string, unknown][] = [
    ['update', { filter: { name: 'E' }, update: { $set: { level: 2 } } }],
    ['replace', { filter: { name: 'E' }, replacement: { name: 'E' } }],
    ['find-one-and-update', { filter: { name: 'E' }, update: { $set: { level: 2 } } }],
    ['find-one-and-replace', { filter: { name: 'E' }, replacement: { name: 'E' } }],
    ['find-one-and-delete', { filter: { name: 'E' } }],
    ['bulk', { operations: [{ deleteMany: { filter: { name: 'E' } } }] }],
  ];
  for (const [path, body] of writes) {
    const res = await reader(`${url}/${path}`, body);
    t.equal(res.statusCode, 403, `read-only: ${path}`);
    t.equal(res.json().code, 'FORBIDDEN');
  }
  t.equal(await snapshot(), before, 'a read-only token changed nothing');

  const writer = await client(t, h, [{ scope: `documents:${h.ns}:write` }]);
  for (const path of ['find-one-and-update', 'find-one-and-replace', 'find-one-and-delete']) {
    const body = writes.find(([p]) => p === path)![1];
    const res = await writer(`${url}/${path}`, body);
    t.equal(res.statusCode, 403, `write-only: ${path} would return a document`);
    t.match(res.json().detail, /read/);
  }
  t.equal(await snapshot(), before, 'refused before anything was written');
  const probe = await writer(`${url}/bulk`, { operations: [{ updateOne: { filter: { ssn: 'CANARY-auth-ssn' }, update: { $set: { level: 5 } } } }, { deleteMany: { filter: { name: 'E' } } }] });
  t.same(probe.json().items.map((i: { status: string; error?: { code: string } }) => i.error?.code ?? i.status), ['FORBIDDEN', 'skipped'], 'an equality on an encrypted field needs decrypt, in bulk too');
  t.equal(await snapshot(), before, 'ordered: nothing sent');
  const upsertProbe = await writer(`${url}/update`, { filter: { ssn: 'CANARY-guess' }, update: { $set: { level: 1 } }, upsert: true });
  t.equal(upsertProbe.statusCode, 403, 'an upsert cannot be used as an equality oracle either');

  // Read and write, but no decrypt grant: values come back masked, before and after.
  const masked = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: `documents:${h.ns}:write` }]);
  for (const returnDocument of ['before', 'after']) {
    const res = await masked(`${url}/find-one-and-update`, { filter: { name: 'E' }, update: { $set: { salary: { $numberInt: '7' } } }, returnDocument });
    t.equal(res.statusCode, 200, res.body);
    t.equal(res.json().document.ssn, null, `${returnDocument}: masked`);
    t.equal(res.json().document.salary, null, `${returnDocument}: masked, even the value just written`);
    t.same(res.json().masked.sort(), ['salary', 'ssn']);
    t.notMatch(res.body, /CANARY/);
  }
  const deleted = await masked(`${url}/find-one-and-delete`, { filter: { name: 'E' }, sort: { level: 1 } });
  t.same([deleted.json().document.ssn, deleted.json().document.level], [null, 1], 'a delete returns what find would: masked');
  t.equal((await masked(`${url}/find-one-and-update`, { filter: { ssn: 'CANARY-auth-ssn' }, update: { $set: { level: 1 } } })).statusCode, 403);
  const renamed = await masked(`${url}/update`, { filter: { name: 'nobody' }, update: { $rename: { ssn: 'name' } } });
  t.equal(renamed.json().code, 'RENAME_ENCRYPTION_MISMATCH', 'ciphertext cannot be moved to a plaintext field either');
});

t.test('idempotent retries of the write operations are answered, not applied twice', async (t) => {
  const h = await createDocumentsApp(t, writesSchema);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const bulk = { operations: [{ insertOne: { document: { name: 'I', ssn: 'CANARY-idem', level: { $numberInt: '1' } } } }, { updateOne: { filter: { name: 'I' }, update: { $inc: { level: 1 } } } }] };
  const first = await h.call('POST', `${url}/bulk`, bulk, { 'idempotency-key': 'bulk-1' });
  const second = await h.call('POST', `${url}/bulk`, bulk, { 'idempotency-key': 'bulk-1' });
  t.equal(first.statusCode, 200, first.body);
  t.equal(second.headers['idempotent-replayed'], 'true');
  t.same(second.json(), first.json());
  t.equal(await raw.countDocuments({ name: 'I' }), 1);
  t.equal((await raw.findOne({ name: 'I' }))!.level, 2);
  const reused = await h.call('POST', `${url}/bulk`, { ...bulk, ordered: false }, { 'idempotency-key': 'bulk-1' });
  t.equal(reused.json().code, 'IDEMPOTENCY_KEY_REUSED');

  // A retry whose first answer was lost with its record, after a crash part-way (the first two
  // inserts landed, the third did not, the claim is gone): inserts without _id get ids derived from
  // the key, so the retry inserts nothing twice, and the insert sent after the ones already there
  // still lands.
  const inserts = { operations: ['R1', 'R2', 'R3'].map((name) => ({ insertOne: { document: { name, ssn: `CANARY-${name}` } } })) };
  const landed = await h.call('POST', `${url}/bulk`, inserts, { 'idempotency-key': 'bulk-lost' });
  t.equal(landed.json().inserted, 3, landed.body);
  await raw.deleteOne({ name: 'R3' });
  await h.mongo.db(h.keyVaultDb).collection('__idempotency').deleteMany({});
  const retried = await h.call('POST', `${url}/bulk`, inserts, { 'idempotency-key': 'bulk-lost' });
  t.equal(retried.statusCode, 200, retried.body);
  t.not(retried.headers['idempotent-replayed'], 'true', 'not a replay: the record was lost');
  t.same(retried.json().items.map((i: { status: string }) => i.status), ['ok', 'ok', 'ok'], 'the two that landed are answered as done, the third is inserted');
  t.same(retried.json().items.map((i: { insertedId: unknown }) => i.insertedId), landed.json().items.map((i: { insertedId: unknown }) => i.insertedId), 'with the ids of the first attempt');
  t.same(await Promise.all(['R1', 'R2', 'R3'].map((name) => raw.countDocuments({ name }))), [1, 1, 1], 'each once');

  for (const [path, body] of [
    ['find-one-and-update', { filter: { name: 'I' }, update: { $inc: { level: 1 } }, returnDocument: 'after' }],
    ['update', { filter: { name: 'I' }, update: { $inc: { level: 1 } } }],
  ] as const) {
    const a = await h.call('POST', `${url}/${path}`, body, { 'idempotency-key': `k-${path}` });
    const b = await h.call('POST', `${url}/${path}`, body, { 'idempotency-key': `k-${path}` });
    t.equal(a.statusCode, 200, a.body);
    t.same(b.json(), a.json(), path);
    t.equal(b.headers['idempotent-replayed'], 'true');
  }
  t.equal((await raw.findOne({ name: 'I' }))!.level, 4, 'each $inc applied once');

  // Audited under their own actions (the trail is shipped from a spool: wait for it, bounded).
  const audit = h.mongo.db(h.keyVaultDb).collection('__audit');
  const wanted = ['documents.bulkWrite', 'documents.findOneAndUpdate', 'documents.update'];
  let seen: unknown[] = [];
  for (let i = 0; i < 100 && seen.length < wanted.length; i++) {
    seen = await audit.distinct('action', { action: { $in: wanted }, outcome: 'succeeded' });
    if (seen.length < wanted.length) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.same([...seen].sort(), [...wanted].sort(), 'each write operation is audited under its action');
});

t.test('an idempotent retry of a findOneAnd* keeps no plaintext and is answered under the grants of the retry', async (t) => {
  const h = await createDocumentsApp(t, writesSchema);
  const url = `/documents/${h.ns}`;
  const add = await h.call('POST', url, { document: { name: 'P', ssn: 'CANARY-replay-ssn', salary: { $numberInt: '90' }, level: { $numberInt: '1' } } });
  t.equal(add.statusCode, 201, add.body);
  const grants = [{ scope: `documents:${h.ns}:read` }, { scope: `documents:${h.ns}:write` }, { scope: 'decrypt' }];
  const created = await h.call('POST', '/clients', { name: 'replayer', grants });
  t.equal(created.statusCode, 201, created.body);
  const { client: { id }, token } = created.json();
  const call = as(h, token);
  const body = { filter: { name: 'P' }, update: { $inc: { level: 1 } }, returnDocument: 'after' };
  const first = await call(`${url}/find-one-and-update`, body, { 'idempotency-key': 'replay-1' });
  t.equal(first.statusCode, 200, first.body);
  t.equal(first.json().document.ssn, 'CANARY-replay-ssn', 'the first answer is decrypted');
  const records = await h.mongo.db(h.keyVaultDb).collection('__idempotency').find().toArray();
  t.ok(records.some((r) => r.state === 'done'), 'the answer was recorded');
  t.notMatch(EJSON.stringify(records), /CANARY/, 'what MongoDB keeps of the answer holds no plaintext of an encrypted field');
  t.ok(records.some((r) => r.document?._bsontype === 'Binary'), 'the document is kept as stored, in BSON');
  const none = await call(`${url}/find-one-and-delete`, { filter: { name: 'nobody' } }, { 'idempotency-key': 'replay-none' });
  const noneAgain = await call(`${url}/find-one-and-delete`, { filter: { name: 'nobody' } }, { 'idempotency-key': 'replay-none' });
  t.same([none.json(), noneAgain.json(), noneAgain.headers['idempotent-replayed']], [{ document: null, matched: 0 }, { document: null, matched: 0 }, 'true'], 'no document: replayed as none');

  const again = await call(`${url}/find-one-and-update`, body, { 'idempotency-key': 'replay-1' });
  t.equal(again.headers['idempotent-replayed'], 'true');
  t.same(again.json(), first.json(), 'a retry with the same grants gets the same answer');
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  t.equal((await raw.findOne({ name: 'P' }))!.level, 2, 'applied once');

  // The grants change between the attempts: the retry is answered under the new ones.
  const retryUntil = async (expect: (res: Awaited<ReturnType<typeof call>>) => boolean) => {
    let res = await call(`${url}/find-one-and-update`, body, { 'idempotency-key': 'replay-1' });
    for (let i = 0; i < 40 && !expect(res); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      res = await call(`${url}/find-one-and-update`, body, { 'idempotency-key': 'replay-1' });
    }
    return res;
  };
  const narrowed = await h.call('PATCH', `/clients/${id}`, { grants: grants.slice(0, 2) });
  t.equal(narrowed.statusCode, 200, narrowed.body);
  const masked = await retryUntil((res) => res.json().document?.ssn === null);
  t.equal(masked.statusCode, 200, masked.body);
  t.equal(masked.headers['idempotent-replayed'], 'true');
  t.same([masked.json().document.ssn, masked.json().document.salary, masked.json().document.level], [null, null, 2], 'decrypt taken away: masked');
  t.notMatch(masked.body, /CANARY/);
  const writeOnly = await h.call('PATCH', `/clients/${id}`, { grants: grants.slice(1, 2) });
  t.equal(writeOnly.statusCode, 200, writeOnly.body);
  const refused = await retryUntil((res) => res.statusCode === 403);
  t.equal(refused.statusCode, 403, 'read taken away: the retry is refused as a new request would be');
  t.equal(refused.headers['idempotent-replayed'], undefined, 'a refusal of the retry is no replay');
  t.notMatch(refused.body, /CANARY/);
  t.equal((await raw.findOne({ name: 'P' }))!.level, 2, 'and nothing was applied again');
});

t.test('a writer without decrypt cannot confirm a guess of a deterministic field through the modified count', async (t) => {
  const h = await createDocumentsApp(t, writesSchema);
  const url = `/documents/${h.ns}`;
  const add = await h.call('POST', url, { document: { name: 'G', ssn: 'CANARY-guess-me', level: { $numberInt: '1' } } });
  t.equal(add.statusCode, 201, add.body);
  const id = add.json().insertedId;
  const blind = await client(t, h, [{ scope: `documents:${h.ns}:read` }, { scope: `documents:${h.ns}:write` }]);
  const right = { $set: { ssn: 'CANARY-guess-me' } };
  const attempts: [string, unknown][] = [
    ['update', { filter: { name: 'G' }, update: right }],
    ['replace', { filter: { name: 'G' }, replacement: { name: 'G', ssn: 'CANARY-guess-me', level: { $numberInt: '1' } } }],
    ['bulk', { operations: [{ updateMany: { filter: { name: 'G' }, update: right } }] }],
  ];
  for (const [path, body] of attempts) {
    const res = await blind(`${url}/${path}`, body);
    t.equal(res.statusCode, 200, res.body);
    const counts = path === 'bulk' ? res.json().items[0] : res.json();
    t.same([counts.matched, counts.modified], [1, 1], `${path}: the right guess reads as a change`);
  }
  const writer = await h.call('POST', '/clients', { name: 'patcher', grants: [{ scope: `documents:${h.ns}:write` }] });
  const patched = await h.app.inject({
    method: 'PATCH',
    url: `${url}/${encodeURIComponent(JSON.stringify(id))}`,
    headers: { authorization: `Bearer ${writer.json().token}` },
    payload: { update: right },
  });
  t.equal(patched.statusCode, 200, patched.body);
  t.equal(patched.json().modified, 1, 'PATCH by id as well');
  // The admin may decrypt: the database's own count.
  const control = await h.call('POST', `${url}/update`, { filter: { name: 'G' }, update: right });
  t.same([control.json().matched, control.json().modified], [1, 0], 'a writer that may decrypt gets the real count');
  const plainOnly = await blind(`${url}/update`, { filter: { name: 'G' }, update: { $set: { level: { $numberInt: '1' } } } });
  t.same([plainOnly.json().matched, plainOnly.json().modified], [1, 0], 'plaintext fields keep the real count');
});

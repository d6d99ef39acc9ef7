import t from 'tap';
import { createDocumentsApp } from '../helpers/documents.js';
import { keyVaultDocs } from '../helpers/app.js';

t.test('Idempotency-Key: a retried request gets the first answer, not a second key or document', async (t) => {
  const h = await createDocumentsApp(t);
  const keysBefore = (await keyVaultDocs(h)).length;
  const create = (key: string, names: string[]) => h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: names }, { 'idempotency-key': key });

  const first = await create('create-once', ['idem-1']);
  t.equal(first.statusCode, 201);
  const retry = await create('create-once', ['idem-1']);
  t.equal(retry.statusCode, 201);
  t.equal(retry.headers['idempotent-replayed'], 'true');
  t.equal(retry.json().id, first.json().id, 'the same key comes back');
  t.equal((await keyVaultDocs(h)).length, keysBefore + 1, 'only one key was created');

  const reused = await create('create-once', ['idem-2']);
  t.equal(reused.statusCode, 422);
  t.equal(reused.json().code, 'IDEMPOTENCY_KEY_REUSED');

  const conflict = await create('second', ['idem-1']);
  t.equal(conflict.statusCode, 409, 'a 4xx answer is kept too');
  t.equal((await create('second', ['idem-1'])).headers['idempotent-replayed'], 'true');

  const doc = { document: { name: 'once', ssn: 'S-1', tenantKey: 'tenant-a' } };
  const a = await h.call('POST', `/documents/${h.ns}`, doc, { 'idempotency-key': 'doc-1' });
  const b = await h.call('POST', `/documents/${h.ns}`, doc, { 'idempotency-key': 'doc-1' });
  t.equal(a.statusCode, 201);
  t.same(b.json(), a.json());
  t.equal(await h.mongo.db(h.keyVaultDb).collection('employees').countDocuments({ name: 'once' }), 1);

  const concurrent = await Promise.all(
    Array.from({ length: 5 }, () => h.call('POST', `/documents/${h.ns}`, { document: { name: 'race', ssn: 'S-2', tenantKey: 'tenant-a' } }, { 'idempotency-key': 'race' })),
  );
  const statuses = concurrent.map((r) => r.statusCode).sort();
  t.ok(statuses.every((s) => s === 201 || s === 409), `concurrent retries: ${statuses}`);
  for (const busy of concurrent.filter((r) => r.statusCode === 409)) {
    t.equal(busy.json().code, 'IDEMPOTENCY_IN_PROGRESS');
    t.equal(busy.headers['retry-after'], '1', 'a retry still running says when to try again');
  }
  t.equal(await h.mongo.db(h.keyVaultDb).collection('employees').countDocuments({ name: 'race' }), 1, 'at most one insert happened');

  const other = await h.call('POST', '/clients', { name: 'other', grants: [{ scope: 'keys:write' }] });
  const asOther = await h.app.inject({
    method: 'POST',
    url: '/keys',
    headers: { authorization: `Bearer ${other.json().token}`, 'idempotency-key': 'create-once' },
    payload: { masterKey: { provider: 'local' }, keyAltNames: ['idem-other'] },
  });
  t.equal(asOther.statusCode, 201, 'keys are per client: another client may use the same key');
  t.not(asOther.json().id, first.json().id);
  const bad = await h.call('POST', '/keys', { masterKey: { provider: 'local' } }, { 'idempotency-key': 'x'.repeat(300) });
  t.equal(bad.statusCode, 400);
});

t.test('an insert whose answer was lost to a failure, retried with its Idempotency-Key, lands once', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const claims = h.mongo.db(h.keyVaultDb).collection('__idempotency');
  const doc = { name: 'lost-answer', ssn: 'S-1', tenantKey: 'tenant-a' };
  const first = await h.call('POST', url, { document: doc }, { 'idempotency-key': 'lost-1' });
  t.equal(first.statusCode, 201);
  // What a 5xx after the write leaves behind: the document is in, the claim is released.
  await claims.deleteMany({});
  const retry = await h.call('POST', url, { document: doc }, { 'idempotency-key': 'lost-1' });
  t.equal(retry.statusCode, 201, 'the retry is answered as the first attempt would have been');
  t.same(retry.json().insertedId, first.json().insertedId, 'with the same _id');
  t.equal(await raw.countDocuments({ name: 'lost-answer' }), 1, 'and nothing was inserted twice');

  const batch = { documents: [{ ...doc, name: 'lost-batch-0' }, { ...doc, name: 'lost-batch-1', _id: 'mine' }] };
  const firstBatch = await h.call('POST', url, batch, { 'idempotency-key': 'lost-2' });
  await claims.deleteMany({});
  const retryBatch = await h.call('POST', url, batch, { 'idempotency-key': 'lost-2' });
  t.same(retryBatch.json().items[0], firstBatch.json().items[0], 'a derived _id found already there is the first attempt');
  t.equal(retryBatch.json().items[1].error.code, 'DUPLICATE_DOCUMENT', 'an _id the client chose is its own to dedupe');
  t.equal(await raw.countDocuments({ name: /^lost-batch/ }), 2);

  const other = await h.call('POST', url, { document: { ...doc, name: 'lost-other' } }, { 'idempotency-key': 'lost-1' });
  t.equal(other.statusCode, 201, 'once the key is forgotten, another body under it is another request');
  t.not(other.json().insertedId.$oid, first.json().insertedId.$oid);
});

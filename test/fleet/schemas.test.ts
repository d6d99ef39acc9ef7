/**
 * Collection schemas across instances: two apps on the same database (each its own registry, as
 * two processes of a fleet), a change through one in force through the other within seconds, no
 * restart. Measured over HTTP from the answer through A to the change seen through B.
 */
import t from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { DET, RND } from '../helpers/documents.js';

const BOUND_MS = 3000;

const schemaOf = (keyAltName: string, extra: Record<string, unknown> = {}) => ({
  bsonType: 'object',
  properties: {
    name: { bsonType: 'string' },
    ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName } },
    note: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName } },
    ...extra,
  },
});

/** Poll `check` until it holds; the milliseconds since `since` (fails past the bound). */
async function within(t: { ok(...args: any[]): unknown }, what: string, since: number, check: () => Promise<boolean>): Promise<number> {
  for (;;) {
    const ok = await check();
    const elapsed = Math.round(performance.now() - since);
    if (ok || elapsed > BOUND_MS + 2000) {
      t.ok(ok && elapsed <= BOUND_MS, `${what}: after ${elapsed} ms (bound ${BOUND_MS} ms)`);
      return elapsed;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function key(h: TestApp, name: string): Promise<void> {
  const res = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
  if (res.statusCode !== 201) throw new Error(`key ${name}: ${res.body}`);
}

t.test('a PUT through A is served through B within seconds, a second version too, and a DELETE', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  const ns = `${a.keyVaultDb}.fleet`;
  await key(a, 'fleet');
  t.equal((await b.call('POST', `/documents/${ns}`, { document: { name: 'early' } })).json().code, 'COLLECTION_NOT_FOUND', 'B serves nothing yet');

  let since = performance.now();
  t.equal((await a.call('PUT', `/schemas/${ns}`, { schema: schemaOf('fleet') })).statusCode, 201);
  const put = await within(t, 'PUT through A, served through B', since, async () => (await b.call('POST', `/documents/${ns}`, { document: { name: 'Ada', ssn: 'CANARY-fleet' } })).statusCode === 201);
  const raw = await a.mongo.db(a.keyVaultDb).collection('fleet').findOne({ name: 'Ada' });
  t.equal(raw!.ssn.sub_type, 6, 'B encrypted it as the schema A stored says');
  t.equal((await a.call('POST', `/documents/${ns}/find`, { filter: { ssn: 'CANARY-fleet' } })).json().items.length, 1, 'A finds what B wrote');

  since = performance.now();
  const v2 = await a.call('PUT', `/schemas/${ns}`, { schema: schemaOf('fleet', { badge: { encrypt: { bsonType: 'int', algorithm: DET, keyAltName: 'fleet' } } }), ifVersion: 1 });
  t.equal(v2.json().version, 2);
  const second = await within(t, 'version 2 through B', since, async () => (await b.call('GET', `/schemas/${ns}`)).json().version === 2);
  t.equal((await b.call('POST', `/documents/${ns}`, { document: { name: 'Bob', badge: 3 } })).statusCode, 201);
  t.equal((await a.mongo.db(a.keyVaultDb).collection('fleet').findOne({ name: 'Bob' }))!.badge.sub_type, 6, 'B encrypts the field version 2 added');
  t.equal((await b.call('PUT', `/schemas/${ns}`, { schema: schemaOf('fleet'), ifVersion: 1 })).json().code, 'SCHEMA_VERSION_CONFLICT', 'B cannot overwrite it from a stale version');

  since = performance.now();
  t.equal((await a.call('DELETE', `/schemas/${ns}`)).statusCode, 204);
  const deleted = await within(t, 'DELETE through A, in force through B', since, async () => (await b.call('POST', `/documents/${ns}/find`, {})).statusCode === 404);
  t.equal((await b.call('GET', `/schemas/${ns}`)).statusCode, 404);
  t.same((await b.call('GET', `/schemas/${ns}/versions`)).json().items.map((v: { change: string }) => v.change), ['delete', 'put', 'put'], 'B reads the same history');
  t.comment(`through B after: PUT ${put} ms, version 2 ${second} ms, DELETE ${deleted} ms`);
});

t.test('SCHEMA_NOT_READY on both instances, then ready on A within seconds after the key is created through B', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  const ns = `${a.keyVaultDb}.pending`;
  t.equal((await b.call('GET', '/health/ready')).statusCode, 200, 'B is up (its first request starts it)');
  t.equal((await a.call('PUT', `/schemas/${ns}`, { schema: schemaOf('pending') })).json().status, 'notReady');
  await within(t, 'notReady through B', performance.now(), async () => (await b.call('POST', `/documents/${ns}`, { document: { name: 'x' } })).json().code === 'SCHEMA_NOT_READY');
  t.equal((await a.call('POST', `/documents/${ns}`, { document: { name: 'x' } })).json().code, 'SCHEMA_NOT_READY');
  t.same((await b.call('GET', '/health/ready')).json().schemas, { notReady: [ns] }, 'B lists it as not ready, and stays ready itself');

  const since = performance.now();
  await key(b, 'pending');
  const ms = await within(t, 'key created through B, collection served through A', since, async () => (await a.call('POST', `/documents/${ns}`, { document: { name: 'x', ssn: 'CANARY-pending' } })).statusCode === 201);
  await within(t, 'and through B', since, async () => (await b.call('GET', `/schemas/${ns}`)).json().status === 'ready');
  t.notOk((await a.call('GET', '/health/ready')).json().schemas, 'A lists nothing');
  t.comment(`served through A ${ms} ms after the key was created through B`);
});

/**
 * Collection schemas at run time (`/schemas`), over HTTP on one instance: the lifecycle, dry runs,
 * version conflicts, validation as at boot, the namespace rules, schemas waiting for their keys,
 * and what clients without `schemas:admin` get. Two instances: test/fleet/schemas.test.ts.
 */
import { UUID } from 'mongodb';
import t, { type Test } from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { DET, RND } from '../helpers/documents.js';

function schemaOf(keyAltName: string, extra: Record<string, unknown> = {}) {
  return {
    bsonType: 'object',
    required: ['name'],
    properties: {
      name: { bsonType: 'string' },
      ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName } },
      note: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName } },
      ...extra,
    },
  };
}

async function keyOf(h: TestApp, name: string): Promise<string> {
  const res = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
  if (res.statusCode !== 201) throw new Error(`key ${name}: ${res.statusCode} ${res.body}`);
  return res.json().id;
}

function as(h: TestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

async function clientOf(t: Test, h: TestApp, name: string, grants: unknown[]) {
  const res = await h.call('POST', '/clients', { name, grants });
  t.equal(res.statusCode, 201, res.body);
  return { id: res.json().client.id as string, call: as(h, res.json().token as string) };
}

const stored = (h: TestApp) => ({
  current: () => h.mongo.db(h.keyVaultDb).collection('__schemas').countDocuments(),
  versions: () => h.mongo.db(h.keyVaultDb).collection('__schemaVersions').countDocuments(),
});

t.test('PUT, GET, list, history and DELETE: a collection is served from its first PUT, without a restart, until its DELETE', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.people`;
  await keyOf(h, 'people');

  t.equal((await h.call('POST', `/documents/${ns}`, { document: { name: 'before' } })).json().code, 'COLLECTION_NOT_FOUND', 'no schema: not served');

  const put = await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('people'), comment: 'first' });
  t.equal(put.statusCode, 201, put.body);
  t.equal(put.headers.location, `/schemas/${encodeURIComponent(ns)}`);
  t.match(put.json(), { ns, version: 1, source: 'api', updatedBy: 'admin', comment: 'first', status: 'ready', missingKeys: [] });
  t.same(put.json().changes.added.map((r: { path: string }) => r.path), ['ssn', 'note']);

  const inserted = await h.call('POST', `/documents/${ns}`, { document: { name: 'Ada', ssn: 'CANARY-ssn-1', note: 'CANARY-note-1' } });
  t.equal(inserted.statusCode, 201, `served at once: ${inserted.body}`);
  const raw = await h.mongo.db(h.keyVaultDb).collection('people').findOne({ name: 'Ada' });
  t.equal((raw!.ssn as { sub_type: number }).sub_type, 6, 'ssn is stored encrypted');
  const found = await h.call('POST', `/documents/${ns}/find`, { filter: { ssn: 'CANARY-ssn-1' } });
  t.equal(found.json().items[0].note, 'CANARY-note-1', 'an equality query on the deterministic field finds it, decrypted');

  // A second version: note no longer encrypted, a new encrypted field; the old plan's data stays readable.
  const v2 = await h.call('PUT', `/schemas/${ns}`, {
    schema: { ...schemaOf('people'), properties: { name: { bsonType: 'string' }, ssn: schemaOf('people').properties.ssn, badge: { encrypt: { bsonType: 'int', algorithm: DET, keyAltName: 'people' } } } },
    ifVersion: 1,
  });
  t.equal(v2.statusCode, 200, v2.body);
  t.equal(v2.json().version, 2);
  t.same(v2.json().changes.added.map((r: { path: string }) => r.path), ['badge']);
  t.same(v2.json().changes.removed.map((r: { path: string }) => r.path), ['note']);
  t.same(v2.json().changes.changed, []);
  const badge = await h.call('POST', `/documents/${ns}`, { document: { name: 'Bob', badge: 7 } });
  t.equal(badge.statusCode, 201, badge.body);
  t.equal((await h.mongo.db(h.keyVaultDb).collection('people').findOne({ name: 'Bob' }))!.badge.sub_type, 6, 'the new field is encrypted at once');

  const one = await h.call('GET', `/schemas/${ns}`);
  t.equal(one.statusCode, 200);
  t.match(one.json(), { ns, version: 2, status: 'ready', schema: { properties: { badge: { encrypt: { keyAltName: 'people' } } } } });
  const list = await h.call('GET', '/schemas');
  t.same(
    list.json().items.map((i: { ns: string; version: number }) => [i.ns, i.version]),
    [[ns, 2]],
  );

  const deleted = await h.call('DELETE', `/schemas/${ns}?ifVersion=2`);
  t.equal(deleted.statusCode, 204, deleted.body);
  t.equal((await h.call('POST', `/documents/${ns}/find`, {})).json().code, 'COLLECTION_NOT_FOUND', 'no longer served');
  t.equal((await h.call('GET', `/schemas/${ns}`)).statusCode, 404);
  t.same((await h.call('GET', '/schemas')).json().items, []);
  t.equal(await h.mongo.db(h.keyVaultDb).collection('people').countDocuments(), 2, 'the data stays as stored');
  t.equal((await h.call('DELETE', `/schemas/${ns}`)).json().code, 'COLLECTION_NOT_FOUND', 'a second delete finds nothing');

  const history = await h.call('GET', `/schemas/${ns}/versions`);
  t.equal(history.statusCode, 200);
  t.same(
    history.json().items.map((v: { version: number; change: string; updatedBy: string }) => [v.version, v.change, v.updatedBy]),
    [[3, 'delete', 'admin'], [2, 'put', 'admin'], [1, 'put', 'admin']],
    'the history keeps every version and the deletion, newest first',
  );
  t.equal(history.json().items[2].comment, 'first');
  t.same(history.json().items[2].schema, schemaOf('people'), 'each version with its schema');
  t.notOk('schema' in history.json().items[0], 'a deletion has no schema');
  const paged = await h.call('GET', `/schemas/${ns}/versions?limit=2`);
  t.equal(paged.json().next, 2);
  t.same((await h.call('GET', `/schemas/${ns}/versions?limit=2&before=2`)).json().items.map((v: { version: number }) => v.version), [1]);
  t.equal((await h.call('GET', `/schemas/${h.keyVaultDb}.never/versions`)).json().code, 'COLLECTION_NOT_FOUND');

  const again = await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('people') });
  t.equal(again.statusCode, 201, 'a deleted namespace is created again');
  t.equal(again.json().version, 4);

  const audit = (await h.call('GET', '/audit?limit=200')).json().items as { action: string; outcome: string; collection?: string }[];
  for (const action of ['schemas.put', 'schemas.get', 'schemas.list', 'schemas.versions', 'schemas.delete']) {
    t.ok(audit.some((e) => e.action === action && e.outcome === 'succeeded'), `${action} is audited`);
  }
  t.ok(audit.some((e) => e.action === 'schemas.put' && e.collection === ns), 'with the namespace');
});

t.test('the same schema again makes no new version; a PUT without a change answers the live one', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.same`;
  await keyOf(h, 'same');
  t.equal((await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('same') })).statusCode, 201);
  const again = await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('same'), ifVersion: 0 });
  t.equal(again.statusCode, 200, 'a retry of the first PUT succeeds, even with its ifVersion');
  t.equal(again.json().version, 1);
  t.same(again.json().changes, { added: [], removed: [], changed: [] });
  t.equal(await stored(h).versions(), 1);
});

t.test('dryRun reports what would change and stores nothing', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.dry`;
  await keyOf(h, 'dry');
  await keyOf(h, 'dry-2');

  const first = await h.call('PUT', `/schemas/${ns}?dryRun=true`, { schema: schemaOf('dry') });
  t.equal(first.statusCode, 200, first.body);
  t.match(first.json(), { dryRun: true, ns, currentVersion: 0, status: 'ready', missingKeys: [] });
  t.same(first.json().changes.added, [
    { path: 'ssn', algorithm: 'deterministic', bsonType: ['string'], keyAltName: 'dry' },
    { path: 'note', algorithm: 'random', bsonType: ['string'], keyAltName: 'dry' },
  ]);
  t.equal(await stored(h).current(), 0, 'nothing in __schemas');
  t.equal(await stored(h).versions(), 0, 'nothing in __schemaVersions');
  t.equal((await h.call('GET', `/schemas/${ns}`)).statusCode, 404);
  t.equal((await h.call('POST', `/documents/${ns}`, { document: { name: 'x' } })).json().code, 'COLLECTION_NOT_FOUND', 'not served');

  t.equal((await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('dry') })).statusCode, 201);
  const changed = await h.call('PUT', `/schemas/${ns}?dryRun=true`, {
    schema: { ...schemaOf('dry'), properties: { name: { bsonType: 'string' }, ssn: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'dry-2' } }, extra: { encrypt: { bsonType: 'int', algorithm: RND, keyAltName: 'nope' } } } },
  });
  t.equal(changed.statusCode, 200, changed.body);
  t.match(changed.json(), { currentVersion: 1, status: 'notReady', missingKeys: [{ keyAltName: 'nope' }] });
  t.same(changed.json().changes.added.map((r: { path: string }) => r.path), ['extra']);
  t.same(changed.json().changes.removed.map((r: { path: string }) => r.path), ['note']);
  t.same(changed.json().changes.changed, [
    {
      path: 'ssn',
      before: { path: 'ssn', algorithm: 'deterministic', bsonType: ['string'], keyAltName: 'dry' },
      after: { path: 'ssn', algorithm: 'random', bsonType: ['string'], keyAltName: 'dry-2' },
    },
  ]);
  t.equal((await h.call('PUT', `/schemas/${ns}?dryRun=true`, { schema: schemaOf('dry'), ifVersion: 7 })).json().code, 'SCHEMA_VERSION_CONFLICT', 'a dry run checks ifVersion too');
  t.equal(await stored(h).versions(), 1, 'still only the one version stored');
  t.equal((await h.call('GET', `/schemas/${ns}`)).json().version, 1);
});

t.test('ifVersion: a change made meanwhile is not overwritten (409 SCHEMA_VERSION_CONFLICT), nothing is stored', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.cas`;
  await keyOf(h, 'cas');
  t.equal((await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('cas'), ifVersion: 0 })).statusCode, 201, 'ifVersion 0: only if there is none');
  const stale = await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('cas', { age: { bsonType: 'int' } }), ifVersion: 0 });
  t.equal(stale.statusCode, 409, stale.body);
  t.equal(stale.json().code, 'SCHEMA_VERSION_CONFLICT');
  t.match(stale.json().detail, /live version .* is 1, not 0/);
  t.equal((await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('cas', { age: { bsonType: 'int' } }), ifVersion: 1 })).statusCode, 200);
  t.equal((await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('cas', { age: { bsonType: 'long' } }), ifVersion: 1 })).json().code, 'SCHEMA_VERSION_CONFLICT');
  t.equal((await h.call('DELETE', `/schemas/${ns}?ifVersion=1`)).json().code, 'SCHEMA_VERSION_CONFLICT', 'a delete too');
  t.equal(await stored(h).versions(), 2, 'the refused changes stored nothing');
  t.equal((await h.call('GET', `/schemas/${ns}`)).json().schema.properties.age.bsonType, 'int');
});

t.test('concurrent PUTs of one namespace: each gets its own version, none is lost', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.race`;
  await keyOf(h, 'race');
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) => h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('race', { n: { bsonType: 'int', maximum: i } }), comment: `writer ${i}` })),
  );
  for (const res of results) t.ok(res.statusCode === 200 || res.statusCode === 201, res.body);
  const versions = results.map((res) => res.json().version as number).sort((a, b) => a - b);
  t.same(versions, [1, 2, 3, 4, 5, 6, 7, 8], 'eight answers, eight distinct versions');
  t.equal(results.filter((res) => res.statusCode === 201).length, 1, 'one created it');
  const history = (await h.call('GET', `/schemas/${ns}/versions?limit=100`)).json().items as { version: number; comment: string }[];
  t.same(history.map((v) => v.comment).sort(), Array.from({ length: 8 }, (_, i) => `writer ${i}`).sort(), 'every writer is in the history');
  const current = await h.call('GET', `/schemas/${ns}`);
  t.equal(current.json().version, 8, 'the current one is the newest');
  t.equal(current.json().comment, history.find((v) => v.version === 8)!.comment, 'with the newest version’s schema');
});

t.test('an invalid schema is 400 INVALID_SCHEMA naming the schema path, as at boot; nothing is stored', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.bad`;
  await keyOf(h, 'k');
  let deep: Record<string, unknown> = { bsonType: 'string' };
  for (let i = 0; i < 300; i++) deep = { bsonType: 'object', properties: { a: deep } };
  const cases: [string, unknown, RegExp][] = [
    ['deterministic double', { properties: { x: { encrypt: { bsonType: 'double', algorithm: DET, keyAltName: 'k' } } } }, /^\$\.properties\.x: deterministic encryption does not support bsonType "double"/],
    ['no key', { properties: { x: { encrypt: { bsonType: 'string', algorithm: RND } } } }, /^\$\.properties\.x: no key/],
    ['pointer with deterministic', { properties: { x: { encrypt: { bsonType: 'string', algorithm: DET, keyId: '/t' } } } }, /pointer works only with the random algorithm/],
    ['two rules for a field', { properties: { note_a: { bsonType: 'string' } }, patternProperties: { '^note_': { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'k' } } } }, /properties\.note_a: conflicts with patternProperties/],
    ['encrypt under items', { properties: { list: { bsonType: 'array', items: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'k' } } } } }, /list\.items: encrypt is supported only under properties/],
    ['_id encrypted', { properties: { _id: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'k' } } } }, /_id cannot be encrypted/],
    ['unknown algorithm', { properties: { x: { encrypt: { bsonType: 'string', algorithm: 'AES', keyAltName: 'k' } } } }, /algorithm must be one of/],
    ['not a JSON schema', { properties: { name: { type: 'string', maxLength: 'ten' } } }, /not a valid JSON schema/],
    ['a bad key id', { properties: { x: { encrypt: { bsonType: 'string', algorithm: RND, keyId: [{ $uuid: 'nope' }] } } } }, /keyId must hold a UUID/],
    ['a bad pattern', { patternProperties: { '(': { bsonType: 'string' } } }, /patternProperties: invalid pattern/],
    ['too deep', deep, /^\$: nested deeper than 200 levels/],
    ['too large', { properties: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`field_${i}`, { bsonType: 'string', description: 'x'.repeat(40) }])) }, /^\$: the schema is \d+ bytes as JSON; at most 262144/],
  ];
  for (const [what, schema, detail] of cases) {
    const res = await h.call('PUT', `/schemas/${ns}`, { schema });
    t.equal(res.statusCode, 400, `${what}: ${res.body.slice(0, 300)}`);
    t.equal(res.json().code, 'INVALID_SCHEMA', what);
    t.match(res.json().detail, detail, what);
    const dry = await h.call('PUT', `/schemas/${ns}?dryRun=true`, { schema });
    t.equal(dry.json().code, 'INVALID_SCHEMA', `${what}, as a dry run`);
  }
  for (const [what, body] of [
    ['a schema that is not an object', { schema: ['x'] }],
    ['no schema', { comment: 'x' }],
    ['an unknown field', { schema: {}, version: 3 }],
    ['a negative ifVersion', { schema: {}, ifVersion: -1 }],
  ] as const) {
    const res = await h.call('PUT', `/schemas/${ns}`, body);
    t.equal(res.statusCode, 400, what);
    t.equal(res.json().code, 'VALIDATION_FAILED', what);
  }
  const poisoned = await h.app.inject({
    method: 'PUT',
    url: `/schemas/${ns}`,
    headers: { authorization: `Bearer ${h.env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
    payload: '{"schema":{"__proto__":{"polluted":true}}}',
  });
  t.equal(poisoned.statusCode, 400, 'prototype poisoning is refused');
  t.equal(await stored(h).current(), 0, 'nothing stored');
  t.equal(await stored(h).versions(), 0, 'no version either');
  t.equal((await h.call('GET', '/health/ready')).statusCode, 200, 'the instance is unharmed');
});

t.test('namespaces: not the key vault, not the service’s own collections, not system.*; well-formed', async (t) => {
  const h = await createTestApp(t);
  const db = h.keyVaultDb;
  const schema = { properties: { x: { bsonType: 'string' } } };
  for (const ns of [`${db}.__keyVault`, `${db}.__schemas`, `${db}.__clients`, `${db}.__audit`, `${db}.__audit.heads`, 'other.__jobs', 'other.system.views']) {
    const res = await h.call('PUT', `/schemas/${encodeURIComponent(ns)}`, { schema });
    t.equal(res.statusCode, 400, `${ns}: ${res.body}`);
    t.equal(res.json().code, 'INVALID_NAMESPACE', ns);
    t.equal((await h.call('GET', `/schemas/${encodeURIComponent(ns)}`)).statusCode, 404, `${ns} has no schema to read`);
  }
  const custom = await createTestApp(t, { env: { CLIENTS_NAMESPACE: `${db}_c.clients`, AUDIT_NAMESPACE: `${db}_c.audit` } });
  t.teardown(() => custom.mongo.db(`${db}_c`).dropDatabase());
  for (const ns of [`${db}_c.clients`, `${db}_c.audit`, `${db}_c.audit.checkpoints`]) {
    t.equal((await custom.call('PUT', `/schemas/${ns}`, { schema })).json().code, 'INVALID_NAMESPACE', `configured service collection ${ns}`);
  }
  for (const ns of ['nodot', '.coll', 'db.', 'd$b.coll', 'db.c$oll', 'a%20b.coll', `db.${'x'.repeat(300)}`, 'db.c%01oll']) {
    const res = await h.call('PUT', `/schemas/${ns}`, { schema });
    t.equal(res.statusCode, 400, `${ns}: ${res.body}`);
    t.equal(res.json().code, 'VALIDATION_FAILED', ns);
  }
  t.equal(await stored(h).versions(), 0, 'nothing stored');
});

/** Poll GET /schemas/{ns} until its status is `want` (up to 5 s); the milliseconds it took. */
async function untilStatus(h: TestApp, ns: string, want: string): Promise<{ status: string; ms: number }> {
  const since = performance.now();
  let status = '';
  while (performance.now() - since < 5000) {
    status = (await h.call('GET', `/schemas/${ns}`)).json().status;
    if (status === want) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { status, ms: Math.round(performance.now() - since) };
}

t.test('a schema naming a key that does not exist: 503 SCHEMA_NOT_READY naming it; served within seconds of its creation, no restart; notReady again when the name goes', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.waiting`;
  const put = await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('later') });
  t.equal(put.statusCode, 201, put.body);
  t.match(put.json(), { status: 'notReady', missingKeys: [{ keyAltName: 'later' }] });

  const refused = await h.call('POST', `/documents/${ns}`, { document: { name: 'x', ssn: 'CANARY-waiting' } });
  t.equal(refused.statusCode, 503);
  t.equal(refused.json().code, 'SCHEMA_NOT_READY');
  t.match(refused.json().detail, /names data keys that do not exist: key alt name "later"/, 'the detail names the missing key');
  t.ok(Number(refused.headers['retry-after']) > 0, 'with Retry-After');
  t.equal((await h.call('POST', `/documents/${ns}/find`, {})).json().code, 'SCHEMA_NOT_READY', 'reads too');
  t.equal(await h.mongo.db(h.keyVaultDb).collection('waiting').countDocuments(), 0, 'nothing written');
  const ready = await h.call('GET', '/health/ready');
  t.equal(ready.statusCode, 200, 'readiness stays 200');
  t.same(ready.json().schemas, { notReady: [ns] }, 'and lists the namespace');
  t.match((await h.call('GET', '/schemas')).json().items, [{ ns, status: 'notReady', missingKeys: [{ keyAltName: 'later' }] }]);
  t.notOk(h.logs.some((line) => /"level":50/.test(line) && line.includes('SCHEMA_NOT_READY')), 'a refusal, not an error in the log');

  const keyId = await keyOf(h, 'later');
  const created = await untilStatus(h, ns, 'ready');
  t.equal(created.status, 'ready', `the key created: ready after ${created.ms} ms`);
  t.ok(created.ms < 3000, 'within a few seconds');
  const inserted = await h.call('POST', `/documents/${ns}`, { document: { name: 'x', ssn: 'CANARY-waiting' } });
  t.equal(inserted.statusCode, 201, inserted.body);
  t.notOk((await h.call('GET', '/health/ready')).json().schemas, 'nothing listed once ready');

  // The name leaves the key (a key change the fleet feed announces): the schema no longer resolves.
  t.equal((await h.call('DELETE', `/keys/${keyId}/alt-names/later`)).statusCode, 409, 'a name the schema uses is not removed unless forced');
  t.equal((await h.call('DELETE', `/keys/${keyId}/alt-names/later?force=true`)).statusCode, 200);
  const gone = await untilStatus(h, ns, 'notReady');
  t.equal(gone.status, 'notReady', `the alt name removed: notReady after ${gone.ms} ms`);
  t.equal((await h.call('POST', `/documents/${ns}`, { document: { name: 'y' } })).json().code, 'SCHEMA_NOT_READY');
  t.equal((await h.call('POST', `/keys/${keyId}/alt-names`, { keyAltName: 'later' })).statusCode, 200);
  t.equal((await untilStatus(h, ns, 'ready')).status, 'ready', 'and ready again when it comes back');
  t.equal((await h.call('POST', `/documents/${ns}/find`, { filter: { ssn: 'CANARY-waiting' } })).json().items.length, 1, 'the document written before is found');
});

t.test('a key named by id, written by a driver straight into the vault, is picked up by the retry', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.byid`;
  const missingId = '3f2a1b4c-5d6e-4f70-8192-a3b4c5d6e7f8';
  const schema = { properties: { salary: { encrypt: { bsonType: 'int', algorithm: RND, keyId: [{ $uuid: missingId }] } } } };
  t.match((await h.call('PUT', `/schemas/${ns}`, { schema })).json(), { status: 'notReady', missingKeys: [{ keyId: missingId }] });
  // A key document as a CSFLE driver writes it (a copy of one of ours, under the id the schema names).
  const template = await keyOf(h, 'template');
  const vault = h.mongo.db(h.keyVaultDb).collection('__keyVault');
  const doc = await vault.findOne({ keyAltNames: 'template' });
  t.ok(doc, `key ${template} read`);
  const { keyAltNames: _names, ...copy } = doc!;
  await vault.insertOne({ ...copy, _id: new UUID(missingId) as never });
  const found = await untilStatus(h, ns, 'ready');
  t.equal(found.status, 'ready', `ready after ${found.ms} ms, with no change announced in the feed`);
  t.equal((await h.call('POST', `/documents/${ns}`, { document: { salary: 1 } })).statusCode, 201);
});

t.test('clients without schemas:admin get 403 on every schema route; schemas:read reads only; grants of schemas:* are bounded by the granter', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.guarded`;
  await keyOf(h, 'guarded');
  t.equal((await h.call('PUT', `/schemas/${ns}`, { schema: schemaOf('guarded') })).statusCode, 201);

  // Everything a documents team could hold, short of schemas:*.
  const limited = await clientOf(t, h, 'limited', [
    { scope: 'documents:*:read' },
    { scope: 'documents:*:write' },
    { scope: 'encrypt' },
    { scope: 'decrypt' },
    { scope: 'keys:read' },
    { scope: 'keys:write' },
    { scope: 'keys:delete' },
    { scope: 'clients:admin' },
    { scope: 'jobs:admin' },
  ]);
  const reader = await clientOf(t, h, 'reader', [{ scope: 'schemas:read' }]);
  const admin = await clientOf(t, h, 'schema admin', [{ scope: 'schemas:admin' }]);
  const routes: [string, string, unknown?][] = [
    ['PUT', `/schemas/${ns}`, { schema: schemaOf('guarded', { extra: { bsonType: 'int' } }) }],
    ['PUT', `/schemas/${ns}?dryRun=true`, { schema: schemaOf('guarded', { extra: { bsonType: 'int' } }) }],
    ['PUT', `/schemas/${h.keyVaultDb}.other`, { schema: schemaOf('guarded') }],
    ['GET', '/schemas'],
    ['GET', `/schemas/${ns}`],
    ['GET', `/schemas/${ns}/versions`],
    ['DELETE', `/schemas/${ns}`],
  ];
  for (const [method, url, body] of routes) {
    const res = await limited.call(method, url, body);
    t.equal(res.statusCode, 403, `limited: ${method} ${url}`);
    t.match(res.json().detail, /schemas:/, 'the detail names the scope needed');
  }
  for (const [method, url, body] of routes) {
    const res = await reader.call(method, url, body);
    t.equal(res.statusCode, method === 'GET' ? 200 : 403, `schemas:read: ${method} ${url}`);
  }
  t.equal(await stored(h).versions(), 1, 'no refused request stored anything');
  t.equal((await h.call('GET', `/schemas/${ns}`)).json().version, 1);
  const denied = (await h.call('GET', '/audit?limit=200')).json().items.filter((e: { action: string; outcome: string }) => e.action.startsWith('schemas.') && e.outcome === 'denied');
  t.ok(denied.length >= routes.length, 'refusals are audited as denied');

  t.equal((await admin.call('GET', `/schemas/${ns}`)).statusCode, 200, 'schemas:admin reads');
  const changed = await admin.call('PUT', `/schemas/${ns}`, { schema: schemaOf('guarded', { extra: { bsonType: 'int' } }) });
  t.equal(changed.statusCode, 200, 'and writes');
  t.equal(changed.json().updatedBy, admin.id, 'as itself');

  // clients:admin cannot hand out schemas:* it does not hold, nor raise itself to it.
  for (const scope of ['schemas:admin', 'schemas:read']) {
    const res = await limited.call('POST', '/clients', { name: `wants ${scope}`, grants: [{ scope }] });
    t.equal(res.statusCode, 403, `clients:admin cannot grant ${scope}`);
    t.match(res.json().detail, new RegExp(`grants\\[0\\] \\(${scope}\\) is a scope you do not hold`));
  }
  const self = (await h.call('GET', `/clients/${limited.id}`)).json().grants;
  t.equal((await limited.call('PATCH', `/clients/${limited.id}`, { grants: [...self, { scope: 'schemas:admin' }] })).statusCode, 403, 'nor give it to itself');
  const delegated = await clientOf(t, h, 'delegated', [{ scope: 'clients:admin' }, { scope: 'schemas:read' }]);
  t.equal((await delegated.call('POST', '/clients', { name: 'up', grants: [{ scope: 'schemas:admin' }] })).statusCode, 403, 'schemas:read does not cover schemas:admin');
  t.equal((await delegated.call('POST', '/clients', { name: 'same', grants: [{ scope: 'schemas:read' }] })).statusCode, 201, 'it hands out what it holds');
  t.equal((await h.call('POST', '/clients', { name: 'op', grants: [{ scope: 'schemas:admin' }, { scope: 'schemas:read' }] })).statusCode, 201, 'the operator may');
});

/**
 * The registry's live view, with an in-memory store and key lookup (a unit test: the HTTP and
 * two-instance behaviour is in test/routes/schemas.test.ts and test/fleet/schemas.test.ts).
 */
import t from 'tap';
import { createSchemaRegistry } from '../../src/documents/schema-registry.js';
import type { CurrentSchemaDocument } from '../../src/documents/schema-store.js';
import type { EncryptNode } from '../../src/documents/encryption-plan.js';
import { DET, RND } from '../helpers/documents.js';

const ID_1 = '11111111-1111-4111-8111-111111111111';
const ID_2 = '22222222-2222-4222-8222-222222222222';
const ID_3 = '33333333-3333-4333-8333-333333333333';
const NS = 'hr.employees';

function docOf(version: number, schema: unknown, extra: Partial<CurrentSchemaDocument> = {}): CurrentSchemaDocument {
  return { _id: NS, version, schemaJson: JSON.stringify(schema), source: 'api', updatedAt: new Date(), updatedBy: 'admin', ...extra };
}

const v1 = {
  properties: {
    ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr' } },
    salary: { encrypt: { bsonType: 'int', algorithm: RND, keyId: [{ $uuid: ID_3 }] } },
  },
};

function setup() {
  const docs = new Map<string, CurrentSchemaDocument>([[NS, docOf(1, v1)]]);
  const keys = { names: new Map([['hr', ID_1]]), ids: new Set([ID_1, ID_2, ID_3]) };
  let lookups = 0;
  let failing = false;
  const registry = createSchemaRegistry({
    store: {
      listCurrent: async () => {
        if (failing) throw new Error('database away');
        return [...docs.values()];
      },
      getCurrent: async (ns) => docs.get(ns) ?? null,
    },
    async findKeys(names, ids) {
      lookups++;
      return {
        idsByAltName: new Map(names.filter((name) => keys.names.has(name)).map((name) => [name, keys.names.get(name)!])),
        existingIds: new Set(ids.filter((id) => keys.ids.has(id))),
      };
    },
  });
  return { registry, docs, keys, lookups: () => lookups, fail: (on: boolean) => (failing = on) };
}

const keyOf = (schema: { plan?: { properties: Map<string, unknown> } }, field: string) => (schema.plan!.properties.get(field) as EncryptNode).key;

t.test('keys are resolved into a copy: the compiled plan keeps the alt name, compiled once per version', async (t) => {
  const { registry } = setup();
  await registry.load();
  const schema = await registry.require(NS);
  t.same(keyOf(schema, 'ssn'), { kind: 'id', id: ID_1 }, 'the alt name resolved to its key id');
  t.same(keyOf(registry.get(NS)!.compiled, 'ssn'), { kind: 'altName', name: 'hr' }, 'the compiled plan is left as written');
  t.match(registry.list(), [{ namespace: NS, version: 1, status: 'ready', keyIds: [ID_3], keyAltNames: ['hr'], missingKeys: [] }]);
});

t.test('a request keeps the schema it started with; key changes and new versions install new objects', async (t) => {
  const { registry, docs, keys } = setup();
  await registry.load();
  const before = await registry.require(NS);
  const compiled = registry.get(NS)!.compiled;

  keys.names.set('hr', ID_2);
  await registry.keysChanged();
  const moved = await registry.require(NS);
  t.same(keyOf(moved, 'ssn'), { kind: 'id', id: ID_2 }, 'the alt name now names another key');
  t.same(keyOf(before, 'ssn'), { kind: 'id', id: ID_1 }, 'the schema a request already holds is unchanged');
  t.equal(registry.get(NS)!.compiled, compiled, 'not compiled again for a key change');

  docs.set(NS, docOf(2, { properties: { ssn: v1.properties.ssn } }));
  await registry.changed(NS);
  const second = await registry.require(NS);
  t.equal(second.version, 2);
  t.notOk(second.plan!.properties.has('salary'));
  t.ok(before.plan!.properties.has('salary'), 'the old version still whole for its requests');
  t.not(registry.get(NS)!.compiled, compiled, 'a new version is compiled');
  const v2compiled = registry.get(NS)!.compiled;
  await registry.changed(NS);
  t.equal(registry.get(NS)!.compiled, v2compiled, 'the same version announced again: not compiled again');

  docs.set(NS, docOf(1, v1));
  await registry.changed(NS);
  t.equal((await registry.require(NS)).version, 2, 'an older read never replaces a newer version');
});

t.test('missing keys: notReady with SCHEMA_NOT_READY naming them, listed all the same; ready when they appear', async (t) => {
  const { registry, keys } = setup();
  keys.names.delete('hr');
  keys.ids.delete(ID_3);
  await registry.load();
  await t.rejects(registry.require(NS), { code: 'SCHEMA_NOT_READY', status: 503, detail: /key alt name "hr", key id 33333333-3333-4333-8333-333333333333/ });
  t.same(registry.notReady(), [NS]);
  t.notOk(registry.isReady(NS));
  t.match(registry.list(), [{ namespace: NS, status: 'notReady', keyIds: [ID_3], keyAltNames: ['hr'], missingKeys: [{ keyAltName: 'hr' }, { keyId: ID_3 }] }]);

  keys.names.set('hr', ID_1);
  keys.ids.add(ID_3);
  await registry.keysChanged();
  t.equal((await registry.require(NS)).version, 1);
  t.same(registry.notReady(), []);
});

t.test('a deletion stops serving the namespace; an absent one is 404', async (t) => {
  const { registry, docs } = setup();
  await registry.load();
  docs.set(NS, { ...docOf(2, v1), deleted: true, schemaJson: undefined } as CurrentSchemaDocument);
  await registry.changed(NS);
  await t.rejects(registry.require(NS), { code: 'COLLECTION_NOT_FOUND' });
  t.same(registry.list(), []);
  await t.rejects(registry.require('other.coll'), { code: 'COLLECTION_NOT_FOUND' });
});

t.test('before the first load can be had, requests wait for it and fail 503 DATABASE_UNAVAILABLE; keys changing together share one lookup', async (t) => {
  const { registry, fail, lookups } = setup();
  fail(true);
  await t.rejects(registry.require(NS), { code: 'DATABASE_UNAVAILABLE', status: 503 });
  fail(false);
  t.equal((await registry.require(NS)).version, 1, 'the next request loads them');
  const before = lookups();
  await Promise.all(Array.from({ length: 50 }, () => registry.keysChanged()));
  t.ok(lookups() - before <= 2, `50 key changes at once: ${lookups() - before} lookups`);
});

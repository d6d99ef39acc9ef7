import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestApp } from '../helpers/app.js';
import { DET, RND, employeesSchema } from '../helpers/documents.js';

t.test('bad collection schemas stop the boot with a message naming the file and the path', async (t) => {
  const setup = await createTestApp(t);
  const keyId = (await setup.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['k'] })).json().id;
  const cases: [string, unknown, RegExp][] = [
    ['db.doubles', { properties: { x: { encrypt: { bsonType: 'double', algorithm: DET, keyAltName: 'k' } } } }, /db\.doubles\.json: \$\.properties\.x: deterministic encryption does not support bsonType "double"/],
    ['db.nokey', { properties: { x: { encrypt: { bsonType: 'string', algorithm: RND } } } }, /db\.nokey\.json: \$\.properties\.x: no key/],
    ['db.pointerdet', { properties: { x: { encrypt: { bsonType: 'string', algorithm: DET, keyId: '/t' } } } }, /pointer works only with the random algorithm/],
    ['db.conflict', { properties: { note_a: { bsonType: 'string' } }, patternProperties: { '^note_': { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'k' } } } }, /properties\.note_a: conflicts with patternProperties/],
    ['db.inarray', { properties: { list: { bsonType: 'array', items: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'k' } } } } }, /list\.items: encrypt is supported only under properties/],
    ['db.id', { properties: { _id: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'k' } } } }, /_id cannot be encrypted/],
    ['db.__jobs', { properties: { x: { bsonType: 'string' } } }, /db\.__jobs is one of the service's own collections/],
    ['db.system.views', { properties: { x: { bsonType: 'string' } } }, /one of the service's own collections \(or MongoDB's\)/],
    ['db.badalgo', { properties: { x: { encrypt: { bsonType: 'string', algorithm: 'AES', keyAltName: 'k' } } } }, /algorithm must be one of/],
    ['db.multitype', { properties: { x: { encrypt: { bsonType: ['string', 'int'], algorithm: DET, keyAltName: 'k' } } } }, /exactly one bsonType/],
    ['db.badjson', '{"properties": ', /db\.badjson\.json: not valid JSON/],
    ['db.badajv', { properties: { name: { type: 'string', maxLength: 'ten' } } }, /not a valid JSON schema/],
    [`${setup.keyVaultDb}.__keyVault`, employeesSchema(keyId), /key vault cannot be a document collection/],
  ];
  for (const [ns, schema, message] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'bad-schema-'));
    writeFileSync(join(dir, `${ns}.json`), typeof schema === 'string' ? schema : JSON.stringify(schema));
    await t.rejects(createTestApp(t, { share: setup, env: { SCHEMAS_DIR: dir } }), message, ns);
  }
  await t.rejects(createTestApp(t, { share: setup, env: { SCHEMAS_DIR: '/nonexistent/schemas' } }), /SCHEMAS_DIR .* does not exist/);
});

t.test('the key trash is never a document collection, whatever the key vault is called', async (t) => {
  const setup = await createTestApp(t);
  const dir = mkdtempSync(join(tmpdir(), 'trash-schema-'));
  writeFileSync(join(dir, `${setup.keyVaultDb}.keysTrash.json`), JSON.stringify({ properties: { x: { bsonType: 'string' } } }));
  await t.rejects(
    createTestApp(t, { share: setup, env: { SCHEMAS_DIR: dir, KEY_VAULT_NAMESPACE: `${setup.keyVaultDb}.keys` } }),
    /keysTrash is one of the service's own collections/,
    'deleted keys (their key material) must not be readable through /documents',
  );
});

t.test('a schema file naming keys that do not exist no longer stops the boot: the collection waits for them (503 SCHEMA_NOT_READY)', async (t) => {
  const setup = await createTestApp(t);
  const dir = mkdtempSync(join(tmpdir(), 'waiting-schema-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = `${setup.keyVaultDb}.waiting`;
  const missingId = '00000000-0000-4000-8000-000000000000';
  writeFileSync(
    join(dir, `${ns}.json`),
    JSON.stringify({ properties: { x: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'nope' } }, y: { encrypt: { bsonType: 'string', algorithm: RND, keyId: [{ $uuid: missingId }] } } } }),
  );
  const h = await createTestApp(t, { share: setup, env: { SCHEMAS_DIR: dir } });
  const refused = await h.call('POST', `/documents/${ns}`, { document: { x: 'a' } });
  t.equal(refused.statusCode, 503, refused.body);
  t.equal(refused.json().code, 'SCHEMA_NOT_READY');
  t.match(refused.json().detail, /key alt name "nope", key id 00000000-0000-4000-8000-000000000000/);
  t.match((await h.call('GET', `/schemas/${ns}`)).json(), { source: 'file', file: `${ns}.json`, status: 'notReady', missingKeys: [{ keyAltName: 'nope' }, { keyId: missingId }] });
  t.equal((await h.call('GET', '/health/ready')).statusCode, 200);
  t.ok(h.logs.some((line) => line.includes('collection schema not ready')), 'the log says which collection waits');
});

t.test('schema files are imported at boot when they changed; an API change wins until the file changes again', async (t) => {
  const setup = await createTestApp(t);
  await setup.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['filed'] });
  const dir = mkdtempSync(join(tmpdir(), 'filed-schema-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = `${setup.keyVaultDb}.filed`;
  const file = join(dir, `${ns}.json`);
  const v1 = { properties: { a: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'filed' } } } };
  writeFileSync(file, JSON.stringify(v1, null, 2));
  const boot = async () => {
    const h = await createTestApp(t, { share: setup, env: { SCHEMAS_DIR: dir } });
    await h.app.schemaRegistry.whenLoaded();
    return h;
  };

  const first = await boot();
  const imported = (await first.call('GET', `/schemas/${ns}`)).json();
  t.match(imported, { version: 1, source: 'file', file: `${ns}.json`, updatedBy: `file:${ns}.json`, status: 'ready', schema: v1 });
  t.match(imported.fileHash, /^sha256:[0-9a-f]{64}$/);
  t.equal((await first.call('POST', `/documents/${ns}`, { document: { a: 'x' } })).statusCode, 201);

  const again = await boot();
  t.equal((await again.call('GET', `/schemas/${ns}`)).json().version, 1, 'the same file again: no new version');

  const api = { properties: { a: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'filed' } }, b: { bsonType: 'int' } } };
  t.equal((await again.call('PUT', `/schemas/${ns}`, { schema: api })).json().version, 2);
  const afterApi = await boot();
  t.match((await afterApi.call('GET', `/schemas/${ns}`)).json(), { version: 2, source: 'api', schema: api }, 'a restart with the unchanged file keeps the API change');

  const v3 = { properties: { a: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'filed' } } } };
  writeFileSync(file, JSON.stringify(v3));
  const edited = await boot();
  t.match((await edited.call('GET', `/schemas/${ns}`)).json(), { version: 3, source: 'file', schema: v3 }, 'the file edited and the service restarted: the file wins');
  let followed = 0;
  for (const deadline = Date.now() + 3000; followed !== 3 && Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
    followed = (await first.call('GET', `/schemas/${ns}`)).json().version;
  }
  t.equal(followed, 3, 'an instance already running follows the import (through the change feed)');
  t.same(
    (await edited.call('GET', `/schemas/${ns}/versions`)).json().items.map((v: { version: number; source: string }) => [v.version, v.source]),
    [[3, 'file'], [2, 'api'], [1, 'file']],
  );
  t.equal((await edited.call('DELETE', `/schemas/${ns}`)).statusCode, 204);
  const afterDelete = await boot();
  t.equal((await afterDelete.call('GET', `/schemas/${ns}`)).statusCode, 404, 'a deletion through the API wins over the unchanged file too');
});

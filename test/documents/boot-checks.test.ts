import { mkdtempSync, writeFileSync } from 'node:fs';
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
    ['db.unknownalt', { properties: { x: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'nope' } } } }, /db\.unknownalt\.json: \$\.properties\.x: key alt name "nope" names no data key/],
    ['db.unknownid', { properties: { x: { encrypt: { bsonType: 'string', algorithm: RND, keyId: [{ $uuid: '00000000-0000-4000-8000-000000000000' }] } } } }, /names no data key/],
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

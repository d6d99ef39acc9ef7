/**
 * Which collections use a data key: the schema registry lists, for each collection schema, the
 * keys it names by id and by alt name (alt names it resolved at start-up count by id too), and a
 * delete is refused while any of them is the key.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Binary, UUID } from 'mongodb';
import t from 'tap';
import { createKeyDeletion } from '../../src/documents/key-deletion.js';
import { createSchemaRegistry, readSchemaDirectory, resolveSchemaKeys } from '../../src/documents/schema-registry.js';
import type { KeyDocument } from '../../src/key-vault/key-document.js';
import { DET, RND } from '../helpers/documents.js';

const byId = '11111111-2222-4333-8444-555555555555';
const resolved = '66666666-7777-4888-8999-aaaaaaaaaaaa';
const unused = 'bbbbbbbb-cccc-4ddd-8eee-ffffffffffff';

function keyDoc(id: string, names: string[] = []): KeyDocument {
  return { _id: new UUID(id), keyMaterial: new Binary(Buffer.alloc(1)), creationDate: new Date(), updateDate: new Date(), status: 0, masterKey: { provider: 'local' }, ...(names.length ? { keyAltNames: names } : {}) };
}

t.test('the registry lists each schema with the keys it names; a named key is in use, unless forced', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'schemas-'));
  writeFileSync(join(dir, 'hr.people.json'), JSON.stringify({
    bsonType: 'object',
    properties: {
      ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
      salary: { encrypt: { bsonType: 'int', algorithm: RND, keyId: [{ $uuid: byId }] } },
      secret: { encrypt: { bsonType: 'string', algorithm: RND, keyId: '/tenant' } },
    },
  }));
  writeFileSync(join(dir, 'shop.orders.json'), JSON.stringify({ bsonType: 'object', properties: { card: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'cards' } } } }));
  const schemas = readSchemaDirectory(dir, { required: true, keyVaultNamespace: 'encryption.__keyVault' });
  t.same(schemas.map(({ namespace, keyIds, keyAltNames }) => ({ namespace, keyIds, keyAltNames })), [
    { namespace: 'hr.people', keyIds: [byId], keyAltNames: ['hr-det'] },
    { namespace: 'shop.orders', keyIds: [], keyAltNames: ['cards'] },
  ], 'computed when the schemas are compiled (a pointer names no key of its own)');
  await resolveSchemaKeys(schemas, {
    idsByAltName: async (names) => new Map(names.map((name) => [name, name === 'hr-det' ? resolved : unused])),
    existingIds: async (ids) => new Set(ids),
  });
  const registry = createSchemaRegistry(schemas);
  t.same(registry.list()[0]!.keyIds, [byId, resolved].sort(), 'an alt name resolved at start-up counts by id too');

  const deletedIds: string[] = [];
  const deletion = createKeyDeletion({
    registry,
    keyVault: {
      async deleteKey(id: UUID) {
        deletedIds.push(id.toHexString());
        return true;
      },
    },
  });
  t.same(deletion.namespacesUsing(keyDoc(byId)), ['hr.people'], 'by id');
  t.same(deletion.namespacesUsing(keyDoc('12345678-1234-4234-8234-123456789012', ['x', 'cards'])), ['shop.orders'], 'by any of its alt names');
  t.same(deletion.namespacesUsing(keyDoc(resolved)), ['hr.people'], 'by the id its name resolved to, even once the name moved');
  t.same(deletion.namespacesUsing(keyDoc(unused, ['tenant-a'])), ['shop.orders'], 'the id "cards" resolved to');
  t.same(deletion.namespacesUsing(keyDoc('12345678-1234-4234-8234-123456789012', ['tenant-a'])), [], 'a key only documents name is no schema’s');

  await t.rejects(deletion.deleteKey(keyDoc(byId), { force: false, deletedBy: 'cl_x' }), { code: 'KEY_IN_USE', message: /hr\.people/ });
  t.same(deletedIds, [], 'nothing deleted');
  await deletion.deleteKey(keyDoc(byId), { force: true, deletedBy: 'cl_x' });
  t.same(deletedIds, [byId], 'forced');
});

/**
 * Which collections use a data key: the schema registry lists, for each collection schema, the
 * keys it names by id and by alt name, and a delete is refused while any of them is the key.
 */
import { Binary, UUID } from 'mongodb';
import t from 'tap';
import { createKeyDeletion } from '../../src/documents/key-deletion.js';
import type { KeyDocument } from '../../src/key-vault/key-document.js';

const byId = '11111111-2222-4333-8444-555555555555';
const unused = 'bbbbbbbb-cccc-4ddd-8eee-ffffffffffff';

function keyDoc(id: string, names: string[] = []): KeyDocument {
  return { _id: new UUID(id), keyMaterial: new Binary(Buffer.alloc(1)), creationDate: new Date(), updateDate: new Date(), status: 0, masterKey: { provider: 'local' }, ...(names.length ? { keyAltNames: names } : {}) };
}

t.test('a key a collection schema names (by id or by any alt name) is in use, unless forced', async (t) => {
  // The registry's list() (src/documents/schema-registry.ts) as the check reads it; the registry
  // itself is tested in test/documents/schema-registry.test.ts and over HTTP in test/routes/keys-trash.test.ts.
  const registry = {
    list: () => [
      { namespace: 'hr.people', keyIds: [byId], keyAltNames: ['hr-det'] },
      { namespace: 'shop.orders', keyIds: [], keyAltNames: ['cards'] },
    ],
  };
  const deletedIds: string[] = [];
  const removed: string[] = [];
  const deletion = createKeyDeletion({
    registry,
    keyVault: {
      async deleteKey(id: UUID) {
        deletedIds.push(id.toHexString());
        return true;
      },
      async removeAltName(id: UUID, name: string) {
        removed.push(name);
        return keyDoc(id.toHexString(), []);
      },
    },
  });
  t.same(deletion.namespacesUsing(keyDoc(byId)), ['hr.people'], 'by id');
  t.same(deletion.namespacesUsing(keyDoc('12345678-1234-4234-8234-123456789012', ['x', 'cards'])), ['shop.orders'], 'by any of its alt names');
  t.same(deletion.namespacesUsing(keyDoc(unused, ['hr-det'])), ['hr.people'], 'by an alt name a schema names');
  t.same(deletion.namespacesUsing(keyDoc('12345678-1234-4234-8234-123456789012', ['tenant-a'])), [], 'a key only documents name is no schema’s');

  await t.rejects(deletion.deleteKey(keyDoc(byId), { force: false, deletedBy: 'cl_x' }), { code: 'KEY_IN_USE', message: /hr\.people/ });
  t.same(deletedIds, [], 'nothing deleted');
  await deletion.deleteKey(keyDoc(byId), { force: true, deletedBy: 'cl_x' });
  t.same(deletedIds, [byId], 'forced');

  // An alt name a schema resolves its key by cannot silently go away either.
  await t.rejects(deletion.removeAltName(new UUID(byId), 'cards', { force: false }), { code: 'KEY_IN_USE', message: /shop\.orders/ });
  t.same(removed, [], 'nothing removed');
  await deletion.removeAltName(new UUID(byId), 'spare', { force: false });
  await deletion.removeAltName(new UUID(byId), 'cards', { force: true });
  t.same(removed, ['spare', 'cards'], 'a name no schema uses, and a forced one');
});

/**
 * Moves between the key vault and its trash on the real FerretDB, and what happens when a process
 * dies between their two writes: the steps of key-trash.ts are called directly, stopping where a
 * crash would, and the key store's sweep (as after a restart) or next operation settles the key.
 */
import { randomBytes } from 'node:crypto';
import { Binary, MongoClient, UUID } from 'mongodb';
import t from 'tap';
import type { KeyDocument, TrashedKeyDocument } from '../../src/key-vault/key-document.js';
import { createKeyTrash } from '../../src/key-vault/key-trash.js';
import { createKeyVault } from '../../src/key-vault/key-vault.js';
import { stack } from '../helpers/stack.js';

async function setup(t: { teardown(fn: () => unknown): void }) {
  const client = new MongoClient(stack.mongodbUri);
  const db = client.db(`test_trash_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const vaultCollection = db.collection<KeyDocument>('__keyVault');
  const trashCollection = db.collection<TrashedKeyDocument>('__keyVaultTrash');
  const recorded: string[] = [];
  const forgotten: string[] = [];
  // The store's moves need no KMS; the cache only hears which keys to drop.
  const vault = createKeyVault({
    collection: vaultCollection,
    kms: {} as never,
    cache: { delete: (id: string) => forgotten.push(id) } as never,
    altNameTtlMs: 60_000,
    recordChanges: async (ids) => void recorded.push(...ids),
    trash: { collection: trashCollection, retentionMs: 60_000 },
  });
  const trash = createKeyTrash({ vault: vaultCollection, trash: trashCollection });
  async function key(names: string[] = []): Promise<KeyDocument> {
    const doc: KeyDocument = {
      _id: new UUID(),
      keyMaterial: new Binary(randomBytes(160), 0),
      creationDate: new Date(),
      updateDate: new Date(),
      status: 0,
      masterKey: { provider: 'local' },
      ...(names.length > 0 ? { keyAltNames: names } : {}),
    };
    await vaultCollection.insertOne(doc);
    return doc;
  }
  const where = async (id: Binary) => ({
    vault: (await vaultCollection.countDocuments({ _id: id })) === 1,
    trash: (await trashCollection.countDocuments({ _id: id })) === 1,
  });
  const record = (purgeAfter = new Date(Date.now() + 60_000)) => ({ deletedAt: new Date(), deletedBy: 'cl_test', purgeAfter });
  return { vault, trash, key, where, record, recorded, forgotten, vaultCollection, trashCollection };
}

t.test('a delete moves the key with its record; a restore brings back the very same document', async (t) => {
  const s = await setup(t);
  const doc = await s.key(['moved']);
  t.ok(await s.vault.deleteKey(doc._id as UUID, 'cl_deleter'));
  t.same(await s.where(doc._id), { vault: false, trash: true });
  const trashed = (await s.trashCollection.findOne({ _id: doc._id }))!;
  t.equal(trashed.deletedBy, 'cl_deleter');
  t.equal(trashed.purgeAfter.getTime() - trashed.deletedAt.getTime(), 60_000, 'restorable for the retention period');
  t.same(trashed.keyMaterial.buffer, doc.keyMaterial.buffer, 'the wrapped key itself is kept');
  t.ok(s.recorded.includes(new UUID(doc._id.buffer).toHexString()), 'the fleet is told');

  const restored = await s.vault.restoreKey(doc._id as UUID);
  t.same(Object.keys(restored).sort(), Object.keys(doc).sort(), 'no deletion record left on the key document');
  t.same(await s.where(doc._id), { vault: true, trash: false });
  const back = (await s.vaultCollection.findOne({ _id: doc._id }))!;
  t.same([back.keyMaterial.buffer, back.keyAltNames, back.creationDate, back.updateDate], [doc.keyMaterial.buffer, ['moved'], doc.creationDate, doc.updateDate]);
});

t.test('a crash between the two writes of a delete: the key is in both, and the sweep finishes the delete', async (t) => {
  const s = await setup(t);
  const doc = await s.key(['half-deleted']);
  const record = s.record();
  await s.trash.writeTrashCopy(doc, record); // … and the process dies before removeVaultCopy
  t.same(await s.where(doc._id), { vault: true, trash: true });
  t.equal((await s.vault.findInAnyState(doc._id as UUID))!.state, 'active', 'until it is settled the key is usable: shown active');

  t.same(await s.vault.sweepTrash(), { reconciled: 1, purged: 0 });
  t.same(await s.where(doc._id), { vault: false, trash: true }, 'the trash copy wins for a delete');
  const trashed = (await s.trashCollection.findOne({ _id: doc._id }))!;
  t.same([trashed.deletedBy, trashed.deletedAt, trashed.purgeAfter], [record.deletedBy, record.deletedAt, record.purgeAfter], 'with the record of the delete that was cut short');
  t.ok(s.forgotten.includes(new UUID(doc._id.buffer).toHexString()), 'this process drops the key');
  t.same(await s.vault.sweepTrash(), { reconciled: 0, purged: 0 }, 'nothing left to settle');
});

t.test('a crash between the two writes of a restore: the key is in both, and the sweep finishes the restore', async (t) => {
  const s = await setup(t);
  const doc = await s.key(['half-restored']);
  await s.vault.deleteKey(doc._id as UUID, 'cl_test');
  const trashed = (await s.trash.findById(doc._id))!;
  await s.trash.markRestoring(doc._id);
  await s.trash.writeVaultCopy(trashed); // … and the process dies before removeTrashCopy
  t.same(await s.where(doc._id), { vault: true, trash: true });

  t.same(await s.vault.sweepTrash(), { reconciled: 1, purged: 0 });
  t.same(await s.where(doc._id), { vault: true, trash: false }, 'the vault copy wins for a restore');
  t.notOk('restoringAt' in (await s.vaultCollection.findOne({ _id: doc._id }))!, 'the vault copy is a plain key document');
});

t.test('restore, purge and delete settle a key left in both before they act', async (t) => {
  const s = await setup(t);
  const cutDelete = await s.key();
  await s.trash.writeTrashCopy(cutDelete, s.record());
  const restored = await s.vault.restoreKey(cutDelete._id as UUID);
  t.same(restored._id.buffer, cutDelete._id.buffer, 'a restore after a cut-short delete: the delete is finished, then undone');
  t.same(await s.where(cutDelete._id), { vault: true, trash: false });

  const cutRestore = await s.key();
  await s.vault.deleteKey(cutRestore._id as UUID, 'cl_test');
  await s.trash.markRestoring(cutRestore._id);
  await s.trash.writeVaultCopy((await s.trash.findById(cutRestore._id))!);
  await t.rejects(s.vault.purgeKey(cutRestore._id as UUID), { code: 'KEY_NOT_DELETED' }, 'a purge after a cut-short restore finds the key active');
  t.same(await s.where(cutRestore._id), { vault: true, trash: false });

  const cutAgain = await s.key();
  await s.trash.writeTrashCopy(cutAgain, s.record());
  t.ok(await s.vault.deleteKey(cutAgain._id as UUID, 'cl_second'), 'deleting again finishes it');
  t.same(await s.where(cutAgain._id), { vault: false, trash: true });
  t.equal((await s.trash.findById(cutAgain._id))!.deletedBy, 'cl_second');
});

t.test('the sweep purges only keys whose retention ended, and frees their names', async (t) => {
  const s = await setup(t);
  const old = await s.key(['expired-name']);
  const young = await s.key(['young-name']);
  for (const doc of [old, young]) await s.vault.deleteKey(doc._id as UUID, 'cl_test');
  await s.trashCollection.updateOne({ _id: old._id }, { $set: { purgeAfter: new Date(Date.now() - 1000) } });
  t.same(await s.vault.sweepTrash(), { reconciled: 0, purged: 1 });
  t.same(await s.where(old._id), { vault: false, trash: false }, 'gone for good');
  t.same(await s.where(young._id), { vault: false, trash: true }, 'still restorable');
  await t.rejects(s.vault.restoreKey(old._id as UUID), { code: 'KEY_NOT_FOUND' });
  await t.rejects(s.vault.purgeKey(old._id as UUID), { code: 'KEY_NOT_FOUND' });
  await t.rejects(s.vault.restoreKey(young._id as UUID).then(() => s.vault.restoreKey(young._id as UUID)), { code: 'KEY_NOT_DELETED' });
});

t.test('a restore whose alt name another key took meanwhile (a driver writing the vault) moves nothing', async (t) => {
  const s = await setup(t);
  const doc = await s.key(['contested']);
  await s.vault.deleteKey(doc._id as UUID, 'cl_test');
  const squatter = await s.key(['contested']);
  await t.rejects(s.vault.restoreKey(doc._id as UUID), { code: 'KEY_ALT_NAME_CONFLICT' });
  t.same(await s.where(doc._id), { vault: false, trash: true }, 'still deleted');
  t.notOk('restoringAt' in (await s.trashCollection.findOne({ _id: doc._id }))!, 'and not marked as being restored');
  await s.vaultCollection.deleteOne({ _id: squatter._id });
  t.same((await s.vault.restoreKey(doc._id as UUID)).keyAltNames, ['contested'], 'once the name is free again it restores');
});

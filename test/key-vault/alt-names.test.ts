import { randomBytes } from 'node:crypto';
import { Binary, MongoClient, UUID, type Collection } from 'mongodb';
import t from 'tap';
import type { KeyDocument } from '../../src/key-vault/key-document.js';
import { createKeyVault } from '../../src/key-vault/key-vault.js';

const uri = process.env.MONGODB_URI;
if (!uri) throw new Error('MONGODB_URI is not set: run the tests through `npm test` or `eval "$(scripts/stack up)"`.');

t.test('alt names of a whole batch are resolved in one key-vault query', async (t) => {
  const client = new MongoClient(uri);
  const db = client.db(`alt_names_${randomBytes(4).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const real = db.collection<KeyDocument>('__keyVault');
  const ids = [new UUID(), new UUID()];
  await real.insertMany(
    ids.map((id, i) => ({ _id: new Binary(id.buffer, 4), keyAltNames: [`known-${i}`, `alias-${i}`] }) as unknown as KeyDocument),
  );
  let finds = 0;
  const counting = new Proxy(real, {
    get(target, name, receiver) {
      if (name === 'find' || name === 'findOne') finds++;
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Collection<KeyDocument>;
  // Resolving names needs neither KMS nor the data-key cache.
  const vault = createKeyVault({ collection: counting, kms: {} as never, cache: {} as never, altNameTtlMs: 60_000, trash: { collection: db.collection('__keyVaultTrash'), retentionMs: 60_000 } });

  const names = [...Array.from({ length: 998 }, (_, i) => `unknown-${i}`), 'known-0', 'alias-1', 'known-0'];
  const found = await vault.resolveAltNames(names);
  t.equal(finds, 1, '1001 names, one query');
  t.equal(found.size, 2, 'unknown names are left out');
  t.equal(found.get('known-0')?.toHexString(), ids[0]!.toHexString());
  t.equal(found.get('alias-1')?.toHexString(), ids[1]!.toHexString());

  await vault.resolveAltNames(['known-0', 'alias-1']);
  t.equal(finds, 1, 'known names are then cached');
  await t.rejects(vault.resolveAltName('unknown-1'), { code: 'KEY_NOT_FOUND' });
  t.equal((await vault.resolveAltName('alias-0')).toHexString(), ids[0]!.toHexString(), 'every alt name of a key resolves to it');
});

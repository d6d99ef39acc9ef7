import { randomBytes } from 'node:crypto';
import { Binary, MongoClient, UUID } from 'mongodb';
import t from 'tap';
import type { KeyDocument } from '../../src/key-vault/key-document.js';
import { createKeyVault } from '../../src/key-vault/key-vault.js';
import { isDowngrade } from '../../src/kms/master-key.js';

const uri = process.env.MONGODB_URI;
if (!uri) throw new Error('MONGODB_URI is not set: run the tests through `npm test` or `eval "$(scripts/stack up)"`.');

const ARN = 'arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-4697-8877-665544332211';

t.test('isDowngrade: from any KMS (or anything unknown) to local, nothing else', async (t) => {
  t.equal(isDowngrade('aws', 'local'), true);
  for (const provider of ['gcp', 'azure', 'kmip', undefined, null, 42]) t.equal(isDowngrade(provider, 'local'), true, `${String(provider)} → local`);
  t.equal(isDowngrade('local', 'local'), false);
  t.equal(isDowngrade('local', 'aws'), false);
  t.equal(isDowngrade('aws', 'aws'), false);
  t.equal(isDowngrade('gcp', 'aws'), false);
});

t.test('the key vault refuses to downgrade unless allowed, judging the keys as it reads them', async (t) => {
  const client = new MongoClient(uri);
  const db = client.db(`downgrade_${randomBytes(4).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const collection = db.collection<KeyDocument>('__keyVault');
  const dataKey = randomBytes(96);
  // A stand-in KMS (a unit test): every key unwraps to the same bytes; it counts its calls.
  const calls: string[] = [];
  const kms = {
    checkUsable() {},
    async unwrap(masterKey: { provider: string }) {
      calls.push(`unwrap ${masterKey.provider}`);
      return Buffer.from(dataKey);
    },
    async wrap(masterKey: { provider: string }) {
      calls.push(`wrap ${masterKey.provider}`);
      return randomBytes(160);
    },
  };
  const vault = createKeyVault({ collection, kms: kms as never, cache: { delete() {} } as never, altNameTtlMs: 60_000, trash: { collection: db.collection('__keyVaultTrash'), retentionMs: 60_000 } });
  const id = new UUID();
  const stored = (masterKey: Record<string, string>) => ({
    _id: new Binary(id.buffer, 4),
    keyAltNames: ['k'],
    keyMaterial: new Binary(randomBytes(160), 0),
    creationDate: new Date(),
    updateDate: new Date(),
    status: 0,
    masterKey,
  });
  const aws = { provider: 'aws', key: ARN, region: 'us-east-1' };
  await collection.insertOne(stored({ provider: 'local' }) as unknown as KeyDocument);
  const selector = { keyIds: [id] };

  t.same(await vault.planMigration(selector, { provider: 'local' }), { keyIds: [id.toHexString()], downgradeKeyIds: [] }, 'planned while the key is local');
  // Meanwhile the key moves up to AWS: the job must judge the key it reads, not the plan.
  await collection.replaceOne({ _id: new Binary(id.buffer, 4) } as never, stored(aws) as unknown as KeyDocument);
  t.same(await vault.planMigration(selector, { provider: 'local' }), { keyIds: [id.toHexString()], downgradeKeyIds: [id.toHexString()] });
  t.same(await vault.planMigration(selector, { provider: 'aws', key: ARN, region: 'us-east-1' }), { keyIds: [id.toHexString()], downgradeKeyIds: [] });

  await t.rejects(vault.migrateMasterKey(selector, { provider: 'local' }), { code: 'FORBIDDEN', detail: /allowDowngrade/ });
  await t.rejects(vault.rewrap(selector, { provider: 'local' }), { code: 'FORBIDDEN', detail: /allowDowngrade/ });
  t.same(calls, [], 'refused before any KMS call');
  t.match(await collection.findOne({}), { masterKey: aws }, 'nothing written');

  const { result } = await vault.migrateMasterKey(selector, { provider: 'local' }, { allowDowngrade: true });
  t.match(result, { rewrapped: 1, verified: 1 });
  t.match(await collection.findOne({}), { masterKey: { provider: 'local' } });
  await collection.updateOne({}, { $set: { masterKey: { provider: 'gcp', projectId: 'p', location: 'l', keyRing: 'r', keyName: 'n' } } });
  await t.rejects(vault.rewrap(selector, { provider: 'local' }), { code: 'FORBIDDEN' }, 'a key of a provider this server does not use counts as under a KMS');
});

/**
 * Alt-name claims on the real FerretDB: claimers on one collection stand for instances.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient, UUID } from 'mongodb';
import t from 'tap';
import { createAltNameClaims, type AltNameClaim } from '../../src/key-vault/alt-name-claims.js';
import { stack } from '../helpers/stack.js';
import { sleep } from '../faults/servers.js';

async function setup(t: { teardown(fn: () => unknown): void }, options: { graceMs?: number; holders?: Set<string> } = {}) {
  const client = new MongoClient(stack.mongodbUri);
  const db = client.db(`test_claims_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await client.close();
  });
  const holders = options.holders ?? new Set<string>();
  const claims = createAltNameClaims({
    collection: db.collection<AltNameClaim>('__keyAltNames'),
    keyHasName: async (keyId, name) => holders.has(`${new UUID(keyId.buffer).toHexString()}|${name}`),
    ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
  });
  await claims.ensureIndexes();
  return { claims, holders };
}

const codeOf = (result: PromiseSettledResult<unknown>) => (result.status === 'rejected' ? (result.reason as { code?: string }).code : 'ok');

t.test('many keys claiming one name at once: one gets it, every time', async (t) => {
  const { claims } = await setup(t);
  for (let round = 0; round < 10; round++) {
    const keys = Array.from({ length: 6 }, () => new UUID());
    const results = await Promise.allSettled(keys.map((key) => claims.claim(`name-${round}`, key)));
    t.same(results.map(codeOf).sort(), ['KEY_ALT_NAME_CONFLICT', 'KEY_ALT_NAME_CONFLICT', 'KEY_ALT_NAME_CONFLICT', 'KEY_ALT_NAME_CONFLICT', 'KEY_ALT_NAME_CONFLICT', 'ok']);
    const winner = keys[results.findIndex((r) => r.status === 'fulfilled')]!;
    t.same((await claims.holder(`name-${round}`))?.buffer, winner.buffer, `round ${round}: the winner holds it`);
  }
});

t.test('claiming again is a no-op for the holder; released, a name can be claimed by another key', async (t) => {
  const { claims } = await setup(t);
  const [k1, k2] = [new UUID(), new UUID()];
  await claims.claim('n', k1);
  await claims.claim('n', k1);
  await t.rejects(claims.claim('n', k2), { code: 'KEY_ALT_NAME_CONFLICT' });
  await claims.release('n', k2);
  t.same((await claims.holder('n'))?.buffer, k1.buffer, 'only its holder releases a name');
  await claims.release('n', k1);
  t.equal(await claims.holder('n'), null);
  await claims.claim('n', k2);
  t.same((await claims.holder('n'))?.buffer, k2.buffer);
});

t.test('a claim whose key does not hold the name is stale after the grace period; one whose key does is not', async (t) => {
  const { claims, holders } = await setup(t, { graceMs: 200 });
  const [dead, live, newcomer] = [new UUID(), new UUID(), new UUID()];
  await claims.claim('orphan', dead);
  await claims.claim('held', live);
  holders.add(`${live.toHexString()}|held`);
  await t.rejects(claims.claim('orphan', newcomer), { code: 'KEY_ALT_NAME_CONFLICT' }, 'young: its key may be on its way');
  await sleep(250);
  await claims.claim('orphan', newcomer);
  t.same((await claims.holder('orphan'))?.buffer, newcomer.buffer, 'taken over');
  await t.rejects(claims.claim('held', newcomer), { code: 'KEY_ALT_NAME_CONFLICT' }, 'old but its key holds the name');
});

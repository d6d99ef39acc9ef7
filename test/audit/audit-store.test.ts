/**
 * Verification against the real server: one pass over every chain whatever order the records
 * were stored in, checkpoints that make the next pass read only what is new and that notice their
 * own record changing, and heads that expose a chain cut short.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { MongoClient } from 'mongodb';
import { createRecordSigner, GENESIS, readEvent, type AuditRecord } from '../../src/audit/audit-record.js';
import { createAuditStore, type CheckpointDocument, type HeadDocument } from '../../src/audit/audit-store.js';
import { stack } from '../helpers/stack.js';

const signer = createRecordSigner(randomBytes(32));

function chain(chainId: string, n: number): AuditRecord[] {
  const events = Array.from({ length: n }, (_, i) => readEvent({ clientId: 'c', action: 'crypto.encrypt', outcome: 'succeeded', requestId: `${chainId}-${i}` }));
  return signer.chain(chainId, { seq: 0, hmac: GENESIS }, events);
}

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const mongo = new MongoClient(stack.mongodbUri);
  const db = mongo.db(`audit_store_${randomBytes(6).toString('hex')}`);
  t.teardown(async () => {
    await db.dropDatabase();
    await mongo.close();
  });
  const records = db.collection<AuditRecord>('audit');
  const heads = db.collection<HeadDocument>('audit.heads');
  const checkpoints = db.collection<CheckpointDocument>('audit.checkpoints');
  return { records, heads, checkpoints, store: createAuditStore({ records, heads, checkpoints, signer }) };
}

t.test('chains stored in any order verify in one pass; a checkpoint makes the next pass read only what is new', async (t) => {
  const { records, store } = await setup(t);
  const a = chain('a', 300);
  const b = chain('b', 120);
  await records.insertMany(shuffled([...a, ...b]));
  await store.publishHead('a', a.at(-1)!);
  await store.publishHead('b', b.at(-1)!);
  t.match(await store.verify(), { valid: true, checked: 420, chains: 2, fromCheckpoint: 0 });

  const more = signer.chain('a', a.at(-1)!, [readEvent({ clientId: 'c', action: 'x', outcome: 'succeeded', requestId: 'new' })]);
  await records.insertMany(more);
  const next = await store.verify();
  t.match(next, { valid: true, chains: 2, fromCheckpoint: 2 });
  t.equal(next.checked, 3, 'the two vouched-for records and the one new one');
  t.match(await store.verify({ full: true }), { valid: true, checked: 421, fromCheckpoint: 0 });
});

t.test('a changed checkpointed record, a gap, and a chain cut short are reported', async (t) => {
  const { records, store } = await setup(t);
  const a = chain('a', 50);
  await records.insertMany(a);
  await store.publishHead('a', a.at(-1)!);
  t.match(await store.verify(), { valid: true });

  await records.updateOne({ _id: a.at(-1)!._id }, { $set: { clientId: 'someone-else' } });
  t.match((await store.verify()).problems, [{ chainId: 'a', seq: 50, problem: 'tampered' }, { chainId: 'a', seq: 50, problem: 'checkpoint-mismatch' }]);
  await records.replaceOne({ _id: a.at(-1)!._id }, a.at(-1)!);

  await records.deleteOne({ _id: a[9]!._id });
  t.match((await store.verify({ full: true })).problems, [{ chainId: 'a', seq: 10, problem: 'missing' }]);
  await records.insertOne(a[9]!);

  await records.deleteMany({ _id: { $in: a.slice(45).map((r) => r._id) } });
  t.match((await store.verify({ full: true })).problems, [{ chainId: 'a', seq: 46, problem: 'truncated' }]);
});

/**
 * The shipper against the real server: the spool's records reach MongoDB in order with a published
 * head; shipping again after a restart is recognised; another record at a shipped _id is a fork
 * and stops it; a database outage only delays it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MongoClient } from 'mongodb';
import { createRecordSigner, type AuditEvent, type AuditRecord } from '../../src/audit/audit-record.js';
import { createAuditShipper } from '../../src/audit/audit-shipper.js';
import { createAuditSpool } from '../../src/audit/audit-spool.js';
import { createAuditStore, type CheckpointDocument, type HeadDocument } from '../../src/audit/audit-store.js';
import { stack } from '../helpers/stack.js';

const hmacKey = randomBytes(32);
const signer = createRecordSigner(hmacKey);
const quiet = { warn() {}, error() {}, info() {} };
const event = (i: number): AuditEvent => ({ clientId: 'c', action: 'crypto.decrypt', outcome: 'succeeded', requestId: `r${i}`, status: 200 });

async function setup(t: { teardown(fn: () => unknown): void }, uri = stack.mongodbUri) {
  const dbName = `audit_ship_${randomBytes(6).toString('hex')}`;
  const mongo = new MongoClient(uri, { serverSelectionTimeoutMS: uri === stack.mongodbUri ? 5000 : 200 });
  const dir = mkdtempSync(join(tmpdir(), 'ship-test-'));
  t.teardown(async () => {
    if (uri === stack.mongodbUri) await mongo.db(dbName).dropDatabase();
    await mongo.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const db = mongo.db(dbName);
  const records = db.collection<AuditRecord>('audit');
  const heads = db.collection<HeadDocument>('audit.heads');
  const checkpoints = db.collection<CheckpointDocument>('audit.checkpoints');
  const store = createAuditStore({ records, heads, checkpoints, signer });
  return { dir, records, heads, store };
}

t.test('ships every record in order and publishes the chain head', async (t) => {
  const { dir, records, heads, store } = await setup(t);
  const spool = createAuditSpool({ dir, signer, maxBacklog: 10_000, sync: 'fdatasync' });
  await spool.open();
  const shipper = createAuditShipper({ spool, records, store, log: quiet });
  shipper.start();
  const written = await Promise.all(Array.from({ length: 250 }, (_, i) => spool.append(event(i))));
  t.equal(await shipper.flush(10_000), true, 'flushed');
  const stored = await records.find({}).sort({ seq: 1 }).toArray();
  t.same(stored.map((r) => r.seq), written.map((r) => r.seq));
  t.same(stored.map((r) => r.hmac), written.map((r) => r.hmac), 'exactly the spooled records');
  const head = await heads.findOne({ _id: spool.chainId });
  t.equal(head?.seq, 250);
  t.match(await store.verify({ full: true }), { valid: true, checked: 250, chains: 1 });
  t.equal(shipper.status().backlog, 0);
  await shipper.stop();
  await spool.close();
});

t.test('a restart ships again from a stale marker: duplicates are recognised, nothing doubles', async (t) => {
  const { dir, records, store } = await setup(t);
  const first = createAuditSpool({ dir, signer, maxBacklog: 10_000, sync: 'fdatasync' });
  await first.open();
  for (let i = 0; i < 30; i++) await first.append(event(i));
  // Shipped by hand, as a crashed shipper would have before saving its marker.
  await records.insertMany(first.peek(30));
  await first.close();

  const second = createAuditSpool({ dir, signer, maxBacklog: 10_000, sync: 'fdatasync' });
  const report = await second.open();
  t.equal(report.unshipped, 30, 'the marker did not say they were shipped');
  await second.append(event(30));
  const shipper = createAuditShipper({ spool: second, records, store, log: quiet });
  shipper.start();
  t.equal(await shipper.flush(10_000), true);
  t.equal(await records.countDocuments({}), 31);
  t.equal(shipper.status().state, 'idle');
  await shipper.stop();
  await second.close();
});

t.test('another record at a shipped _id is a fork: shipping stops, nothing is overwritten', async (t) => {
  const { dir, records, store } = await setup(t);
  const spool = createAuditSpool({ dir, signer, maxBacklog: 10_000, sync: 'fdatasync' });
  await spool.open();
  const mine = [];
  for (let i = 0; i < 5; i++) mine.push(await spool.append(event(i)));
  // Another spool wrote this chain's seq 3 (two instances on one chain id).
  const other = { ...mine[2]!, requestId: 'someone-else', hmac: 'f'.repeat(64) };
  await records.insertOne(other);
  const errors: string[] = [];
  const shipper = createAuditShipper({ spool, records, store, log: { ...quiet, error: (_o: object, msg: string) => errors.push(msg) } });
  shipper.start();
  t.equal(await shipper.flush(2000), false, 'never caught up');
  t.equal(shipper.status().state, 'forked');
  t.match(errors.join('\n'), /fork/);
  t.equal((await records.findOne({ _id: other._id }))?.requestId, 'someone-else', 'the other record is left alone');
  await shipper.stop();
  await spool.close();
});

t.test('while the database is away the records wait in the spool; another shipper takes them once it is back', async (t) => {
  const down = await setup(t, 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200&connectTimeoutMS=200');
  const spool = createAuditSpool({ dir: down.dir, signer, maxBacklog: 10_000, sync: 'fdatasync' });
  await spool.open();
  const warned: string[] = [];
  const shipper = createAuditShipper({ spool, records: down.records, store: down.store, log: { ...quiet, warn: (_o: object, msg: string) => warned.push(msg) } });
  shipper.start();
  for (let i = 0; i < 20; i++) await spool.append(event(i));
  t.equal(await shipper.flush(1500), false);
  t.equal(shipper.status().state, 'retrying');
  t.equal(spool.state().backlog, 20, 'nothing is lost meanwhile');
  t.equal(warned.length, 1, 'one warning for the outage, not one per retry');
  await shipper.stop();

  const up = await setup(t);
  const again = createAuditShipper({ spool, records: up.records, store: up.store, log: quiet });
  again.start();
  t.equal(await again.flush(10_000), true);
  t.equal(await up.records.countDocuments({}), 20);
  await again.stop();
  await spool.close();
});

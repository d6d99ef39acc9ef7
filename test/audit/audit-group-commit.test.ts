import { randomBytes } from 'node:crypto';
import t from 'tap';
import { MongoBulkWriteError, MongoClient, type WriteError, type BulkWriteResult, type Collection, type InsertManyResult } from 'mongodb';
import { auditRecordId, createAuditLog, type AuditEvent, type AuditRecord } from '../../src/audit/audit-log.js';
import { stack } from '../helpers/stack.js';

type Test = { teardown(fn: () => unknown): void };
type InsertMany = (records: AuditRecord[], options: object) => Promise<InsertManyResult<AuditRecord>>;

const hmacKey = randomBytes(32);

/** A fresh database on the real server, dropped with the test; `clients` connections to it. */
async function setup(t: Test, clients = 1) {
  const dbName = `audit_gc_${randomBytes(6).toString('hex')}`;
  const mongos = Array.from({ length: clients }, () => new MongoClient(stack.mongodbUri));
  t.teardown(async () => {
    await mongos[0]!.db(dbName).dropDatabase();
    await Promise.all(mongos.map((m) => m.close()));
  });
  return mongos.map((m) => m.db(dbName).collection<AuditRecord>('audit'));
}

/**
 * The real collection, with every insertMany/insertOne/find counted, insertMany optionally replaced
 * by `around` (which gets the real one to call), and each find's first answer optionally delayed.
 */
function instrumented(
  collection: Collection<AuditRecord>,
  around?: (real: InsertMany, records: AuditRecord[], options: object) => Promise<InsertManyResult<AuditRecord>>,
  { findDelayMs = 0 } = {},
) {
  const calls = { insertOne: 0, insertMany: 0, find: 0, sizes: [] as number[] };
  const proxy = new Proxy(collection, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      const bound = (value as (...args: unknown[]) => unknown).bind(target);
      if (prop === 'insertOne') {
        return (...args: unknown[]) => {
          calls.insertOne++;
          return bound(...args);
        };
      }
      if (prop === 'insertMany') {
        return (records: AuditRecord[], options: object) => {
          calls.insertMany++;
          calls.sizes.push(records.length);
          const real = bound as InsertMany;
          return around ? around(real, records, options) : real(records, options);
        };
      }
      if (prop === 'find') {
        return (...args: unknown[]) => {
          calls.find++;
          const cursor = bound(...args) as { next(): Promise<unknown> };
          if (findDelayMs > 0) {
            const next = cursor.next.bind(cursor);
            cursor.next = async () => {
              await new Promise((resolve) => setTimeout(resolve, findDelayMs));
              return next();
            };
          }
          return cursor;
        };
      }
      return bound;
    },
  });
  return { collection: proxy, calls };
}

function event(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return { clientId: `client-${i % 3}`, action: 'crypto.encrypt', outcome: 'started', requestId: `req-${i}`, ...extra };
}

const chainOf = (collection: Collection<AuditRecord>, chainId = 'main') => collection.find({ chainId }).sort({ seq: 1 }).toArray();

t.test('500 concurrent appends: seqs in call order, a valid chain, a few insert round trips', async (t) => {
  const [base] = await setup(t);
  const { collection, calls } = instrumented(base!);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  const records = await Promise.all(Array.from({ length: 500 }, (_, i) => audit.append(event(i))));
  t.same(records.map((r) => r.seq), Array.from({ length: 500 }, (_, i) => i + 1), 'seq i+1 for the i-th call');
  t.same(records.map((r) => r.requestId), Array.from({ length: 500 }, (_, i) => `req-${i}`));
  t.equal(calls.insertOne, 0);
  t.ok(calls.insertMany <= 6, `${calls.insertMany} insertMany calls for 500 records`);
  const docs = await chainOf(base!);
  t.equal(docs.length, 500);
  t.same(docs[499], records[499], 'the stored record is the returned one');
  t.same(await audit.verify(), { valid: true, checked: 500, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });

  // Appends that keep arriving while writes are in flight are grouped too.
  const more: Promise<AuditRecord>[] = [];
  for (let wave = 0; wave < 10; wave++) {
    for (let i = 0; i < 50; i++) more.push(audit.append(event(500 + wave * 50 + i)));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const later = await Promise.all(more);
  t.same(later.map((r) => r.seq), Array.from({ length: 500 }, (_, i) => 501 + i));
  t.ok(calls.insertMany <= 20, `${calls.insertMany} insertMany calls for 1000 records`);
  t.ok(Math.max(...calls.sizes) <= 100, 'no batch over the cap');
  t.match(await audit.verify(), { valid: true, checked: 1000 });
});

t.test('two instances on one chain appending bursts concurrently: no loss, no fork, no gap', async (t) => {
  const collections = await setup(t, 2);
  const a = instrumented(collections[0]!);
  const b = instrumented(collections[1]!);
  const logs = [createAuditLog({ collection: a.collection, hmacKey, chainId: 'shared' }), createAuditLog({ collection: b.collection, hmacKey, chainId: 'shared' })];
  const appends: Promise<AuditRecord>[] = [];
  for (let wave = 0; wave < 8; wave++) {
    for (let i = 0; i < 80; i++) appends.push(logs[(wave + i) % 2]!.append(event(wave * 80 + i)));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const outcomes = await Promise.allSettled(appends);
  const resolved = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  t.equal(resolved.length, 640, 'every append resolved');
  const docs = await chainOf(collections[0]!, 'shared');
  const stored = new Map(docs.map((d) => [d._id, d]));
  for (const record of resolved) {
    if (!t.same(stored.get(record._id), record, `${record._id} is stored as returned`)) break;
  }
  t.equal(docs.length, 640, 'no extra record');
  t.equal(new Set(docs.map((d) => d.requestId)).size, 640, 'every event once');
  t.same(docs.map((d) => d.seq), Array.from({ length: 640 }, (_, i) => i + 1), 'no gap');
  t.same(await logs[0]!.verify(), { valid: true, checked: 640, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });
  // Within each instance, seqs follow the order of its calls.
  for (const parity of [0, 1]) {
    const mine = appends.flatMap((_, i) => ((Math.floor(i / 80) + (i % 80)) % 2 === parity ? [outcomes[i]!] : []));
    const seqs = mine.map((o) => (o.status === 'fulfilled' ? o.value.seq : 0));
    t.same(seqs, [...seqs].sort((x, y) => x - y), `instance ${parity}: seqs in call order`);
  }
  t.ok(a.calls.insertMany + b.calls.insertMany < 200, `${a.calls.insertMany + b.calls.insertMany} insertMany calls for 640 records`);
});

t.test('a duplicate key in the middle of a batch: the prefix is kept, the rest re-chained and retried', async (t) => {
  const [base, other] = await setup(t, 2);
  const b = createAuditLog({ collection: other!, hmacKey, chainId: 'main' });
  let collided = false;
  // On the burst's write, let instance b win seq 9 first: it reads the head once a's seqs 4..8
  // exist, so those are put in, b appends, and they are taken out again for a's own write, which
  // then stores them as before and meets b's record at index 5.
  const { collection, calls } = instrumented(base!, async (real, records, options) => {
    if (records.length === 10 && !collided) {
      collided = true;
      await real(records.slice(0, 5), options);
      const won = await b.append(event(99, { clientId: 'b' }));
      t.equal(won.seq, 9, 'b took seq 9');
      await base!.deleteMany({ _id: { $in: records.slice(0, 5).map((r) => r._id) } });
    }
    return real(records, options);
  });
  const a = createAuditLog({ collection, hmacKey, chainId: 'main' });
  for (let i = 0; i < 3; i++) await a.append(event(i));
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => a.append(event(10 + i))));
  t.ok(collided);
  t.same(burst.map((r) => r.seq), [4, 5, 6, 7, 8, 10, 11, 12, 13, 14], 'the prefix kept its seqs, the rest follow b');
  t.same(calls.sizes, [1, 1, 1, 10, 5], 'one retry, of the five not written');
  t.equal(burst[5]!.prev, (await base!.findOne({ _id: auditRecordId('main', 9) }))!.hmac, 'the retried records chain on b');
  const docs = await chainOf(base!);
  t.same(docs.map((d) => d.requestId), ['req-0', 'req-1', 'req-2', ...burst.slice(0, 5).map((r) => r.requestId), 'req-99', ...burst.slice(5).map((r) => r.requestId)]);
  t.same(await a.verify(), { valid: true, checked: 14, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });
});

t.test('a damaged chain stops a batch after a few retries instead of spinning', async (t) => {
  const [collection] = await setup(t);
  const audit = createAuditLog({ collection: collection!, hmacKey, chainId: 'main' });
  for (let i = 0; i < 3; i++) await audit.append(event(i));
  // The _id of seq 6, on a document the head query cannot see.
  await collection!.insertOne({ ...(await collection!.findOne({ seq: 1 }))!, _id: auditRecordId('main', 6), chainId: 'elsewhere' });
  const started = Date.now();
  const outcomes = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => audit.append(event(10 + i))));
  t.same(outcomes.slice(0, 2).map((o) => o.status === 'fulfilled' && o.value.seq), [4, 5], 'the records before the damage are written');
  for (const outcome of outcomes.slice(2)) t.match(outcome, { status: 'rejected', reason: { code: 'AUDIT_UNAVAILABLE' } });
  t.ok(Date.now() - started < 2000, `gave up in ${Date.now() - started} ms`);
});

t.test('a write whose answer is lost: its callers fail, and the chain goes on from what landed', async (t) => {
  const [base] = await setup(t);
  let lose = false;
  const { collection } = instrumented(base!, async (real, records, options) => {
    const result = await real(records, options);
    if (lose) throw new Error('connection reset after the write');
    return result;
  });
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  await audit.append(event(0));
  lose = true;
  const lost = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => audit.append(event(1 + i))));
  for (const outcome of lost) t.match(outcome, { status: 'rejected', reason: { code: 'AUDIT_UNAVAILABLE' } });
  lose = false;
  const next = await audit.append(event(6));
  t.equal(next.seq, 7, 'the head was reloaded: the unacknowledged records are kept and followed');
  t.same(await audit.verify(), { valid: true, checked: 7, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });
});

/** A bulk write error as the driver builds it from a server's reply, here with the reply made up. */
function bulkError(writeErrors: { index: number; code: number }[], insertedCount: number, writeConcernError?: { code: number; errmsg: string }) {
  const result = { insertedCount, getWriteConcernError: () => writeConcernError } as unknown as BulkWriteResult;
  const errors = writeErrors.map((e) => ({ ...e, errmsg: 'E11000 duplicate key error' }) as unknown as WriteError);
  return new MongoBulkWriteError({ message: 'E11000 duplicate key error', code: 11000, writeErrors: errors }, result);
}

t.test('a bulk error that does not tell what was written fails the whole batch, and the head is reloaded', async (t) => {
  const cases: [string, MongoBulkWriteError][] = [
    // What FerretDB reports when it goes on past a duplicate key: more inserted than the prefix.
    ['insertedCount disagrees with the index', bulkError([{ index: 2, code: 11000 }], 5)],
    ['a write concern error besides', bulkError([{ index: 2, code: 11000 }], 2, { code: 64, errmsg: 'waiting for replication timed out' })],
    ['no write error at all', bulkError([], 0)],
  ];
  for (const [name, error] of cases) {
    const [base] = await setup(t);
    let fake = false;
    const { collection } = instrumented(base!, async (real, records, options) => {
      const result = await real(records, options);
      if (fake) throw error;
      return result;
    });
    const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
    await audit.append(event(0));
    fake = true;
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => audit.append(event(1 + i))));
    t.ok(outcomes.every((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'AUDIT_UNAVAILABLE'), `${name}: every caller fails`);
    fake = false;
    t.equal((await audit.append(event(6))).seq, 7, `${name}: the next append follows what landed`);
    t.match(await audit.verify(), { valid: true, checked: 7 }, `${name}: the chain is whole`);
  }
});

t.test('each append answers by its own deadline, even with its write still in flight', async (t) => {
  const [base] = await setup(t);
  let slow = true;
  const { collection } = instrumented(base!, async (real, records, options) => {
    if (slow) await new Promise((resolve) => setTimeout(resolve, 400));
    return real(records, options);
  });
  const hasty = createAuditLog({ collection, hmacKey, chainId: 'main', timeoutMs: 250 });
  const started = Date.now();
  const first = hasty.append(event(0)).catch((e: unknown) => e);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const queued = hasty.append(event(1)).catch((e: unknown) => e);
  t.match(await first, { code: 'AUDIT_UNAVAILABLE' });
  t.match(await queued, { code: 'AUDIT_UNAVAILABLE' });
  t.ok(Date.now() - started < 400, `both answered before their writes ended (${Date.now() - started} ms)`);
  await hasty.flush();
  // The writes given up on land later: allowed, and the chain goes on after them.
  await new Promise((resolve) => setTimeout(resolve, 900));
  slow = false;
  const patient = createAuditLog({ collection, hmacKey, chainId: 'main' });
  const next = await patient.append(event(2));
  const stored = (await chainOf(base!)).map((d) => d.requestId);
  t.equal(stored[0], 'req-0', 'the first write landed after its caller was told it failed');
  t.same(stored.slice(-1), ['req-2']);
  t.equal(next.seq, stored.length);
  t.match(await patient.verify(), { valid: true, problems: [] });
});

t.test('flush() waits for every append queued before it', async (t) => {
  const [collection] = await setup(t);
  const audit = createAuditLog({ collection: collection!, hmacKey, chainId: 'main' });
  let settled = 0;
  for (let i = 0; i < 300; i++) void audit.append(event(i)).then(() => settled++);
  await audit.flush();
  await Promise.resolve();
  t.equal(settled, 300);
  t.equal(await collection!.countDocuments({}), 300);
});

t.test('an unreachable database: a burst of appends all fail with AUDIT_UNAVAILABLE, together', async (t) => {
  const fast = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 500 });
  const slow = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 10_000 });
  t.teardown(async () => {
    await fast.close();
    await slow.close();
  });
  for (const [name, mongo, timeoutMs, within] of [
    ['server selection gives up first', fast, 5000, 1500],
    ['the append deadline comes first', slow, 1000, 1500],
  ] as const) {
    const audit = createAuditLog({ collection: mongo.db('audit').collection<AuditRecord>('audit'), hmacKey, chainId: 'main', timeoutMs });
    for (let round = 0; round < 2; round++) {
      const started = Date.now();
      const outcomes = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => audit.append(event(i))));
      const elapsed = Date.now() - started;
      t.ok(outcomes.every((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'AUDIT_UNAVAILABLE'), `${name}, round ${round}: all 200 rejected`);
      t.ok(elapsed < within, `${name}, round ${round}: in ${elapsed} ms`);
    }
  }
});

t.test('a head query slower than the append deadline is kept for the next appends, and prepare() loads it ahead', async (t) => {
  const [base] = await setup(t);
  const writer = createAuditLog({ collection: base!, hmacKey, chainId: 'main' });
  for (let i = 0; i < 3; i++) await writer.append(event(i));

  // The head query takes 3 s (a long chain on a server that scans it); appends may wait 1.5 s (room for a busy machine).
  const { collection: slowFinds, calls } = instrumented(base!, undefined, { findDelayMs: 3000 });

  const restarted = createAuditLog({ collection: slowFinds, hmacKey, chainId: 'main', timeoutMs: 1500 });
  t.equal(restarted.isPrepared(), false);
  t.match(await restarted.append(event(3)).catch((e: unknown) => e), { code: 'AUDIT_UNAVAILABLE' }, 'the first append fails by its deadline');
  for (let waited = 0; !restarted.isPrepared() && waited < 10_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(restarted.isPrepared(), true, 'the head query went on and its answer was kept');
  t.equal((await restarted.append(event(4))).seq, 4, 'the next append needs no head query');
  t.equal(calls.find, 1, 'one head query in all');

  const warmed = createAuditLog({ collection: slowFinds, hmacKey, chainId: 'main', timeoutMs: 1500 });
  await warmed.prepare();
  t.equal(warmed.isPrepared(), true);
  t.equal((await warmed.append(event(5))).seq, 5, 'after prepare() the first append is one write');
  t.equal(calls.find, 2);
  t.match(await writer.verify(), { valid: true, checked: 5 });
});

import { createHmac, randomBytes } from 'node:crypto';
import t from 'tap';
import { MongoClient, type Collection, type UpdateFilter } from 'mongodb';
import { auditRecordId, createAuditLog, type AuditEvent, type AuditRecord } from '../../src/audit/audit-log.js';
import { AppError } from '../../src/errors.js';
import { stack } from '../helpers/stack.js';

type Raw = { _id: string; [field: string]: any };
type Test = { teardown(fn: () => unknown): void };

/** A fresh database on the real server, dropped with the test; `clients` more connections to it. */
async function setup(t: Test, clients = 1) {
  const dbName = `audit_${randomBytes(6).toString('hex')}`;
  const mongos = Array.from({ length: clients }, () => new MongoClient(stack.mongodbUri));
  t.teardown(async () => {
    await mongos[0]!.db(dbName).dropDatabase();
    await Promise.all(mongos.map((m) => m.close()));
  });
  const collections = mongos.map((m) => m.db(dbName).collection<AuditRecord>('audit'));
  return { collection: collections[0]!, collections, raw: mongos[0]!.db(dbName).collection<Raw>('audit') };
}

const hmacKey = randomBytes(32);

function event(i: number, extra: Partial<AuditEvent> = {}): AuditEvent {
  return { clientId: `client-${i % 3}`, action: i % 2 === 0 ? 'crypto.encrypt' : 'documents.find', outcome: 'started', requestId: `req-${i}`, ...extra };
}

/** The documented canonical form, recomputed here so a change of format cannot go unnoticed. */
function expectedMac(key: Buffer, r: Record<string, any>): string {
  const canonical = JSON.stringify([
    'audit-record/v1', r.chainId, r.seq, r.time.toISOString(), r.clientId, r.action, r.outcome, r.requestId,
    r.status ?? null, r.code ?? null, r.collection ?? null, r.paths ?? null, r.keyIds ?? null, r.prev,
  ]);
  return createHmac('sha256', key).update(canonical).digest('hex');
}

async function rawChain(raw: Collection<Raw>, chainId: string) {
  return raw.find({ chainId }).sort({ seq: 1 }).toArray();
}

t.test('appends chain: seq +1, prev is the previous hmac, hmac over every field', async (t) => {
  const { collection, raw } = await setup(t);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  const time = new Date('2025-01-02T03:04:05.678Z');
  const first = await audit.append({ ...event(0), time });
  const second = await audit.append({
    ...event(1),
    outcome: 'failed',
    status: 403,
    code: 'FORBIDDEN',
    collection: 'hr.employees',
    paths: ['ssn', 'address.zip'],
    keyIds: ['0f6c2c1e-4a43-4b7e-9a61-5f3c6b1d2e3f'],
    // Not part of an event: must never reach the trail.
    value: '123-45-6789',
  } as AuditEvent);
  const third = await audit.append(event(2));

  t.match(first, { _id: 'main:000000000001', chainId: 'main', seq: 1, prev: '', time });
  t.match(second, { _id: 'main:000000000002', seq: 2, prev: first.hmac, status: 403, code: 'FORBIDDEN' });
  t.match(third, { _id: 'main:000000000003', seq: 3, prev: second.hmac });
  t.ok(third.time.getTime() >= first.time.getTime(), 'time defaults to now');

  const docs = await rawChain(raw, 'main');
  t.equal(docs.length, 3);
  t.same(docs[1], second, 'the stored record is the returned one');
  t.notOk('value' in docs[1]!, 'fields outside the event are not stored');
  t.same(Object.keys(docs[0]!).sort(), ['_id', 'action', 'chainId', 'clientId', 'hmac', 'outcome', 'prev', 'requestId', 'seq', 'time']);
  for (const doc of docs) t.equal(doc.hmac, expectedMac(hmacKey, doc), `hmac of seq ${doc.seq}`);
  t.same(await audit.verify(), { valid: true, checked: 3, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });
});

t.test('a restarted instance continues the chain from the database', async (t) => {
  const { collection } = await setup(t);
  await createAuditLog({ collection, hmacKey, chainId: 'main' }).append(event(0));
  const last = await createAuditLog({ collection, hmacKey, chainId: 'main' }).append(event(1));
  t.equal(last.seq, 2);
  await createAuditLog({ collection, hmacKey, chainId: 'other' }).append(event(2));
  t.match(await createAuditLog({ collection, hmacKey, chainId: 'main' }).verify(), { valid: true, checked: 3, chains: 2 });
});

t.test('two instances sharing a chain, appending concurrently: no fork, no gap', async (t) => {
  const { collections, raw } = await setup(t, 2);
  const a = createAuditLog({ collection: collections[0]!, hmacKey, chainId: 'shared' });
  const b = createAuditLog({ collection: collections[1]!, hmacKey, chainId: 'shared' });
  const records = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).append(event(i))));
  t.same(records.map((r) => r.seq).sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i + 1), 'every seq once');
  const docs = await rawChain(raw, 'shared');
  t.equal(docs.length, 50);
  t.same(new Set(docs.map((d) => d.requestId)).size, 50, 'every event once');
  for (let i = 1; i < docs.length; i++) t.equal(docs[i]!.prev, docs[i - 1]!.hmac);
  t.same(await a.verify(), { valid: true, checked: 50, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });
});

t.test('appends that time out leave no fork and no gap behind', async (t) => {
  const { collection } = await setup(t);
  const hasty = createAuditLog({ collection, hmacKey, chainId: 'main', timeoutMs: 1 });
  const patient = createAuditLog({ collection, hmacKey, chainId: 'main' });
  const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => hasty.append(event(i))));
  for (const outcome of outcomes) {
    if (outcome.status === 'rejected') t.match(outcome.reason, { code: 'AUDIT_UNAVAILABLE' });
  }
  // Writes given up on may still land: let them, then go on with a normal instance.
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (let i = 0; i < 5; i++) await patient.append(event(i));
  t.match(await patient.verify(), { valid: true, problems: [] });
});

t.test('changing any field of a stored record is detected', async (t) => {
  const { collection, raw } = await setup(t);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  for (let i = 0; i < 5; i++) {
    await audit.append(event(i, i === 2 ? { outcome: 'failed', status: 500, code: 'KMS_ERROR', collection: 'hr.x', paths: ['a'], keyIds: ['k'] } : {}));
  }
  const original = await raw.findOne({ _id: auditRecordId('main', 3) });
  const changes: [string, UpdateFilter<Raw>][] = [
    ['clientId', { $set: { clientId: 'admin' } }],
    ['action', { $set: { action: 'keys.list' } }],
    ['outcome', { $set: { outcome: 'succeeded' } }],
    ['requestId', { $set: { requestId: 'req-x' } }],
    ['time', { $set: { time: new Date(original!.time.getTime() + 1) } }],
    ['status', { $set: { status: 200 } }],
    ['status type', { $set: { status: '500' } }],
    ['code', { $set: { code: 'KMS_UNAVAILABLE' } }],
    ['collection', { $set: { collection: 'hr.y' } }],
    ['paths', { $set: { paths: ['b'] } }],
    ['keyIds', { $set: { keyIds: [] } }],
    ['prev', { $set: { prev: 'f'.repeat(64) } }],
    ['removed field', { $unset: { code: '' } }],
    ['added field', { $set: { note: 'x' } }],
  ];
  for (const [name, update] of changes) {
    await raw.updateOne({ _id: original!._id }, update);
    const result = await audit.verify();
    t.equal(result.valid, false, name);
    t.match(result.problems, [{ seq: 3, problem: 'tampered' }], `${name}: record 3 is tampered`);
    await raw.replaceOne({ _id: original!._id }, original!);
  }

  await raw.updateOne({ _id: original!._id }, { $set: { chainId: 'main2' } });
  t.same(await audit.verify(), {
    valid: false,
    checked: 5,
    chains: 2,
    problems: [
      { chainId: 'main', seq: 3, problem: 'missing' },
      { chainId: 'main2', seq: 3, problem: 'tampered' },
    ],
    truncated: false,
    fromCheckpoint: 0,
  }, 'a record moved to another chain: missing from its own, tampered in the other');
  await raw.replaceOne({ _id: original!._id }, original!);

  await raw.updateOne({ _id: original!._id }, { $set: { hmac: expectedMac(randomBytes(32), original!) } });
  t.same((await audit.verify()).problems, [
    { chainId: 'main', seq: 3, problem: 'tampered' },
    { chainId: 'main', seq: 4, problem: 'broken-link' },
  ], 'a replaced hmac: the record is tampered and the next link broken');
  await raw.replaceOne({ _id: original!._id }, original!);

  await raw.updateOne({ _id: original!._id }, { $set: { seq: 9 } });
  t.match((await audit.verify()).problems, [
    { seq: 3, problem: 'missing' },
    { seq: 9, problem: 'tampered' },
  ], 'a renumbered record is tampered and leaves a gap');
  await raw.replaceOne({ _id: original!._id }, original!);

  t.same(await audit.verify(), { valid: true, checked: 5, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 }, 'restored: valid again');
});

t.test('a deleted middle record is reported missing; a deleted newest one is not detectable', async (t) => {
  const { collection, raw } = await setup(t);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  for (let i = 0; i < 10; i++) await audit.append(event(i));
  await raw.deleteOne({ _id: auditRecordId('main', 5) });
  t.same(await audit.verify(), { valid: false, checked: 9, chains: 1, problems: [{ chainId: 'main', seq: 5, problem: 'missing' }], truncated: false, fromCheckpoint: 0 });
  await raw.deleteMany({ _id: { $in: [auditRecordId('main', 1), auditRecordId('main', 7), auditRecordId('main', 8)] } });
  t.same((await audit.verify()).problems, [
    { chainId: 'main', seq: 1, problem: 'missing' },
    { chainId: 'main', seq: 5, problem: 'missing' },
    { chainId: 'main', seq: 7, problem: 'missing' },
  ], 'one problem per gap, at its first absent seq');
});

t.test('with a wrong HMAC key every record reads as tampered', async (t) => {
  const { collection } = await setup(t);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  for (let i = 0; i < 7; i++) await audit.append(event(i));
  const wrong = await createAuditLog({ collection, hmacKey: randomBytes(32), chainId: 'main' }).verify();
  t.match(wrong, { valid: false, checked: 7, chains: 1 });
  t.same(wrong.problems, Array.from({ length: 7 }, (_, i) => ({ chainId: 'main', seq: i + 1, problem: 'tampered' })));
});

t.test('list() pages newest first through every record exactly once, with filters', async (t) => {
  const { collection } = await setup(t);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  const base = Date.parse('2025-06-01T00:00:00Z');
  const appended: AuditRecord[] = [];
  // Times repeat (every 4 events share one), so the cursor must break ties.
  for (let i = 0; i < 23; i++) appended.push(await audit.append(event(i, { time: new Date(base + Math.floor(i / 4) * 1000) })));

  async function all(options: { limit: number; action?: string; clientId?: string }) {
    const seen: AuditRecord[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 100; pages++) {
      const page = await audit.list({ ...options, ...(after ? { after } : {}) });
      t.ok(page.items.length <= options.limit);
      seen.push(...page.items);
      if (page.next === undefined) return seen;
      t.type(page.next, 'string');
      after = page.next;
    }
    throw new Error('paging did not end');
  }

  const newestFirst = [...appended].reverse().map((r) => r._id);
  for (const limit of [1, 5, 23, 100]) t.same((await all({ limit })).map((r) => r._id), newestFirst, `limit ${limit}`);
  t.same((await all({ limit: 5 }))[0], appended[22], 'full records');

  const byAction = await all({ limit: 4, action: 'documents.find' });
  t.same(byAction.map((r) => r._id), newestFirst.filter((_, i) => appended[22 - i]!.action === 'documents.find'));
  t.equal(byAction.length, 11);
  const byClient = await all({ limit: 3, clientId: 'client-1' });
  t.same(byClient.map((r) => r._id), appended.filter((r) => r.clientId === 'client-1').reverse().map((r) => r._id));
  const both = await all({ limit: 2, action: 'crypto.encrypt', clientId: 'client-1' });
  t.same(both.map((r) => r.requestId), ['req-22', 'req-16', 'req-10', 'req-4']);
  t.same(await audit.list({ limit: 5, action: 'nothing' }), { items: [] });

  const first = await audit.list({ limit: 23 });
  t.equal(first.next, undefined, 'no next when the page holds the rest');
  await t.rejects(audit.list({ limit: 5, after: 'not-a-cursor' }), { code: 'INVALID_QUERY' });
  await t.rejects(audit.list({ limit: 5, after: Buffer.from('[1,2]').toString('base64url') }), { code: 'INVALID_QUERY' });
  await t.rejects(audit.list({ limit: 0 }), { code: 'INVALID_QUERY' });
  await t.rejects(audit.list({ limit: 1001 }), { code: 'INVALID_QUERY' });
});

t.test('an unreachable database: append fails fast with AUDIT_UNAVAILABLE, and keeps failing', async (t) => {
  const mongo = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 500 });
  t.teardown(() => mongo.close());
  const audit = createAuditLog({ collection: mongo.db('audit').collection<AuditRecord>('audit'), hmacKey, chainId: 'main' });
  const started = Date.now();
  const err = await audit.append(event(0)).catch((e: unknown) => e);
  t.ok(err instanceof AppError, 'an AppError');
  t.match(err, { code: 'AUDIT_UNAVAILABLE', status: 503 });
  t.ok((err as AppError).cause, 'with the driver error as cause');
  t.ok(Date.now() - started < 3000, `within seconds (${Date.now() - started} ms)`);
  await t.rejects(audit.append(event(1)), { code: 'AUDIT_UNAVAILABLE' }, 'the queue is not stuck');
});

t.test('malformed events and options are refused', async (t) => {
  const { collection } = await setup(t);
  t.throws(() => createAuditLog({ collection, hmacKey: randomBytes(16), chainId: 'main' }), RangeError);
  t.throws(() => createAuditLog({ collection, hmacKey, chainId: '' }), RangeError);
  const audit = createAuditLog({ collection, hmacKey, chainId: 'main' });
  await t.rejects(audit.append({ ...event(0), outcome: 'maybe' as 'started' }), { code: 'INTERNAL_ERROR' });
  await t.rejects(audit.append({ ...event(0), time: new Date(Number.NaN) }), { code: 'INTERNAL_ERROR' });
  await t.rejects(audit.append({ ...event(0), paths: [1 as unknown as string] }), { code: 'INTERNAL_ERROR' });
  // A lone surrogate is stored as U+FFFD by BSON; the record must still verify.
  const odd = await audit.append({ ...event(1), paths: ['a\ud800b'] });
  t.same(odd.paths, ['a\ufffdb']);
  t.same(await audit.verify(), { valid: true, checked: 1, chains: 1, problems: [], truncated: false, fromCheckpoint: 0 });
});

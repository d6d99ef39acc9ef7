/**
 * Fault: the MongoDB server stops in the middle of a stream of document inserts and comes back on
 * the same port and data directory. The server is a FerretDB of this test's own, so the shared
 * stack other test files use is never touched.
 *
 * Expected: every insert answered 201 is in the database, encrypted (subtype 6, no canary
 * plaintext); every failure is a clean 503 (DATABASE_UNAVAILABLE or AUDIT_UNAVAILABLE, with
 * Retry-After), never a 500; readiness says 503 while the server is away; the same app instance
 * serves inserts again once the server is back, without being rebuilt.
 */
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { percentile, sleep, startOwnFerretDb, tally } from './servers.js';
import { canaryEmployee, createFaultDocumentsApp, encryptedFieldsOf, isCiphertext, rawBytesContain } from './setup.js';

const TOTAL = 300;
const CONCURRENCY = 4;
const SPREAD_MS = 10_000; // the stream is paced over about this long
const STOP_AFTER_MS = 3_000; // FerretDB gets the signal this long into the stream
const DOWN_MS = 1_500; // and is started again this long after it exited
const SELECTION_TIMEOUT_MS = 500;
const STREAM_DEADLINE_MS = 45_000;
const BURST = 12;
const HANG_MS = 15_000;

interface Outcome {
  i: number;
  status: number;
  code?: string;
  retryAfter?: string;
  contentType?: string;
  insertedId?: string;
  requestId?: string;
  sentAt: number;
  doneAt: number;
}

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  t.test(`MongoDB stops (${signal}) and restarts under a stream of inserts: no acknowledged write is lost`, async (t) => {
    await scenario(t, signal);
  });
}

async function scenario(t: Test, signal: 'SIGTERM' | 'SIGKILL') {
  const ferret = await startOwnFerretDb(t);
  const h = await createFaultDocumentsApp(t, ferret.uri, { MONGODB_SERVER_SELECTION_TIMEOUT_MS: String(SELECTION_TIMEOUT_MS) });
  const run = randomBytes(4).toString('hex');
  const body = (i: number) => ({ document: canaryEmployee(run, i) });
  const idemKey = (i: number) => `restart-${run}-${i}`;

  const insert = async (i: number): Promise<Outcome> => {
    const sentAt = Date.now();
    const res = await h.call('POST', h.url, body(i), { 'idempotency-key': idemKey(i) });
    const out: Outcome = { i, status: res.statusCode, sentAt, doneAt: Date.now() };
    if (res.statusCode === 201) out.insertedId = res.json().insertedId.$oid;
    else {
      out.code = res.json().code;
      out.requestId = String(res.json().instance ?? '').replace('urn:request:', '');
      out.retryAfter = res.headers['retry-after'] as string | undefined;
      out.contentType = res.headers['content-type'] as string | undefined;
    }
    return out;
  };

  // Warm up: keys cached, indexes made, one insert known to work.
  const warm = await insert(-1);
  t.equal(warm.status, 201, 'the app inserts before the fault');

  const outcomes: Outcome[] = [];
  const t0 = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < TOTAL && Date.now() - t0 < STREAM_DEADLINE_MS) {
      const i = next++;
      const due = t0 + (i * SPREAD_MS) / TOTAL;
      if (due > Date.now()) await sleep(due - Date.now());
      outcomes.push(await insert(i));
    }
  };
  const stream = Promise.all(Array.from({ length: CONCURRENCY }, worker));

  // The fault, in the middle of the stream.
  await sleep(STOP_AFTER_MS);
  const stoppedAt = Date.now();
  const exitCode = await ferret.stop(signal);
  const exitedAt = Date.now();
  const probeStarted = Date.now();
  const ready = await h.app.inject({ method: 'GET', url: '/health/ready' });
  const readyMs = Date.now() - probeStarted;
  const live = await h.app.inject({ method: 'GET', url: '/health/live' });
  // While it is down, a burst of BURST concurrent inserts: how long does each wait for its 503?
  let burst: { status: number; code: string; ms: number }[] = [];
  if (signal === 'SIGTERM') {
    burst = await Promise.all(
      Array.from({ length: BURST }, async (_, k) => {
        const started = Date.now();
        const res = await h.call('POST', h.url, body(10_000 + k));
        return { status: res.statusCode, code: res.statusCode === 201 ? '' : res.json().code, ms: Date.now() - started };
      }),
    );
  }
  await sleep(Math.max(0, DOWN_MS - (Date.now() - exitedAt)));
  const restartStarted = Date.now();
  await ferret.start();
  const restartedAt = Date.now();
  await stream;
  const streamMs = Date.now() - t0;

  t.equal(outcomes.length, TOTAL, `all ${TOTAL} inserts were sent within the stream deadline`);
  t.ok(ready.statusCode >= 500, '/health/ready fails while MongoDB is down');
  t.equal(
    ready.statusCode,
    503,
    `/health/ready is 503 DATABASE_UNAVAILABLE, not 500: ${ready.body}`,
  );
  t.equal(ready.json().code, 'DATABASE_UNAVAILABLE');
  t.equal(live.statusCode, 200, '/health/live stays 200');
  if (ready.statusCode >= 500 && ready.statusCode !== 503) {
    const id = String(ready.json().instance ?? '').replace('urn:request:', '');
    t.comment(`readiness failure logged as: ${h.logs.filter((l) => l.includes(id) && l.includes('"err"')).map((l) => JSON.stringify(JSON.parse(l).err).slice(0, 600)).join('\n')}`);
  }

  // Every failure is a clean 503 with Retry-After; none is a 500.
  const acked = outcomes.filter((o) => o.status === 201);
  const failed = outcomes.filter((o) => o.status !== 201);
  t.ok(failed.length > 0, 'the fault was felt (some inserts failed)');
  t.same(
    failed.filter((o) => o.status !== 503 || !['DATABASE_UNAVAILABLE', 'AUDIT_UNAVAILABLE'].includes(o.code ?? '')),
    [],
    'every failure is 503 DATABASE_UNAVAILABLE or AUDIT_UNAVAILABLE',
  );
  t.same(failed.filter((o) => o.retryAfter === undefined || !String(o.contentType).startsWith('application/problem+json')), [], 'with Retry-After, as problem+json');

  // The app recovered by itself: inserts sent after the restart succeed.
  const afterRestart = outcomes.filter((o) => o.sentAt >= restartedAt);
  const firstAckAfter = outcomes.filter((o) => o.status === 201 && o.sentAt >= restartStarted).sort((a, b) => a.doneAt - b.doneAt)[0];
  t.ok(afterRestart.length > 0, 'some inserts were sent after the restart');
  t.same(afterRestart.filter((o) => o.status !== 201), [], 'every insert sent after the restart succeeded (no app rebuild)');
  const lastFailure = failed.sort((a, b) => b.doneAt - a.doneAt)[0];

  // A client that retries its failed inserts with the same Idempotency-Key gets them all in.
  const retries: Outcome[] = [];
  for (const f of failed) {
    let last: Outcome | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      last = await insert(f.i);
      if (last.status === 201) break;
      await sleep(200);
    }
    retries.push(last!);
  }
  t.same(retries.filter((r) => r.status !== 201), [], 'every failed insert, retried with its Idempotency-Key, is accepted');

  // What the database holds.
  const collection = h.raw.db(h.keyVaultDb).collection<Record<string, any>>('employees');
  const docs = await collection.find({}).toArray();
  const byId = new Map(docs.map((d) => [String(d._id), d]));
  const lost = acked.filter((o) => !byId.has(o.insertedId!));
  t.same(lost, [], 'every acknowledged insert is in the database');
  const notEncrypted = [...acked, ...retries.filter((r) => r.status === 201)].flatMap((o) => {
    const doc = byId.get(o.insertedId!);
    const plain = doc ? Object.entries(encryptedFieldsOf(doc)).filter(([, v]) => !isCiphertext(v)) : [];
    return plain.map(([path]) => `insert ${o.i}: ${path}`);
  });
  t.same(notEncrypted, [], 'every acknowledged document has its schema fields as BSON Binary subtype 6');
  t.notOk(rawBytesContain(docs, 'CANARY'), 'no canary plaintext anywhere in the raw collection');
  const names = tally(docs, (d) => String(d.name));
  const duplicates = Object.entries(names).filter(([, n]) => n > 1);
  t.same(duplicates, [], 'no insert landed twice (retries included)');
  const missingAfterRetry = Array.from({ length: TOTAL }, (_, i) => `employee-${run}-${i}`).filter((n) => !names[n]);
  t.same(missingAfterRetry, [], 'after retries, every one of the stream inserts is in the database');

  const failLatencies = failed.map((o) => o.doneAt - o.sentAt);
  const summary = {
    fault: `mongodb-restart-${signal}`,
    sent: TOTAL,
    concurrency: CONCURRENCY,
    streamMs,
    acknowledged: acked.length,
    failed: failed.length,
    failuresByCode: tally(failed, (o) => `${o.status} ${o.code}`),
    lostAcknowledged: lost.length,
    ferretdbExit: exitCode,
    ferretdbStopMs: exitedAt - stoppedAt,
    downMs: restartStarted - exitedAt,
    readyProbe: { status: ready.statusCode, code: ready.json().code, ms: readyMs },
    failLatencyMs: { p50: percentile(failLatencies, 50), p95: percentile(failLatencies, 95), max: Math.max(...failLatencies) },
    ferretdbStartMs: restartedAt - restartStarted,
    // From the moment FerretDB was started again (spawned).
    firstAckAfterRestartMs: firstAckAfter ? firstAckAfter.doneAt - restartStarted : null,
    lastFailureAfterRestartMs: lastFailure ? lastFailure.doneAt - restartStarted : null,
    sentAfterRestart: afterRestart.length,
    retried: retries.length,
    retryOutcomes: tally(retries, (r) => `${r.status}${r.code ? ` ${r.code}` : ''}`),
    docsInCollection: docs.length,
    // Landed although answered 503 (the acknowledgement was lost): allowed, but counted.
    landedUnacknowledged: failed.filter((f) => docs.some((d) => d.name === `employee-${run}-${f.i}` && !retries.some((r) => r.i === f.i && r.insertedId === String(d._id)))).length,
  };
  t.comment(`RESULT ${JSON.stringify(summary)}`);
  if (burst.length > 0) {
    const ms = burst.map((b) => b.ms);
    t.comment(`RESULT ${JSON.stringify({ fault: 'mongodb-down-burst', concurrent: BURST, outcomes: tally(burst, (b) => `${b.status} ${b.code}`), latencyMs: { min: Math.min(...ms), p50: percentile(ms, 50), max: Math.max(...ms) } })}`);
    t.same(burst.filter((b) => b.status !== 503), [], 'a burst during the outage is all 503');
    // The audit trail gives an append MONGODB_SERVER_SELECTION_TIMEOUT_MS + 1000 ms in all,
    // queueing included; one more selection timeout and a margin bound any request.
    const bound = 2 * SELECTION_TIMEOUT_MS + 2000;
    t.ok(Math.max(...ms) < bound, `each of ${BURST} concurrent requests gets its 503 within ${bound} ms, however many are queued (max ${Math.max(...ms)} ms)`);
  }
  for (const slow of failed.filter((o) => o.doneAt - o.sentAt > 2000)) {
    const lines = h.logs.filter((l) => l.includes(slow.requestId!) && l.includes('"err"')).map((l) => JSON.parse(l).err?.message);
    t.comment(`slow failure (${slow.doneAt - slow.sentAt} ms, sent ${slow.sentAt - stoppedAt} ms after the stop): ${lines.join(' | ')}`);
  }
  t.ok(summary.failLatencyMs.max < HANG_MS, `no failed insert hangs (max ${summary.failLatencyMs.max} ms < ${HANG_MS} ms)`);
}

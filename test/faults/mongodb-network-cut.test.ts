/**
 * Fault: the network between the service and MongoDB is cut while operations are in flight (the
 * server itself stays up), then restored. The app reaches its own FerretDB through a TCP proxy:
 * traffic is first slowed (so requests are mid-flight), then every connection is cut and new ones
 * refused for 1.5 s, then the proxy listens again. Up to CYCLES such cuts.
 *
 * Expected: failures are clean 503s, acknowledged inserts are all in the database, and the app
 * serves again shortly after the network is back (README: "the driver reconnects by itself").
 *
 * This test found that in about a third of cuts the MongoDB driver (7.9.0) never recovered: its
 * server monitor waited forever for 'drain' on a socket that had closed under the write. The fix is
 * patches/mongodb+7.9.0.patch; scripts/repro-mongo-monitor-stall.ts shows it with the bare driver.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { percentile, sleep, startOwnFerretDb, startTcpProxy, tally } from './servers.js';
import { canaryEmployee, createFaultDocumentsApp, encryptedFieldsOf, isCiphertext, rawBytesContain } from './setup.js';

const CYCLES = 4;
const CONCURRENCY = 4;
const RECOVERY_BUDGET_MS = 8_000;

t.test('a network cut between the service and MongoDB: clean 503s, no lost writes, recovery', async (t) => {
  const ferret = await startOwnFerretDb(t);
  const proxy = await startTcpProxy(t, { host: '127.0.0.1', port: ferret.port });
  const h = await createFaultDocumentsApp(t, `mongodb://127.0.0.1:${proxy.port}/`, { MONGODB_SERVER_SELECTION_TIMEOUT_MS: '500' });
  const run = randomBytes(4).toString('hex');
  // The cuts are in the middle of steady work: the app has served through the proxy first (a cut
  // during the driver's very first connect is another fault: mongodb-first-connect.test.ts).
  const warm = await h.call('POST', h.url, { document: canaryEmployee(run, -1) });
  t.equal(warm.statusCode, 201, `the app serves through the proxy before the cuts: ${warm.body}`);

  const outcomes: { i: number; status: number; code?: string; insertedId?: string; ms: number }[] = [];
  let n = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && n < 5000) {
      const i = n++;
      const started = Date.now();
      const res = await h.call('POST', h.url, { document: canaryEmployee(run, i) });
      outcomes.push({
        i,
        status: res.statusCode,
        ms: Date.now() - started,
        ...(res.statusCode === 201 ? { insertedId: res.json().insertedId.$oid } : { code: res.json().code }),
      });
      await sleep(20);
    }
  };
  const workers = Array.from({ length: CONCURRENCY }, worker);

  const cycles: { cut: number; recoveredMs: number | null }[] = [];
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await sleep(500);
    proxy.setMode('delay', 400);
    await sleep(150 + Math.floor(Math.random() * 400));
    await proxy.close();
    await sleep(1500);
    proxy.setMode('pass');
    await proxy.open();
    const openedAt = Date.now();
    let recoveredMs: number | null = null;
    while (Date.now() - openedAt < RECOVERY_BUDGET_MS) {
      const res = await h.call('POST', h.url, { document: canaryEmployee(run, 100_000 + cycle) });
      if (res.statusCode === 201) {
        recoveredMs = Date.now() - openedAt;
        break;
      }
      await sleep(100);
    }
    cycles.push({ cut: cycle + 1, recoveredMs });
    if (recoveredMs === null) break; // the driver is wedged: later cycles would say nothing new
  }
  stop = true;
  await Promise.all(workers);

  const stalled = cycles.some((c) => c.recoveredMs === null);
  const acked = outcomes.filter((o) => o.status === 201);
  const failed = outcomes.filter((o) => o.status !== 201);
  const docs = await h.raw.db(h.keyVaultDb).collection<Record<string, any>>('employees').find({}).toArray();
  const ids = new Set(docs.map((d) => String(d._id)));
  const lost = acked.filter((o) => !ids.has(o.insertedId!));
  const failMs = failed.map((o) => o.ms);
  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'mongodb-network-cut',
      cycles,
      sent: outcomes.length,
      acknowledged: acked.length,
      failuresByCode: tally(failed, (o) => `${o.status} ${o.code}`),
      lostAcknowledged: lost.length,
      failLatencyMs: { p50: percentile(failMs, 50), p95: percentile(failMs, 95), max: failMs.length ? Math.max(...failMs) : null },
    })}`,
  );

  t.same(lost, [], 'every acknowledged insert is in the database');
  t.notOk(rawBytesContain(docs, 'CANARY'), 'no canary plaintext in the raw collection');
  t.same(
    docs.filter((d) => !Object.values(encryptedFieldsOf(d)).every(isCiphertext)).map((d) => d._id),
    [],
    'every stored document has its schema fields as subtype 6',
  );
  t.same(
    failed.filter((o) => o.status !== 503 || !['DATABASE_UNAVAILABLE', 'AUDIT_UNAVAILABLE'].includes(o.code ?? '')),
    [],
    'every failure is 503 DATABASE_UNAVAILABLE or AUDIT_UNAVAILABLE',
  );
  t.notOk(stalled, `the app serves again within ${RECOVERY_BUDGET_MS} ms of every cut: ${JSON.stringify(cycles)}`);
  const live = await h.app.inject({ method: 'GET', url: '/health/live' });
  const ready = await h.app.inject({ method: 'GET', url: '/health/ready' });
  t.equal(live.statusCode, 200, 'liveness never depended on MongoDB');
  t.equal(ready.statusCode, 200, 'and the app is ready after the last cut');
});

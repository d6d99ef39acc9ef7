/**
 * Fault: the database of the audit trail goes away (SIGKILL of a FerretDB of the test's own) in
 * the middle of a steady stream of requests against the real server process, and comes back on
 * the same port and data directory. The service is never restarted.
 *
 * Spool mode (the default), two deployments:
 * - everything on that one server: while it is down, single-value /encrypt and /decrypt with a
 *   cached key need no database and go on answering 200 for as long as the instance may trust its
 *   caches (FLEET_MAX_LAG_MS, 1 s: past it, a key deleted or a client revoked elsewhere could no
 *   longer be seen), then fail 503 DATABASE_UNAVAILABLE; key creation and inserts fail 503
 *   DATABASE_UNAVAILABLE; every answer's event is durable in the instance's spool before the
 *   answer (read from the spool files while the database is still down);
 * - only the audit on it (AUDIT_URI): every request goes on being answered, its events wait in
 *   the spool.
 * Either way, once the database is back the shipper empties the backlog by itself, and the trail
 * then has every 2xx request's event, the chain has no gap, and GET /audit/verify?full=true is valid.
 *
 * Database mode (AUDIT_MODE=database, the audit on that server, the data on the shared stack):
 * while it is down, every audited request fails 503 AUDIT_UNAVAILABLE and changes nothing (a key or
 * document that exists has its `started` event); after recovery the requests succeed again, and the
 * chain has no gap and verifies.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import t, { type Test } from 'tap';
import { stack } from '../helpers/stack.js';
import { ensureBuilt, startServerProcess } from './server-process.js';
import { percentile, sleep, startOwnFerretDb, tally } from './servers.js';
import { canaryEmployee, createFaultDocumentsApp } from './setup.js';
import { chainBreaks, coverage, createLoad, httpCall, is2xx, metric, readChain, spoolRecords, waitUntilShipped, type Answer, type Kind } from './audit-check.js';

const CONCURRENCY = 8;
/** The service's default: how long an instance trusts its caches without reading the fleet's changes. */
const FLEET_MAX_LAG_MS = 1000;
const BEFORE_MS = 1500;
const DOWN_MS = 4000;
const AFTER_MS = 3000;
const SELECTION_TIMEOUT_MS = 500;
const SHIP_DEADLINE_MS = 30_000;

const kindOf = (i: number): Kind => (['encrypt', 'decrypt', 'encrypt', 'key', 'decrypt', 'encrypt', 'insert', 'decrypt', 'encrypt', 'insert'] as const)[i % 10]!;
const needsNoDatabase = (a: Answer) => a.kind === 'encrypt' || a.kind === 'decrypt';
const label = (a: Answer) => (a.error ? `${a.kind} error ${a.error}` : `${a.kind} ${a.status}${a.code ? ` ${a.code}` : ''}`);

type Scenario = { mode: 'spool'; on: 'everything' | 'audit' } | { mode: 'database'; on: 'audit' };

const scenarios: Scenario[] = [
  { mode: 'spool', on: 'everything' },
  { mode: 'spool', on: 'audit' },
  { mode: 'database', on: 'audit' },
];

for (const scenario of scenarios) {
  t.test(`audit database down under load (${scenario.mode} mode, ${scenario.on === 'everything' ? 'one server for everything' : 'AUDIT_URI on it'})`, async (t) => {
    await run(t, scenario);
  });
}

async function run(t: Test, scenario: Scenario) {
  const build = ensureBuilt();
  if (build.built) t.comment(`built dist/ in ${build.ms} ms`);
  const ferret = await startOwnFerretDb(t);
  const timeouts = { MONGODB_SERVER_SELECTION_TIMEOUT_MS: String(SELECTION_TIMEOUT_MS) };
  const h =
    scenario.on === 'everything'
      ? await createFaultDocumentsApp(t, ferret.uri, timeouts)
      : await createFaultDocumentsApp(t, stack.mongodbUri, { ...timeouts, AUDIT_URI: ferret.uri });
  const auditRaw = new MongoClient(ferret.uri, { serverSelectionTimeoutMS: 5000 });
  t.teardown(() => auditRaw.close());
  const records = auditRaw.db(h.keyVaultDb).collection('__audit');

  const server = await startServerProcess(t, { ...h.env, RATE_LIMIT_PER_MINUTE: '1000000', ...(scenario.mode === 'database' ? { AUDIT_MODE: 'database' } : {}) });
  t.ok(server.up, `the server answers /health/ready (${server.output().slice(-300)})`);
  if (!server.up) return;
  const opened = server.output().split('\n').filter((l) => l.includes('audit trail open')).map((l) => JSON.parse(l) as { chainId: string; mode: string });
  t.same(opened.map((o) => o.mode), [scenario.mode], `the audit trail is in ${scenario.mode} mode`);
  const chainId = opened[0]!.chainId;

  // Keys cached: one encryption and one decryption before the stream.
  const run = randomBytes(4).toString('hex');
  const keyId = h.keys['tenant-a']!;
  const warm = await httpCall(server.base, 'POST', '/encrypt', { value: 'warm-up', algorithm: 'random', keyId });
  t.equal(warm.status, 200, 'the server encrypts before the fault');
  const warmDecrypt = await httpCall(server.base, 'POST', '/decrypt', { ciphertext: warm.body.ciphertext });
  t.equal(warmDecrypt.status, 200, 'and decrypts');
  const load = createLoad(
    () => server.base,
    { keyId, ciphertext: warm.body.ciphertext, run, documents: { url: h.url, body: (name) => ({ document: { ...canaryEmployee(run, 0), name } }) } },
    kindOf,
  );

  let stop = false;
  const stream = load.run(CONCURRENCY, () => !stop);
  await sleep(BEFORE_MS);
  const stoppedAt = Date.now();
  await ferret.stop('SIGKILL');
  const downAt = Date.now();

  // While it is down: what the spool holds, and the backlog it reports.
  await sleep(DOWN_MS / 2);
  let durableWhileDown: { answered: number; missing: { i: number; kind: Kind; requestId?: string }[] } | undefined;
  let backlogWhileDown: number | undefined;
  if (scenario.mode === 'spool') {
    const answeredBefore = load.answers.filter(is2xx);
    const spooled = new Set(spoolRecords(server.spoolDir).filter((r) => r.outcome === 'succeeded').map((r) => r.requestId));
    durableWhileDown = {
      answered: answeredBefore.filter((a) => a.doneAt >= downAt).length,
      missing: answeredBefore.filter((a) => !spooled.has(a.requestId!)).map((a) => ({ i: a.i, kind: a.kind, requestId: a.requestId })),
    };
    backlogWhileDown = await metric(server.base, 'audit_spool_backlog');
  }
  await sleep(Math.max(0, DOWN_MS - (Date.now() - downAt)));

  // Back, on the same port and data directory; the service is not touched.
  const restartStarted = Date.now();
  await ferret.start();
  const upAt = Date.now();
  let caughtUpMs: number | undefined;
  const watch = (async () => {
    if (scenario.mode !== 'spool') return;
    while (!stop && caughtUpMs === undefined) {
      const backlog = await metric(server.base, 'audit_spool_backlog').catch(() => undefined);
      if (backlog !== undefined && backlog <= 20) caughtUpMs = Date.now() - upAt;
      else await sleep(50);
    }
  })();
  await sleep(AFTER_MS);
  stop = true;
  await Promise.all([stream, watch]);
  const shipMs = scenario.mode === 'spool' ? await waitUntilShipped(server.base, SHIP_DEADLINE_MS) : undefined;
  if (scenario.mode === 'spool') t.ok(shipMs !== undefined, `the backlog is shipped without a restart (${shipMs} ms after the stream ended)`);

  const answers = load.answers;
  const acked = answers.filter(is2xx);
  const whileDown = answers.filter((a) => a.sentAt >= downAt && a.doneAt < restartStarted);
  const afterRecovery = answers.filter((a) => a.sentAt >= upAt + 1000);
  t.same(answers.filter((a) => a.error !== undefined).map(label), [], 'every request got an answer');
  t.same(answers.filter((a) => a.status !== undefined && a.status >= 500 && a.status !== 503).map(label), [], 'no 500s');
  t.ok(whileDown.length > 0, `requests were sent and answered while the database was down (${whileDown.length})`);

  if (scenario.mode === 'spool') {
    t.same(durableWhileDown!.missing, [], `while the database was down, every 2xx so far had its event in the spool files (${durableWhileDown!.answered} answered during the outage)`);
    t.ok(backlogWhileDown !== undefined && backlogWhileDown > 0, `the spool held a backlog while the database was down (${backlogWhileDown})`);
    const noDb = whileDown.filter(needsNoDatabase);
    t.ok(noDb.length > 0, `encrypt and decrypt requests during the outage (${noDb.length})`);
    if (scenario.on === 'everything') {
      t.same(
        noDb.filter((a) => !(a.status === 200 || (a.status === 503 && a.code === 'DATABASE_UNAVAILABLE'))).map(label),
        [],
        'single-value encrypt and decrypt with a cached key: 200, or 503 DATABASE_UNAVAILABLE once the caches may no longer be trusted',
      );
      t.ok(noDb.some((a) => a.status === 200), `cached keys served at the start of the outage (${noDb.filter((a) => a.status === 200).length})`);
      // The fleet bound (1 s from the last read of the change feed, itself at most 200 ms old),
      // with room for a request already past its checks when the bound passed.
      t.same(noDb.filter((a) => a.status === 200 && a.sentAt > downAt + FLEET_MAX_LAG_MS + 500).map(label), [], 'no cached key serves past the fleet bound without the database');
    } else {
      t.same(noDb.filter((a) => a.status !== 200).map(label), [], 'single-value encrypt and decrypt with a cached key go on answering 200');
    }
    if (scenario.on === 'everything') {
      t.same(
        whileDown.filter((a) => !needsNoDatabase(a) && !(a.status === 503 && a.code === 'DATABASE_UNAVAILABLE')).map(label),
        [],
        'key creation and inserts fail 503 DATABASE_UNAVAILABLE',
      );
    } else {
      t.same(whileDown.filter((a) => !is2xx(a)).map(label), [], 'with only the audit database away, every request is answered 2xx');
    }
  } else {
    t.same(
      whileDown.filter((a) => !(a.status === 503 && a.code === 'AUDIT_UNAVAILABLE')).map(label),
      [],
      'every audited request during the outage fails 503 AUDIT_UNAVAILABLE',
    );
  }
  t.ok(afterRecovery.length > 0, `requests were sent after the database came back (${afterRecovery.length})`);
  t.same(afterRecovery.filter((a) => !is2xx(a)).map(label), [], 'the service recovered by itself: every request sent a second after the database came back is answered 2xx');

  const verify = await httpCall(server.base, 'GET', '/audit/verify?full=true');
  const chain = await readChain(records, chainId);
  const cover = coverage(answers, chain, [warm.requestId!, warmDecrypt.requestId!]);
  t.equal(verify.body.valid, true, `GET /audit/verify?full=true is valid: ${JSON.stringify(verify.body.problems?.slice(0, 5))}`);
  t.same(chainBreaks(chain), [], `the chain is 1..${chain.length} without a gap, across the outage`);
  t.same(cover.missing, [], `every one of the ${acked.length} 2xx answers has its "succeeded" event in the trail`);
  t.same(cover.startedMissing, [], 'every state-changing 2xx has its "started" event before its outcome');
  t.same(cover.duplicates, [], 'no event twice');
  t.same(cover.orderViolations.slice(0, 10), [], 'answers precede, in the chain, the requests sent after them');

  // A refused change did nothing: a key or document named by a non-2xx answer exists only if its
  // `started` event is in the trail (it ran, and its answer was then withheld).
  const refused = answers.filter((a) => (a.kind === 'key' || a.kind === 'insert') && a.status !== undefined && !is2xx(a));
  const keyNames = new Set((await h.raw.db(h.keyVaultDb).collection('__keyVault').find({}, { projection: { keyAltNames: 1 } }).toArray()).flatMap((k) => k.keyAltNames ?? []));
  const docNames = new Set((await h.raw.db(h.keyVaultDb).collection('employees').find({}, { projection: { name: 1 } }).toArray()).map((d) => d.name as string));
  const startedIds = new Set(chain.filter((r) => r.outcome === 'started').map((r) => r.requestId));
  const done = refused.filter((a) => (a.kind === 'key' ? keyNames : docNames).has(a.name!));
  t.same(done.filter((a) => !startedIds.has(a.requestId!)).map(label), [], 'no refused change was made without its "started" event');
  if (scenario.mode === 'database') {
    t.same(done.filter((a) => a.sentAt >= downAt && a.doneAt < restartStarted).map(label), [], 'no change refused during the outage was made');
  }

  const latency = (list: Answer[]) => ({ p50: percentile(list.map((a) => a.doneAt - a.sentAt), 50), p99: percentile(list.map((a) => a.doneAt - a.sentAt), 99) });
  t.comment(
    `RESULT ${JSON.stringify({
      fault: `audit-db-down-${scenario.mode}-${scenario.on}`,
      concurrency: CONCURRENCY,
      sent: answers.length,
      total2xx: acked.length,
      byOutcome: tally(answers, label),
      duringOutage: { answers: whileDown.length, byOutcome: tally(whileDown, label), latencyMs: latency(whileDown) },
      ...(durableWhileDown ? { answered2xxDuringOutageAndInSpool: durableWhileDown.answered, backlogWhileDown } : {}),
      ferretStopMs: downAt - stoppedAt,
      ferretStartMs: upAt - restartStarted,
      caughtUpAfterDatabaseBackMs: caughtUpMs,
      shippedAfterStreamMs: shipMs,
      chainRecords: chain.length,
      eventsOf2xxFound: acked.length - cover.missing.length,
      unansweredWithEvent: cover.unansweredWithEvent,
      refusedChangesMadeWithStarted: done.length,
      verify: { valid: verify.body.valid, checked: verify.body.checked, chains: verify.body.chains },
    })}`,
  );
}

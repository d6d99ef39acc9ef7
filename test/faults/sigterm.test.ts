/**
 * Fault: the real server process (node dist/src/server.js) gets SIGTERM in the middle of a stream
 * of concurrent POST /documents requests, as an orchestrator does on every deploy.
 *
 * Expected (README "Shutdown"): the process stops accepting, finishes what is in flight, closes
 * its clients and exits 0 within SHUTDOWN_TIMEOUT_MS; every 201 it sent is in the database,
 * encrypted; requests after the signal get a clean refusal (connection refused or reset, or 503),
 * never a 2xx that is not in the database, never a 500.
 *
 * The build (tsc -p tsconfig.build.json, into dist/ only) runs first when dist/ is older than the
 * sources. The server runs against the shared stack's MongoDB with a key vault database of its own,
 * dropped at the end.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { ADMIN_TOKEN } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { ensureBuilt, startServerProcess } from './server-process.js';
import { percentile, sleep, tally, waitForExit } from './servers.js';
import { canaryEmployee, createFaultDocumentsApp, encryptedFieldsOf, isCiphertext, rawBytesContain } from './setup.js';

const SHUTDOWN_TIMEOUT_MS = 5000;
const CONCURRENCY = 8;
const MAX_REQUESTS = 600;
const SIGNAL_AFTER_MS = 1500;
const KEEP_SENDING_AFTER_SIGNAL_MS = 1500;

interface Outcome {
  i: number;
  sentAt: number;
  doneAt: number;
  status?: number;
  code?: string;
  insertedId?: string;
  requestId?: string;
  contentType?: string;
  retryAfter?: string;
  error?: string;
}

t.test('SIGTERM mid-stream: in-flight requests finish, nothing acknowledged is lost, exit 0', async (t) => {
  const build = ensureBuilt();
  t.comment(build.built ? `built dist/ in ${build.ms} ms${build.output ? `; tsc said: ${build.output.slice(0, 500)}` : ''}` : 'dist/ is up to date');

  // Keys and the collection schema, made in-process on the same key vault the server will use.
  const h = await createFaultDocumentsApp(t, stack.mongodbUri);
  const server = await startServerProcess(t, { ...h.env, SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) });
  const { child, base } = server;
  const output = () => server.output();
  t.ok(server.up, `the server answers /health/ready (${output().slice(-300)})`);
  if (!server.up) return;

  const run = randomBytes(4).toString('hex');
  const post = async (i: number): Promise<Outcome> => {
    const sentAt = Date.now();
    try {
      const res = await fetch(`${base}/documents/${h.ns}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ document: canaryEmployee(run, i) }),
        signal: AbortSignal.timeout(15_000),
      });
      const json = (await res.json()) as { insertedId?: { $oid: string }; code?: string };
      return {
        i,
        sentAt,
        doneAt: Date.now(),
        status: res.status,
        code: json.code,
        insertedId: json.insertedId?.$oid,
        requestId: res.headers.get('x-request-id') ?? undefined,
        contentType: res.headers.get('content-type') ?? undefined,
        retryAfter: res.headers.get('retry-after') ?? undefined,
      };
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return { i, sentAt, doneAt: Date.now(), error: cause?.code ?? cause?.message ?? (err as Error).name };
    }
  };

  const outcomes: Outcome[] = [];
  let next = 0;
  let signalledAt = Number.POSITIVE_INFINITY;
  const streamStarted = Date.now();
  const worker = async () => {
    while (next < MAX_REQUESTS && Date.now() < signalledAt + KEEP_SENDING_AFTER_SIGNAL_MS && Date.now() - streamStarted < 20_000) {
      outcomes.push(await post(next++));
      await sleep(5);
    }
  };
  const workers = Promise.all(Array.from({ length: CONCURRENCY }, worker));
  await sleep(SIGNAL_AFTER_MS);
  signalledAt = Date.now();
  child.kill('SIGTERM');
  const exit = await waitForExit(child, SHUTDOWN_TIMEOUT_MS + 5000);
  const exitMs = Date.now() - signalledAt;
  await workers;

  t.equal(exit, 0, `the process exits 0 (${output().split('\n').filter((l) => /shutting|error/i.test(l)).slice(0, 3).join(' | ')})`);
  t.ok(exitMs < SHUTDOWN_TIMEOUT_MS, `within SHUTDOWN_TIMEOUT_MS (${exitMs} ms < ${SHUTDOWN_TIMEOUT_MS} ms)`);

  const acked = outcomes.filter((o) => o.status !== undefined && o.status >= 200 && o.status < 300);
  const docs = await h.mongo.db(h.keyVaultDb).collection<Record<string, any>>('employees').find({}).toArray();
  const byId = new Map(docs.map((d) => [String(d._id), d]));
  t.same(acked.filter((o) => !byId.has(o.insertedId!)).map((o) => o.i), [], 'every 2xx is in the database');
  t.same(
    acked.filter((o) => !Object.values(encryptedFieldsOf(byId.get(o.insertedId!) ?? {})).every(isCiphertext)).map((o) => o.i),
    [],
    'encrypted: every schema field is subtype 6',
  );
  t.notOk(rawBytesContain(docs, 'CANARY'), 'no canary plaintext in the raw collection');

  const inFlight = outcomes.filter((o) => o.sentAt < signalledAt && o.doneAt >= signalledAt);
  const after = outcomes.filter((o) => o.sentAt >= signalledAt);
  const label = (o: Outcome) => (o.error ? `error ${o.error}` : `${o.status}${o.code ? ` ${o.code}` : ''}`);
  t.same(outcomes.filter((o) => o.status !== undefined && o.status >= 500 && o.status !== 503), [], 'no 500s');
  t.same(
    inFlight.filter((o) => o.status !== 201),
    [],
    'requests in flight at the signal were finished: 201',
  );
  t.same(
    after.filter((o) => !(o.status === 503 || (o.status !== undefined && o.status < 300 && byId.has(o.insertedId!)) || o.error !== undefined)),
    [],
    'requests after the signal: refused (connection error or 503), or a 2xx that is in the database',
  );
  t.ok(after.length > 0, 'requests kept coming after the signal');
  const closing503 = outcomes.filter((o) => o.status === 503);
  t.same(
    closing503.filter((o) => !String(o.contentType).startsWith('application/problem+json') || !o.code || !o.retryAfter).map((o) => ({ i: o.i, contentType: o.contentType, code: o.code, retryAfter: o.retryAfter })),
    [],
    'the 503s sent while closing are problem+json with a code and Retry-After, like every other 503'
  );

  // The audit trail: every acknowledged insert has its "started" and "succeeded" events.
  const audit = await h.mongo
    .db(h.keyVaultDb)
    .collection<Record<string, any>>('__audit')
    .find({ action: 'documents.insert' }, { projection: { requestId: 1, outcome: 1, status: 1, code: 1 } })
    .toArray();
  const outcomesOf = new Map<string, string[]>();
  for (const event of audit) outcomesOf.set(event.requestId, [...(outcomesOf.get(event.requestId) ?? []), event.outcome]);
  const unaudited = acked.filter((o) => !(outcomesOf.get(o.requestId!) ?? []).includes('succeeded'));
  const startedOnly = [...outcomesOf.values()].filter((list) => list.length === 1 && list[0] === 'started').length;
  t.same(
    unaudited.map((o) => ({ i: o.i, events: outcomesOf.get(o.requestId!) ?? [], inFlightAtSignal: o.sentAt < signalledAt })),
    [],
    'every acknowledged insert has its "succeeded" audit event'
  );
  const serverErrors = output()
    .split('\n')
    .filter((l) => l.includes('"level":50'))
    .map((l) => {
      const j = JSON.parse(l) as { msg?: string; code?: string; err?: { message?: string } };
      return `${j.msg}: ${j.code ?? ''} ${String(j.err?.message ?? '').slice(0, 120)}`;
    });

  const latencies = acked.map((o) => o.doneAt - o.sentAt);
  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'sigterm',
      built: build.built,
      sent: outcomes.length,
      concurrency: CONCURRENCY,
      acknowledged: acked.length,
      lostAcknowledged: acked.filter((o) => !byId.has(o.insertedId!)).length,
      inFlightAtSignal: tally(inFlight, label),
      closing503: tally(closing503, (o) => `${o.contentType} code=${o.code ?? 'none'} retry-after=${o.retryAfter ?? 'none'}`),
      afterSignal: tally(after, label),
      exitCode: exit,
      exitMsAfterSignal: exitMs,
      ackLatencyMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95) },
      auditEventsWithoutOutcome: startedOnly,
      acknowledgedWithoutSucceededEvent: unaudited.length,
      serverErrorLogs: serverErrors,
    })}`,
  );
});

/**
 * Fault: `kill -9` of the real server process (node dist/src/server.js) in the middle of a steady
 * stream of concurrent requests: single-value /encrypt and /decrypt (one audit event each, written
 * once the result is known) and state-changing POST /keys and POST /documents (a `started` event
 * before they act, then the outcome). The process is then started again on the SAME spool
 * directory (the same instance, as an orchestrator restarts a pod on its volume).
 *
 * Expected (issue 12, the audit contract): no answer left before its outcome event was durable, so
 * after the restart and once the spool is shipped, every request that got a 2xx has its outcome
 * event in the trail (in the raw collection and through GET /audit), exactly once; a
 * state-changing one its `started` event before it; the chain of the instance runs 1, 2, 3, …
 * without a gap or a broken link across the kill; an answer that arrived before another request
 * was sent precedes it in the chain; and GET /audit/verify?full=true is valid. Events of requests
 * whose answer the kill cut off are allowed (the operation ran, its answer was lost) and counted.
 * A second run uses 64 KiB segments and kills three times in a row, so kills also land around
 * segment rotations, preallocations and the removal of shipped segments.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { stack } from '../helpers/stack.js';
import { ensureBuilt, startServerProcess, type ServerProcess } from './server-process.js';
import { percentile, sleep, tally, waitForExit } from './servers.js';
import { canaryEmployee, createFaultDocumentsApp } from './setup.js';
import { chainBreaks, coverage, createLoad, httpCall, is2xx, listTrail, readChain, spoolRecords, waitUntilShipped, type Kind, type RawRecord } from './audit-check.js';

const CONCURRENCY = 12;
/** The kill lands this long into the stream, give or take KILL_JITTER_MS. */
const KILL_AFTER_MS = 2500;
const KILL_JITTER_MS = 1000;
/** After the restart, a short stream more: the chain goes on where it stopped. */
const AFTER_RESTART_MS = 1000;
const SHIP_DEADLINE_MS = 30_000;

/** Mostly single-value crypto, with some changes of state. */
const kindOf = (i: number): Kind => (['encrypt', 'decrypt', 'encrypt', 'key', 'decrypt', 'encrypt', 'insert', 'decrypt', 'encrypt', 'insert'] as const)[i % 10]!;

const scenarios: { name: string; env: Record<string, string>; kills: number }[] = [
  { name: 'default segments', env: {}, kills: 1 },
  // Segments of 64 KiB: the spool rotates every couple of hundred events and removes what is
  // shipped, so the kills also land around rotations, preallocations and removals.
  { name: 'small segments, three kills in a row', env: { AUDIT_SPOOL_SEGMENT_BYTES: '65536' }, kills: 3 },
];

for (const scenario of scenarios) {
  t.test(`kill -9 under load (${scenario.name}): every 2xx has its event after the restart, in order, and the chain verifies`, async (t) => {
    await run(t, scenario);
  });
}

interface Kill {
  afterMs: number;
  at: number;
  /** Records of the chain in the database when the process died (nothing ships after that). */
  shipped: number;
  /** Records in the spool files then. */
  onDisk: RawRecord[];
  answers: number;
  restartMs: number;
  shipMs: number | undefined;
  /** What the restarted process logged at warn or error level before it had shipped. */
  warnings: string[];
}

async function run(t: Test, scenario: (typeof scenarios)[number]) {
  const build = ensureBuilt();
  t.comment(build.built ? `built dist/ in ${build.ms} ms` : 'dist/ is up to date');

  // Keys and the collection schema, made in-process on the key vault the server uses.
  const h = await createFaultDocumentsApp(t, stack.mongodbUri);
  const env = { ...h.env, RATE_LIMIT_PER_MINUTE: '1000000', ...scenario.env };
  let server: ServerProcess = await startServerProcess(t, env);
  t.ok(server.up, `the server answers /health/ready (${server.output().slice(-300)})`);
  if (!server.up) return;
  const spoolDir = server.spoolDir;
  const chainId = readFileSync(join(spoolDir, 'chain-id'), 'utf8').trim();
  const records = h.mongo.db(h.keyVaultDb).collection('__audit');

  const run = randomBytes(4).toString('hex');
  const keyId = h.keys['tenant-a']!;
  const warm = await httpCall(server.base, 'POST', '/encrypt', { value: 'warm-up', algorithm: 'random', keyId });
  t.equal(warm.status, 200, 'the server encrypts before the fault');
  const load = createLoad(
    () => server.base,
    {
      keyId,
      ciphertext: warm.body.ciphertext,
      run,
      documents: { url: h.url, body: (name) => ({ document: { ...canaryEmployee(run, 0), name } }) },
    },
    kindOf,
  );

  const kills: Kill[] = [];
  for (let k = 0; k < scenario.kills; k++) {
    // The stream, and the kill in the middle of it.
    let killed = false;
    const stream = load.run(CONCURRENCY, () => !killed);
    const afterMs = KILL_AFTER_MS + Math.round((Math.random() * 2 - 1) * KILL_JITTER_MS);
    const streamFrom = load.answers.length;
    const streamStarted = Date.now();
    await sleep(afterMs);
    // A busy machine answers fewer in that time: the kill waits for a real stream (up to 20 s).
    while (load.answers.slice(streamFrom).filter(is2xx).length < 60 && Date.now() - streamStarted < 20_000) await sleep(50);
    const at = Date.now();
    server.child.kill('SIGKILL');
    killed = true;
    const exit = await waitForExit(server.child, 5000);
    await stream;
    t.equal(exit, 'SIGKILL', `kill ${k + 1}: the process died of SIGKILL`);
    const shipped = (await readChain(records, chainId)).length;
    const onDisk = spoolRecords(spoolDir);

    // The same instance again: the same spool directory.
    const restartStarted = Date.now();
    server = await startServerProcess(t, env, { spoolDir });
    const restartMs = Date.now() - restartStarted;
    t.ok(server.up, `kill ${k + 1}: the restarted server answers /health/ready (${server.output().slice(-300)})`);
    if (!server.up) return;
    const opened = server
      .output()
      .split('\n')
      .filter((l) => l.includes('audit trail open'))
      .map((l) => JSON.parse(l) as { chainId?: string });
    t.same(opened.map((l) => l.chainId), [chainId], `kill ${k + 1}: the restarted process writes the same chain`);
    const shipMs = await waitUntilShipped(server.base, SHIP_DEADLINE_MS);
    t.ok(shipMs !== undefined, `kill ${k + 1}: the restarted instance shipped its spool (${shipMs} ms after it was ready)`);
    const warnings = server
      .output()
      .split('\n')
      .filter((l) => /"level":(40|50)/.test(l))
      .map((l) => {
        const j = JSON.parse(l) as { msg?: string; err?: { message?: string } };
        return `${j.msg}: ${String(j.err?.message ?? '').slice(0, 160)}`;
      });
    kills.push({ afterMs, at, shipped, onDisk, answers: load.answers.length, restartMs, shipMs, warnings });
  }

  // A little more traffic after the last restart: the chain goes on where it stopped.
  let afterDone = false;
  const afterStream = load.run(4, () => !afterDone);
  await sleep(AFTER_RESTART_MS);
  afterDone = true;
  await afterStream;

  const verify = await httpCall(server.base, 'GET', '/audit/verify?full=true');
  const answers = load.answers;
  const acked = answers.filter(is2xx);
  const chain = await readChain(records, chainId);
  const viaHttp = await listTrail(server.base);

  for (const [k, kill] of kills.entries()) {
    const before = answers.slice(0, kill.answers).filter((a) => a.sentAt >= (kills[k - 1]?.at ?? 0));
    t.ok(before.filter(is2xx).length >= 50, `kill ${k + 1}: a real stream before it (${before.filter(is2xx).length} answered 2xx)`);
  }
  const cutOff = answers.filter((a) => a.error !== undefined);
  t.ok(cutOff.length > 0, `the kills cut requests off mid-stream (${cutOff.length} got no answer)`);
  t.same(
    answers.filter((a) => a.status !== undefined && !is2xx(a)).map((a) => ({ i: a.i, kind: a.kind, status: a.status, code: a.code })),
    [],
    'every answer is a 2xx: the fault is the kill, nothing else',
  );
  t.equal(verify.status, 200);
  t.equal(verify.body.valid, true, `GET /audit/verify?full=true is valid: ${JSON.stringify(verify.body.problems?.slice(0, 5))}`);
  t.ok(verify.body.checked >= chain.length, `it checked every record of the chain (${verify.body.checked} ≥ ${chain.length})`);

  t.same(chainBreaks(chain), [], `the chain is 1..${chain.length}, each record linked to the one before, across the kill`);
  const heads = kills.map((kill) => Math.max(0, ...kill.onDisk.map((r) => r.seq)));
  t.ok(chain.some((r) => r.seq > heads.at(-1)!) && chain.some((r) => r.seq <= heads[0]!), 'it holds records from before the kills and after the restarts');
  for (const [k, kill] of kills.entries()) {
    const spooled = new Map(kill.onDisk.map((r) => [r.seq, r.hmac]));
    t.same(
      chain.filter((r) => spooled.has(r.seq) && spooled.get(r.seq) !== r.hmac).map((r) => r.seq),
      [],
      `kill ${k + 1}: what the database holds is what the spool held at the kill, record for record`,
    );
  }

  const cover = coverage(answers, chain, [warm.requestId!]);
  t.same(cover.missing, [], `every one of the ${acked.length} 2xx answers has its one "succeeded" event in the raw collection`);
  t.same(cover.startedMissing, [], 'every state-changing 2xx has its "started" event before its outcome');
  t.same(cover.extraEvents, [], 'every side-effect-free 2xx has one event, not two');
  t.same(cover.duplicates, [], 'no event is recorded twice (shipping again after the restart is recognised)');
  t.same(cover.orderViolations.slice(0, 10), [], 'an answer that arrived before a request was sent precedes that request in the chain');

  const httpIds = new Set(viaHttp.filter((e) => e.chainId === chainId && e.outcome === 'succeeded').map((e) => e.requestId));
  t.same(
    acked.filter((a) => !httpIds.has(a.requestId!)).map((a) => ({ i: a.i, kind: a.kind, requestId: a.requestId })),
    [],
    'and through GET /audit',
  );
  const httpSeqs = new Set(viaHttp.filter((e) => e.chainId === chainId).map((e) => e.seq));
  t.same(chain.filter((r) => !httpSeqs.has(r.seq)).map((r) => r.seq), [], 'GET /audit pages through every record of the chain');

  const ackLatency = acked.map((a) => a.doneAt - a.sentAt);
  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'audit-kill-9',
      built: build.built,
      concurrency: CONCURRENCY,
      segmentBytes: scenario.env.AUDIT_SPOOL_SEGMENT_BYTES ?? 'default',
      kills: kills.map((kill, k) => ({
        afterMs: kill.afterMs,
        sentBefore: kill.answers - (kills[k - 1]?.answers ?? 0),
        head: heads[k],
        onlyInSpoolAtKill: heads[k]! - kill.shipped,
        recordsInSpoolFiles: kill.onDisk.length,
        restartToReadyMs: kill.restartMs,
        readyToShippedMs: kill.shipMs,
        warnings: kill.warnings,
      })),
      sent: answers.length,
      byKind2xx: tally(acked, (a) => a.kind),
      noAnswer: tally(answers.filter((a) => a.error !== undefined), (a) => `${a.kind} ${a.error}`),
      sentAfterLastRestart: answers.length - kills.at(-1)!.answers,
      total2xx: acked.length,
      chainRecords: chain.length,
      eventsOf2xxFound: acked.length - cover.missing.length,
      unansweredWithEvent: cover.unansweredWithEvent,
      unansweredStartedOnly: cover.unansweredStartedOnly,
      ackLatencyMs: { p50: percentile(ackLatency, 50), p99: percentile(ackLatency, 99) },
      verify: { valid: verify.body.valid, checked: verify.body.checked, chains: verify.body.chains },
    })}`,
  );
}

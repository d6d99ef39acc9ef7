/**
 * A bounded soak: SOAK_SECONDS (default 60) of mixed traffic at a steady rate against the real
 * server process (node dist/src/server.js, built when stale) on the shared stack: explicit encrypt
 * (deterministic, random, batches), decrypt, document insert (with Idempotency-Key), equality find
 * on a deterministic field, get by id. Every answer is checked.
 *
 * Memory is sampled every SAMPLE_MS: the server's RSS from /proc/PID/status, and its V8 heap after
 * a full garbage collection (the server runs with --expose-gc and test/soak/gc-probe.mjs preloaded,
 * which collects and reports process.memoryUsage() over IPC; without it, V8's lazy major GC makes
 * heapUsed a sawtooth of ~70 MB that says nothing about leaks). Expected: zero errors, and no
 * growth trend after warm-up: the median post-GC heapUsed of the last third of the samples within
 * 20 % (or 8 MB) of the middle third's; RSS within 20 % (or 16 MB).
 *
 *   SOAK_SECONDS=90 npx tap --timeout=300 test/soak/soak.test.ts
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ADMIN_TOKEN } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { ensureBuilt, startServerProcess } from '../faults/server-process.js';
import { percentile, sleep, tally } from '../faults/servers.js';
import { canaryEmployee, createFaultDocumentsApp } from '../faults/setup.js';

const SOAK_SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const RATE_PER_SECOND = Number(process.env.SOAK_RATE ?? 40);
const SAMPLE_MS = 2000;
const MAX_IN_FLIGHT = 32;

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

const median = (values: number[]) => percentile(values, 50);
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

t.test(`soak: ${SOAK_SECONDS} s of mixed traffic at ${RATE_PER_SECOND} req/s, zero errors, flat memory`, async (t) => {
  const build = ensureBuilt();
  if (build.built) t.comment(`built dist/ in ${build.ms} ms`);
  const h = await createFaultDocumentsApp(t, stack.mongodbUri);
  // Request lines at info would make the log, not the service, the thing measured.
  const server = await startServerProcess(
    t,
    { ...h.env, LOG_LEVEL: 'warn' },
    { nodeArgs: ['--expose-gc', '--import', fileURLToPath(new URL('./gc-probe.mjs', import.meta.url))], ipc: true },
  );
  t.ok(server.up, 'the server is up');
  if (!server.up) return;
  const pid = server.child.pid!;
  const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
  const call = async (method: string, path: string, body?: unknown, extra: Record<string, string> = {}) => {
    const res = await fetch(`${server.base}${path}`, {
      method,
      headers: { ...headers, ...extra },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, json: (await res.json()) as any };
  };
  /** heapUsed right after a full GC in the server, through the gc-probe IPC channel. */
  const heapAfterGc = () =>
    new Promise<number>((resolve) => {
      const timer = setTimeout(() => resolve(Number.NaN), 2000);
      server.child.once('message', (message: { sample?: NodeJS.MemoryUsage }) => {
        clearTimeout(timer);
        resolve(message.sample?.heapUsed ?? Number.NaN);
      });
      server.child.send('sample');
    });

  const run = randomBytes(4).toString('hex');
  const inserted: { id: string; ssn: string }[] = [];
  const ciphertexts: { ciphertext: string; value: string }[] = [];
  let n = 0;

  /** One operation of the mix; resolves with a label, throws with a description on any wrong answer. */
  const operations: (() => Promise<string>)[] = [
    async () => {
      const value = `CANARY-SOAK-det-${run}-${n % 50}`;
      const r = await call('POST', '/encrypt', { value, algorithm: 'deterministic', keyAltName: 'hr-det' });
      if (r.status !== 200) throw new Error(`encrypt det ${r.status} ${r.json.code}`);
      ciphertexts.push({ ciphertext: r.json.ciphertext, value });
      return 'encrypt-det';
    },
    async () => {
      const value = `CANARY-SOAK-rnd-${run}-${n}`;
      const r = await call('POST', '/encrypt', { value, algorithm: 'random', keyAltName: 'hr-rnd' });
      if (r.status !== 200) throw new Error(`encrypt rnd ${r.status} ${r.json.code}`);
      ciphertexts.push({ ciphertext: r.json.ciphertext, value });
      return 'encrypt-rnd';
    },
    async () => {
      const sample = ciphertexts[Math.floor(Math.random() * ciphertexts.length)];
      if (sample === undefined) return 'skip';
      const r = await call('POST', '/decrypt', { ciphertext: sample.ciphertext });
      if (r.status !== 200 || r.json.value !== sample.value) throw new Error(`decrypt ${r.status} ${r.json.code ?? ''}`);
      return 'decrypt';
    },
    async () => {
      const i = n;
      const document = canaryEmployee(run, i);
      const r = await call('POST', `/documents/${h.ns}`, { document }, { 'idempotency-key': `soak-${run}-${i}` });
      if (r.status !== 201) throw new Error(`insert ${r.status} ${r.json.code}`);
      inserted.push({ id: r.json.insertedId.$oid, ssn: document.ssn });
      if (inserted.length > 1000) inserted.splice(0, 500);
      return 'insert';
    },
    async () => {
      const doc = inserted[Math.floor(Math.random() * inserted.length)];
      if (doc === undefined) return 'skip';
      const r = await call('POST', `/documents/${h.ns}/find`, { filter: { ssn: doc.ssn }, limit: 5 });
      if (r.status !== 200 || r.json.items?.length !== 1 || r.json.items[0].ssn !== doc.ssn) throw new Error(`find ${r.status} ${r.json.code ?? r.json.items?.length}`);
      return 'find';
    },
    async () => {
      const doc = inserted[Math.floor(Math.random() * inserted.length)];
      if (doc === undefined) return 'skip';
      const r = await call('GET', `/documents/${h.ns}/${doc.id}`);
      if (r.status !== 200 || r.json.document?.ssn !== doc.ssn) throw new Error(`get ${r.status} ${r.json.code ?? ''}`);
      return 'get';
    },
    async () => {
      const items = Array.from({ length: 10 }, (_, k) => ({ reference: `r${k}`, value: `CANARY-SOAK-batch-${run}-${k}`, algorithm: 'random', keyAltName: 'tenant-a' }));
      const r = await call('POST', '/encrypt', { items });
      if (r.status !== 200 || r.json.items?.some((item: { ciphertext?: string }) => !item.ciphertext)) throw new Error(`batch ${r.status}`);
      return 'encrypt-batch';
    },
  ];
  if (ciphertexts.length > 5000) ciphertexts.splice(0, 2500);

  const done: string[] = [];
  const errors: string[] = [];
  const latencies: number[] = [];
  const latencyByOp = new Map<string, number[]>();
  const samples: { s: number; rss: number; heap: number }[] = [];
  let inFlight = 0;
  let skippedForBackpressure = 0;
  const started = Date.now();
  const end = started + SOAK_SECONDS * 1000;
  const interval = 1000 / RATE_PER_SECOND;
  const pending = new Set<Promise<void>>();

  const sampler = (async () => {
    while (Date.now() < end) {
      const heap = await heapAfterGc();
      samples.push({ s: Math.round((Date.now() - started) / 1000), rss: rssBytes(pid), heap });
      await sleep(SAMPLE_MS);
    }
  })();

  for (let tick = 0; Date.now() < end; tick++) {
    const due = started + tick * interval;
    if (due > Date.now()) await sleep(due - Date.now());
    if (inFlight >= MAX_IN_FLIGHT) {
      skippedForBackpressure++;
      continue;
    }
    const op = operations[tick % operations.length]!;
    n++;
    inFlight++;
    const opStarted = Date.now();
    const p = op()
      .then(
        (label) => {
          done.push(label);
          latencies.push(Date.now() - opStarted);
          if (!latencyByOp.has(label)) latencyByOp.set(label, []);
          latencyByOp.get(label)!.push(Date.now() - opStarted);
        },
        (err: unknown) => {
          errors.push(err instanceof Error ? err.message : String(err));
        },
      )
      .finally(() => {
        inFlight--;
        pending.delete(p);
      });
    pending.add(p);
    if (ciphertexts.length > 5000) ciphertexts.splice(0, 2500);
  }
  await Promise.all(pending);
  await sampler;

  // Drop the first third (warm-up: JIT, pools, caches), compare the middle and last thirds.
  const third = Math.floor(samples.length / 3);
  const middle = samples.slice(third, 2 * third);
  const last = samples.slice(2 * third);
  const heapMiddle = median(middle.map((s) => s.heap));
  const heapLast = median(last.map((s) => s.heap));
  const rssMiddle = median(middle.map((s) => s.rss));
  const rssLast = median(last.map((s) => s.rss));
  t.comment(`samples (s, RSS MB, heapUsed after GC MB): ${samples.map((s) => `${s.s}:${mb(s.rss)}/${mb(s.heap)}`).join(' ')}`);
  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'soak',
      seconds: SOAK_SECONDS,
      targetRate: RATE_PER_SECOND,
      requests: done.length + errors.length,
      achievedRate: Math.round(((done.length + errors.length) / SOAK_SECONDS) * 10) / 10,
      byOperation: tally(done, (d) => d),
      errors: errors.length,
      errorKinds: tally(errors, (e) => e),
      skippedForBackpressure,
      latencyMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), max: Math.max(...latencies) },
      p95ByOperationMs: Object.fromEntries([...latencyByOp].map(([op, ms]) => [op, percentile(ms, 95)])),
      // p95 of the first and the last tenth of the run: does latency drift as the collections grow?
      p95FirstVsLastTenthMs: [percentile(latencies.slice(0, Math.ceil(latencies.length / 10)), 95), percentile(latencies.slice(-Math.ceil(latencies.length / 10)), 95)],
      heapUsedAfterGcMB: { middleThirdMedian: mb(heapMiddle), lastThirdMedian: mb(heapLast), first: mb(samples[0]!.heap), max: mb(Math.max(...samples.map((s) => s.heap))) },
      rssMB: { middleThirdMedian: mb(rssMiddle), lastThirdMedian: mb(rssLast), first: mb(samples[0]!.rss), max: mb(Math.max(...samples.map((s) => s.rss))) },
    })}`,
  );

  t.equal(errors.length, 0, `no errors (${JSON.stringify(tally(errors, (e) => e))})`);
  t.equal(skippedForBackpressure, 0, 'the server kept up with the rate (nothing skipped for backpressure)');
  t.ok(samples.length >= 9, `enough memory samples (${samples.length})`);
  t.notOk(samples.some((s) => Number.isNaN(s.heap)), 'every heap sample came back from the server');
  t.ok(
    heapLast <= heapMiddle * 1.2 || heapLast - heapMiddle <= 8 * 1048576,
    `no heap growth trend: last-third median ${mb(heapLast)} MB vs middle-third ${mb(heapMiddle)} MB`,
  );
  t.ok(
    rssLast <= rssMiddle * 1.2 || rssLast - rssMiddle <= 16 * 1048576,
    `no RSS growth trend: last-third median ${mb(rssLast)} MB vs middle-third ${mb(rssMiddle)} MB`,
  );
});

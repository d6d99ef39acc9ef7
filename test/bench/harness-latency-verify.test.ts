/**
 * The harness's sections of issues #12 and #15 run end to end on a tiny setting (a file of their
 * own, so the smoke run of the older workloads keeps its budget): W1 latency at a fixed 200 req/s
 * from the open-loop generator for half a second, and /audit/verify over 2,000 generated events
 * (full, then incremental from the checkpoint it left). The scale-out section needs the load
 * balancer and three instances: test/cluster runs that path. Needs the stack (npm test exports
 * it). Budget: under 60 s.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = fileURLToPath(new URL('../../', import.meta.url));

t.test('bench/harness.ts: W1 latency at a fixed rate (open loop) and the /audit/verify cost, on a tiny setting', { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-harness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'RESULTS.md');
  const json = join(dir, 'results.json');
  const started = Date.now();
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'bench/harness.ts', '--warmup', '0.2', '--rounds', '1', '--python', 'off', '--only', 'w1-latency,verify', '--rates', '200', '--latency-seconds', '0.5', '--verify-events', '2000', '--out', out, '--json', json],
      { cwd: root, env: process.env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 80_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
  const seconds = (Date.now() - started) / 1000;
  t.equal(code, 0, `the harness exits 0 (${seconds.toFixed(1)} s)`, { stderr: stderr.slice(-3000) });
  if (code !== 0) return;
  t.ok(seconds < 60, `it finished in under 60 s (${seconds.toFixed(1)} s)`);
  const results = JSON.parse(readFileSync(json, 'utf8'));
  t.same(results.notes, [], 'no section failed');
  for (const name of ['encrypt@200', 'decrypt@200']) {
    const l = results.latency?.[name];
    t.equal(l?.sent, 100, `${name}: 100 requests sent on schedule`);
    t.equal(l?.errors, 0, `${name}: no errors`);
    for (const p of ['p50', 'p90', 'p99', 'p999', 'max']) t.ok(Number.isFinite(l?.overall?.[p]) && l.overall[p] > 0, `${name}: ${p}`);
    t.ok(l.overall.p50 <= l.overall.p99 && l.overall.p99 <= l.overall.max, `${name}: percentiles in order`);
  }
  t.ok(results.verify?.full?.checked >= 2000, 'verify: the full verification read the generated chain');
  // The generated chain has a checkpoint; the verifying instance's own chain (its first event is
  // the full verification's) did not exist yet when the checkpoints were written.
  t.ok(results.verify?.incremental?.fromCheckpoint >= 1, 'verify: the incremental one started the generated chain at its checkpoint');
  t.ok(results.verify?.incremental?.checked < 2000, `verify: and read only what was new (${results.verify?.incremental?.checked} records)`);
  const md = readFileSync(out, 'utf8');
  t.match(md, /W1 encrypt at 200 req\/s, open loop: p99/, 'the targets table has the latency ceilings');
  t.match(md, /## `\/audit\/verify` over a long chain/, 'the report has the verify section');
});

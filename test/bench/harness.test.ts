/**
 * The performance harness (bench/harness.ts) runs end to end on a tiny setting: a few hundred ms
 * per workload, one round, no Python, no scale-out phase, results to a temp file (never bench/RESULTS.md); every
 * workload produced numbers. Needs the stack (npm test exports it). It runs beside the other test
 * files on two shared cores, so its time says more about the machine than about the harness: the
 * bound only catches a smoke run that grew into a benchmark.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const root = fileURLToPath(new URL('../../', import.meta.url));

t.test('bench/harness.ts produces numbers for every workload on a tiny setting', { timeout: 170_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-harness-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'RESULTS.md');
  const json = join(dir, 'results.json');
  const started = Date.now();
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'bench/harness.ts', '--duration', '0.4', '--warmup', '0.2', '--rounds', '1', '--memory-seconds', '1', '--w5-concurrency', '50', '--python', 'off', '--only', 'w1,w2,w3,w5,memory', '--out', out, '--json', json],
      { cwd: root, env: process.env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), 145_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
  const seconds = (Date.now() - started) / 1000;
  t.equal(code, 0, `the harness exits 0 (${seconds.toFixed(1)} s)`, { stderr: stderr.slice(-3000) });
  if (code !== 0) return;
  t.ok(seconds < 150, `it finished in under 150 s (${seconds.toFixed(1)} s)`);
  const results = JSON.parse(readFileSync(json, 'utf8'));
  const expected = [
    'w1-echo-encrypt',
    'w1-encrypt',
    'w1-echo-decrypt',
    'w1-decrypt',
    'w2-encrypt-batch',
    'w2-decrypt-batch',
    'w3-insert-enc',
    'w3-get-enc',
    'w3-find-enc',
    'w3-insert-plain',
    'w3-get-plain',
    'w3-find-plain',
  ];
  for (const name of expected) {
    const w = results.workloads[name];
    t.ok(w, `${name} ran`);
    // A slow service on a busy machine may complete nothing in 0.4 s; the numbers must still exist.
    t.ok(Array.isArray(w?.rps) && w.rps.length === 1 && Number.isFinite(w.rps[0]) && w.rps[0] >= 0, `${name} has a req/s number`);
    t.ok(Number.isFinite(w?.p99[0]), `${name} has a p99 number`);
  }
  t.ok(Number.isFinite(results.memory?.maxMB) && results.memory.maxMB > 0, 'memory: an RSS number');
  t.ok(Number.isFinite(results.w5?.kmsDecrypt) && Number.isFinite(results.w5?.keyVaultFinds), 'W5: KMS and key-vault counts');
  const md = readFileSync(out, 'utf8');
  t.match(md, /## Targets/, 'the report has a targets table');
  t.notOk(stderr.includes('RESULTS.md') && !stderr.includes(out), 'it did not write bench/RESULTS.md');
});

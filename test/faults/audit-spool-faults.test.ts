/**
 * Faults of the audit spool itself, over HTTP (issue 12: "a full or unwritable spool fails
 * requests closed; a corrupt tail is detected at start-up and reported, not silently dropped"):
 *
 * - full: the current segment is full and the next one cannot be created (a directory squats its
 *   `.tmp` name): every audited request answers 503 AUDIT_UNAVAILABLE, a state-changing one
 *   changes nothing, and once there is room again the service goes on by itself, its trail whole;
 * - not usable: AUDIT_SPOOL_DIR names a regular file, a path below one, or a directory the
 *   process cannot write: the process does not start, exits non-zero and says why;
 * - a torn tail (half a record after the last whole one, as a crash mid-write leaves): at start-up
 *   it is cut off, kept byte for byte in a quarantine file, logged, counted in
 *   audit_spool_quarantined_total and recorded in the trail as `audit.spoolRecovered`; the chain
 *   goes on from the last whole record, and every 2xx answered before the crash is in the trail;
 * - a damaged record with whole records after it (not a torn write): the boot stops with a message
 *   naming the segment, and the spool is left as it was for inspection.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';
import { ensureBuilt, root, startServerProcess, type ServerProcess } from './server-process.js';
import { sleep, stopChild, waitForExit } from './servers.js';
import { chainBreaks, coverage, createLoad, httpCall, is2xx, metric, readChain, spoolRecords, waitUntilShipped, type Kind } from './audit-check.js';

const SEGMENT_BYTES = 64 * 1024;

const segments = (dir: string) => readdirSync(dir).filter((n) => /^seg-\d{6}\.jsonl$/.test(n)).sort();
const chainIdOf = (dir: string) => readFileSync(join(dir, 'chain-id'), 'utf8').trim();

t.test('a full spool (the next segment cannot be made) fails every audited request closed; a change is not made; room again, and it goes on', async (t) => {
  const h = await createTestApp(t, { env: { AUDIT_SPOOL_SEGMENT_BYTES: String(SEGMENT_BYTES), RATE_LIMIT_PER_MINUTE: '1000000' } });
  const dir = h.env.AUDIT_SPOOL_DIR!;
  t.same(segments(dir), ['seg-000001.jsonl'], 'one segment at boot');
  const squat = join(dir, 'seg-000002.jsonl.tmp');
  mkdirSync(squat);

  const ok: string[] = [];
  const keyId = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['full-spool'] })).json().id;
  const victim = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['full-spool-victim'] })).json().id;
  t.ok(keyId && victim, 'keys made while there is room');
  const encrypt = (i: number) => h.call('POST', '/encrypt', { value: `v${i}`, algorithm: 'random', keyId });
  const ciphertext = (await encrypt(-1)).json().ciphertext;

  // Fill the segment: encryptions until the first refusal.
  let first503: { i: number; code?: string; retryAfter?: string } | undefined;
  let i = 0;
  for (; i < 2000 && first503 === undefined; i++) {
    const res = await encrypt(i);
    if (res.statusCode === 200) ok.push(String(res.headers['x-request-id']));
    else first503 = { i, code: res.json().code, retryAfter: res.headers['retry-after'] as string | undefined };
  }
  t.ok(first503, `the segment filled up after ${i} encryptions`);
  t.equal(first503?.code, 'AUDIT_UNAVAILABLE');
  t.ok(ok.length > 50, `${ok.length} answered while there was room`);

  // The smallest event is a `started` one: once a key creation is refused before it acts, no
  // event fits. Until then a creation may have been made, with its `started` event, and its
  // answer withheld (the contract allows that; it is checked against the trail below).
  const ambiguous: { name: string; requestId: string }[] = [];
  let sealed = false;
  for (let k = 0; k < 50 && !sealed; k++) {
    const name = `fill-${k}`;
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
    if (res.statusCode === 201) ok.push(String(res.headers['x-request-id']));
    else if ((await keyVaultDocs(h)).some((d) => d.keyAltNames?.includes(name))) ambiguous.push({ name, requestId: String(res.headers['x-request-id']) });
    else sealed = true;
  }
  t.ok(sealed, 'a key creation was refused before it acted: no event fits any more');

  // Now every audited request is refused, and nothing changes.
  const vaultBefore = (await keyVaultDocs(h)).map((d) => String(d._id)).sort();
  const probes = [
    ['encrypt', () => encrypt(99_999)],
    ['decrypt', () => h.call('POST', '/decrypt', { ciphertext })],
    ['create key', () => h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['never-made'] })],
    ['delete key', () => h.call('DELETE', `/keys/${victim}`)],
    ['list keys', () => h.call('GET', '/keys')],
    ['list audit', () => h.call('GET', '/audit?limit=1')],
  ] as const;
  for (const [name, probe] of probes) {
    const res = await probe();
    t.equal(res.statusCode, 503, `${name}: 503`);
    t.equal(res.json().code, 'AUDIT_UNAVAILABLE', `${name}: AUDIT_UNAVAILABLE`);
    t.ok(res.headers['retry-after'] && String(res.headers['content-type']).startsWith('application/problem+json'), `${name}: problem+json with Retry-After`);
  }
  t.same((await keyVaultDocs(h)).map((d) => String(d._id)).sort(), vaultBefore, 'the key vault is unchanged: no key made, none deleted');
  const failures = Number(/^audit_write_failures_total (\S+)$/m.exec((await h.call('GET', '/metrics')).body)?.[1]);
  t.ok(failures >= probes.length, `audit_write_failures_total counts them (${failures})`);
  const onDisk = spoolRecords(dir);
  t.same(ok.filter((id) => !onDisk.some((r) => r.requestId === id && r.outcome !== 'started')), [], 'every answered request has its outcome on disk');

  // Room again: the next rotation makes the segment, and the service goes on by itself.
  rmSync(squat, { recursive: true });
  const again = await encrypt(100_000);
  t.equal(again.statusCode, 200, 'with room again, requests are answered without a restart');
  ok.push(String(again.headers['x-request-id']));
  t.ok(segments(dir).length >= 2, `the spool rotated into a new segment (${segments(dir).join(', ')})`);

  t.ok(await h.app.audit.flush(10_000), 'the spool is shipped');
  const chain = await readChain(h.mongo.db(h.keyVaultDb).collection('__audit'), chainIdOf(dir));
  t.same(chainBreaks(chain), [], `the chain is 1..${chain.length} without a gap: refused events left no hole`);
  const outcomes = new Set(chain.filter((r) => r.outcome !== 'started').map((r) => r.requestId));
  t.same(ok.filter((id) => !outcomes.has(id)), [], `every one of the ${ok.length} answered requests has its outcome event in the trail`);
  const started = new Set(chain.filter((r) => r.outcome === 'started').map((r) => r.requestId));
  t.same(ambiguous.filter((a) => !started.has(a.requestId)), [], `a key made whose answer was withheld has its "started" event (${ambiguous.length} such)`);
  const verify = await h.app.audit.verify({ full: true });
  t.equal(verify.valid, true, `the trail verifies in full: ${JSON.stringify(verify.problems.slice(0, 3))}`);
  t.comment(`RESULT ${JSON.stringify({ fault: 'audit-spool-full', segmentBytes: SEGMENT_BYTES, answeredBeforeFull: ok.length - 1, encryptionsToFill: i, madeWithAnswerWithheld: ambiguous.length, auditWriteFailures: failures, chainRecords: chain.length })}`);
});

/** Start the server once with this spool directory and wait for it to exit (or 20 s). */
async function bootOnce(env: Record<string, string>, spoolDir: string, as?: { uid: number; gid: number }) {
  let output = '';
  // `env -u`: the test runner's NODE_OPTIONS hooks (which write files at exit) stay out of the server.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, 'dist/src/server.js'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env, AUDIT_SPOOL_DIR: spoolDir, HOST: '127.0.0.1', PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(as ?? {}),
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await waitForExit(child, 20_000);
  if (code === undefined) await stopChild(child, 1000);
  return { code, output };
}

t.test('a spool directory that cannot be used stops the boot: exit non-zero, with a message that says why', async (t) => {
  ensureBuilt();
  const h = await createTestApp(t);
  const scratch = mkdtempSync(join(tmpdir(), 'spool-unusable-'));
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
  const file = join(scratch, 'a-file');
  writeFileSync(file, 'not a directory');
  const locked = join(scratch, 'locked');
  mkdirSync(locked, { mode: 0o700 });
  // Root writes anywhere: the server then runs as nobody, for whom the directory is closed.
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chmodSync(scratch, 0o755);
  else chmodSync(locked, 0o500);
  const cases = [
    { name: 'a regular file', dir: file, reason: /not a directory/ },
    { name: 'a path below a regular file', dir: join(file, 'spool'), reason: /not a directory/ },
    { name: `a directory the process cannot write${asRoot ? ' (the server runs as nobody)' : ''}`, dir: locked, reason: /not writable/, as: asRoot ? { uid: 65534, gid: 65534 } : undefined },
  ];
  for (const c of cases) {
    const { code, output } = await bootOnce(h.env, c.dir, c.as);
    t.ok(code !== undefined && code !== 0, `${c.name}: the process exits non-zero (${String(code)})`);
    t.match(output, /audit spool/i, `${c.name}: the message names the audit spool`);
    t.ok(output.includes(c.dir), `${c.name}: and the directory`);
    t.match(output, c.reason, `${c.name}: and says why: ${output.trim().split('\n').find((l) => l.startsWith('encryption-proxy:'))}`);
    t.notMatch(output, /Server listening/, `${c.name}: it never listened`);
  }
  t.equal(readFileSync(file, 'utf8'), 'not a directory', 'the file is left as it was');
  t.same(readdirSync(locked), [], 'nothing was written in the closed directory');
});

t.test('a torn tail is cut off at start-up, kept, logged, counted and recorded; a damaged middle stops the boot', async (t) => {
  ensureBuilt();
  const h = await createTestApp(t, { env: { RATE_LIMIT_PER_MINUTE: '1000000' } });
  const keyId = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['torn-tail'] })).json().id;
  let server: ServerProcess = await startServerProcess(t, h.env);
  t.ok(server.up, 'the server is up');
  if (!server.up) return;
  const dir = server.spoolDir;
  const chainId = chainIdOf(dir);
  const warm = await httpCall(server.base, 'POST', '/encrypt', { value: 'warm-up', algorithm: 'random', keyId });

  // Traffic, then a crash.
  const run = randomBytes(4).toString('hex');
  const load = createLoad(() => server.base, { keyId, ciphertext: warm.body.ciphertext, run }, (i): Kind => (['encrypt', 'decrypt', 'key'] as const)[i % 3]!);
  let go = true;
  const stream = load.run(4, () => go);
  await sleep(1000);
  server.child.kill('SIGKILL');
  go = false;
  await waitForExit(server.child, 5000);
  await stream;

  // What a crash in the middle of a write leaves: half a record after the last whole one.
  const last = segments(dir).filter((n) => readFileSync(join(dir, n))[0] !== 0).at(-1)!;
  const path = join(dir, last);
  const bytes = readFileSync(path);
  const end = bytes.indexOf(0);
  const whole = spoolRecords(dir);
  const head = whole.at(-1)!;
  const nextLine = JSON.stringify({ _id: `${chainId}:${String(head.seq + 1).padStart(12, '0')}`, chainId, seq: head.seq + 1, time: new Date().toISOString(), clientId: 'admin', action: 'crypto.encrypt', outcome: 'succeeded', requestId: randomBytes(16).toString('hex') });
  const torn = Buffer.from(nextLine.slice(0, Math.floor(nextLine.length / 2)));
  torn.copy(bytes, end);
  writeFileSync(path, bytes);

  server = await startServerProcess(t, h.env, { spoolDir: dir });
  t.ok(server.up, 'the server starts again on the spool');
  if (!server.up) return;
  const logged = server.output().split('\n').filter((l) => l.includes('torn tail')).map((l) => JSON.parse(l) as { level: number; file: string; bytes: number; segment: string });
  t.equal(logged.length, 1, 'the torn tail is logged');
  t.equal(logged[0]?.level, 50, 'as an error');
  t.equal(logged[0]?.bytes, torn.length, 'with its size');
  t.equal(logged[0]?.segment, last, 'and its segment');
  const quarantined = readdirSync(dir).filter((n) => n.startsWith('quarantine-'));
  t.same(quarantined, [logged[0]?.file], 'it is kept in a quarantine file');
  t.same(readFileSync(join(dir, quarantined[0]!)), torn, 'byte for byte');
  t.equal(await metric(server.base, 'audit_spool_quarantined_total'), 1, 'audit_spool_quarantined_total is 1 on GET /metrics');

  t.ok((await waitUntilShipped(server.base, 15_000)) !== undefined, 'the spool is shipped');
  const recovered = await httpCall(server.base, 'GET', '/audit?action=audit.spoolRecovered&limit=10');
  t.equal(recovered.status, 200);
  type Item = { chainId: string; seq: number; clientId: string; action: string; outcome: string; code: string; requestId: string };
  t.same(
    recovered.body.items.map(({ chainId, seq, clientId, action, outcome, code, requestId }: Item) => ({ chainId, seq, clientId, action, outcome, code, requestId })),
    [{ chainId, seq: head.seq + 1, clientId: 'system', action: 'audit.spoolRecovered', outcome: 'failed', code: 'TORN_TAIL_QUARANTINED', requestId: `recovery:${logged[0]?.file}` }],
    'the trail records the recovery, right after the last whole record',
  );
  const verify = await httpCall(server.base, 'GET', '/audit/verify?full=true');
  t.equal(verify.body.valid, true, `the trail verifies in full: ${JSON.stringify(verify.body.problems?.slice(0, 3))}`);
  const chain = await readChain(h.mongo.db(h.keyVaultDb).collection('__audit'), chainId);
  t.same(chainBreaks(chain), [], `the chain is 1..${chain.length} without a gap`);
  const cover = coverage(load.answers, chain, [warm.requestId!]);
  t.same(cover.missing, [], `every one of the ${load.answers.filter(is2xx).length} 2xx answered before the crash is in the trail`);
  t.same(cover.startedMissing, [], 'with its "started" event for a change');

  // A damaged record with whole records after it: not a torn write. The boot stops.
  t.equal(await stopChild(server.child, 10_000), 0, 'the server stops cleanly');
  const segment = join(dir, segments(dir)[0]!);
  const original = readFileSync(segment);
  const damaged = Buffer.from(original);
  const second = spoolRecords(dir)[1]!;
  const at = damaged.indexOf(Buffer.from(second.requestId));
  damaged.write(second.requestId.startsWith('0') ? '1' : '0', at);
  writeFileSync(segment, damaged);
  const before = readdirSync(dir).sort();
  const { code, output } = await bootOnce(h.env, dir);
  t.ok(code !== undefined && code !== 0, `the process exits non-zero (${String(code)})`);
  t.match(output, /damaged record/, `it says a record is damaged: ${output.trim().split('\n').find((l) => l.startsWith('encryption-proxy:'))}`);
  t.ok(output.includes(segments(dir)[0]!), 'and names the segment');
  t.match(output, /inspection/, 'and that the spool needs inspection');
  t.same(readdirSync(dir).sort(), before, 'nothing was added or removed in the spool');
  t.same(readFileSync(segment), damaged, 'the damaged segment is left as it was');

  // Repaired, the same instance starts and its chain still verifies.
  writeFileSync(segment, original);
  server = await startServerProcess(t, h.env, { spoolDir: dir });
  t.ok(server.up, `once repaired, the instance starts${server.up ? '' : `: ${server.output().slice(-600)}`}`);
  const after = await httpCall(server.base, 'GET', '/audit/verify?full=true');
  t.equal(after.body.valid, true, 'and its trail verifies');
  t.comment(`RESULT ${JSON.stringify({ fault: 'audit-spool-torn-tail', requestsBeforeCrash: load.answers.length, answered2xx: load.answers.filter(is2xx).length, tornBytes: torn.length, recoveredAtSeq: head.seq + 1, chainRecords: chain.length, damagedBoot: { code, message: output.trim().split('\n').find((l) => l.startsWith('encryption-proxy:')) } })}`);
});

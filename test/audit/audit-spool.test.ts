/**
 * The local audit spool on the real disk: group commit, resumption after a restart, a torn tail
 * found and quarantined, a damaged middle refused, one process per spool, and failing closed when
 * it cannot be written or its backlog passes the bound.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createRecordSigner, GENESIS, type AuditEvent, type AuditRecord } from '../../src/audit/audit-record.js';
import { createAuditSpool, SpoolCorruptError, type AuditSpoolOptions } from '../../src/audit/audit-spool.js';

const signer = createRecordSigner(randomBytes(32));
const event = (i: number): AuditEvent => ({ clientId: 'c', action: 'crypto.encrypt', outcome: 'succeeded', requestId: `r${i}`, status: 200 });

function spoolIn(t: { teardown(fn: () => unknown): void }, options: Partial<AuditSpoolOptions> = {}) {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'spool-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return createAuditSpool({ dir, signer, maxBacklog: 10_000, sync: 'fdatasync', segmentBytes: 64 * 1024, ...options });
}

/** The records of a spool directory, read back line by line from its segments. */
function linesOf(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => /^seg-\d+\.jsonl$/.test(n))
    .sort()
    .flatMap((n) => {
      const bytes = readFileSync(join(dir, n));
      const end = bytes.indexOf(0) === -1 ? bytes.length : bytes.indexOf(0);
      return bytes.subarray(0, end).toString('utf8').split('\n').filter(Boolean);
    });
}

function checkChain(t: Test, records: AuditRecord[]) {
  let prev = GENESIS;
  records.forEach((r, i) => {
    t.equal(r.seq, i + 1, `seq ${i + 1}`);
    t.equal(r.prev, prev, `link of seq ${r.seq}`);
    prev = r.hmac;
  });
}

t.test('appends made together are written as one group, chained in call order, and survive a reopen', async (t) => {
  const spool = spoolIn(t);
  const report = await spool.open();
  t.same(report, { unshipped: 0 });
  const records = await Promise.all(Array.from({ length: 200 }, (_, i) => spool.append(event(i))));
  checkChain(t, records);
  t.same(records.map((r) => r.requestId), Array.from({ length: 200 }, (_, i) => `r${i}`));
  t.equal(spool.state().backlog, 200);
  const dir = (spool as unknown as { dir?: string }).dir;
  t.equal(dir, undefined, 'the directory is not exposed');
  await spool.close();

  const again = createAuditSpool({ dir: join(tmpdir(), 'unused'), signer, maxBacklog: 1, sync: 'fdatasync' });
  t.ok(again, 'a second spool object can exist for another directory');
});

t.test('a restarted spool resumes its chain and what is left to ship', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  const first = spoolIn(t, { dir });
  await first.open();
  const chainId = first.chainId;
  const written = [];
  for (let i = 0; i < 30; i++) written.push(await first.append(event(i)));
  await first.markShipped({ seq: 10, hmac: written[9]!.hmac });
  await first.close();

  const second = spoolIn(t, { dir });
  const report = await second.open();
  t.equal(second.chainId, chainId, 'the same chain');
  t.equal(report.unshipped, 20, 'records 11..30 are still to ship');
  t.same(second.peek(100).map((r) => r.seq), Array.from({ length: 20 }, (_, i) => i + 11));
  const next = await second.append(event(30));
  t.equal(next.seq, 31);
  t.equal(next.prev, written[29]!.hmac, 'the chain goes on from the last record on disk');
  await second.close();
});

t.test('segments rotate, are preallocated, and are removed once shipped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  const spool = spoolIn(t, { dir, segmentBytes: 16 * 1024 });
  await spool.open();
  const records: AuditRecord[] = [];
  for (let i = 0; i < 300; i++) records.push(await spool.append(event(i)));
  const segments = readdirSync(dir).filter((n) => /^seg-/.test(n));
  t.ok(segments.length >= 4, `${segments.length} segments`);
  t.equal(linesOf(dir).length, 300, 'every record is in exactly one segment');
  checkChain(t, records);
  await spool.markShipped({ seq: 300, hmac: records[299]!.hmac });
  t.ok(readdirSync(dir).filter((n) => /^seg-/.test(n)).length <= 2, 'shipped segments are removed, the current one kept');
  const after = await spool.append(event(300));
  t.equal(after.seq, 301);
  await spool.close();
});

t.test('a torn tail is cut off, kept in a quarantine file and reported; the chain goes on from the last whole record', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  const first = spoolIn(t, { dir });
  await first.open();
  const written: AuditRecord[] = [];
  for (let i = 0; i < 5; i++) written.push(await first.append(event(i)));
  await first.close();
  // A write cut short by a crash: half a line after the last record, before the zeros.
  const segment = join(dir, readdirSync(dir).filter((n) => /^seg-/.test(n)).sort()[0]!);
  const bytes = readFileSync(segment);
  const end = bytes.indexOf(0);
  const torn = Buffer.from('{"_id":"x:000000000006","chainId":"x","seq":6,"ti');
  const handle = await open(segment, 'r+');
  await handle.write(torn, 0, torn.length, end);
  await handle.close();

  const reported: unknown[] = [];
  const second = spoolIn(t, { dir, onRecovery: (r) => reported.push(r) });
  const report = await second.open();
  t.ok(report.quarantined, 'the torn tail is reported');
  t.equal(report.quarantined!.bytes, torn.length);
  t.same(readFileSync(join(dir, report.quarantined!.file)), torn, 'and kept, byte for byte');
  t.same(reported, [report]);
  const next = await second.append(event(5));
  t.equal(next.seq, 6);
  t.equal(next.prev, written[4]!.hmac);
  t.equal(linesOf(dir).length, 6, 'no trace of the torn bytes in the segment');
  await second.close();
});

t.test('a damaged record followed by valid ones stops the spool: it needs inspection', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  const first = spoolIn(t, { dir });
  await first.open();
  for (let i = 0; i < 5; i++) await first.append(event(i));
  await first.close();
  const segment = join(dir, readdirSync(dir).filter((n) => /^seg-/.test(n)).sort()[0]!);
  const bytes = readFileSync(segment);
  const at = bytes.indexOf(Buffer.from('"r2"'));
  bytes.write('"X2"', at);
  writeFileSync(segment, bytes);
  const second = spoolIn(t, { dir });
  await t.rejects(second.open(), SpoolCorruptError);
});

t.test('one process per spool: a live process holding the lock keeps others out', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sleeper = spawn('sleep', ['30']);
  t.teardown(() => sleeper.kill('SIGKILL'));
  const { hostname } = await import('node:os');
  writeFileSync(join(dir, 'lock'), JSON.stringify({ pid: sleeper.pid, host: hostname() }));
  await t.rejects(createAuditSpool({ dir, signer, maxBacklog: 10, sync: 'fdatasync' }).open(), /in use by process/);
  sleeper.kill('SIGKILL');
  await new Promise((resolve) => sleeper.once('exit', resolve));
  const spool = createAuditSpool({ dir, signer, maxBacklog: 10, sync: 'fdatasync' });
  await spool.open();
  t.pass('a lock left by a dead process is taken over');
  await spool.close();
});

t.test('fails closed: a spool that cannot be written, or whose backlog is at its bound, refuses appends', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  const spool = spoolIn(t, { dir, segmentBytes: 8 * 1024, maxBacklog: 10_000 });
  await spool.open();
  // The next segment cannot be made (its name is taken by a directory): once the current one is
  // full, nothing more can be written.
  const next = readdirSync(dir).filter((n) => /^seg-/.test(n)).sort().at(-1)!;
  const n = Number(/seg-(\d+)/.exec(next)![1]) + 1;
  mkdirSync(join(dir, `seg-${String(n).padStart(6, '0')}.jsonl.tmp`));
  let ok = 0;
  let refused = 0;
  for (let i = 0; i < 200; i++) {
    await spool.append(event(i)).then(
      () => ok++,
      (err: { code?: string }) => {
        t.equal(err.code, 'AUDIT_UNAVAILABLE');
        refused++;
      },
    );
  }
  t.ok(ok > 0 && refused > 0, `answered ${ok} while there was room, then refused ${refused}`);
  t.equal(linesOf(dir).length, ok, 'every answered append is on disk; no refused one is');
  await spool.close();

  const bounded = spoolIn(t, { maxBacklog: 100 });
  await bounded.open();
  const results = await Promise.allSettled(Array.from({ length: 150 }, (_, i) => bounded.append(event(i))));
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 100, 'up to the bound');
  t.ok(results.slice(100).every((r) => r.status === 'rejected'), 'then refused');
  await bounded.close();
});

t.test('the spool directory holds no value: only what an audit event carries', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
  const spool = spoolIn(t, { dir });
  await spool.open();
  await spool.append({ ...event(0), paths: ['ssn'], keyIds: ['k1'], ...({ value: 'CANARY-spool' } as object) });
  await spool.close();
  t.notMatch(linesOf(dir).join('\n'), /CANARY/);
  t.ok(existsSync(join(dir, 'chain-id')));
  appendFileSync(join(dir, 'chain-id'), '');
});

t.test('zeros inside the tail are not its end: what follows a hole is cut off with it, or stops the spool when whole records follow', async (t) => {
  // A write torn by a machine crash can persist a later page of the group and not an earlier one.
  async function tornWithHole(tail: (lines: string[]) => string) {
    const dir = mkdtempSync(join(tmpdir(), 'spool-test-'));
    const first = spoolIn(t, { dir });
    await first.open();
    const written: AuditRecord[] = [];
    for (let i = 0; i < 10; i++) written.push(await first.append(event(i)));
    await first.close();
    const segment = join(dir, readdirSync(dir).filter((n) => /^seg-/.test(n)).sort()[0]!);
    const bytes = readFileSync(segment);
    const lines = linesOf(dir);
    const kept = Buffer.byteLength(lines.slice(0, 6).join('\n') + '\n');
    bytes.fill(0, kept);
    const after = Buffer.from(tail(lines.slice(6)));
    after.copy(bytes, kept + 50);
    writeFileSync(segment, bytes);
    return { dir, written, kept, after };
  }

  // Only the end of a record after the hole: a torn tail, cut off and kept.
  const fragment = await tornWithHole((rest) => rest[3]!.slice(40));
  const spool = spoolIn(t, { dir: fragment.dir });
  const report = await spool.open();
  t.ok(report.quarantined, 'the bytes after the hole are found and reported');
  t.equal(report.quarantined?.bytes, 50 + fragment.after.length, 'the hole and what follows it');
  const next = await spool.append(event(100));
  t.equal(next.seq, 7, 'the chain goes on from the last whole record');
  t.equal(next.prev, fragment.written[5]!.hmac);
  await spool.close();
  const again = spoolIn(t, { dir: fragment.dir });
  t.same(await again.open(), { unshipped: 7 }, 'and the next start finds a clean spool, not the old bytes behind the new record');
  await again.close();

  // Whole records after the hole: not a tail cut short; the spool stops for inspection at once.
  const whole = await tornWithHole((rest) => rest.slice(1).join('\n') + '\n');
  await t.rejects(spoolIn(t, { dir: whole.dir }).open(), SpoolCorruptError);
});

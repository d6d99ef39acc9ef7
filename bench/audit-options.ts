/**
 * The audit's durability options side by side (docs/audit.md): how long an append waits until its
 * event is durable, and how many appends a second one process gets, for
 *   database      group-committed journaled majority insertMany into MONGODB_URI (AUDIT_MODE=database)
 *   spool-fsync   the local spool, write() then fdatasync() per group (the first spool design)
 *   spool-dsync   the local spool, one O_DSYNC write per group (AUDIT_SPOOL_SYNC=fdatasync, the default)
 *   spool-none    the local spool, write() only: survives the process, not the machine (AUDIT_SPOOL_SYNC=none)
 * each at 1 and 32 concurrent appenders, interleaved over rounds; medians over rounds.
 *
 *   eval "$(scripts/stack up)"; taskset -c 0 node --import tsx bench/audit-options.ts [seconds=3] [rounds=3]
 *
 * Prints a JSON line per (option, concurrency): appends/s, p50/p99 latency in ms (medians over rounds).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { createAuditLog } from '../src/audit/audit-log.js';
import { createRecordSigner, type AuditEvent, type AuditRecord } from '../src/audit/audit-record.js';
import { createAuditSpool } from '../src/audit/audit-spool.js';

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const uri = process.env.MONGODB_URI;
if (!uri) throw new Error('MONGODB_URI is not set: eval "$(scripts/stack up)" first');

type Append = (event: AuditEvent) => Promise<unknown>;
const event = (i: number): AuditEvent => ({ clientId: 'cl_0123456789abcdef01234567', action: 'crypto.encrypt', outcome: 'succeeded', requestId: `6f1c2e0a-4b7d-4c8e-9a1b-${String(i).padStart(12, '0')}`, status: 200, keyIds: ['b0036b84-d995-4423-aafe-88d46410dcd9'] });

async function measure(append: Append, concurrency: number): Promise<{ perSecond: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  let n = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const started = performance.now();
        await append(event(n++));
        latencies.push(performance.now() - started);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { perSecond: n / seconds, p50: latencies[Math.floor(latencies.length / 2)]!, p99: latencies[Math.floor(latencies.length * 0.99)]! };
}

/** The first spool design, kept here for the comparison only: write then fdatasync per group. */
async function writeThenFsync(dir: string): Promise<{ append: Append; close(): Promise<void> }> {
  const signer = createRecordSigner(randomBytes(32));
  const handle = await open(join(dir, 'fsync.jsonl'), 'w+');
  await handle.write(Buffer.alloc(64 * 1024 * 1024), 0, 64 * 1024 * 1024, 0);
  await handle.datasync();
  let offset = 0;
  let head = { seq: 0, hmac: '' };
  let queue: { event: AuditEvent; done(): void }[] = [];
  let writing = false;
  async function drain() {
    writing = true;
    while (queue.length > 0) {
      const group = queue;
      queue = [];
      const records = signer.chain('bench', head, group.map((g) => ({ ...g.event, time: new Date() }) as never));
      head = records.at(-1)!;
      const buffer = Buffer.from(records.map((r: AuditRecord) => `${JSON.stringify(r)}\n`).join(''));
      await handle.write(buffer, 0, buffer.length, offset);
      await handle.datasync();
      offset += buffer.length;
      for (const g of group) g.done();
    }
    writing = false;
  }
  return {
    append: (e) =>
      new Promise<void>((resolve) => {
        queue.push({ event: e, done: resolve });
        if (!writing) queueMicrotask(() => void drain());
      }),
    close: () => handle.close(),
  };
}

const mongo = new MongoClient(uri);
const dbName = `bench_audit_options_${randomBytes(4).toString('hex')}`;
const dirs: string[] = [];
const results = new Map<string, { perSecond: number[]; p50: number[]; p99: number[] }>();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  const options: [string, () => Promise<{ append: Append; close(): Promise<void> }>][] = [
    [
      'database',
      async () => {
        const log = createAuditLog({ collection: mongo.db(dbName).collection<AuditRecord>(`audit_${randomBytes(3).toString('hex')}`), hmacKey: randomBytes(32), chainId: 'bench', timeoutMs: 60_000 });
        await log.prepare();
        return { append: (e) => log.append(e), close: () => log.flush() };
      },
    ],
    ['spool-fsync', async () => writeThenFsync(dirs[dirs.push(mkdtempSync(join(tmpdir(), 'bench-spool-'))) - 1]!)],
    ...(['fdatasync', 'none'] as const).map(
      (sync) =>
        [
          sync === 'fdatasync' ? 'spool-dsync' : 'spool-none',
          async () => {
            const dir = mkdtempSync(join(tmpdir(), 'bench-spool-'));
            dirs.push(dir);
            const spool = createAuditSpool({ dir, signer: createRecordSigner(randomBytes(32)), maxBacklog: 1e9, sync, segmentBytes: 256 * 1024 * 1024 });
            await spool.open();
            return { append: (e: AuditEvent) => spool.append(e), close: () => spool.close() };
          },
        ] as [string, () => Promise<{ append: Append; close(): Promise<void> }>],
    ),
  ];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? options : [...options].reverse();
    for (const [name, make] of order) {
      for (const concurrency of [1, 32]) {
        const option = await make();
        await measure(option.append, concurrency); // warm-up of the same length
        const r = await measure(option.append, concurrency);
        await option.close();
        const key = `${name}@${concurrency}`;
        const acc = results.get(key) ?? { perSecond: [], p50: [], p99: [] };
        acc.perSecond.push(r.perSecond);
        acc.p50.push(r.p50);
        acc.p99.push(r.p99);
        results.set(key, acc);
      }
    }
  }
  for (const [key, r] of results) {
    const [option, concurrency] = key.split('@');
    console.log(JSON.stringify({ option, concurrency: Number(concurrency), appendsPerSecond: Math.round(median(r.perSecond)), p50Ms: Number(median(r.p50).toFixed(3)), p99Ms: Number(median(r.p99).toFixed(3)) }));
  }
} finally {
  await mongo.db(dbName).dropDatabase().catch(() => undefined);
  await mongo.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

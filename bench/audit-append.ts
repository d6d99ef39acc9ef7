/**
 * Audit append throughput: N appends by C concurrent callers on one chain, against MONGODB_URI
 * (eval "$(scripts/stack up)" first). Prints records/s and how many insert round trips were made.
 *
 *   node --import tsx bench/audit-append.ts [appends=5000] [concurrency=100]
 */
import { randomBytes } from 'node:crypto';
import { MongoClient, type Collection } from 'mongodb';
import { createAuditLog, type AuditRecord } from '../src/audit/audit-log.js';

const total = Number(process.argv[2] ?? 5000);
const concurrency = Number(process.argv[3] ?? 100);
const uri = process.env.MONGODB_URI;
if (!uri) throw new Error('MONGODB_URI is not set: eval "$(scripts/stack up)" first');

/** The real collection, counting the insert calls made through it. */
function counted(collection: Collection<AuditRecord>, counts: Record<string, number>): Collection<AuditRecord> {
  return new Proxy(collection, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'insertOne' && prop !== 'insertMany') return typeof value === 'function' ? value.bind(target) : value;
      return (...args: unknown[]) => {
        counts[prop] = (counts[prop] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

const mongo = new MongoClient(uri);
const dbName = `bench_audit_${randomBytes(4).toString('hex')}`;
try {
  const counts: Record<string, number> = {};
  const collection = counted(mongo.db(dbName).collection<AuditRecord>('audit'), counts);
  const audit = createAuditLog({ collection, hmacKey: randomBytes(32), chainId: 'bench', timeoutMs: 60_000 });
  await audit.append({ clientId: 'bench', action: 'warmup', outcome: 'started', requestId: 'warmup' });
  counts.insertOne = 0;
  counts.insertMany = 0;

  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        await audit.append({ clientId: `client-${i % 7}`, action: 'crypto.encrypt', outcome: 'succeeded', requestId: `req-${i}`, status: 200 });
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const verified = await audit.verify();
  console.log(
    JSON.stringify({
      appends: total,
      concurrency,
      seconds: Number(seconds.toFixed(3)),
      perSecond: Math.round(total / seconds),
      insertOne: counts.insertOne,
      insertMany: counts.insertMany,
      valid: verified.valid,
      checked: verified.checked,
    }),
  );
} finally {
  await mongo.db(dbName).dropDatabase().catch(() => undefined);
  await mongo.close();
}

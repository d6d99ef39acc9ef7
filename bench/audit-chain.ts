/**
 * A long audit chain written straight into an audit collection: records signed exactly as an
 * instance signs them (src/audit/audit-record.ts createRecordSigner, the same HMAC key), inserted
 * in large unordered batches, far faster than appending them through HTTP. bench/harness.ts
 * (`--only verify`) uses it to time `/audit/verify` over a million events.
 *
 *   node --import tsx bench/audit-chain.ts <mongodb-uri> <db.collection> <hmac-key-base64> [count=1000000] [chainId]
 */
import { randomBytes } from 'node:crypto';
import { MongoClient, type Collection } from 'mongodb';
import { GENESIS, createRecordSigner, type AuditRecord, type ChainHead, type EventFields } from '../src/audit/audit-record.js';

export interface ChainWriteResult {
  chainId: string;
  head: ChainHead;
  written: number;
  seconds: number;
}

/** The indexes the audit store makes (src/audit/audit-store.ts), made before the bulk insert. */
export async function ensureAuditIndexes(records: Collection<AuditRecord>): Promise<void> {
  await records.createIndex({ chainId: 1, seq: 1 }, { name: 'chainId_1_seq_1' });
  await records.createIndex({ time: -1, _id: -1 }, { name: 'time_-1__id_-1' });
}

/**
 * Append `count` records to `chainId` after `after` (GENESIS for a new chain). Events look like
 * single-value encryptions: one key id, status 200, a request id each, one millisecond apart.
 */
export async function writeChain(
  records: Collection<AuditRecord>,
  hmacKey: Buffer,
  options: { chainId: string; count: number; after?: ChainHead; batch?: number; onProgress?(written: number): void },
): Promise<ChainWriteResult> {
  const signer = createRecordSigner(hmacKey);
  const batch = options.batch ?? 5000;
  const keyId = randomBytes(16).toString('hex');
  let head: ChainHead = options.after ?? { seq: 0, hmac: GENESIS };
  const t0 = Date.now();
  const base = Date.now() - options.count;
  let written = 0;
  // One batch inserted while the next is signed.
  let inFlight: Promise<unknown> = Promise.resolve();
  while (written < options.count) {
    const n = Math.min(batch, options.count - written);
    const events: EventFields[] = Array.from({ length: n }, (_, i) => ({
      time: new Date(base + head.seq + i),
      clientId: 'bench',
      action: 'crypto.encrypt',
      outcome: 'succeeded' as const,
      requestId: `bench-${head.seq + i + 1}`,
      status: 200,
      keyIds: [keyId],
    }));
    const chained = signer.chain(options.chainId, head, events);
    const last = chained[chained.length - 1]!;
    head = { seq: last.seq, hmac: last.hmac };
    await inFlight;
    inFlight = records.insertMany(chained, { ordered: false, writeConcern: { w: 1 } });
    written += n;
    options.onProgress?.(written);
  }
  await inFlight;
  return { chainId: options.chainId, head, written, seconds: (Date.now() - t0) / 1000 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [uri, namespace, key, count = '1000000', chainId = `bench-${randomBytes(4).toString('hex')}`] = process.argv.slice(2);
  if (!uri || !namespace || !key) throw new Error('usage: bench/audit-chain.ts <mongodb-uri> <db.collection> <hmac-key-base64> [count] [chainId]');
  const dot = namespace.indexOf('.');
  const mongo = new MongoClient(uri);
  const records = mongo.db(namespace.slice(0, dot)).collection<AuditRecord>(namespace.slice(dot + 1));
  await ensureAuditIndexes(records);
  const result = await writeChain(records, Buffer.from(key, 'base64'), {
    chainId,
    count: Number(count),
    onProgress: (n) => n % 100_000 === 0 && console.error(`${n} records`),
  });
  console.log(JSON.stringify(result));
  await mongo.close();
}

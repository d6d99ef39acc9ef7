/**
 * Issue #16's targets: a 1,000-document bulk write, and an aggregate whose `$match` is an equality on
 * a deterministic field over 10,000 documents, each through the service on an encrypted collection
 * and on an unencrypted one of the same shape, in the same run, as a ratio (goal: ≥ 0.8×).
 *
 * Both collections go through the same HTTP route, the same validation, audit and idempotency
 * machinery; only the schema differs (the plaintext one encrypts nothing), so the ratio is the cost
 * of encryption as a user of these operations feels it.
 *
 *   npm run build && npm run build:native && node --import tsx bench/document-ops.ts [--rounds 7] [--out bench/RESULTS-documents.md]
 *
 * Needs the stack (scripts/stack): MONGODB_URI from the environment.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Binary, MongoClient } from 'mongodb';
import { freePort } from './http-load.js';
import { collectionSchema } from './collection-schema.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    docs: { type: 'string', default: '10000' },
    out: { type: 'string', default: join(root, 'bench/RESULTS-documents.md') },
    profile: { type: 'string' }, // a directory: the server runs with --cpu-prof into it
  },
});
const ROUNDS = Math.max(1, Number(args.rounds));
const DOCS = Number(args.docs);
const BULK = 1000;
const DISTINCT_VALUES = 100;
const log = (...parts: unknown[]) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...parts);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const mongodbUri = process.env.MONGODB_URI;
if (!mongodbUri) throw new Error('MONGODB_URI is not set: eval "$(scripts/stack up)" first');
if (!existsSync(join(root, 'dist/src/server.js'))) throw new Error('dist/ is missing: npm run build first');
// Without it the service encrypts through node's crypto one value at a time (the same bytes, slower).
const nativeBuilt = existsSync(join(root, 'native/build/Release/aead_native.node'));


function doc(i: number) {
  const out: Record<string, unknown> = {};
  for (let f = 0; f < 5; f++) out[`d${f}`] = `v-${(i + f) % DISTINCT_VALUES}`;
  for (let f = 0; f < 5; f++) out[`r${f}`] = `random-${i}-${f}-${randomBytes(6).toString('hex')}`;
  for (let f = 0; f < 5; f++) out[`s${f}`] = `plain-${i}-${f}`;
  for (let f = 0; f < 5; f++) out[`n${f}`] = { $numberInt: String(i * 5 + f) };
  return out;
}

const token = `bench-${randomBytes(16).toString('hex')}`;
async function call(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(300_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 500)}`);
  return text ? JSON.parse(text) : undefined;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function main() {
  const db = `bench_docs_${randomBytes(4).toString('hex')}`;
  const pinned = spawnSync('taskset', ['-V']).status === 0 && os.cpus().length >= 2;
  if (pinned) spawnSync('taskset', ['-a', '-pc', '1', String(process.pid)], { stdio: 'ignore' });
  const port = await freePort();
  const env = {
    PATH: process.env.PATH ?? '',
    HOST: '127.0.0.1',
    PORT: String(port),
    MONGODB_URI: mongodbUri!,
    KEY_VAULT_NAMESPACE: `${db}.__keyVault`,
    CLIENTS_NAMESPACE: `${db}.__clients`,
    AUDIT_NAMESPACE: `${db}.__audit`,
    AUDIT_HMAC_KEY: randomBytes(32).toString('base64'),
    AUDIT_SPOOL_DIR: mkdtempSync(join(os.tmpdir(), 'bench-docs-spool-')),
    SCHEMAS_DIR: mkdtempSync(join(os.tmpdir(), 'bench-docs-schemas-')),
    ADMIN_TOKEN: token,
    LOCAL_MASTER_KEY: randomBytes(96).toString('base64'),
    KMS_PROVIDERS: 'local',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_MINUTE: '1000000000',
    MAX_EVENT_LOOP_DELAY_MS: '0',
    BODY_LIMIT_BYTES: String(32 * 1024 * 1024),
  };
  const profile = args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`] : [];
  const serverArgs = [...profile, '--max-old-space-size=512', 'dist/src/server.js'];
  const child: ChildProcess = pinned
    ? spawn('taskset', ['-c', '0', process.execPath, ...serverArgs], { cwd: root, env, stdio: ['ignore', 'ignore', 'inherit'] })
    : spawn(process.execPath, serverArgs, { cwd: root, env, stdio: ['ignore', 'ignore', 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  const raw = new MongoClient(mongodbUri!);
  try {
    for (let waited = 0; ; waited += 100) {
      if (waited > 60_000) throw new Error('the server did not become ready');
      if (await fetch(`${base}/health/ready`).then((r) => r.ok, () => false)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const name of ['bench-det', 'bench-rnd']) await call(base, 'POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
    const enc = `${db}.enc`;
    const plain = `${db}.plain`;
    await call(base, 'PUT', `/schemas/${enc}`, { schema: collectionSchema(true) });
    await call(base, 'PUT', `/schemas/${plain}`, { schema: collectionSchema(false) });

    // Seed both collections for the aggregate, through the bulk route itself (also its warm-up).
    log(`seeding ${DOCS} documents into each collection`);
    for (let start = 0; start < DOCS; start += BULK) {
      const operations = Array.from({ length: BULK }, (_, i) => ({ insertOne: { document: doc(start + i) } }));
      for (const ns of [enc, plain]) await call(base, 'POST', `/documents/${ns}/bulk`, { ordered: false, operations });
    }

    const bulkTimes: Record<string, number[]> = { [enc]: [], [plain]: [] };
    const aggTimes: Record<string, number[]> = { [enc]: [], [plain]: [] };
    let matched = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // Interleaved, alternating order: slow drift of a noisy machine hits both collections alike.
      const order = round % 2 === 0 ? [enc, plain] : [plain, enc];
      for (const ns of order) {
        const operations = Array.from({ length: BULK }, (_, i) => ({ insertOne: { document: doc(1_000_000 + round * BULK + i) } }));
        bulkTimes[ns]!.push(await timed(() => call(base, 'POST', `/documents/${ns}/bulk`, { ordered: true, operations })));
      }
      for (const ns of order) {
        const value = `v-${(round * 37) % DISTINCT_VALUES}`;
        aggTimes[ns]!.push(
          await timed(async () => {
            const res = await call(base, 'POST', `/documents/${ns}/aggregate`, { pipeline: [{ $match: { d0: value } }] });
            matched = (res.items ?? res.documents ?? []).length;
          }),
        );
      }
      log(`round ${round + 1}/${ROUNDS}: bulk ${bulkTimes[enc]!.at(-1)!.toFixed(0)} / ${bulkTimes[plain]!.at(-1)!.toFixed(0)} ms, aggregate ${aggTimes[enc]!.at(-1)!.toFixed(0)} / ${aggTimes[plain]!.at(-1)!.toFixed(0)} ms (encrypted / plain)`);
    }

    const rawDb = raw.db(db);
    /** The same aggregate on the database alone: the ciphertext of the value on the encrypted documents. */
    async function rawAggregates(times: Record<string, number[]>, offset: number) {
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? [enc, plain] : [plain, enc];
        const value = `v-${(round * 37 + offset) % DISTINCT_VALUES}`;
        const ciphertext = (await call(base, 'POST', '/encrypt', { value, algorithm: 'deterministic', keyAltName: 'bench-det' })).ciphertext as string;
        for (const ns of order) {
          const match = ns === enc ? new Binary(Buffer.from(ciphertext, 'base64'), 6) : value;
          times[ns]!.push(await timed(() => rawDb.collection(ns === enc ? 'enc' : 'plain').aggregate([{ $match: { d0: match } }]).toArray()));
        }
      }
    }

    // The database alone, through the driver, on the same documents as stored: how much of the gap
    // is the database's own time on encrypted documents (bigger: ciphertext instead of short strings).
    log('the same operations on the database alone');
    const stored = {
      [enc]: await rawDb.collection('enc').find({}, { projection: { _id: 0 } }).limit(BULK).toArray(),
      [plain]: await rawDb.collection('plain').find({}, { projection: { _id: 0 } }).limit(BULK).toArray(),
    };
    const rawBulk: Record<string, number[]> = { [enc]: [], [plain]: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [enc, plain] : [plain, enc];
      for (const ns of order) {
        // One insertMany, as the bulk route sends consecutive inserts.
        const target = rawDb.collection(`raw_${ns === enc ? 'enc' : 'plain'}_${round}`);
        rawBulk[ns]!.push(await timed(() => target.insertMany(stored[ns]!.map((d) => ({ ...d })), { ordered: true })));
      }
    }
    const rawAgg: Record<string, number[]> = { [enc]: [], [plain]: [] };
    await rawAggregates(rawAgg, 0);

    // With an index on the deterministic field in both collections, as an operator creates one for
    // equality queries (what deterministic encryption is for): the database no longer scans every
    // document, so what is left is mostly the service's own work, decryption included.
    log('aggregate again, with an index on d0 in both collections');
    for (const name of ['enc', 'plain']) await rawDb.collection(name).createIndex({ d0: 1 });
    const indexedAggTimes: Record<string, number[]> = { [enc]: [], [plain]: [] };
    let indexedMatched = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [enc, plain] : [plain, enc];
      const value = `v-${(round * 37 + 11) % DISTINCT_VALUES}`;
      for (const ns of order) {
        indexedAggTimes[ns]!.push(
          await timed(async () => {
            const res = await call(base, 'POST', `/documents/${ns}/aggregate`, { pipeline: [{ $match: { d0: value } }] });
            indexedMatched = (res.items ?? res.documents ?? []).length;
          }),
        );
      }
    }
    const rawIndexedAgg: Record<string, number[]> = { [enc]: [], [plain]: [] };
    await rawAggregates(rawIndexedAgg, 11);

    const row = (name: string, times: Record<string, number[]>) => {
      const e = median(times[enc]!);
      const p = median(times[plain]!);
      return `| ${name} | ${e.toFixed(0)} ms | ${p.toFixed(0)} ms | **${(p / e).toFixed(2)}×** | ${(p / e >= 0.8 ? 'met' : 'not met')} |`;
    };
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    const report = [
      `# Document operations: encrypted vs unencrypted collection (issue #16)`,
      '',
      `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, against the stack's FerretDB (${mongodbUri}).`,
      `Command: \`node --import tsx bench/document-ops.ts ${process.argv.slice(2).join(' ')}\`. Server pinned to CPU 0, this client to CPU 1${pinned ? '' : ' (not pinned: taskset or a second core missing)'}. Native AEAD addon: ${nativeBuilt ? 'built' : 'not built (npm run build:native), pure-JS path'}.`,
      '',
      `Each collection: 5 deterministic + 5 random encrypted strings (the plain one: the same fields unencrypted), 5 plain strings, 5 ints. ${ROUNDS} interleaved rounds; medians.`,
      '',
      '| operation | encrypted | unencrypted | throughput ratio (unencrypted time ÷ encrypted time) | goal ≥ 0.8× |',
      '|---|---|---|---|---|',
      row(`bulk write, ${BULK} insertOne, ordered`, bulkTimes),
      row(`aggregate, \`$match\` equality on a deterministic field, ${DOCS.toLocaleString('en')} documents (${matched} match)`, aggTimes),
      row(`the same aggregate with an index on the field in both collections (${indexedMatched} match)`, indexedAggTimes),
      '',
      'The database alone (the driver, no service), on the documents as stored: the encrypted ones hold ciphertext (about 80 bytes per short string) instead of the strings.',
      '',
      '| operation, database alone | encrypted documents | plain documents | ratio |',
      '|---|---|---|---|',
      row(`insertMany of ${BULK} documents`, rawBulk).replace(/ \| (met|not met) \|$/, ' |'),
      row('aggregate `$match` (ciphertext vs plaintext value)', rawAgg).replace(/ \| (met|not met) \|$/, ' |'),
      row('the same aggregate, indexed', rawIndexedAgg).replace(/ \| (met|not met) \|$/, ' |'),
      '',
      `Raw times (ms): bulk encrypted ${bulkTimes[enc]!.map((x) => x.toFixed(0)).join(', ')}; bulk plain ${bulkTimes[plain]!.map((x) => x.toFixed(0)).join(', ')}; aggregate encrypted ${aggTimes[enc]!.map((x) => x.toFixed(0)).join(', ')}; aggregate plain ${aggTimes[plain]!.map((x) => x.toFixed(0)).join(', ')}; indexed aggregate encrypted ${indexedAggTimes[enc]!.map((x) => x.toFixed(0)).join(', ')}; indexed aggregate plain ${indexedAggTimes[plain]!.map((x) => x.toFixed(0)).join(', ')}.`,
      '',
    ].join('\n');
    writeFileSync(args.out!, report);
    console.log(report);
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    await raw.db(db).dropDatabase().catch(() => undefined);
    await raw.close();
  }
}

await main();

/**
 * W4 (issue #5), our side: whole-document decryption of the shared fixture bench/fixtures/w4 (one
 * BSON document of 1500 random-encrypted string fields under one data key, written by pymongo's
 * ClientEncryption.encrypt), the same bytes bench/w4_libmongocrypt.py hands to libmongocrypt.
 *
 * Once, outside timing: the data key is unwrapped from key-document.bson with the 96-byte local
 * master key by the service's own local KMS provider (src/kms/local-kms.ts) and kept in a key-id →
 * key map (the "cached data key"); one decryption of document.bson is checked field by field
 * against plaintext.bson. Per document (timed): BSON.deserialize of the bytes (the driver's BSON),
 * parsePayload of every subtype-6 field, decryptAll (one batch under the cached key) and the values
 * put back into the document, as src/crypto offers it to the service.
 *
 * Modes: native1 (native addon, main thread), js1 (pure JS, main thread), native2 / js2 (two
 * worker_threads, each decrypting its own copy of the document in a loop; docs/s summed). Modes run
 * in interleaved rounds (odd rounds in reverse order), each for --seconds; reported: docs/s per
 * round and the median.
 *
 *   node --import tsx bench/w4-decrypt.ts [--dir bench/fixtures/w4] [--rounds 5] [--seconds 2]
 *     [--warmup 1] [--only native1,js1,native2] [--json]
 * With --json the last stdout line is the JSON result. Pinning is up to the caller (the harness
 * runs it under `taskset -c 0` for 1 thread and `taskset -c 0-1` for 2).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { BSON, type Binary } from 'mongodb';
import { aeadDecryptManyJs, aeadDecryptManyNative, AeadError, type AeadDecryptMany } from '../src/crypto/aead.js';
import { nativeAead } from '../src/crypto/aead-native.js';
import { decryptAll, ENCRYPTED_SUBTYPE, parsePayload } from '../src/crypto/fle-payload.js';
import { createLocalKms } from '../src/kms/local-kms.js';

type Impl = 'native' | 'js';
const implementations: Record<Impl, AeadDecryptMany> = { native: aeadDecryptManyNative, js: aeadDecryptManyJs };
const defaultDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'w4');

// ------------------------------------------------------------------------------ fixture, one doc

interface Fixture {
  bytes: Buffer;
  plain: Record<string, unknown>;
  keys: Map<string, Uint8Array>;
  fields: number;
}

async function loadFixture(dir: string): Promise<Fixture> {
  const bytes = readFileSync(join(dir, 'document.bson'));
  const plain = BSON.deserialize(readFileSync(join(dir, 'plaintext.bson')));
  const keyDoc = BSON.deserialize(readFileSync(join(dir, 'key-document.bson'))) as { _id: Binary; keyMaterial: Binary; masterKey: { provider: string } };
  if (keyDoc.masterKey?.provider !== 'local') throw new Error(`key-document.bson: masterKey provider ${keyDoc.masterKey?.provider}, expected local`);
  const master = Buffer.from(readFileSync(join(dir, 'local-master-key.b64'), 'utf8').trim(), 'base64');
  const dataKey = await createLocalKms(master).unwrap({ provider: 'local' }, Buffer.from(keyDoc.keyMaterial.buffer));
  const keys = new Map([[Buffer.from(keyDoc._id.buffer).toString('hex'), dataKey]]);
  return { bytes, plain, keys, fields: Object.keys(plain).length - 1 };
}

/** One document, as the service decrypts a reply: deserialize, parse every payload, decrypt in one batch per key, put values back. */
function decryptDocument(f: Fixture, decryptMany: AeadDecryptMany): Record<string, unknown> {
  const doc = BSON.deserialize(f.bytes) as Record<string, unknown>;
  const names: string[] = [];
  const payloads = [];
  for (const name in doc) {
    const v = doc[name] as Binary;
    if (v?._bsontype === 'Binary' && v.sub_type === ENCRYPTED_SUBTYPE) {
      names.push(name);
      payloads.push(parsePayload(v.buffer));
    }
  }
  const values = decryptAll(payloads, (keyId) => f.keys.get(keyId.toString('hex')), decryptMany);
  for (let i = 0; i < names.length; i++) {
    const value = values[i];
    if (value instanceof AeadError || value === undefined) throw new Error(`${names[i]} did not decrypt`);
    doc[names[i]!] = value;
  }
  return doc;
}

function check(f: Fixture, impl: Impl) {
  const doc = decryptDocument(f, implementations[impl]);
  const got = Object.keys(doc);
  const want = Object.keys(f.plain);
  if (got.length !== want.length) throw new Error(`${impl}: ${got.length} fields, plaintext.bson has ${want.length}`);
  for (const k of want) if (doc[k] !== f.plain[k]) throw new Error(`${impl}: ${k} decrypted to ${String(doc[k])}, plaintext.bson has ${String(f.plain[k])}`);
}

function warm(f: Fixture, impl: Impl, seconds: number) {
  const end = performance.now() + seconds * 1000;
  for (let i = 0; i < 5 || performance.now() < end; i++) decryptDocument(f, implementations[impl]);
}

/** Decrypt for `seconds`; docs/s over the whole loop. */
function run(f: Fixture, impl: Impl, seconds: number): { docs: number; seconds: number } {
  const decryptMany = implementations[impl];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let docs = 0;
  let now = start;
  do {
    decryptDocument(f, decryptMany);
    docs++;
    now = performance.now();
  } while (now < deadline);
  return { docs, seconds: (now - start) / 1000 };
}

// ------------------------------------------------------------------------------------------ worker

if (!isMainThread) {
  const { dir, impls, warmup } = workerData as { dir: string; impls: Impl[]; warmup: number };
  const f = await loadFixture(dir); // its own copy of every buffer
  for (const impl of impls) {
    check(f, impl);
    warm(f, impl, warmup);
  }
  parentPort!.on('message', (m: { impl: Impl; seconds: number }) => parentPort!.postMessage(run(f, m.impl, m.seconds)));
  parentPort!.postMessage('ready');
} else {
  await main();
}

// -------------------------------------------------------------------------------------------- main

async function main() {
  const { values: args } = parseArgs({
    options: {
      dir: { type: 'string', default: defaultDir },
      rounds: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '2' },
      warmup: { type: 'string', default: '1' },
      only: { type: 'string', default: 'native1,js1,native2' },
      json: { type: 'boolean', default: false },
    },
  });
  const rounds = Math.max(1, Number(args.rounds));
  const seconds = Number(args.seconds);
  const warmup = Number(args.warmup);
  const notes: string[] = [];
  const modes = String(args.only)
    .split(',')
    .map((m) => /^(native|js)([12])$/.exec(m.trim()))
    .filter((m): m is RegExpExecArray => {
      if (m === null) throw new Error('--only takes native1, js1, native2, js2');
      if (m[1] === 'native' && !nativeAead.loaded) {
        notes.push(`${m[0]} skipped: native addon not loaded (${nativeAead.error?.message ?? 'not built: npm run build:native'})`);
        return false;
      }
      return true;
    })
    .map((m) => ({ name: m[0], impl: m[1] as Impl, threads: Number(m[2]) }));

  const f = await loadFixture(args.dir!);
  const mainImpls = [...new Set(modes.filter((m) => m.threads === 1).map((m) => m.impl))];
  for (const impl of mainImpls) {
    check(f, impl);
    warm(f, impl, warmup);
  }
  const workerImpls = [...new Set(modes.filter((m) => m.threads === 2).map((m) => m.impl))];
  const workers: Worker[] = [];
  if (workerImpls.length > 0) {
    // Workers do not get the tsx loader from --import on Node 20: register it, then load this file.
    const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
    for (let i = 0; i < 2; i++) workers.push(new Worker(boot, { eval: true, workerData: { dir: args.dir, impls: workerImpls, warmup } }));
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.once('message', () => resolve());
            w.once('error', reject);
          }),
      ),
    );
  }
  const ask = (w: Worker, impl: Impl) =>
    new Promise<{ docs: number; seconds: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
      w.postMessage({ impl, seconds });
    });

  const samples: Record<string, number[]> = Object.fromEntries(modes.map((m) => [m.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const m of round % 2 === 0 ? modes : [...modes].reverse()) {
      if (m.threads === 1) {
        const r = run(f, m.impl, seconds);
        samples[m.name]!.push(r.docs / r.seconds);
      } else {
        const rs = await Promise.all(workers.map((w) => ask(w, m.impl)));
        samples[m.name]!.push(rs.reduce((s, r) => s + r.docs / r.seconds, 0));
      }
    }
  }
  await Promise.all(workers.map((w) => w.terminate()));

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  const results = Object.fromEntries(Object.entries(samples).map(([name, xs]) => [name, { docsPerSec: median(xs), rounds: xs }]));
  const out = { fields: f.fields, bytes: f.bytes.length, node: process.version, native: nativeAead.loaded, rounds, seconds, results, notes };
  if (args.json) {
    console.log(JSON.stringify(out));
    return;
  }
  console.log(`W4: ${args.dir}: ${f.fields} encrypted string fields, ${f.bytes.length} bytes; checked against plaintext.bson`);
  console.log(`${rounds} interleaved rounds x ${seconds} s per mode, node ${process.version}`);
  for (const n of notes) console.log(n);
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name.padEnd(8)} median ${r.docsPerSec.toFixed(1).padStart(8)} docs/s  (${(1000 / r.docsPerSec).toFixed(3)} ms/doc; rounds ${r.rounds.map((x) => x.toFixed(0)).join(', ')})`);
  }
}

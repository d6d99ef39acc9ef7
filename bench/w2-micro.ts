/**
 * W2 in-process micro-benchmark: 1000 ~20-byte strings per call, deterministic and random.
 *   service  the encryption engine's encrypt / decrypt on an in-memory key vault (crypto, BSON, result shaping)
 *   route    POST /encrypt and /decrypt through app.inject() (adds JSON, schemas, EJSON, audit);
 *            needs MONGODB_URI (eval "$(scripts/stack up)")
 *   serve    the same app listening on a port, for a load generator on another core: writes the
 *            W2 bodies to DIR (--dir, default /tmp/w2-micro) and prints "ready PORT TOKEN"
 * Prints the median values/s over rounds. Run pinned to one core, e.g.
 *   taskset -c 1 node --import tsx bench/w2-micro.ts service [--js] [--rounds 7] [--seconds 1]
 * --js forces the pure-JS AEAD path. Wrap with node --cpu-prof to profile.
 */
import { randomBytes } from 'node:crypto';
import { UUID } from 'mongodb';
import { useNativeAead } from '../src/crypto/aead.js';
import { createEncryptionEngine } from '../src/encryption/encryption-engine.js';
import type { KeyVault } from '../src/key-vault/key-vault.js';

const args = process.argv.slice(2);
const mode = args[0] ?? 'service';
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const rounds = flag('rounds', 7);
const seconds = flag('seconds', 1);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1]!.split(',') : undefined;
if (args.includes('--js')) useNativeAead(false);

const N = 1000;
const strings = Array.from({ length: N }, (_, i) => `value-${String(i).padStart(6, '0')}-abcdefgh`);

async function measure(name: string, fn: () => Promise<void>): Promise<void> {
  if (only && !only.includes(name)) return;
  for (const end = Date.now() + 500; Date.now() < end; ) await fn();
  const rates: number[] = [];
  const cpuRates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let calls = 0;
    const start = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      await fn();
      calls++;
    }
    rates.push((calls * N) / (Number(process.hrtime.bigint() - start) / 1e9));
    const used = process.cpuUsage(cpu);
    cpuRates.push((calls * N) / ((used.user + used.system) / 1e6));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const wall = median(rates);
  const onCpu = median(cpuRates);
  // Wall time includes waiting for the audit append of each (sequential) request; CPU time is
  // what one core would sustain with enough requests in flight.
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US').padStart(9);
  console.log(`${name.padEnd(16)} ${fmt(wall)} values/s wall (${(1e6 / wall).toFixed(2)} µs/value)  ${fmt(onCpu)} values/s per CPU-second (${(1e6 / onCpu).toFixed(2)} µs)`);
}

async function service(): Promise<void> {
  const keyId = new UUID();
  const idText = keyId.toHexString(true);
  const key = randomBytes(96);
  const keyVault = {
    async resolveAltNames() {
      return new Map();
    },
    async withDataKeys<T>(_ids: Iterable<string>, use: (keys: Map<string, Buffer>) => T | Promise<T>) {
      return use(new Map([[idText, key]]));
    },
  } as unknown as KeyVault;
  const engine = createEncryptionEngine({ keyVault });
  // The operator: unlimited grants, so no alt-name lookup (the route measures the real thing).
  const principal = { clientId: 'bench', name: 'bench', grants: [{ scope: '*' }] };
  const encrypting = { principal, purpose: { kind: 'encrypt' as const } };
  const decrypting = { principal, purpose: { kind: 'decrypt' as const } };
  for (const algorithm of ['deterministic', 'random'] as const) {
    const requests = strings.map((value) => ({ value, algorithm, keyId }));
    const payloads = (await engine.encrypt(requests, encrypting)).results.map((r) => {
      if (!r.ok) throw r.error;
      return Buffer.from(r.value.buffer);
    });
    const short = algorithm === 'deterministic' ? 'det' : 'rnd';
    await measure(`svc-enc-${short}`, async () => void (await engine.encrypt(requests, encrypting)));
    await measure(`svc-dec-${short}`, async () => void (await engine.decrypt(payloads, decrypting)));
  }
}

async function route(): Promise<void> {
  const { buildApp } = await import('../src/plugins/app.js');
  const { loadConfig } = await import('../src/config.js');
  const { MongoClient } = await import('mongodb');
  const db = `w2micro_${randomBytes(4).toString('hex')}`;
  const token = 'w2-micro-admin-token-0123456789abcdef';
  const app = await buildApp(
    loadConfig({
      MONGODB_URI: process.env.MONGODB_URI!,
      KEY_VAULT_NAMESPACE: `${db}.__keyVault`,
      CLIENTS_NAMESPACE: `${db}.__clients`,
      AUDIT_HMAC_KEY: randomBytes(32).toString('base64'),
      AUDIT_NAMESPACE: `${db}.__audit`,
      ADMIN_TOKEN: token,
      LOCAL_MASTER_KEY: randomBytes(96).toString('base64'),
      LOG_LEVEL: 'warn',
      MAX_EVENT_LOOP_DELAY_MS: '0',
      MAX_BATCH_ITEMS: '1000',
      RATE_LIMIT_PER_MINUTE: '100000000',
    }),
    { logStream: { write() {} } },
  );
  const call = async (url: string, payload: string, status = 200) => {
    const res = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload });
    if (res.statusCode !== status) throw new Error(`${url}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    return res;
  };
  if (mode === 'serve') {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    const dir = args.includes('--dir') ? args[args.indexOf('--dir') + 1]! : '/tmp/w2-micro';
    mkdirSync(dir, { recursive: true });
    await call('/keys', JSON.stringify({ masterKey: { provider: 'local' }, keyAltNames: ['w2'] }), 201);
    for (const algorithm of ['deterministic', 'random'] as const) {
      const encBody = JSON.stringify({ items: strings.map((value) => ({ value, algorithm, keyAltName: 'w2' })) });
      const encrypted = (await call('/encrypt', encBody)).json() as { items: { ciphertext: string }[] };
      writeFileSync(`${dir}/enc-${algorithm}.json`, encBody);
      writeFileSync(`${dir}/dec-${algorithm}.json`, JSON.stringify({ items: encrypted.items.map((i) => ({ ciphertext: i.ciphertext })) }));
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    console.log(`ready ${(app.server.address() as { port: number }).port} ${token}`);
    const stop = async () => {
      await app.close();
      const mongo = new MongoClient(process.env.MONGODB_URI!);
      await mongo.db(db).dropDatabase();
      await mongo.close();
      process.exit(0);
    };
    process.once('SIGTERM', () => void stop());
    process.once('SIGINT', () => void stop());
    return;
  }
  try {
    await call('/keys', JSON.stringify({ masterKey: { provider: 'local' }, keyAltNames: ['w2'] }), 201);
    for (const algorithm of ['deterministic', 'random'] as const) {
      const encBody = JSON.stringify({ items: strings.map((value) => ({ value, algorithm, keyAltName: 'w2' })) });
      const encrypted = (await call('/encrypt', encBody)).json() as { items: { ciphertext: string }[] };
      const decBody = JSON.stringify({ items: encrypted.items.map((i) => ({ ciphertext: i.ciphertext })) });
      const short = algorithm === 'deterministic' ? 'det' : 'rnd';
      await measure(`route-enc-${short}`, async () => void (await call('/encrypt', encBody)));
      await measure(`route-dec-${short}`, async () => void (await call('/decrypt', decBody)));
    }
  } finally {
    await app.close();
    const mongo = new MongoClient(process.env.MONGODB_URI!);
    await mongo.db(db).dropDatabase();
    await mongo.close();
  }
}

await (mode === 'route' || mode === 'serve' ? route() : service());

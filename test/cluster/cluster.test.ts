/**
 * The service as a fleet: two, then three instances (scripts/cluster: own ports, own audit spools,
 * one database) behind HAProxy, under a mixed load through the load balancer: single encrypt and
 * decrypt, batch encrypt, key creation, document inserts and finds with a collection schema.
 * Every request answers 2xx; HAProxy sent each instance a share; every answered request has its
 * outcome event in the audit chain of the instance that served it (counted per instance against
 * HAProxy's own counters); `GET /audit/verify?full=true` through the load balancer is valid and
 * covers one chain per instance. Needs the stack (npm test exports it); installs HAProxy when
 * missing (scripts/cluster). Budget: about a minute.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import t from 'tap';
import { startCluster, type Cluster, type ServerStat } from '../../bench/cluster.js';
import { closedLoop, type LoadRequest } from '../../bench/http-load.js';
import { ensureBuilt, startServerProcess } from '../faults/server-process.js';
import { stack } from '../helpers/stack.js';

const DET = 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic';
const RND = 'AEAD_AES_256_CBC_HMAC_SHA_512-Random';
const LOAD_SECONDS = 4;
const CONCURRENCY = 16;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('two and three instances behind HAProxy: a mixed load all 2xx, every event in its instance chain, the audit verifies', { timeout: 150_000 }, async (t) => {
  ensureBuilt();
  const db = `cluster_${randomBytes(5).toString('hex')}`;
  const coll = 'people';
  const ns = `${db}.${coll}`;
  const work = mkdtempSync(join(tmpdir(), 'cluster-test-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const schemas = join(work, 'schemas');
  const empty = join(work, 'empty');
  mkdirSync(schemas);
  mkdirSync(empty);
  writeFileSync(
    join(schemas, `${ns}.json`),
    JSON.stringify({
      bsonType: 'object',
      properties: {
        name: { bsonType: 'string' },
        ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'cl-det' } },
        notes: { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'cl-rnd' } },
      },
    }),
  );
  const adminToken = randomBytes(24).toString('base64url');
  const env: Record<string, string> = {
    MONGODB_URI: stack.mongodbUri,
    KEY_VAULT_NAMESPACE: `${db}.__keyVault`,
    CLIENTS_NAMESPACE: `${db}.__clients`,
    AUDIT_NAMESPACE: `${db}.__audit`,
    AUDIT_HMAC_KEY: randomBytes(32).toString('base64'),
    LOCAL_MASTER_KEY: randomBytes(96).toString('base64'),
    ADMIN_TOKEN: adminToken,
    KMS_PROVIDERS: 'local',
    LOG_LEVEL: 'warn',
    // The load is the test's, not a client's abuse; nor is a busy CI machine's event loop overload.
    RATE_LIMIT_PER_MINUTE: '100000000',
    MAX_EVENT_LOOP_DELAY_MS: '0',
  };
  const mongo = new MongoClient(stack.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
  t.teardown(async () => {
    await mongo.db(db).dropDatabase().catch(() => undefined);
    await mongo.close();
  });
  const headers = { authorization: `Bearer ${adminToken}` };
  const call = async (base: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json().catch(() => undefined)) as any };
  };

  // The schema names its keys, and the boot checks they exist: one instance without the schema
  // (its audit elsewhere, so the cluster's audit holds the cluster's chains only) creates them.
  const setup = await startServerProcess(t, { ...env, SCHEMAS_DIR: empty, AUDIT_NAMESPACE: `${db}.__setupAudit` });
  t.ok(setup.up, 'the setup instance is ready', { output: setup.up ? undefined : setup.output().slice(-3000) });
  for (const name of ['cl-det', 'cl-rnd']) {
    const r = await call(setup.base, 'POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
    t.equal(r.status, 201, `key ${name} created`);
  }
  setup.child.kill('SIGTERM');

  let cluster: Cluster | undefined;
  t.teardown(async () => {
    await cluster?.down(true).catch(() => undefined);
  });
  const started = Date.now();
  cluster = await startCluster({ instances: 2, env: { ...env, SCHEMAS_DIR: schemas }, dir: join(work, 'cluster') });
  t.comment(`2 instances up behind ${cluster.url} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const lb = cluster.url;

  const single = await call(lb, 'POST', '/encrypt', { value: '4111-1111-1111-1111', algorithm: 'deterministic', keyAltName: 'cl-det' });
  t.equal(single.status, 200, 'an encryption through the load balancer');
  const ciphertext = single.json.ciphertext as string;

  let keyCount = 0;
  let docCount = 0;
  const mixed = (phase: string) => (i: number): LoadRequest => {
    switch (i % 10) {
      case 0:
      case 1:
      case 2:
        return { kind: 'encrypt', path: '/encrypt', body: JSON.stringify({ value: `v-${phase}-${i}`, algorithm: 'deterministic', keyAltName: 'cl-det' }) };
      case 3:
        return { kind: 'encrypt-batch', path: '/encrypt', body: JSON.stringify({ items: Array.from({ length: 10 }, (_, k) => ({ value: `b-${i}-${k}`, algorithm: 'random', keyAltName: 'cl-rnd' })) }) };
      case 4:
      case 5:
        return { kind: 'decrypt', path: '/decrypt', body: JSON.stringify({ ciphertext }) };
      case 6:
        // Key creation: a state change through whichever instance, alt names unique fleet-wide.
        return i % 20 === 6
          ? { kind: 'key', path: '/keys', body: JSON.stringify({ masterKey: { provider: 'local' }, keyAltNames: [`cl-${phase}-${keyCount++}`] }) }
          : { kind: 'decrypt', path: '/decrypt', body: JSON.stringify({ ciphertext }) };
      case 7:
      case 8:
        return { kind: 'insert', path: `/documents/${ns}`, body: JSON.stringify({ document: { name: `n-${phase}-${docCount}`, ssn: `ssn-${docCount++ % 50}`, notes: 'private' } }) };
      default:
        return { kind: 'find', path: `/documents/${ns}/find`, body: JSON.stringify({ filter: { ssn: `ssn-${i % 50}` }, limit: 5 }) };
    }
  };

  const statsOf = (stats: ServerStat[]) => new Map(stats.filter((s) => s.backend === 'all').map((s) => [s.server, s]));

  async function phase(n: number) {
    const c = cluster!;
    await t.test(`${n} instances`, async (t) => {
      t.equal(c.instances, n, `${n} instances run`);
      const before = statsOf(await c.stats());
      t.equal([...before.values()].filter((s) => s.status === 'UP').length, n, 'HAProxy sees every instance up');
      const okIds = new Set<string>();
      const kinds: Record<string, number> = {};
      let findsWithDocs = 0;
      const result = await closedLoop({
        url: lb,
        headers,
        seconds: LOAD_SECONDS,
        concurrency: CONCURRENCY,
        next: mixed(`x${n}`),
        onAnswer: (a) => {
          if (a.status < 200 || a.status >= 300) {
            t.comment(`non-2xx: ${a.request.kind} ${a.status} ${a.body.slice(0, 300)}`);
            return;
          }
          okIds.add(String(a.headers['x-request-id']));
          kinds[a.request.kind!] = (kinds[a.request.kind!] ?? 0) + 1;
          if (a.request.kind === 'find' && JSON.parse(a.body).items?.length > 0) findsWithDocs++;
        },
      });
      t.comment(`${n} instances: ${result.ok} answers in ${result.seconds.toFixed(1)} s (${(result.ok / result.seconds).toFixed(0)} req/s); ${JSON.stringify(kinds)}`);
      t.equal(result.failed, 0, '0 non-2xx answers and 0 requests without an answer', { statuses: result.statuses, errors: result.errors });
      t.ok(result.ok > 50, `the load ran (${result.ok} answers)`);
      for (const kind of ['encrypt', 'encrypt-batch', 'decrypt', 'key', 'insert', 'find']) t.ok((kinds[kind] ?? 0) > 0, `${kind} requests were answered`);
      t.ok(findsWithDocs > 0, 'finds by an encrypted field return documents inserted through other instances');

      const after = statsOf(await c.stats());
      const served = new Map([...after].map(([server, s]) => [server, s.responses2xx - (before.get(server)?.responses2xx ?? 0)]));
      t.equal([...served.values()].reduce((a, b) => a + b, 0), result.ok, "HAProxy's 2xx count is the load's");
      for (const [server, count] of served) t.ok(count > 0, `instance ${server} served part of the load (${count})`);

      // Every answered request has its outcome event in the chain of the instance that served it.
      const chains = c.chainIds();
      t.equal(new Set(chains).size, n, 'each instance has a chain of its own');
      const records = mongo.db(db).collection(`__audit`);
      const perChain = new Map<string, number>();
      const deadline = Date.now() + 20_000;
      for (;;) {
        const events = await records.find({ outcome: { $ne: 'started' } }, { projection: { requestId: 1, chainId: 1 } }).toArray();
        perChain.clear();
        let found = 0;
        for (const e of events) {
          if (!okIds.has(e.requestId)) continue;
          found++;
          perChain.set(e.chainId, (perChain.get(e.chainId) ?? 0) + 1);
        }
        if (found >= okIds.size || Date.now() > deadline) {
          t.equal(found, okIds.size, 'every 2xx answer has its outcome event in the audit trail');
          break;
        }
        await sleep(250);
      }
      chains.forEach((chain, i) => t.equal(perChain.get(chain) ?? 0, served.get(`i${i + 1}`), `instance ${i + 1}'s chain holds an event for each request it served`));
      t.same([...perChain.keys()].filter((chain) => !chains.includes(chain)), [], 'no event in a chain of no instance');

      const verify = await call(lb, 'GET', '/audit/verify?full=true');
      t.equal(verify.status, 200);
      t.match(verify.json, { valid: true, chains: n, problems: [] }, `the full verification through the load balancer is valid and covers ${n} chains`);
      t.ok(verify.json.checked >= okIds.size, `it checked every record (${verify.json.checked})`);
    });
  }

  await phase(2);
  const scaled = Date.now();
  await cluster.scale(3);
  t.comment(`scaled to 3 instances in ${((Date.now() - scaled) / 1000).toFixed(1)} s`);
  await phase(3);
});

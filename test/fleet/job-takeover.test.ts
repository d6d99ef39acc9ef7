/**
 * A background job outlives the instance running it: two real server processes on one database;
 * a slow data-key rotation starts on A, A is killed (SIGKILL, mid-job), and B takes the job over
 * once A's lease lapses and finishes it. The job ends succeeded, every document is under the new
 * key and decrypts to what was written: nothing lost, nothing encrypted twice.
 *
 * A job runs as its creator with the creator's current grants: taken over after its creator lost
 * the right to decrypt the old key, it stops with FORBIDDEN.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, createTestApp } from '../helpers/app.js';
import { employeesSchema } from '../helpers/documents.js';
import { ensureBuilt, startServerProcess, type ServerProcess } from '../faults/server-process.js';
import { sleep, waitForExit } from '../faults/servers.js';

const LEASE_MS = 2000;
const DOCS = 40;

async function call(server: ServerProcess, method: string, url: string, body?: unknown, token = ADMIN_TOKEN) {
  const res = await fetch(`${server.base}${url}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text, json: () => JSON.parse(text) };
}

const keyIdOf = (value: { buffer: Uint8Array }) => Buffer.from(value.buffer.subarray(1, 17)).toString('hex');

/**
 * Keys and the employees schema made through an in-process app that is then closed, so the fleet
 * is exactly A and B (a third instance could take the job over too).
 */
async function setup(t: any) {
  const build = ensureBuilt();
  t.comment(build.built ? `built dist/ in ${build.ms} ms` : 'dist/ is up to date');
  const h = await createTestApp(t);
  const keys: Record<string, string> = {};
  for (const name of ['hr-det', 'hr-rnd', 'tenant-a', 'tenant-b']) {
    keys[name] = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] })).json().id;
  }
  const schemasDir = mkdtempSync(join(tmpdir(), 'takeover-schemas-'));
  t.teardown(() => rmSync(schemasDir, { recursive: true, force: true }));
  const ns = `${h.keyVaultDb}.employees`;
  writeFileSync(join(schemasDir, `${ns}.json`), JSON.stringify(employeesSchema(keys['hr-rnd']!)));
  await h.app.close();
  const env = { ...h.env, SCHEMAS_DIR: schemasDir, JOB_LEASE_MS: String(LEASE_MS) };
  const [a, b] = await Promise.all([startServerProcess(t, env), startServerProcess(t, env)]);
  t.ok(a.up && b.up, 'both instances are up');
  const url = `/documents/${ns}`;
  for (let i = 0; i < DOCS; i++) {
    const res = await call(i % 2 === 0 ? a : b, 'POST', url, { document: { name: `e${i}`, tenantKey: 'tenant-a', ssn: `SSN-${i}`, badge: { $numberInt: String(i) } } });
    if (res.status !== 201) throw new Error(`insert ${i}: ${res.status} ${res.body}`);
  }
  const newKey = (await call(a, 'POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-det-next'] })).json().id as string;
  return { h, ns, a, b, url, newKey, raw: h.mongo.db(h.keyVaultDb).collection('employees') };
}

/** Start a slow rotation on A and kill A once it is well under way. */
async function rotateAndKill(t: any, s: Awaited<ReturnType<typeof setup>>, token = ADMIN_TOKEN, beforeKill?: () => Promise<void>) {
  const started = await call(s.a, 'POST', `${s.url}/rotations`, { from: { keyAltName: 'hr-det' }, to: { keyId: s.newKey }, batchSize: 4, maxDocsPerSecond: 8 }, token);
  t.equal(started.status, 202, started.body);
  const jobUrl = started.headers.get('location')!;
  let job = (await call(s.b, 'GET', jobUrl)).json();
  for (let i = 0; i < 100 && job.progress.done < 12; i++) {
    await sleep(100);
    job = (await call(s.b, 'GET', jobUrl)).json();
  }
  t.ok(job.progress.done >= 12 && job.progress.done < DOCS, `A is mid-job when killed: ${job.progress.done} of ${DOCS} documents done`);
  await beforeKill?.();
  s.a.child.kill('SIGKILL');
  t.equal(await waitForExit(s.a.child, 5000), 'SIGKILL', 'A is gone (kill -9)');
  return { jobUrl, killedAt: performance.now(), doneAtKill: job.progress.done as number };
}

async function waitForEnd(server: ServerProcess, jobUrl: string, ms: number) {
  const deadline = Date.now() + ms;
  let job = (await call(server, 'GET', jobUrl)).json();
  while (job.state === 'running' && Date.now() < deadline) {
    await sleep(200);
    job = (await call(server, 'GET', jobUrl)).json();
  }
  return job;
}

t.test('kill -9 the instance running a rotation: another instance takes it over and finishes it', async (t) => {
  const s = await setup(t);
  const { jobUrl, killedAt } = await rotateAndKill(t, s);

  const job = await waitForEnd(s.b, jobUrl, 60_000);
  t.equal(job.state, 'succeeded', JSON.stringify(job));
  t.equal(job.runs, 2, 'run twice: by A, then by B after A\'s lease lapsed');
  t.comment(`B finished the job ${Math.round(performance.now() - killedAt)} ms after A was killed (lease ${LEASE_MS} ms)`);
  t.equal(job.result.documents, DOCS, 'every document counted once');
  t.same(job.progress, { total: DOCS, done: DOCS, failed: 0, phase: 'done' });
  t.ok(s.b.output().includes('job taken over'), 'B (the only instance left) logged the takeover');

  const docs = await s.raw.find({}).toArray();
  t.equal(docs.length, DOCS, 'nothing lost');
  const newHex = s.newKey.replaceAll('-', '');
  t.ok(docs.every((d) => keyIdOf(d.ssn) === newHex && keyIdOf(d.badge) === newHex), 'every field under the new key');
  const found = (await call(s.b, 'POST', `${s.url}/find`, { filter: {}, limit: 1000 })).json();
  t.equal(found.items.length, DOCS);
  t.notOk(found.unreadable, 'nothing unreadable');
  const plain = new Map(found.items.map((d: { name: string; ssn: string; badge: number }) => [d.name, [d.ssn, d.badge]]));
  t.ok(
    Array.from({ length: DOCS }, (_, i) => i).every((i) => JSON.stringify(plain.get(`e${i}`)) === JSON.stringify([`SSN-${i}`, i])),
    'every field decrypts to what was written (encrypted once, not twice)',
  );
  const rotation = await s.h.mongo.db(s.h.keyVaultDb).collection('__rotations').findOne({});
  t.equal(rotation?.state, 'done');
});

t.test('a job taken over runs with its creator\'s current grants: narrowed meanwhile, it fails FORBIDDEN', async (t) => {
  const s = await setup(t);
  const grants = [
    { scope: `documents:${s.ns}:write` },
    { scope: 'decrypt', keyAltNames: ['hr-det'] },
    { scope: 'encrypt', keyAltNames: ['hr-det-next'] },
  ];
  const created = await call(s.a, 'POST', '/clients', { name: 'rotator', grants });
  t.equal(created.status, 201, 'the rotating client is created');
  const { client, token } = created.json();
  const { jobUrl } = await rotateAndKill(t, s, token);
  // While no instance runs the job, its creator loses the right to read the old key.
  const narrowed = await call(s.b, 'PATCH', `/clients/${client.id}`, { grants: grants.filter((g) => g.scope !== 'decrypt') });
  t.equal(narrowed.status, 200, 'its decrypt grant is taken away through B');

  const job = await waitForEnd(s.b, jobUrl, 60_000);
  t.equal(job.state, 'failed', JSON.stringify(job));
  t.equal(job.runs, 2, 'B took it over');
  t.ok(s.b.output().includes('job taken over'));
  t.equal(job.error?.code, 'FORBIDDEN', 'and stopped: its creator may no longer decrypt the old key');
  const found = (await call(s.b, 'POST', `${s.url}/find`, { filter: {}, limit: 1000 })).json();
  t.equal(found.items.length, DOCS, 'the documents, part rotated, are all there');
  t.notOk(found.unreadable, 'and all readable (each under one key or the other)');
});

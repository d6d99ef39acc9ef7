import { randomBytes, randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';

t.test('a job is visible to the client that started it, to jobs:admin and to the operator; to others it does not exist', async (t) => {
  const h = await createTestApp(t);
  const clientWith = async (name: string, scopes: string[]) => {
    const res = await h.call('POST', '/clients', { name, grants: scopes.map((scope) => ({ scope })) });
    t.equal(res.statusCode, 201, `client ${name} created`);
    const token = res.json().token as string;
    return (method: 'GET' | 'POST', url: string, payload?: object) =>
      h.app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  };
  const owner = await clientWith('owner', ['keys:rewrap', 'keys:read', 'jobs:read']);
  const reader = await clientWith('another reader', ['jobs:read']);
  const admin = await clientWith('jobs admin', ['jobs:read', 'jobs:admin']);
  const adminOnly = await clientWith('jobs admin without read', ['jobs:admin']);

  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['job-key'] })).statusCode, 201);
  const started = await owner('POST', '/keys/migrations', { filter: { keyAltNames: ['job-key'] }, masterKey: { provider: 'local' } });
  t.equal(started.statusCode, 202, started.body);
  const url = started.headers.location as string;
  const operatorStarted = await h.call('POST', '/keys/migrations', { filter: { keyAltNames: ['job-key'] }, masterKey: { provider: 'local' } });
  t.equal(operatorStarted.statusCode, 202, operatorStarted.body);

  const mine = await owner('GET', url);
  t.equal(mine.statusCode, 200, 'its creator sees it');
  t.equal(mine.json().createdBy, started.json().createdBy);
  t.equal((await owner('GET', operatorStarted.headers.location as string)).json().code, 'JOB_NOT_FOUND', 'but not the operator\'s job');

  const hidden = await reader('GET', url);
  const missing = await reader('GET', `/jobs/job_${'0'.repeat(24)}`);
  t.equal(hidden.statusCode, 404, 'another jobs:read client gets 404, not 403');
  t.equal(hidden.json().code, 'JOB_NOT_FOUND');
  const { instance: _a, ...hiddenProblem } = hidden.json();
  const { instance: _b, ...missingProblem } = missing.json();
  t.same(hiddenProblem, missingProblem, 'the same answer as for a job that does not exist');

  t.equal((await admin('GET', url)).statusCode, 200, 'jobs:admin sees every client\'s job');
  t.equal((await admin('GET', operatorStarted.headers.location as string)).statusCode, 200);
  t.equal((await h.call('GET', url)).statusCode, 200, 'so does the operator');
  t.equal((await adminOnly('GET', url)).statusCode, 200, 'jobs:admin alone is enough: it implies reading jobs');
  t.equal((await adminOnly('GET', operatorStarted.headers.location as string)).statusCode, 200);
});

t.test('jobs:admin is a scope a client can be granted', async (t) => {
  const h = await createTestApp(t);
  const res = await h.call('POST', '/clients', { name: 'ops', grants: [{ scope: 'jobs:read' }, { scope: 'jobs:admin' }] });
  t.equal(res.statusCode, 201, res.json().detail);
  t.same(res.json().client.grants, [{ scope: 'jobs:read' }, { scope: 'jobs:admin' }]);
});

/** A client with these grants, and a way to call the API as it. */
async function clientOf(t: Test, h: TestApp, name: string, grants: object[]) {
  const res = await h.call('POST', '/clients', { name, grants });
  t.equal(res.statusCode, 201, `client ${name} created`);
  const { client, token } = res.json() as { client: { id: string }; token: string };
  const call = (method: 'GET' | 'POST', url: string, payload?: object) =>
    h.app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  return { id: client.id, call };
}

async function waitUntilEnded(h: TestApp, ids: string[]) {
  for (let i = 0; i < 200; i++) {
    const states = await Promise.all(ids.map(async (id) => (await h.call('GET', `/jobs/${id}`)).json().state as string));
    if (states.every((state) => state !== 'running' && state !== 'queued')) return states;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('jobs did not end');
}

/**
 * A job no instance of this test runs, as a stopped or other instance would leave it: recorded,
 * running, its lease never taken within a lease's time. Its master key (AWS) is one this app has
 * no provider for, so the app's own scan leaves it alone too.
 */
async function plantJob(h: TestApp, createdBy: string, type = 'keys.migration', spec: Record<string, unknown> = {}) {
  const id = `job_${randomBytes(12).toString('hex')}`;
  const at = new Date(Date.now() - 20_000);
  await h.mongo
    .db(h.keyVaultDb)
    .collection('__jobs')
    .insertOne({
      _id: id as never,
      type,
      state: 'running',
      createdBy,
      params: {},
      spec: type === 'keys.migration' ? { keyIds: [], masterKey: { provider: 'aws', key: 'arn:aws:kms:eu-west-1:111122223333:key/planted', region: 'eu-west-1' } } : spec,
      runs: 1,
      progress: { total: 4, done: 2, failed: 0, phase: 'rewrapping' },
      createdAt: at,
      updatedAt: at,
      heartbeatAt: new Date(),
    });
  return id;
}

t.test('GET /jobs lists the jobs a client may see, newest first, filtered by state and type, a page at a time', async (t) => {
  const h = await createTestApp(t);
  const owner = await clientOf(t, h, 'lister', [{ scope: 'keys:rewrap' }, { scope: 'jobs:read' }]);
  const reader = await clientOf(t, h, 'other reader', [{ scope: 'jobs:read' }]);
  const admin = await clientOf(t, h, 'jobs admin', [{ scope: 'jobs:admin' }]);
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['list-key'] })).statusCode, 201);
  const migration = { filter: { keyAltNames: ['list-key'] }, masterKey: { provider: 'local' } };
  const ids: string[] = [];
  for (const starter of [owner.call, owner.call, owner.call]) {
    const res = await starter('POST', '/keys/migrations', migration);
    t.equal(res.statusCode, 202, res.body);
    ids.push(res.json().id);
  }
  for (let i = 0; i < 2; i++) ids.push((await h.call('POST', '/keys/migrations', migration)).json().id);
  t.same(await waitUntilEnded(h, ids), ids.map(() => 'succeeded'));

  const mine = (await owner.call('GET', '/jobs')).json();
  t.same(mine.items.map((job: { id: string }) => job.id), ids.slice(0, 3).reverse(), 'its creator sees its own three, newest first');
  t.ok(mine.items.every((job: { createdBy: string }) => job.createdBy === owner.id));
  t.notOk(mine.next, 'on one page');
  t.same((await reader.call('GET', '/jobs')).json(), { items: [] }, 'another jobs:read client sees none of them');
  t.equal((await admin.call('GET', '/jobs')).json().items.length, 5, 'jobs:admin sees every client\'s');

  const seen: string[] = [];
  let url = '/jobs?limit=2';
  for (let page = 0; page < 5; page++) {
    const res = await admin.call('GET', url);
    t.equal(res.statusCode, 200);
    seen.push(...res.json().items.map((job: { id: string }) => job.id));
    if (!res.json().next) break;
    url = `/jobs?limit=2&after=${res.json().next}`;
  }
  t.same(seen, [...ids].reverse(), 'pages of two follow each other without a gap or a repeat');

  t.equal((await h.call('GET', '/jobs?state=succeeded')).json().items.length, 5);
  t.same((await h.call('GET', '/jobs?state=running')).json().items, []);
  t.same((await h.call('GET', '/jobs?state=cancelled')).json().items, []);
  t.equal((await h.call('GET', '/jobs?type=keys.migration&state=succeeded')).json().items.length, 5);
  t.same((await h.call('GET', '/jobs?type=documents.rotation')).json().items, []);
  for (const bad of ['state=done', 'limit=0', 'limit=201', 'after=1-job_x', 'after=x', 'type=Keys/..', 'owner=admin']) {
    const res = await h.call('GET', `/jobs?${bad}`);
    t.equal(res.statusCode, 400, `${bad} is refused`);
    t.equal(res.json().code, 'VALIDATION_FAILED');
  }
});

t.test('a job is cancelled by jobs:admin, or by its creator while it holds the scope that starts it; never by another client', async (t) => {
  const h = await createTestApp(t);
  const owner = await clientOf(t, h, 'migrator', [{ scope: 'keys:rewrap' }, { scope: 'jobs:read' }]);
  const peer = await clientOf(t, h, 'another migrator', [{ scope: 'keys:rewrap' }, { scope: 'jobs:read' }]);
  const admin = await clientOf(t, h, 'jobs admin', [{ scope: 'jobs:admin' }]);
  const rewrapOnly = await clientOf(t, h, 'rewrap without jobs:read', [{ scope: 'keys:rewrap' }]);
  const job = await plantJob(h, owner.id);

  const others = await peer.call('POST', `/jobs/${job}/cancel`);
  const missing = await peer.call('POST', `/jobs/job_${'0'.repeat(24)}/cancel`);
  t.equal(others.statusCode, 404, "a client that may start migrations cannot cancel another client's");
  const { instance: _a, ...othersProblem } = others.json();
  const { instance: _b, ...missingProblem } = missing.json();
  t.same(othersProblem, missingProblem, 'and learns nothing: the same answer as for a job that does not exist');
  t.equal((await rewrapOnly.call('POST', `/jobs/${job}/cancel`)).statusCode, 403, 'without jobs:read or jobs:admin: refused by the route');
  t.equal((await h.call('GET', `/jobs/${job}`)).json().state, 'running', 'none of that touched the job');

  const narrowed = await h.call('PATCH', `/clients/${owner.id}`, { grants: [{ scope: 'jobs:read' }] });
  t.equal(narrowed.statusCode, 200);
  const refused = await owner.call('POST', `/jobs/${job}/cancel`);
  t.equal(refused.statusCode, 403, 'its creator, no longer holding keys:rewrap, may not stop it');
  t.match(refused.json().detail, /keys:rewrap or the jobs:admin scope/);
  t.equal((await h.call('PATCH', `/clients/${owner.id}`, { grants: [{ scope: 'keys:rewrap' }, { scope: 'jobs:read' }] })).statusCode, 200);

  const cancelled = await owner.call('POST', `/jobs/${job}/cancel`);
  t.equal(cancelled.statusCode, 202, cancelled.body);
  t.equal(cancelled.json().state, 'cancelled', 'no instance held it: cancelled at once, by the instance that got the request');
  t.equal(cancelled.json().cancel.requestedBy, owner.id);
  t.same(cancelled.json().progress, { total: 4, done: 2, failed: 0, phase: 'rewrapping' }, 'where it stopped');
  t.ok(cancelled.json().finishedAt);
  const again = await owner.call('POST', `/jobs/${job}/cancel`);
  t.equal(again.statusCode, 409);
  t.equal(again.json().code, 'JOB_FINISHED');
  t.same((await owner.call('GET', '/jobs?state=cancelled')).json().items.map((j: { id: string }) => j.id), [job]);

  const other = await plantJob(h, peer.id);
  const byAdmin = await admin.call('POST', `/jobs/${other}/cancel`);
  t.equal(byAdmin.statusCode, 202, 'jobs:admin alone may cancel any client\'s job');
  t.equal(byAdmin.json().cancel.requestedBy, admin.id);

  // A rotation is started with documents:<ns>:write: that scope of that collection, not another's.
  const rotator = await clientOf(t, h, 'rotator', [{ scope: 'jobs:read' }, { scope: 'documents:hr.other:write' }]);
  const rotation = await plantJob(h, rotator.id, 'documents.rotation', { namespace: 'hr.staff', fromKeyId: randomUUID(), toKeyId: randomUUID(), batchSize: 10, maxDocsPerSecond: 0 });
  const wrongNs = await rotator.call('POST', `/jobs/${rotation}/cancel`);
  t.equal(wrongNs.statusCode, 403);
  t.match(wrongNs.json().detail, /documents:hr\.staff:write/);
  t.equal((await h.call('PATCH', `/clients/${rotator.id}`, { grants: [{ scope: 'jobs:read' }, { scope: 'documents:hr.staff:write' }] })).statusCode, 200);
  t.equal((await rotator.call('POST', `/jobs/${rotation}/cancel`)).statusCode, 202);

  const audit = (await h.call('GET', '/audit?action=jobs.cancel&limit=100')).json().items as { clientId: string; outcome: string; status?: number }[];
  t.ok(audit.some((e) => e.clientId === owner.id && e.outcome === 'succeeded'), 'a cancel is audited');
  t.ok(audit.some((e) => e.clientId === owner.id && e.outcome === 'denied'), 'and so is a refused one');
  const finished = (await h.call('GET', '/audit?action=keys.migration.finished&limit=100')).json().items as { requestId: string; code?: string; clientId: string }[];
  t.ok(finished.some((e) => e.requestId === job && e.code === 'JOB_CANCELLED' && e.clientId === owner.id), "the job's end is audited as cancelled, under its creator");
});

t.test('a finished job cannot be cancelled: 409 JOB_FINISHED, and it stays as it ended', async (t) => {
  const h = await createTestApp(t);
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['done-key'] })).statusCode, 201);
  const id = (await h.call('POST', '/keys/migrations', { filter: { keyAltNames: ['done-key'] }, masterKey: { provider: 'local' } })).json().id;
  t.same(await waitUntilEnded(h, [id]), ['succeeded']);
  const res = await h.call('POST', `/jobs/${id}/cancel`);
  t.equal(res.statusCode, 409);
  t.equal(res.json().code, 'JOB_FINISHED');
  t.match(res.json().detail, /succeeded/);
  const job = (await h.call('GET', `/jobs/${id}`)).json();
  t.equal(job.state, 'succeeded');
  t.notOk(job.cancel, 'no cancel request was recorded');
  t.equal((await h.call('POST', '/jobs/not-a-job/cancel')).statusCode, 400, 'a malformed id is a 400');
});

import t from 'tap';
import { createTestApp } from '../helpers/app.js';

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

import t from 'tap';
import { ADMIN_TOKEN, createTestApp, keyVaultDocs } from '../helpers/app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('over its heap limit the service sheds load with 503 OVERLOADED, and probes still answer', async (t) => {
  // A 1-byte heap limit: the first pressure sample (once a second) puts the app over it.
  const h = await createTestApp(t, { env: { MAX_HEAP_USED_BYTES: '1' } });
  let shed = await h.call('GET', '/keys');
  for (let waited = 0; shed.statusCode !== 503 && waited < 5000; waited += 100) {
    await sleep(100);
    shed = await h.call('GET', '/keys');
  }
  t.equal(shed.statusCode, 503, 'an API request is refused at once');
  t.match(shed.headers['content-type'], /^application\/problem\+json/);
  t.equal(shed.json().code, 'OVERLOADED');
  t.ok(Number(shed.headers['retry-after']) > 0, 'with Retry-After');
  const enc = await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'none' });
  t.equal(enc.json().code, 'OVERLOADED', 'before any work is done (the key does not even exist)');
  t.equal((await h.call('GET', '/health/live')).statusCode, 200, 'liveness still answers');
  t.not((await h.call('GET', '/health/ready')).json().code, 'OVERLOADED', 'readiness is not shed either');
  t.ok(h.logs.some((l) => l.includes('"code":"OVERLOADED"') && l.includes('"level":40')), 'shedding is logged as a warning');
  t.notOk(h.logs.some((l) => l.includes('"code":"OVERLOADED"') && l.includes('"level":50')), 'not as an error');
});

t.test('each client has a request budget: over it, 429 RATE_LIMITED with Retry-After', async (t) => {
  const h = await createTestApp(t, { env: { RATE_LIMIT_PER_MINUTE: '3' } });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await h.call('GET', '/keys')).statusCode);
  t.same(statuses, [200, 200, 200, 429]);
  const limited = await h.call('GET', '/keys');
  t.equal(limited.json().code, 'RATE_LIMITED');
  t.match(limited.headers['content-type'], /^application\/problem\+json/);
  t.ok(Number(limited.headers['retry-after']) > 0, 'with Retry-After');
});

t.test('a client over its budget is refused before anything is written: no audit event, no idempotency claim', async (t) => {
  const h = await createTestApp(t, { env: { RATE_LIMIT_PER_MINUTE: '3' } });
  const limited = await h.call('POST', '/clients', { name: 'limited', grants: [{ scope: 'keys:read' }] });
  const token = limited.json().token as string;
  const asLimited = (method: 'GET' | 'POST', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    h.app.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...headers }, ...(payload ? { payload: payload as object } : {}) });
  const create = (key: string) => h.call('POST', '/keys', { masterKey: { provider: 'local' } }, { 'idempotency-key': key });

  // The operator's budget of 3: the client above, and two keys.
  t.same([(await create('k-1')).statusCode, (await create('k-2')).statusCode], [201, 201]);
  const reads = [];
  for (let i = 0; i < 3; i++) reads.push((await asLimited('GET', '/keys')).statusCode);
  t.same(reads, [200, 200, 200], 'the other client has its own budget, and spends it');
  const audit = h.mongo.db(h.keyVaultDb).collection('__audit');
  const idempotency = h.mongo.db(h.keyVaultDb).collection('__idempotency');
  // An expired answer under the key about to be refused: a claim would delete it and insert its
  // own, so finding it untouched afterwards shows that no claim was made (not one made and released).
  const expired = new Date(Date.now() - 1000);
  await idempotency.insertOne({ _id: 'admin|POST|/keys|k-3' as never, hash: 'x', state: 'done', status: 201, contentType: 'application/json', body: '{}', createdAt: expired, expiresAt: expired });
  await h.app.audit.flush();
  const eventsBefore = await audit.countDocuments();
  const claimsBefore = await idempotency.find({}, { sort: { _id: 1 } }).toArray();

  const over = await create('k-3');
  t.equal(over.statusCode, 429);
  t.equal(over.json().code, 'RATE_LIMITED');
  t.ok(Number(over.headers['retry-after']) > 0, 'with Retry-After');
  // A client over its budget asking for what its scopes do not allow: 429 too, not an audited 403.
  const forbidden = await asLimited('POST', '/keys', { masterKey: { provider: 'local' } }, { 'idempotency-key': 'k-4' });
  t.equal(forbidden.statusCode, 429, 'over its budget, a refused request is not even audited');
  await h.app.audit.flush();
  const raw = await audit.find({ requestId: { $in: [over.headers['x-request-id'], forbidden.headers['x-request-id']] } }).toArray();
  t.same(raw, [], 'no audit event (started, denied or failed) for the refused requests');
  t.equal(await audit.countDocuments(), eventsBefore, 'nothing was added to the audit collection');
  t.same(await idempotency.find({}, { sort: { _id: 1 } }).toArray(), claimsBefore, 'the idempotency collection is exactly as it was: no claim was made');
  t.equal((await keyVaultDocs(h)).length, 2, 'and no key was created');
});

t.test('failed authentication is limited per source address, before the credentials are checked', async (t) => {
  const h = await createTestApp(t, { env: { AUTH_FAILURES_PER_MINUTE: '3' } });
  const from = (remoteAddress: string, authorization?: string) =>
    h.app.inject({ method: 'GET', url: '/keys', remoteAddress, headers: authorization ? { authorization } : {} });
  const attacker = '203.0.113.7';

  const noCredentials = [];
  for (let i = 0; i < 5; i++) noCredentials.push((await from(attacker)).statusCode);
  t.same(noCredentials, [401, 401, 401, 401, 401], 'requests without credentials guess nothing and do not count');
  const guesses = [];
  for (let i = 0; i < 3; i++) guesses.push((await from(attacker, `Bearer epx_${'0'.repeat(32)}_guess${i}`)).statusCode);
  t.same(guesses, [401, 401, 401], 'up to AUTH_FAILURES_PER_MINUTE failures are answered 401');
  const cut = await from(attacker, 'Bearer another-guess-0123456789abcdef');
  t.equal(cut.statusCode, 429, 'then 429');
  t.equal(cut.json().code, 'RATE_LIMITED');
  t.match(cut.headers['content-type'], /^application\/problem\+json/);
  const retryAfter = Number(cut.headers['retry-after']);
  t.ok(retryAfter > 0 && retryAfter <= 60, `with Retry-After (${retryAfter} s)`);
  t.equal((await from(attacker, `Bearer ${ADMIN_TOKEN}`)).statusCode, 429, 'even the right token: the check comes before the credentials');
  t.equal((await from('198.51.100.9', `Bearer ${ADMIN_TOKEN}`)).statusCode, 200, 'other addresses are not affected');
  t.equal((await from('2001:db8:1:2::1', 'Bearer bad-guess-0123456789abcdefgh')).statusCode, 401);
  for (let i = 0; i < 2; i++) await from(`2001:db8:1:2::${i + 2}`, 'Bearer bad-guess-0123456789abcdefgh');
  t.equal((await from('2001:db8:1:2:ffff::9', `Bearer ${ADMIN_TOKEN}`)).statusCode, 429, 'an IPv6 source is its /64');
  t.equal((await from('203.0.113.7')).statusCode, 429, 'and once cut off, a request without credentials is refused too');
  await h.app.audit.flush();
  t.equal(await h.mongo.db(h.keyVaultDb).collection('__audit').countDocuments({ clientId: 'anonymous' }), 0, 'nothing audited for any of them');
});

t.test('behind a load balancer named in TRUST_PROXY, failures count per forwarded client; a spoofed header counts for nothing', async (t) => {
  const balancer = '10.0.0.5';
  const h = await createTestApp(t, { env: { AUTH_FAILURES_PER_MINUTE: '2', TRUST_PROXY: '10.0.0.0/8' } });
  const via = (remoteAddress: string, client: string, authorization: string) =>
    h.app.inject({ method: 'GET', url: '/keys', remoteAddress, headers: { authorization, 'x-forwarded-for': client } });
  for (let i = 0; i < 2; i++) t.equal((await via(balancer, '203.0.113.7', 'Bearer wrong-token-0123456789abcdef')).statusCode, 401);
  t.equal((await via(balancer, '203.0.113.7', `Bearer ${ADMIN_TOKEN}`)).statusCode, 429, 'the guessing client is cut off');
  t.equal((await via(balancer, '198.51.100.9', `Bearer ${ADMIN_TOKEN}`)).statusCode, 200, 'the other clients behind the same balancer are not');
  // Not from a trusted balancer: X-Forwarded-For is the client's own claim and is ignored.
  for (let i = 0; i < 2; i++) await via('192.0.2.1', `198.51.100.${i + 20}`, 'Bearer wrong-token-0123456789abcdef');
  t.equal((await via('192.0.2.1', '198.51.100.99', `Bearer ${ADMIN_TOKEN}`)).statusCode, 429, 'a direct client cannot spread its failures over forged addresses');
});

t.test('security headers on every answer, errors included', async (t) => {
  const h = await createTestApp(t);
  const unauthenticated = await h.app.inject({ method: 'GET', url: '/keys' });
  t.equal(unauthenticated.statusCode, 401);
  for (const response of [await h.call('GET', '/keys'), await h.call('GET', '/no-such-route'), unauthenticated]) {
    t.equal(response.headers['x-content-type-options'], 'nosniff');
    t.ok(response.headers['strict-transport-security'], 'HSTS');
    t.ok(response.headers['content-security-policy'], 'CSP');
  }
});

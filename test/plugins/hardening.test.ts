import t from 'tap';
import { createTestApp } from '../helpers/app.js';

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

t.test('security headers on every answer, errors included', async (t) => {
  const h = await createTestApp(t);
  for (const response of [await h.call('GET', '/keys'), await h.call('GET', '/no-such-route')]) {
    t.equal(response.headers['x-content-type-options'], 'nosniff');
    t.ok(response.headers['strict-transport-security'], 'HSTS');
    t.ok(response.headers['content-security-policy'], 'CSP');
  }
});

/**
 * Fault: MongoDB cannot be reached when the service first connects (it starts before the database,
 * or the network is down at that moment), then it comes back.
 *
 * The driver (7.9) closes a topology whose first connect failed and keeps handing that closed
 * topology to every later operation ("Topology is closed"), so without help the instance would never
 * serve again. Expected: the instance reconnects by itself and serves within seconds of the database
 * coming back, with clean 503s before that.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { sleep, startTcpProxy } from './servers.js';
import { createTestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

const RECOVERY_BUDGET_MS = 10_000;

t.test('the database is unreachable at the first connect, then comes back: the instance serves again', async (t) => {
  const target = new URL(stack.mongodbUri);
  const proxy = await startTcpProxy(t, { host: target.hostname, port: Number(target.port) });
  await proxy.close();
  const uri = `mongodb://127.0.0.1:${proxy.port}/`;
  const h = await createTestApp(t, { env: { MONGODB_URI: uri, MONGODB_SERVER_SELECTION_TIMEOUT_MS: '500' } });

  const down = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`first-connect-${randomBytes(4).toString('hex')}`] });
  t.equal(down.statusCode, 503, `while the database is unreachable: 503 (${down.body})`);
  t.equal(down.json().code, 'DATABASE_UNAVAILABLE');

  await proxy.open();
  const openedAt = Date.now();
  let served: number | undefined;
  let last = '';
  while (Date.now() - openedAt < RECOVERY_BUDGET_MS) {
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'local' } });
    if (res.statusCode === 201) {
      served = Date.now() - openedAt;
      break;
    }
    last = `${res.statusCode} ${res.body}`;
    await sleep(200);
  }
  t.ok(served !== undefined, `serves within ${RECOVERY_BUDGET_MS} ms of the database coming back (last answer: ${last})`);
  t.comment(`served again ${served} ms after the database came back`);
  const ready = await h.app.inject({ method: 'GET', url: '/health/ready' });
  t.equal(ready.statusCode, 200, `ready again: ${ready.body}`);
});

import t from 'tap';
import { createTestApp } from '../helpers/app.js';

t.test('ready and live on a working stack', async (t) => {
  const h = await createTestApp(t);
  t.equal((await h.call('GET', '/health/live')).statusCode, 200);
  const ready = await h.call('GET', '/health/ready');
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), { status: 'ok', mongodb: 'ok', kms: 'ok' });
  t.equal(h.app.audit.status().ready, true, 'the audit trail can be appended to before traffic');
});

t.test('database mode: not ready while the audit chain head cannot be loaded; ready again once it can', async (t) => {
  const first = await createTestApp(t);
  // A head the service must refuse to chain onto (seq below 1): its head query fails.
  const audit = first.mongo.db(first.keyVaultDb).collection<Record<string, unknown>>('__audit');
  await audit.insertOne({ _id: 'broken:000000000000' as never, chainId: 'broken', seq: 0, hmac: 'x' });
  const h = await createTestApp(t, { share: first, env: { AUDIT_CHAIN_ID: 'broken', AUDIT_MODE: 'database' } });

  const notReady = await h.call('GET', '/health/ready');
  t.equal(notReady.statusCode, 503);
  t.equal(notReady.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(notReady.json().code, 'AUDIT_UNAVAILABLE');
  t.equal((await h.call('GET', '/health/live')).statusCode, 200, 'liveness does not depend on it');
  const refused = await h.call('POST', '/keys', { masterKey: { provider: 'local' } });
  t.equal(refused.statusCode, 503, 'an audited operation is refused meanwhile');
  t.equal(refused.json().code, 'AUDIT_UNAVAILABLE');
  t.equal(await first.mongo.db(first.keyVaultDb).collection('__keyVault').countDocuments(), 0, 'and nothing was written');

  await audit.deleteOne({ chainId: 'broken' });
  t.equal((await h.call('GET', '/health/ready')).statusCode, 200, 'the probe loads the head again');
  t.equal((await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).statusCode, 201);
});

/**
 * Fault: MongoDB becomes unreachable in the middle of a POST /documents made with an
 * Idempotency-Key, after the key was claimed but before the document was written.
 *
 * The app reaches its own FerretDB through a TCP proxy the test controls: the proxy is slowed so
 * the request can be caught between the claim and the insert, then closed (connections cut,
 * refused), then opened again.
 *
 * Expected (README "Retries"): the request fails 503; once MongoDB is back, the same app instance
 * is ready again, the claim is released, and a retry with the same key and body runs and is
 * accepted, exactly once.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import t from 'tap';
import { sleep, startOwnFerretDb, startTcpProxy } from './servers.js';
import { canaryEmployee, createFaultDocumentsApp } from './setup.js';

t.test('an Idempotency-Key claimed just before MongoDB goes away does not block the retry', async (t) => {
  const ferret = await startOwnFerretDb(t);
  const proxy = await startTcpProxy(t, { host: '127.0.0.1', port: ferret.port });
  const h = await createFaultDocumentsApp(t, `mongodb://127.0.0.1:${proxy.port}/`, { MONGODB_SERVER_SELECTION_TIMEOUT_MS: '500' });
  const run = randomBytes(4).toString('hex');
  const warm = await h.call('POST', h.url, { document: canaryEmployee(run, 0) });
  t.equal(warm.statusCode, 201, 'inserts work through the proxy');

  const key = `idem-outage-${run}`;
  const body = { document: canaryEmployee(run, 1) };
  // Straight to FerretDB, not through the proxy: the claim is looked at while the proxy is closed.
  const direct = new MongoClient(`mongodb://127.0.0.1:${ferret.port}/`, { serverSelectionTimeoutMS: 5000 });
  t.teardown(() => direct.close());
  const claims = direct.db(h.keyVaultDb).collection<{ _id: string; state: string }>('__idempotency');

  // Catch the request between its claim and its insert: the proxy drops the insert into
  // employees and cuts every connection (MongoDB unreachable from then on).
  // The command's first element, as BSON: insert: "employees" (the audit shipper's inserts name
  // other collections, even when their records mention this one).
  const name = Buffer.from('employees\0');
  const length = Buffer.alloc(4);
  length.writeInt32LE(name.length);
  const cutDone = proxy.cutBefore([Buffer.concat([Buffer.from([0x02]), Buffer.from('insert\0'), length, name])]);
  const started = Date.now();
  const pending = h.call('POST', h.url, body, { 'idempotency-key': key });
  await cutDone;
  const claimed = await claims.findOne({ _id: { $regex: key } as never });
  t.ok(claimed, 'the key was claimed before the insert was sent');
  const first = await pending;
  const firstMs = Date.now() - started;
  t.equal(first.statusCode, 503, `the request fails cleanly: ${first.body}`);
  t.ok(['DATABASE_UNAVAILABLE', 'AUDIT_UNAVAILABLE'].includes(first.json().code), first.json().code);
  t.ok(first.headers['retry-after'], 'with Retry-After');

  await proxy.open();
  const backAt = Date.now();
  let ready = 0;
  while (Date.now() - backAt < 6_000) {
    ready = (await h.app.inject({ method: 'GET', url: '/health/ready' })).statusCode;
    if (ready === 200) break;
    await sleep(100);
  }
  t.equal(ready, 200, 'the app is ready again once MongoDB is reachable (no restart)');
  const readyMs = Date.now() - backAt;

  // The failed request's release could not reach MongoDB; the app keeps trying until it can.
  let stored = await claims.findOne({ _id: { $regex: key } as never });
  while (stored !== null && Date.now() - backAt < 6_000) {
    await sleep(100);
    stored = await claims.findOne({ _id: { $regex: key } as never });
  }
  const releasedMs = Date.now() - backAt;
  const retrier = h;
  const retry = await retrier.call('POST', h.url, body, { 'idempotency-key': key });
  await sleep(2000);
  const retryLater = await retrier.call('POST', h.url, body, { 'idempotency-key': key });
  const inDb = await h.raw.db(h.keyVaultDb).collection('employees').countDocuments({ name: body.document.name });
  t.comment(
    `RESULT ${JSON.stringify({
      fault: 'idempotency-claim-then-outage',
      firstAnswer: `${first.statusCode} ${first.json().code}`,
      firstMs,
      readyAgainMs: readyMs,
      claimReleasedMs: stored === null ? releasedMs : null,
      claimLeftBehind: stored ? { state: stored.state } : null,
      retry: `${retry.statusCode} ${retry.statusCode >= 400 ? retry.json().code : ''}`,
      retryAfter2s: `${retryLater.statusCode} ${retryLater.statusCode >= 400 ? retryLater.json().code : ''}`,
      documentsWithThatBody: inDb,
    })}`,
  );
  t.equal(stored, null, 'no pending claim is left behind once MongoDB is back');
  t.equal(retry.statusCode, 201, `a retry with the same key and body runs again: ${retry.body}`);
  t.equal(retryLater.statusCode, 201, `and is then replayed: ${retryLater.body}`);
  t.equal(retryLater.headers['idempotent-replayed'], 'true', 'the second retry is the stored answer');
  t.equal(inDb, 1, 'exactly one document for the Idempotency-Key');
});

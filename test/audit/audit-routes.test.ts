import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';

t.test('every operation leaves audit events, chained so tampering or removal is detected', async (t) => {
  const app = await createTestApp(t);
  const audit = app.mongo.db(app.keyVaultDb).collection('__audit');
  const key = (await app.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['audited'] })).json().id;
  const ct = (await app.call('POST', '/encrypt', { value: 'CANARY-audit-value', algorithm: 'deterministic', keyId: key })).json().ciphertext;
  await app.call('POST', '/decrypt', { ciphertext: ct });
  await app.call('POST', '/decrypt', { ciphertext: 'AAAA' });

  const page = await app.call('GET', '/audit?limit=100');
  t.equal(page.statusCode, 200, page.body);
  const events = page.json().items as { action: string; outcome: string; keyIds?: string[]; clientId: string; requestId: string }[];
  const actions = events.map((e) => `${e.action}:${e.outcome}`);
  for (const expected of ['keys.create:started', 'keys.create:succeeded', 'crypto.encrypt:succeeded', 'crypto.decrypt:succeeded', 'crypto.decrypt:failed']) {
    t.ok(actions.includes(expected), `${expected} recorded`);
  }
  // Side-effect-free operations record one event, with their outcome; changes also a `started` one.
  t.notOk(actions.includes('crypto.encrypt:started') || actions.includes('crypto.decrypt:started'), 'no started event for encrypt and decrypt');
  t.ok(events.find((e) => e.action === 'crypto.encrypt' && e.outcome === 'succeeded')!.keyIds!.includes(key), 'key ids are recorded');
  t.ok(events.every((e) => e.clientId === 'admin'));
  t.notMatch(page.body, /CANARY/, 'never values');

  const clean = (await app.call('GET', '/audit/verify')).json();
  t.equal(clean.valid, true, 'a clean chain verifies');
  t.same(clean.problems, []);
  t.ok(clean.checked >= 6, `${clean.checked} events checked`);
  t.equal(clean.fromCheckpoint, 0, 'the first verification starts at the first event');

  // The next verification starts at the checkpoint the first one signed: it reads only what is new.
  await app.call('POST', '/encrypt', { value: 'more', algorithm: 'random', keyId: key });
  const incremental = (await app.call('GET', '/audit/verify')).json();
  t.equal(incremental.valid, true);
  t.equal(incremental.fromCheckpoint, 1);
  t.ok(incremental.checked < clean.checked, `only the new events are read (${incremental.checked})`);

  const victim = await audit.findOne({ action: 'crypto.decrypt', outcome: 'succeeded' });
  await audit.updateOne({ _id: victim!._id }, { $set: { clientId: 'someone-else' } });
  const tampered = (await app.call('GET', '/audit/verify?full=true')).json();
  t.equal(tampered.valid, false);
  t.ok(tampered.problems.some((p: { problem: string }) => p.problem === 'tampered'), 'an edited event is detected by a full verification');
  await audit.updateOne({ _id: victim!._id }, { $set: { clientId: victim!.clientId } });

  const removed = await audit.findOne({ action: 'keys.create', outcome: 'started' });
  await audit.deleteOne({ _id: removed!._id });
  const gap = (await app.call('GET', '/audit/verify?full=true')).json();
  t.equal(gap.valid, false);
  t.ok(gap.problems.some((p: { problem: string }) => p.problem === 'missing'), 'a removed event is detected');
  await audit.insertOne(removed!);

  // The newest events removed: the chain ends before the head its instance published.
  await app.app.audit.flush(5000);
  const newest = await audit.find({}).sort({ seq: -1 }).limit(2).toArray();
  await audit.deleteMany({ _id: { $in: newest.map((d) => d._id) } });
  const cut = await app.app.audit.verify({ full: true });
  t.equal(cut.valid, false);
  t.ok(cut.problems.some((p) => p.problem === 'truncated'), 'a chain whose newest events were removed is reported');
});

t.test('database mode fails closed: with the audit store down, operations answer 503 and nothing happens', async (t) => {
  const h = await createTestApp(t, { env: { AUDIT_MODE: 'database', AUDIT_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300' } });
  const before = (await keyVaultDocs(h)).length;
  const created = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['never-written'] });
  t.equal(created.statusCode, 503);
  t.equal(created.json().code, 'AUDIT_UNAVAILABLE');
  t.equal(created.headers['retry-after'], '5');
  t.equal((await keyVaultDocs(h)).length, before, 'no key document was written');
  const enc = await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'never-written' });
  t.equal(enc.statusCode, 503);
  const live = await h.app.inject({ method: 'GET', url: '/health/live' });
  t.equal(live.statusCode, 200, 'health probes are not audited');
});

t.test('document operations record the collection and its encrypted field paths, never values', async (t) => {
  const { createDocumentsApp } = await import('../helpers/documents.js');
  const h = await createDocumentsApp(t);
  await h.call('POST', `/documents/${h.ns}`, { document: { name: 'x', tenantKey: 'tenant-a', ssn: 'CANARY-audit-ssn' } });
  const events = (await h.call('GET', '/audit?action=documents.insert')).json().items as { outcome: string; collection: string; paths: string[] }[];
  const done = events.find((e) => e.outcome === 'succeeded')!;
  t.equal(done.collection, h.ns);
  t.ok(done.paths.includes('ssn') && done.paths.includes('medical.diagnosis'));
  t.notMatch(JSON.stringify(events), /CANARY/);
});

t.test('spool mode fails closed: once the records waiting for the database pass the bound, operations answer 503', async (t) => {
  const h = await createTestApp(t, {
    env: { AUDIT_SPOOL_MAX_BACKLOG: '100', AUDIT_URI: 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300' },
  });
  const key = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['spooled'] })).json().id;
  t.ok(key, 'with the audit database away, the spool still takes events');
  let answered = 0;
  let refused = 0;
  for (let i = 0; i < 120; i++) {
    const res = await h.call('POST', '/encrypt', { value: `v${i}`, algorithm: 'random', keyId: key });
    if (res.statusCode === 200) answered++;
    else if (res.statusCode === 503 && res.json().code === 'AUDIT_UNAVAILABLE') refused++;
  }
  t.equal(answered + refused, 120, 'every answer is a 200 or a 503 AUDIT_UNAVAILABLE');
  t.ok(answered >= 90 && answered <= 100, `answered up to the bound (${answered}), then refused (${refused})`);
  const created = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['over-the-bound'] });
  t.equal(created.statusCode, 503);
  t.equal((await keyVaultDocs(h)).filter((k) => k.keyAltNames?.includes('over-the-bound')).length, 0, 'no key document was written');
  t.equal(h.app.audit.status().backlog, 100);
});

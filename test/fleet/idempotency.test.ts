/**
 * An Idempotency-Key is honoured across instances: the claim and the answer live in MongoDB, so a
 * retry through another instance replays the first answer, and requests racing through two
 * instances execute once.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { createDocumentsApp } from '../helpers/documents.js';

t.test('sequential: a retry through the other instance replays the first answer', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  const body = { masterKey: { provider: 'local' }, keyAltNames: ['idem-seq'] };
  const first = await a.call('POST', '/keys', body, { 'idempotency-key': 'seq-1' });
  t.equal(first.statusCode, 201);
  const retry = await b.call('POST', '/keys', body, { 'idempotency-key': 'seq-1' });
  t.equal(retry.statusCode, 201);
  t.equal(retry.headers['idempotent-replayed'], 'true', 'B replays');
  t.equal(retry.json().id, first.json().id, 'the same key');
  t.equal((await keyVaultDocs(a)).length, 1, 'one key was created');
  const reused = await b.call('POST', '/keys', { ...body, keyAltNames: ['idem-other'] }, { 'idempotency-key': 'seq-1' });
  t.equal(reused.json().code, 'IDEMPOTENCY_KEY_REUSED', 'another request under the key is refused through B too');
});

t.test('concurrent: the same key through both instances at once executes once, every round', async (t) => {
  const h = await createDocumentsApp(t);
  const b = await createTestApp(t, { share: h, env: { SCHEMAS_DIR: h.schemasDir } });
  const employees = h.mongo.db(h.keyVaultDb).collection('employees');
  const keysBefore = (await keyVaultDocs(h)).length;
  const statuses: Record<string, number> = {};
  for (let round = 0; round < 12; round++) {
    const key = `race-${round}`;
    const doc = { document: { name: `idem-${round}`, ssn: `SSN-${round}`, tenantKey: 'tenant-a' } };
    const keyBody = { masterKey: { provider: 'local' }, keyAltNames: [`idem-key-${round}`] };
    const answers = await Promise.all([
      ...[h, b, h, b].map((app) => app.call('POST', `/documents/${h.ns}`, doc, { 'idempotency-key': key })),
      ...[b, h, b, h].map((app) => app.call('POST', '/keys', keyBody, { 'idempotency-key': key })),
    ]);
    for (const res of answers) {
      const label = `${res.statusCode}${res.statusCode === 409 ? ` ${res.json().code}` : ''}${res.headers['idempotent-replayed'] ? ' replayed' : ''}`;
      statuses[label] = (statuses[label] ?? 0) + 1;
      t.ok(res.statusCode === 201 || (res.statusCode === 409 && res.json().code === 'IDEMPOTENCY_IN_PROGRESS'), `round ${round}: ${res.statusCode}`);
    }
    t.equal(await employees.countDocuments({ name: `idem-${round}` }), 1, `round ${round}: one document inserted`);
    t.equal((await keyVaultDocs(h)).filter((k) => (k.keyAltNames ?? []).includes(`idem-key-${round}`)).length, 1, `round ${round}: one key created`);
    // Once the first is done, a retry through either instance replays it.
    const replay = await b.call('POST', `/documents/${h.ns}`, doc, { 'idempotency-key': key });
    t.equal(replay.headers['idempotent-replayed'], 'true');
    const firstDone = answers.slice(0, 4).find((res) => res.statusCode === 201 && res.headers['idempotent-replayed'] === undefined);
    t.same(replay.json(), firstDone?.json(), `round ${round}: the replay is the first answer`);
  }
  t.equal((await keyVaultDocs(h)).length, keysBefore + 12);
  t.comment(`answers: ${JSON.stringify(statuses)}`);
});

t.test('a claim left by a dead instance is taken over by one request only, even when retries race through both instances', async (t) => {
  const h = await createDocumentsApp(t);
  const b = await createTestApp(t, { share: h, env: { SCHEMAS_DIR: h.schemasDir } });
  const employees = h.mongo.db(h.keyVaultDb).collection('employees');
  const records = h.mongo.db(h.keyVaultDb).collection<Record<string, unknown>>('__idempotency');
  const { createHash } = await import('node:crypto');
  let doubles = 0;
  for (let round = 0; round < 15; round++) {
    const key = `dead-${round}`;
    const url = `/documents/${h.ns}`;
    const doc = { document: { name: `dead-${round}`, ssn: `SSN-d${round}`, tenantKey: 'tenant-a' } };
    // What an instance killed mid-request leaves: a pending claim past its deadline.
    const now = Date.now();
    await records.insertOne({
      _id: ['admin', 'POST', url, key].join('|') as never,
      hash: createHash('sha256').update(JSON.stringify([{ ns: h.ns }, doc])).digest('hex'),
      state: 'pending',
      createdAt: new Date(now - 60_000),
      expiresAt: new Date(now + 3_600_000),
      pendingUntil: new Date(now - 1000),
      token: `dead-token-${round}`,
    });
    const answers = await Promise.all([h, b, h, b, h, b].map((app) => app.call('POST', url, doc, { 'idempotency-key': key })));
    const inserted = await employees.countDocuments({ name: `dead-${round}` });
    if (inserted > 1) doubles++;
    t.ok(inserted <= 1, `round ${round}: executed at most once (${answers.map((r) => r.statusCode).join(',')})`);
    t.ok(answers.every((r) => r.statusCode === 201 || r.json().code === 'IDEMPOTENCY_IN_PROGRESS'), `round ${round}: 201 or 409 IN_PROGRESS`);
  }
  t.equal(doubles, 0, 'no dead claim was taken over twice');
});

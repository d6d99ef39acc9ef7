/**
 * Spec prose test 14, "Decryption Events", over HTTP. The spec checks that a driver reports a
 * decryption failure as an error after the database command itself succeeded, and a good
 * ciphertext as a success. Here the events are the answers and the audit trail:
 * - case 3 (decrypt error): the spec's malformed ciphertext (last byte changed, so the HMAC tag is
 *   wrong) gives the one generic 400 DECRYPTION_FAILED on POST /decrypt, exactly the answer of any
 *   other undecryptable input, and the audit records crypto.decrypt failed with that code; read
 *   through the documents API, the read fails as a driver's does (422 UNREADABLE_VALUE naming the
 *   document and field, nothing of it released), and on request (?onUnreadable=report) the field
 *   comes back null and listed as unreadable, never as ciphertext or plaintext;
 * - case 4 (decrypt success): the good ciphertext decrypts to "hello", audited as succeeded with
 *   the key id.
 * Cases 1 and 2 (a command error and a network error on `aggregate`) are driven by the server's
 * `failCommand` fail point, a mongod test command FerretDB does not have: not applicable here
 * (the service's own database faults are covered by test/faults/*).
 */
import t from 'tap';
import { Binary } from 'mongodb';
import { createDocumentsApp, DET } from '../helpers/documents.js';
import { proseSummary } from './prose.js';

const summary = proseSummary(t, 14);
summary.notApplicable('cases 1-2: failCommand fail points are a mongod test command FerretDB lacks');

type AuditItem = { action: string; outcome: string; code?: string; status?: number; keyIds?: string[]; requestId: string };

t.test('cases 3 and 4: a malformed ciphertext fails with the generic DECRYPTION_FAILED, a good one decrypts, both audited', async (t) => {
  summary.track(t);
  const h = await createDocumentsApp(t);
  const keyId = (await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).json().id as string;
  const enc = await h.call('POST', '/encrypt', { value: 'hello', algorithm: DET, keyId });
  t.equal(enc.statusCode, 200, enc.body);
  const ciphertext = Buffer.from(enc.json().ciphertext, 'base64');
  const malformed = Buffer.from(ciphertext);
  malformed[malformed.length - 1]! ^= 0xff;

  const bad = await h.call('POST', '/decrypt', { ciphertext: malformed.toString('base64') });
  t.equal(bad.statusCode, 400, 'case 3: the malformed ciphertext is refused');
  t.equal(bad.json().code, 'DECRYPTION_FAILED');
  const garbage = await h.call('POST', '/decrypt', { ciphertext: Buffer.from('not a ciphertext at all').toString('base64') });
  t.same(
    { ...bad.json(), instance: undefined, requestId: undefined },
    { ...garbage.json(), instance: undefined, requestId: undefined },
    'the one generic answer: a wrong tag reads exactly like garbage',
  );
  t.notMatch(bad.body, /hello|hmac|tag|padding/i, 'nothing about why, nothing of the value');

  const good = await h.call('POST', '/decrypt', { ciphertext: ciphertext.toString('base64') });
  t.equal(good.statusCode, 200, 'case 4: the good ciphertext decrypts');
  t.equal(good.json().value, 'hello');

  const events = (await h.call('GET', '/audit?action=crypto.decrypt&limit=100')).json().items as AuditItem[];
  const failed = events.filter((e) => e.outcome === 'failed');
  t.ok(
    failed.some((e) => e.code === 'DECRYPTION_FAILED' && e.status === 400),
    `the failure is audited as crypto.decrypt failed, DECRYPTION_FAILED: ${JSON.stringify(failed)}`,
  );
  t.ok(
    events.some((e) => e.outcome === 'succeeded' && e.keyIds?.includes(keyId)),
    'the success is audited as crypto.decrypt succeeded, with the key id',
  );
});

t.test('case 3 through the documents API: the read fails naming the tampered field (or reports it as null on request), the good one decrypts', async (t) => {
  summary.track(t);
  const h = await createDocumentsApp(t);
  const good = await h.call('POST', `/documents/${h.ns}`, { document: { _id: 'good', name: 'a', tenantKey: 'tenant-a', ssn: 'hello' } });
  const bad = await h.call('POST', `/documents/${h.ns}`, { document: { _id: 'bad', name: 'b', tenantKey: 'tenant-a', ssn: 'hello' } });
  t.equal(good.statusCode, 201, good.body);
  t.equal(bad.statusCode, 201, bad.body);

  // The malformed ciphertext reaches the database the way the spec puts it there: written raw.
  const coll = h.mongo.db(h.keyVaultDb).collection<Record<string, any>>('employees');
  const stored = (await coll.findOne({ _id: 'bad' as any }))!.ssn as Binary;
  t.equal(stored.sub_type, 6, 'the stored ssn is a ciphertext');
  const tampered = Buffer.from(stored.buffer);
  tampered[tampered.length - 1]! ^= 0xff;
  await coll.updateOne({ _id: 'bad' as any }, { $set: { ssn: new Binary(tampered, 6) } });

  const failed = await h.call('GET', `/documents/${h.ns}/bad`);
  t.equal(failed.statusCode, 422, 'the read fails, as a driver\'s does');
  t.equal(failed.json().code, 'UNREADABLE_VALUE');
  t.match(failed.json().detail, /ssn/, 'naming the field');
  t.notMatch(failed.body, /"name"/, 'nothing of the document is released');

  const read = await h.call('GET', `/documents/${h.ns}/bad?onUnreadable=report`);
  t.equal(read.statusCode, 200, 'reported on request');
  t.equal(read.json().document.ssn, null, 'the undecryptable field is null, not ciphertext');
  t.same(read.json().unreadable, ['ssn'], 'and named as unreadable');
  t.equal(read.json().document.name, 'b', 'the rest of the document is there');

  const fine = await h.call('GET', `/documents/${h.ns}/good`);
  t.equal(fine.statusCode, 200);
  t.equal(fine.json().document.ssn, 'hello', 'case 4: the good one decrypts');
  t.notOk(fine.json().unreadable);

  const events = (await h.call('GET', '/audit?action=documents.get&limit=100')).json().items as AuditItem[];
  t.equal(events.filter((e) => e.outcome === 'succeeded').length, 2, 'the reported read and the good one are audited as documents.get succeeded');
  t.equal(events.filter((e) => e.outcome === 'failed').length, 1, 'the failed read as failed');
});

/**
 * A stored value that cannot be decrypted fails the read by default, as the drivers' automatic
 * decryption does (malformedCiphertext.json): 422 UNREADABLE_VALUE naming the _id and the field,
 * nothing of the document released. `?onUnreadable=report` keeps the old answer (null, listed)
 * for exports. Masking is not unreadability. Over HTTP, on the real database.
 */
import t, { type Test } from 'tap';
import { Binary } from 'mongodb';
import { enforceUnreadablePolicy } from '../../src/documents/unreadable-values.js';
import { AppError } from '../../src/errors.js';
import { createDocumentsApp, type DocumentsTestApp } from '../helpers/documents.js';

t.test('enforceUnreadablePolicy: the first bad document and field, or nothing with report', async (t) => {
  const docs = [{ _id: 1 }, { _id: 'b' }];
  t.doesNotThrow(() => enforceUnreadablePolicy(docs, new Map()));
  t.doesNotThrow(() => enforceUnreadablePolicy(docs, new Map([[1, ['x']]]), 'report'));
  try {
    enforceUnreadablePolicy(docs, new Map([[1, ['x', 'y.z']]]));
    t.fail('expected a throw');
  } catch (err) {
    t.ok(err instanceof AppError);
    t.equal((err as AppError).code, 'UNREADABLE_VALUE');
    t.equal((err as AppError).status, 422);
    t.match((err as AppError).detail, /^The document with _id "b": x \(and 1 more field\) could not be decrypted/);
  }
  t.throws(() => enforceUnreadablePolicy([{}], new Map([[0, ['x']]])), /without _id/);
});

const CANARY = 'CANARY-unreadable-neighbour';

async function withBadValue(t: Test): Promise<{ h: DocumentsTestApp; url: string }> {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const people = [
    { _id: 1, name: 'good', ssn: '111-11-1111', badge: 1, tenantKey: 'tenant-a' },
    { _id: 2, name: CANARY, ssn: '222-22-2222', badge: 2, tenantKey: 'tenant-a' },
  ];
  t.equal((await h.call('POST', url, { documents: people })).json().inserted, 2);
  // Tamper with the ciphertext of document 2's ssn: its HMAC no longer verifies.
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const stored = (await raw.findOne({ _id: 2 as never }))!.ssn as Binary;
  const bytes = Buffer.from(stored.buffer);
  bytes[bytes.length - 1] = bytes.at(-1)! ^ 0xff;
  await raw.updateOne({ _id: 2 as never }, { $set: { ssn: new Binary(bytes, 6) } });
  return { h, url };
}

t.test('every read path fails on an unreadable value by default, naming the document and field, releasing nothing', async (t) => {
  const { h, url } = await withBadValue(t);
  const reads: [string, string, string, unknown][] = [
    ['POST find', 'POST', `${url}/find`, { filter: {} }],
    ['GET find', 'GET', `${url}?filter=${encodeURIComponent('{"name":{"$exists":true}}')}`, undefined],
    ['GET by id', 'GET', `${url}/2`.replace(/\/2$/, `/${encodeURIComponent('{"$numberInt":"2"}')}`), undefined],
    ['aggregate', 'POST', `${url}/aggregate`, { pipeline: [{ $sort: { _id: 1 } }] }],
    ['distinct', 'POST', `${url}/distinct`, { key: 'ssn' }],
  ];
  for (const [what, method, path, body] of reads) {
    const res = await h.call(method as 'POST', path, body);
    t.equal(res.statusCode, 422, `${what}: ${res.body}`);
    t.equal(res.json().code, 'UNREADABLE_VALUE', what);
    t.match(res.json().detail, /ssn(\.\d+)? could not be decrypted/, `${what}: names the field`);
    if (what !== 'distinct') t.match(res.json().detail, /_id \{"\$numberInt":"2"\}/, `${what}: names the document`);
    t.notMatch(res.body, new RegExp(`${CANARY}|111-11-1111|good`), `${what}: nothing of any document is answered`);
  }

  // The good document alone still reads; the bad one with a report: null and listed.
  t.equal((await h.call('GET', `${url}/${encodeURIComponent('{"$numberInt":"1"}')}`)).json().document.ssn, '111-11-1111');
  const report = await h.call('POST', `${url}/find?onUnreadable=report`, { filter: {} });
  t.equal(report.statusCode, 200, report.body);
  t.same(report.json().items.map((d: { ssn: unknown }) => d.ssn), ['111-11-1111', null]);
  t.same(report.json().unreadable, [{ index: 1, _id: 2, paths: ['ssn'] }]);
  const got = await h.call('GET', `${url}/${encodeURIComponent('{"$numberInt":"2"}')}?onUnreadable=report`);
  t.same([got.json().document.ssn, got.json().unreadable], [null, ['ssn']]);
  const agg = await h.call('POST', `${url}/aggregate?onUnreadable=report`, { pipeline: [{ $match: { _id: 2 } }] });
  t.same([agg.json().items[0].ssn, agg.json().unreadable], [null, [{ index: 0, _id: 2, paths: ['ssn'] }]]);
  const distinct = await h.call('POST', `${url}/distinct?onUnreadable=report`, { key: 'ssn' });
  t.equal(distinct.json().unreadable, 1);
  t.same(new Set(distinct.json().values), new Set(['111-11-1111', null]), 'the unreadable value is one null');
  const badPolicy = await h.call('POST', `${url}/find?onUnreadable=ignore`, { filter: {} });
  t.same([badPolicy.statusCode, badPolicy.json().code], [400, 'VALIDATION_FAILED']);
});

t.test('masking is not unreadability, and a failure says nothing of why to a caller without the key', async (t) => {
  const { h, url } = await withBadValue(t);
  const res = await h.call('POST', '/clients', { name: 'masked-reader', grants: [{ scope: `documents:${h.ns}:read` }] });
  const token = res.json().token as string;
  const masked = await h.app.inject({ method: 'POST', url: `${url}/find`, headers: { authorization: `Bearer ${token}` }, payload: { filter: {} } });
  t.equal(masked.statusCode, 200, 'no decrypt grant: every encrypted field is masked, the tampered one too (no oracle about it)');
  t.same(masked.json().items.map((d: { ssn: unknown }) => d.ssn), [null, null]);
  t.notOk(masked.json().unreadable);
  t.same(masked.json().masked.map((m: { paths: string[] }) => m.paths), [['ssn', 'badge'], ['ssn', 'badge']]);
});

t.test('malformedCiphertext.json: empty data, a key no vault has, a bad HMAC: one answer, no oracle about why', async (t) => {
  const { h, url } = await withBadValue(t);
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const good = (await raw.findOne({ _id: 1 as never }))!.ssn as Binary;
  const unknownKey = Buffer.from(good.buffer);
  unknownKey.fill(0xab, 1, 17); // the key id of the payload: no such data key
  const details = new Set<string>();
  for (const [what, value] of [
    ['a bad HMAC (document 2 as seeded)', undefined],
    ['empty data', new Binary(Buffer.alloc(0), 6)],
    ['a key no vault has', new Binary(unknownKey, 6)],
  ] as const) {
    if (value !== undefined) await raw.updateOne({ _id: 2 as never }, { $set: { ssn: value } });
    const res = await h.call('GET', `${url}/${encodeURIComponent('{"$numberInt":"2"}')}`);
    t.same([res.statusCode, res.json().code], [422, 'UNREADABLE_VALUE'], `${what}: ${res.body}`);
    details.add(res.json().detail);
    const reported = await h.call('GET', `${url}/${encodeURIComponent('{"$numberInt":"2"}')}?onUnreadable=report`);
    t.same([reported.json().document.ssn, reported.json().unreadable], [null, ['ssn']], `${what}: reported as null`);
  }
  t.equal(details.size, 1, 'the same detail whatever the cause');
});

t.test('an idempotent findOneAnd* whose answer could not be read is done: its retry reads again, never writes again', async (t) => {
  const { h, url } = await withBadValue(t);
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const body = { filter: { _id: 2 }, update: { $inc: { level: { $numberInt: '1' } } }, upsert: false, returnDocument: 'after' };
  const first = await h.call('POST', `${url}/find-one-and-update`, body, { 'idempotency-key': 'unreadable-1' });
  t.same([first.statusCode, first.json().code], [422, 'UNREADABLE_VALUE'], first.body);
  t.match(first.json().detail, /The write was applied/);
  const retry = await h.call('POST', `${url}/find-one-and-update?onUnreadable=report`, body, { 'idempotency-key': 'unreadable-1' });
  t.equal(retry.statusCode, 200, retry.body);
  t.equal(retry.headers['idempotent-replayed'], 'true');
  t.same([retry.json().document.level, retry.json().document.ssn, retry.json().unreadable], [1, null, ['ssn']], 'the document the write left, read again');
  t.equal((await raw.findOne({ _id: 2 as never }))!.level, 1, 'the $inc was applied once');
});

import t from 'tap';
import { BSON } from 'mongodb';
import { createDocumentsApp } from '../helpers/documents.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const person = (name: string, tenant: string, extra: Record<string, unknown> = {}) => ({
  name,
  tenantKey: tenant,
  ssn: `SSN-${name}`,
  tenantSecret: `SECRET-${name}`,
  ...extra,
});

t.test('a batch insert answers per document and never writes a half-encrypted one', async (t) => {
  const h = await createDocumentsApp(t);
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const res = await h.call('POST', `/documents/${h.ns}`, {
    documents: [
      person('ok-1', 'tenant-a'),
      person('bad-type', 'tenant-a', { salary: 'a lot' }),
      person('unknown-tenant', 'tenant-nobody'),
      { name: 'missing-ssn', tenantKey: 'tenant-a' },
      person('extra-field', 'tenant-b', { hobby: 'golf' }),
      person('deterministic-double', 'tenant-b', { badge: 1.5 }),
      person('ok-2', 'tenant-b', { _id: 'fixed-id' }),
      person('dup', 'tenant-b', { _id: 'fixed-id' }),
      person('ok-3', 'tenant-a', { medical: { diagnosis: 'flu', ward: 'east' } }),
    ],
  });
  t.equal(res.statusCode, 200, res.body);
  const items = res.json().items as { index: number; insertedId?: unknown; error?: { code: string; detail?: string } }[];
  t.equal(res.json().inserted, 3);
  t.equal(res.json().failed, 6);
  t.ok(items[0]!.insertedId);
  t.equal(items[1]!.error!.code, 'DOCUMENT_VALIDATION_FAILED');
  t.match(items[1]!.error!.detail, /salary/);
  t.equal(items[2]!.error!.code, 'UNKNOWN_KEY_ALT_NAME');
  t.match(items[2]!.error!.detail, /tenantSecret/);
  t.equal(items[3]!.error!.code, 'DOCUMENT_VALIDATION_FAILED');
  t.match(items[3]!.error!.detail, /ssn/);
  t.equal(items[4]!.error!.code, 'DOCUMENT_VALIDATION_FAILED');
  t.match(items[4]!.error!.detail, /hobby/);
  t.equal(items[5]!.error!.code, 'DOCUMENT_VALIDATION_FAILED');
  t.same(items[6]!.insertedId, 'fixed-id');
  t.equal(items[7]!.error!.code, 'DUPLICATE_DOCUMENT');
  t.ok(items[8]!.insertedId);

  const stored = await raw.find({}).toArray();
  t.same(stored.map((d) => d.name).sort(), ['ok-1', 'ok-2', 'ok-3']);
  t.notMatch(EJSON.stringify(stored), /SSN-|SECRET-|flu/, 'every written document is fully encrypted');

  const single = await h.call('POST', `/documents/${h.ns}`, { document: person('lonely', 'tenant-nobody') });
  t.equal(single.statusCode, 422);
  t.equal(single.json().code, 'UNKNOWN_KEY_ALT_NAME');
  const dup = await h.call('POST', `/documents/${h.ns}`, { document: person('again', 'tenant-a', { _id: 'fixed-id' }) });
  t.equal(dup.statusCode, 409);
  t.equal(await raw.countDocuments(), 3, 'refused single inserts wrote nothing');
});

t.test("deleting a tenant's key makes exactly that tenant's fields unreadable", async (t) => {
  const h = await createDocumentsApp(t);
  for (const [name, tenant] of [['a1', 'tenant-a'], ['b1', 'tenant-b'], ['a2', 'tenant-a'], ['b2', 'tenant-b']] as const) {
    t.equal((await h.call('POST', `/documents/${h.ns}`, { document: person(name, tenant) })).statusCode, 201);
  }
  t.equal((await h.call('DELETE', `/keys/${h.keys['tenant-a']}`)).statusCode, 204);

  const refused = await h.call('POST', `/documents/${h.ns}/find`, { filter: {}, sort: { name: 1 } });
  t.equal(refused.statusCode, 422, 'by default the read fails, naming the document and field: never a 500');
  t.equal(refused.json().code, 'UNREADABLE_VALUE');
  t.match(refused.json().detail, /_id \{"\$oid":"[0-9a-f]{24}"\}: tenantSecret could not be decrypted/);
  const res = await h.call('POST', `/documents/${h.ns}/find?onUnreadable=report`, { filter: {}, sort: { name: 1 } });
  t.equal(res.statusCode, 200, 'reported on request');
  const docs = res.json().items as { name: string; ssn: string; tenantSecret: string | null }[];
  t.same(docs.map((d) => d.name), ['a1', 'a2', 'b1', 'b2']);
  t.same(docs.map((d) => d.tenantSecret), [null, null, 'SECRET-b1', 'SECRET-b2'], 'tenant-a secrets are gone, tenant-b intact');
  t.same(docs.map((d) => d.ssn), ['SSN-a1', 'SSN-a2', 'SSN-b1', 'SSN-b2'], 'fields under shared keys still read');
  t.same(res.json().unreadable, [
    { index: 0, _id: (docs[0] as unknown as { _id: unknown })._id, paths: ['tenantSecret'] },
    { index: 1, _id: (docs[1] as unknown as { _id: unknown })._id, paths: ['tenantSecret'] },
  ]);
  const oneUrl = `/documents/${h.ns}/${(docs[0] as unknown as { _id: { $oid: string } })._id.$oid}`;
  t.equal((await h.call('GET', oneUrl)).json().code, 'UNREADABLE_VALUE');
  const one = await h.call('GET', `${oneUrl}?onUnreadable=report`);
  t.same(one.json().unreadable, ['tenantSecret']);
  t.equal(one.json().document.tenantSecret, null);
  const write = await h.call('POST', `/documents/${h.ns}`, { document: person('a3', 'tenant-a') });
  t.equal(write.json().code, 'UNKNOWN_KEY_ALT_NAME', 'no new data can be written for the erased tenant');
});

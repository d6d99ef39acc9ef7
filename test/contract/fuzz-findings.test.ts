/**
 * Concrete requests the fuzzers (schemathesis, fast-check) found answered against the contract:
 * a 5xx for a client's mistake, an operator taken from a URL, a body coerced to another type, an
 * error that is not application/problem+json. Each is a minimal reproduction.
 */
import t from 'tap';
import { createDocumentsApp } from '../helpers/documents.js';

t.test('fuzz findings', async (t) => {
  const h = await createDocumentsApp(t);
  const docs = `/documents/${h.ns}`;
  const ids: string[] = [];
  for (const name of ['Ada', 'Bob', 'Cy']) {
    const res = await h.call('POST', docs, { document: { name, ssn: `ssn-${name}`, tenantKey: 'tenant-a' } });
    ids.push(res.json().insertedId.$oid);
  }
  const count = async () => (await h.call('POST', `${docs}/count`, { filter: {} })).json().count as number;

  t.test('a document id in the path is a value, never a query operator', async (t) => {
    // {"$ne":1} parsed as Extended JSON became {_id: {$ne: 1}}: any document matched.
    const injected = encodeURIComponent('{"$ne":1}');
    const get = await h.call('GET', `${docs}/${injected}`);
    t.not(get.statusCode, 200, 'GET does not answer another document');
    const patch = await h.call('PATCH', `${docs}/${injected}`, { update: { $set: { name: 'changed' } } });
    t.not(patch.statusCode, 200, 'PATCH does not change another document');
    const del = await h.call('DELETE', `${docs}/${injected}`);
    t.not(del.statusCode, 204, 'DELETE does not delete another document');
    t.equal(await count(), 3, 'every document is still there');
    const names = (await h.call('POST', `${docs}/find`, { filter: {} })).json().items.map((d: { name: string }) => d.name);
    t.same(names, ['Ada', 'Bob', 'Cy']);
  });

  t.test('malformed field paths are a 400 query error, not 500', async (t) => {
    const cases: [string, string, unknown][] = [
      ['POST', `${docs}/find`, { sort: { '': 1 } }],
      ['POST', `${docs}/find`, { sort: { 'a..b': 1 } }],
      ['POST', `${docs}/find`, { projection: { '': 1 } }],
      ['POST', `${docs}/find`, { projection: { a$: 0 } }],
      ['POST', `${docs}/find`, { filter: { 'a.': 1 } }],
      ['POST', `${docs}/count`, { filter: { 'a.': 1 } }],
      ['POST', `${docs}/delete`, { filter: { 'a.': 1 } }],
      ['GET', `${docs}?filter=${encodeURIComponent('{"a.":1}')}`, undefined],
      ['GET', `${docs}?sort=${encodeURIComponent('{"":1}')}`, undefined],
    ];
    for (const [method, url, body] of cases) {
      const res = await h.call(method as 'GET', url, body);
      const what = `${method} ${url.replace(h.ns, '{ns}')} ${JSON.stringify(body) ?? ''}`;
      t.equal(res.statusCode, 400, what);
      t.match(res.json().code, /^(INVALID_QUERY|QUERY_OPERATOR_NOT_ALLOWED)$/, what);
    }
  });

  t.test('an _id the database cannot store is a 400, not 500', async (t) => {
    for (const _id of [[1], { $regularExpression: { pattern: 'a', options: '' } }]) {
      const res = await h.call('POST', docs, { document: { _id, name: 'Dee', ssn: 'x', tenantKey: 'tenant-a' } });
      t.equal(res.statusCode, 400, JSON.stringify(_id));
    }
  });

  t.test('JSON bodies are not coerced to the schema type', async (t) => {
    // ajv coerceTypes 'array' applies to bodies too: false became "false", null became false or "".
    const created = await h.call('POST', '/clients', { name: 'c', grants: [], certSubject: false });
    t.equal(created.statusCode, 400, 'certSubject: false is refused, not stored as "false"');
    const client = await h.call('POST', '/clients', { name: 'c2', grants: [] });
    const id = client.json().client.id as string;
    await h.call('PATCH', `/clients/${id}`, { disabled: true });
    const patched = await h.call('PATCH', `/clients/${id}`, { disabled: null });
    t.equal(patched.statusCode, 400, 'disabled: null is refused, does not re-enable the client');
    const alt = await h.call('POST', `/keys/${h.keys['hr-det']}/alt-names`, { keyAltName: false });
    t.equal(alt.statusCode, 400, 'keyAltName: false is refused, not added as "false"');
    const ref = await h.call('POST', '/decrypt', { items: [{ ciphertext: 'AAAA', reference: null }] });
    t.equal(ref.statusCode, 400, 'reference: null is refused, not echoed as ""');
  });

  t.test('a key alt name of the allowed length (up to 255) can be looked up and removed', async (t) => {
    // Fastify's default maxParamLength (100) answered 414 with a non-problem body.
    const name = 'n'.repeat(150);
    const created = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
    t.equal(created.statusCode, 201);
    const got = await h.call('GET', `/keys/by-alt-name/${name}`);
    t.equal(got.statusCode, 200);
    const removed = await h.call('DELETE', `/keys/${created.json().id}/alt-names/${name}`);
    t.equal(removed.statusCode, 200);
    const tooLong = await h.call('GET', `/keys/by-alt-name/${'n'.repeat(300)}`);
    t.match(tooLong.headers['content-type'], /^application\/problem\+json/, 'even a too-long parameter gets a problem document');
  });

  t.test('a BSON timestamp comes back a timestamp from /decrypt (relaxed, the default)', async (t) => {
    const ts = { $timestamp: { t: 1700000000, i: 1 } };
    const enc = await h.call('POST', '/encrypt', { value: ts, algorithm: 'random', keyAltName: 'hr-rnd' });
    const dec = await h.call('POST', '/decrypt', { ciphertext: enc.json().ciphertext });
    t.same(dec.json().value, ts);
  });
});

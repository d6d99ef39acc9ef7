import t from 'tap';
import { createDocumentsApp } from '../helpers/documents.js';

t.test('key-level grants: the right to the key inside the ciphertext decides, not a login', async (t) => {
  const h = await createDocumentsApp(t);
  const as = (token: string) => (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
  const client = async (grants: unknown[]) => {
    const res = await h.call('POST', '/clients', { name: 'limited', grants });
    t.equal(res.statusCode, 201, res.body);
    return as(res.json().token);
  };
  const enc = async (keyAltName: string) =>
    (await h.call('POST', '/encrypt', { value: 'secret', algorithm: 'random', keyAltName })).json().ciphertext as string;
  const [a, b] = [await enc('tenant-a'), await enc('tenant-b')];

  t.test('decrypt limited by alt-name pattern: own tenant 200, other tenant 403', async (t) => {
    const tenantA = await client([{ scope: 'decrypt', keyAltNames: ['tenant-a*'] }]);
    t.same((await tenantA('POST', '/decrypt', { ciphertext: a })).json(), { value: 'secret' });
    const other = await tenantA('POST', '/decrypt', { ciphertext: b });
    t.equal(other.statusCode, 403);
    t.equal(other.json().code, 'FORBIDDEN');
    t.notMatch(other.body, /secret"/);
    const batch = await tenantA('POST', '/decrypt', { items: [{ ciphertext: a }, { ciphertext: b }] });
    t.same(batch.json().items[0], { value: 'secret' });
    t.equal(batch.json().items[1].error.code, 'FORBIDDEN');
  });

  t.test('decrypt limited by key id', async (t) => {
    const byId = await client([{ scope: 'decrypt', keyIds: [h.keys['tenant-b']] }]);
    t.equal((await byId('POST', '/decrypt', { ciphertext: b })).statusCode, 200);
    t.equal((await byId('POST', '/decrypt', { ciphertext: a })).statusCode, 403);
  });

  t.test('encrypt limited to some keys', async (t) => {
    const enc = await client([{ scope: 'encrypt', keyAltNames: ['tenant-b'] }]);
    t.equal((await enc('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'tenant-b' })).statusCode, 200);
    const no = await enc('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'tenant-a' });
    t.equal(no.statusCode, 404, 'a key beyond the grants reads as one that does not exist');
  });

  t.test('keys:read limited: other keys are 404 (not revealed) and left out of lists', async (t) => {
    const reader = await client([{ scope: 'keys:read', keyAltNames: ['tenant-*'] }]);
    t.equal((await reader('GET', `/keys/${h.keys['tenant-a']}`)).statusCode, 200);
    t.equal((await reader('GET', `/keys/${h.keys['hr-det']}`)).statusCode, 404);
    const listed = (await reader('GET', '/keys?limit=1000')).json().items.map((k: { keyAltNames: string[] }) => k.keyAltNames[0]).sort();
    t.same(listed, ['tenant-a', 'tenant-b']);
  });

  t.test('documents: fields under keys the reader may not decrypt are masked, not an error', async (t) => {
    await h.call('POST', `/documents/${h.ns}`, {
      document: { name: 'Mask me', tenantKey: 'tenant-a', ssn: 'SSN-1', tenantSecret: 'TS-1', medical: { diagnosis: 'D-1', ward: 'w' } },
    });
    const reader = await client([{ scope: `documents:${h.ns}:read` }, { scope: 'decrypt', keyAltNames: ['hr-det'] }]);
    const res = await reader('POST', `/documents/${h.ns}/find`, { filter: { ssn: 'SSN-1' } });
    t.equal(res.statusCode, 200, res.body);
    const doc = res.json().items[0];
    t.equal(doc.ssn, 'SSN-1', 'a field under a granted key is decrypted');
    t.equal(doc.tenantSecret, null);
    t.equal(doc.medical.diagnosis, null);
    t.equal(doc.medical.ward, 'w');
    t.same(res.json().masked[0].paths.sort(), ['medical.diagnosis', 'tenantSecret']);
    t.notMatch(res.body, /TS-1|D-1/);
    const noDecrypt = await client([{ scope: `documents:${h.ns}:read` }]);
    const all = await noDecrypt('POST', `/documents/${h.ns}/find`, { filter: {} });
    t.equal(all.json().items[0].ssn, null, 'without any decrypt grant every encrypted field is masked');
    const otherCollection = await client([{ scope: 'documents:other.coll:read' }]);
    t.equal((await otherCollection('POST', `/documents/${h.ns}/find`, { filter: {} })).statusCode, 403);
  });

  t.test('revoked and disabled clients are refused at once', async (t) => {
    const res = await h.call('POST', '/clients', { name: 'short-lived', grants: [{ scope: 'decrypt' }] });
    const { token, client: made } = res.json();
    const use = as(token);
    t.equal((await use('POST', '/decrypt', { ciphertext: a })).statusCode, 200);
    t.equal((await h.call('PATCH', `/clients/${made.id}`, { disabled: true })).statusCode, 200);
    t.equal((await use('POST', '/decrypt', { ciphertext: a })).statusCode, 401);
    await h.call('PATCH', `/clients/${made.id}`, { disabled: false });
    t.equal((await use('POST', '/decrypt', { ciphertext: a })).statusCode, 200);
    await h.call('DELETE', `/clients/${made.id}/tokens/${made.tokens[0].id}`);
    t.equal((await use('POST', '/decrypt', { ciphertext: a })).statusCode, 401);
    const listed = await h.call('GET', `/clients/${made.id}`);
    t.notMatch(listed.body, /hash|epx_/, 'client views never show tokens or hashes');
  });
});

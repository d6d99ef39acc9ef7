/**
 * What the service does NOT protect against (docs/security.md, "What it does not protect
 * against"), shown over HTTP and with the plain driver, so the document cannot claim more than
 * the service does. A change that closes one of these gaps fails here: then change the document too.
 */
import t from 'tap';
import type { Binary } from 'mongodb';
import { createDocumentsApp, type DocumentsTestApp } from './helpers/documents.js';

function as(h: DocumentsTestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

t.test('what a database administrator sees', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const insert = async (name: string, ssn: string) => {
    const res = await h.call('POST', url, { document: { name, ssn, tenantKey: 'tenant-a', tenantSecret: 'same secret' } });
    t.equal(res.statusCode, 201, res.body);
  };
  await insert('one', 'CANARY-123-45');
  await insert('two', 'CANARY-123-45');
  await insert('three', 'CANARY-999-99');
  const stored = async (name: string) => (await raw.findOne({ name }))! as unknown as { ssn: Binary; tenantSecret: Binary; _id: unknown };
  const [one, two, three] = [await stored('one'), await stored('two'), await stored('three')];

  t.test('equal values of a deterministic field are equal bytes: equality and frequency are visible', async (t) => {
    t.equal(one.ssn.sub_type, 6, 'ciphertext, not plaintext');
    t.equal(one.ssn.toString('base64'), two.ssn.toString('base64'), 'the same ssn twice: the same bytes');
    t.not(one.ssn.toString('base64'), three.ssn.toString('base64'));
    const counts = await raw.aggregate([{ $group: { _id: '$ssn', n: { $sum: 1 } } }]).toArray();
    t.same(counts.map((c) => c.n).sort(), [1, 2], 'grouping by the ciphertext counts each value: a frequency table');
    t.not(one.tenantSecret.toString('base64'), two.tenantSecret.toString('base64'), 'random fields never repeat');
  });

  t.test('a holder of encrypt on a deterministic key computes the bytes any value is stored as', async (t) => {
    const made = await h.call('POST', '/clients', { name: 'encrypt only', grants: [{ scope: 'encrypt', keyAltNames: ['hr-det'] }] });
    const guess = await as(h, made.json().token)('POST', '/encrypt', { value: 'CANARY-123-45', algorithm: 'deterministic', keyAltName: 'hr-det' });
    t.equal(guess.statusCode, 200);
    t.equal(guess.json().ciphertext, one.ssn.toString('base64'), 'with read access to the database, a guess can be checked without decrypt');
  });

  t.test('counts and sizes are plain: a ciphertext is as long as its value, to a 16-byte block', async (t) => {
    t.equal(await raw.countDocuments({}), 3);
    const lengthOf = async (value: string) =>
      Buffer.from((await h.call('POST', '/encrypt', { value, algorithm: 'random', keyAltName: 'hr-rnd' })).json().ciphertext, 'base64').length;
    // A BSON string of n characters is n + 5 bytes: 1 and 10 characters fit one block, 12 need two.
    t.equal(await lengthOf('a'), await lengthOf('abcdefghij'));
    t.equal((await lengthOf('abcdefghijkl')) - (await lengthOf('a')), 16);
  });

  t.test('a ciphertext moved to another document decrypts there: nothing binds it to its document', async (t) => {
    await raw.updateOne({ name: 'three' }, { $set: { ssn: one.ssn } });
    const read = await h.call('GET', `${url}/${(three._id as { toHexString(): string }).toHexString()}`);
    t.equal(read.json().document.ssn, 'CANARY-123-45', "document three now answers document one's ssn");
  });

  t.test('whoever can write the clients collection grants itself anything', async (t) => {
    const made = (await h.call('POST', '/clients', { name: 'nothing granted', grants: [] })).json();
    const ciphertext = (await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'tenant-b' })).json().ciphertext;
    await h.mongo.db(h.keyVaultDb).collection('__clients').updateOne({ _id: made.client.id }, { $set: { grants: [{ scope: 'decrypt' }] } });
    t.equal((await as(h, made.token)('POST', '/decrypt', { ciphertext })).statusCode, 200, 'a grant written in the database is honoured');
  });
});

t.test('a key-limited client cannot tell a key beyond its grants from one that does not exist', async (t) => {
  const h = await createDocumentsApp(t);
  const made = await h.call('POST', '/clients', {
    name: 'tenant a',
    grants: [
      { scope: 'keys:read', keyAltNames: ['tenant-a*'] },
      { scope: 'encrypt', keyAltNames: ['tenant-a*'] },
      { scope: 'decrypt', keyAltNames: ['tenant-a*'] },
      { scope: `documents:${h.ns}:write` },
    ],
  });
  const client = as(h, made.json().token);
  const same = async (what: string, send: (name: string) => Promise<{ statusCode: number; json(): any }>) => {
    const [exists, missing] = [await send('tenant-b'), await send('tenant-zz')];
    t.equal(exists.statusCode, missing.statusCode, `${what}: the same status`);
    const strip = (body: Record<string, unknown>) => ({ ...body, instance: undefined });
    t.same(strip(exists.json()), strip(missing.json()), `${what}: the same answer`);
    t.notOk(JSON.stringify(exists.json()).includes(h.keys['tenant-b']!), `${what}: nothing of the key itself`);
  };
  await same('GET /keys/by-alt-name', (name) => client('GET', `/keys/by-alt-name/${name}`));
  await same('POST /encrypt', (name) => client('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: name }));
  await same('a document whose keyId pointer names it', (name) => client('POST', `/documents/${h.ns}`, { document: { name: 'n', ssn: 's', tenantKey: name, tenantSecret: 'x' } }));
  await same('a rotation to it', (name) => client('POST', `/documents/${h.ns}/rotations`, { from: { keyAltName: 'tenant-a' }, to: { keyAltName: name } }));
});

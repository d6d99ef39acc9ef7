import t from 'tap';
import { createDocumentsApp } from '../helpers/documents.js';

const keyIdOf = (value: { buffer: Uint8Array }) => Buffer.from(value.buffer.subarray(1, 17)).toString('hex');

t.test('data-key rotation re-encrypts a collection while it stays queryable, then the old key can go', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  for (let i = 0; i < 30; i++) {
    await h.call('POST', url, { document: { name: `e${i}`, tenantKey: 'tenant-a', ssn: `SSN-${i}`, badge: { $numberInt: String(i) }, salary: { $numberInt: '1' } } });
  }
  const newKey = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-det-2'] })).json().id;
  const oldHex = h.keys['hr-det']!.replaceAll('-', '');
  const newHex = newKey.replaceAll('-', '');

  const started = await h.call('POST', `${url}/rotations`, { from: { keyAltName: 'hr-det' }, to: { keyId: newKey }, batchSize: 5, maxDocsPerSecond: 20 });
  t.equal(started.statusCode, 202, started.body);
  const jobUrl = started.headers.location as string;

  // Mid-rotation: queries on deterministic fields find documents under either key, writes use the new key.
  await new Promise((resolve) => setTimeout(resolve, 400));
  const mid = (await h.call('GET', jobUrl)).json();
  t.equal(mid.state, 'running', 'still rotating (throttled)');
  for (const i of [0, 15, 29]) {
    const found = await h.call('POST', `${url}/find`, { filter: { ssn: `SSN-${i}` } });
    t.equal(found.json().items.length, 1, `SSN-${i} is found during the rotation`);
  }
  t.equal((await h.call('POST', `${url}/count`, { filter: { badge: { $in: [1, 2, 28] } } })).json().count, 3);
  t.equal((await h.call('POST', `${url}/count`, { filter: { ssn: { $ne: 'SSN-3' } } })).json().count, 29);
  await h.call('POST', url, { document: { name: 'during', tenantKey: 'tenant-a', ssn: 'SSN-during' } });
  t.equal(keyIdOf((await raw.findOne({ name: 'during' }))!.ssn), newHex, 'a write during the rotation uses the new key');

  let job = mid;
  for (let i = 0; i < 100 && job.state === 'running'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    job = (await h.call('GET', jobUrl)).json();
  }
  t.equal(job.state, 'succeeded', JSON.stringify(job));
  t.equal(job.result.documents, 31);
  t.equal(job.result.rotatedFields, 60, 'ssn and badge of the 30 older documents');
  t.ok(job.result.verifiedFields > 0);

  const docs = await raw.find({}).toArray();
  for (const doc of docs) {
    for (const field of ['ssn', 'badge']) if (doc[field]) t.equal(keyIdOf(doc[field]), newHex, `${doc.name}.${field} is under the new key`);
    t.not(keyIdOf(doc.salary ?? { buffer: Buffer.alloc(17) }), oldHex);
  }

  const inUse = await h.call('DELETE', `/keys/${h.keys['hr-det']}`);
  t.same([inUse.statusCode, inUse.json().code], [409, 'KEY_IN_USE'], 'the schema still names the old key (a restart would need it)');
  t.match(inUse.json().detail, h.ns);
  t.equal((await h.call('DELETE', `/keys/${h.keys['hr-det']}?force=true`)).statusCode, 204, 'the old key can now be deleted, knowingly');
  const after = await h.call('POST', `${url}/find`, { filter: { ssn: 'SSN-7' } });
  t.equal(after.json().items[0].badge, 7);
  t.notOk(after.json().unreadable, 'nothing became unreadable');
  t.equal((await h.call('POST', url, { document: { name: 'later', tenantKey: 'tenant-a', ssn: 'SSN-later' } })).statusCode, 201, 'and writes go on with the new key');
  t.equal(keyIdOf((await raw.findOne({ name: 'later' }))!.ssn), newHex);

  t.equal((await h.call('POST', `${url}/rotations`, { from: { keyId: newKey }, to: { keyId: newKey } })).statusCode, 400);
  t.equal((await h.call('POST', `${url}/rotations`, { from: { keyAltName: 'nope' }, to: { keyId: newKey } })).statusCode, 404);
  t.equal((await h.call('POST', `/documents/${h.keyVaultDb}.other/rotations`, { from: { keyId: newKey }, to: { keyAltName: 'hr-rnd' } })).statusCode, 404);
});

/**
 * A keyId pointer names, in the document, the data key of a field. As mongocryptd refuses it
 * ("A non-static (JSONPointer) keyId is not supported"), an update cannot write such a field: it
 * has no whole document to read the key from. A replacement (or an insert) can, and takes the key
 * the new document names. Over HTTP against the real servers; the raw documents are read with the
 * plain driver.
 */
import t from 'tap';
import { Binary, UUID } from 'mongodb';
import { createDocumentsApp, RND } from '../helpers/documents.js';

const schema = () => ({
  bsonType: 'object',
  properties: {
    _id: {},
    name: { bsonType: 'string' },
    meta: { bsonType: 'object', properties: { owner: { bsonType: 'string' } } },
    secret: { encrypt: { bsonType: 'string', algorithm: RND, keyId: '/meta/owner' } },
    box: { bsonType: 'object', properties: { inner: { encrypt: { bsonType: 'string', algorithm: RND, keyId: '/meta/owner' } } } },
  },
});

const keyIdOf = (value: unknown) => new UUID(Buffer.from((value as Binary).buffer).subarray(1, 17)).toHexString(true);

t.test('an update cannot write a pointer-keyed field; a replacement can', async (t) => {
  const h = await createDocumentsApp(t, schema);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const res = await h.call('POST', url, { document: { name: 'P', meta: { owner: 'tenant-a' }, secret: 'CANARY-pointer-0' } });
  t.equal(res.statusCode, 201, res.body);
  const id = res.json().insertedId.$oid as string;
  const stored = async () => (await raw.findOne({ name: 'P' }))!;
  const fresh = await stored();
  t.equal(keyIdOf(fresh.secret), h.keys['tenant-a']);

  const refused: [string, unknown][] = [
    ['$set of the field', { $set: { secret: 'CANARY-pointer-1' } }],
    ['$set of the field beside its pointer', { $set: { 'meta.owner': 'tenant-b', secret: 'CANARY-pointer-2' } }],
    ['$setOnInsert of the field', { $setOnInsert: { secret: 'CANARY-pointer-3' } }],
    ['$set of a sub-document holding one', { $set: { box: { inner: 'CANARY-pointer-4' } } }],
    ['$set with the pointer unset', { $unset: { meta: '' }, $set: { secret: 'CANARY-pointer-5' } }],
  ];
  for (const [what, update] of refused) {
    for (const [how, send] of [
      ['by id', () => h.call('PATCH', `${url}/${id}`, { update })],
      ['by filter', () => h.call('POST', `${url}/update`, { filter: { name: 'P' }, update })],
      ['findOneAndUpdate', () => h.call('POST', `${url}/find-one-and-update`, { filter: { name: 'P' }, update })],
      ['bulk', () => h.call('POST', `${url}/bulk`, { operations: [{ updateOne: { filter: { name: 'P' }, update } }] })],
    ] as const) {
      const answer = await send();
      const code = how === 'bulk' ? answer.json().items?.[0]?.error?.code : answer.json().code;
      t.equal(code, 'KEY_POINTER_NOT_WRITABLE', `${what}, ${how}: ${answer.body}`);
      t.same(await stored(), fresh, `${what}, ${how}: the document is unchanged`);
    }
  }

  const unset = await h.call('PATCH', `${url}/${id}`, { update: { $unset: { secret: '' } } });
  t.same(unset.json(), { matched: 1, modified: 1 }, '$unset needs no key');
  const pointerOnly = await h.call('PATCH', `${url}/${id}`, { update: { $set: { 'meta.owner': 'tenant-b' } } });
  t.equal(pointerOnly.statusCode, 200, 'the pointer itself is a plaintext field');

  const replaced = await h.call('POST', `${url}/replace`, { filter: { name: 'P' }, replacement: { name: 'P', meta: { owner: 'tenant-b' }, secret: 'CANARY-pointer-6' } });
  t.same(replaced.json(), { matched: 1, modified: 1 }, replaced.body);
  t.equal(keyIdOf((await stored()).secret), h.keys['tenant-b'], 'a replacement takes the key its document names');
});

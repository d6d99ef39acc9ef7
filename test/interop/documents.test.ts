import t from 'tap';
import { createDocumentsApp } from '../helpers/documents.js';
import { pymongo } from './pymongo-peer.js';

t.test('documents: pymongo reads what the service wrote, the service reads and queries what pymongo wrote', async (t) => {
  const h = await createDocumentsApp(t);
  const db = h.keyVaultDb;
  const coll = 'employees';

  const ours = {
    name: 'Written by the service',
    tenantKey: 'tenant-a',
    ssn: '111-22-3333',
    salary: { $numberInt: '70000' },
    medical: { diagnosis: 'asthma', allergies: ['pollen'], ward: 'west' },
    tenantSecret: 'tenant a only',
    note_hr: 'promoted',
  };
  t.equal((await h.call('POST', `/documents/${h.ns}`, { document: ours })).statusCode, 201);

  const read = pymongo(h, { op: 'readAll', db, coll }).items as Record<string, unknown>[];
  t.equal(read.length, 1);
  const { _id, ...plain } = read[0]!;
  t.ok(_id);
  t.same(plain, { ...ours, medical: { ...ours.medical } }, 'pymongo automatic decryption sees the plaintext, type for type');

  pymongo(h, {
    op: 'insertExplicit',
    db,
    coll,
    items: [
      {
        document: { name: 'Written by pymongo', tenantKey: 'tenant-b', ssn: '999-88-7777', salary: { $numberInt: '1' }, tenantSecret: 'b' },
        encrypt: {
          ssn: { algorithm: 'deterministic', keyAltName: 'hr-det' },
          salary: { algorithm: 'random', keyAltName: 'hr-rnd' },
          tenantSecret: { algorithm: 'random', keyAltName: 'tenant-b' },
        },
      },
    ],
  });
  const found = await h.call('POST', `/documents/${h.ns}/find?format=canonical`, { filter: { ssn: '999-88-7777' } });
  t.equal(found.statusCode, 200);
  t.equal(found.json().items.length, 1, 'an equality query finds the document pymongo encrypted deterministically');
  const doc = found.json().items[0];
  t.equal(doc.name, 'Written by pymongo');
  t.same(doc.salary, { $numberInt: '1' });
  t.equal(doc.tenantSecret, 'b');
  t.notOk(found.json().unreadable);
});

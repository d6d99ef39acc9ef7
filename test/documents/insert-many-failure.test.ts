/**
 * A batch insert answers item by item, and an item answered with an insertedId is in the
 * collection. When the database fails the batch as a whole (a dropped connection, a write concern
 * error), the driver throws a MongoBulkWriteError whose writeErrors list is empty; that must not
 * be read as "every item inserted". Over HTTP against the real servers.
 *
 * The trigger used here is FerretDB's: it drops the connection on a Decimal128 it cannot store
 * (found by test/property/documents-shapes.test.ts). Against MongoDB the batch is simply stored
 * and the test holds trivially; the fault it holds (documents-service insertMany) is the same
 * for any connection lost mid-batch.
 */
import t from 'tap';
import { createDocumentsApp } from '../helpers/documents.js';

t.test('a batch the database failed as a whole is not answered as inserted', async (t) => {
  const h = await createDocumentsApp(t);
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const base = { name: 'B', tenantKey: 'tenant-a', ssn: 'CANARY-batch-ssn' };

  const res = await h.call('POST', url, { documents: [{ ...base, medical: { extra: { $numberDecimal: '1.5' } } }, base, base] });
  t.ok(res.statusCode < 500 || res.json().code === 'DATABASE_UNAVAILABLE', `answered ${res.statusCode} ${res.body}`);
  const stored = await raw.find({}, { projection: { _id: 1 } }).toArray();
  const ids = new Set(stored.map((d) => String(d._id)));
  if (res.statusCode === 200) {
    const body = res.json() as { inserted: number; items: { insertedId?: { $oid: string } }[] };
    t.equal(body.inserted, stored.length, `"inserted": ${body.inserted}; the collection holds ${stored.length}`);
    for (const [index, item] of body.items.entries()) {
      if (item.insertedId !== undefined) t.ok(ids.has(item.insertedId.$oid), `item ${index} is answered as inserted, so it is in the collection`);
    }
  }
});

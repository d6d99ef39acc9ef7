/**
 * Spec prose test 5, "Views Are Prohibited", over HTTP: with a view named like a collection that
 * has a collection schema, /documents operations on it are refused with 400 NAMESPACE_IS_VIEW (the
 * service's "cannot auto encrypt a view"), found through listCollections' `type: "view"`.
 *
 * FerretDB cannot create views (`create` with `viewOn` answers NotImplemented), so against the
 * stack's FerretDB the spec's case is not applicable and says so; with MONGODB_URI pointing at a
 * real MongoDB the same file runs it. What runs here regardless: the check reads the real server's
 * listCollections, and a real collection under a schema is served (the check lets it through).
 * The refusal itself is unit-tested in test/documents/view-check.test.ts.
 */
import t from 'tap';
import { MongoServerError } from 'mongodb';
import { createDocumentsApp } from '../helpers/documents.js';
import { proseSummary } from './prose.js';

const summary = proseSummary(t, 5);

const employee = { name: 'v', tenantKey: 'tenant-a', ssn: 'CANARY-view-ssn' };

t.test('documents operations on a view are refused with 400 NAMESPACE_IS_VIEW', async (t) => {
  const h = await createDocumentsApp(t);
  const db = h.mongo.db(h.keyVaultDb);
  await db.createCollection('coll');
  // The spec's step 2: the view takes the name of the namespace the schema is for.
  const created = await db.command({ create: 'employees', viewOn: 'coll', pipeline: [] }).then(
    () => undefined,
    (err: unknown) => err,
  );
  if (created instanceof MongoServerError && (created.code === 238 || created.codeName === 'NotImplemented')) {
    summary.notApplicable(`FerretDB cannot create a view (${created.codeName}: ${created.message})`);
    t.comment(`not applicable: ${created.message}`);
    return;
  }
  summary.track(t);
  t.equal(created, undefined, 'the view is created');
  const infos = await db.listCollections({ name: 'employees' }).toArray();
  t.equal(infos[0]?.type, 'view', 'MongoDB reports it as a view');

  const insert = await h.call('POST', `/documents/${h.ns}`, { document: employee });
  t.equal(insert.statusCode, 400, insert.body);
  t.equal(insert.json().code, 'NAMESPACE_IS_VIEW', 'inserting into the view is refused');
  const find = await h.call('POST', `/documents/${h.ns}/find`, { filter: {} });
  t.equal(find.statusCode, 400, find.body);
  t.equal(find.json().code, 'NAMESPACE_IS_VIEW', 'reading through it too');
  t.equal(await db.collection('coll').countDocuments(), 0, 'nothing was written');
  t.notMatch(insert.body + find.body, /CANARY/);
});

t.test("the check reads the real server: a collection under a schema is a collection, and is served", async (t) => {
  summary.track(t);
  const h = await createDocumentsApp(t);
  const insert = await h.call('POST', `/documents/${h.ns}`, { document: employee });
  t.equal(insert.statusCode, 201, insert.body);
  const infos = await h.mongo.db(h.keyVaultDb).listCollections({ name: 'employees' }, { nameOnly: false }).toArray();
  t.equal(infos[0]?.type, 'collection', 'the server says collection');
  const find = await h.call('POST', `/documents/${h.ns}/find`, { filter: {} });
  t.equal(find.statusCode, 200, find.body);
  t.equal(find.json().items.length, 1);
});

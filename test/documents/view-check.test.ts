/**
 * The view check alone, with listCollections answered by a function of the test (a unit test:
 * FerretDB cannot create views, so the integration side is in test/spec/prose-5-views.test.ts).
 */
import t from 'tap';
import { isAppError } from '../../src/errors.js';
import { createViewCheck } from '../../src/documents/view-check.js';

function harness(types: Record<string, string | undefined>) {
  let clock = 0;
  const asked: string[] = [];
  const check = createViewCheck({
    async collectionType(db, collection) {
      asked.push(`${db}.${collection}`);
      return types[`${db}.${collection}`];
    },
    ttlMs: 1000,
    now: () => clock,
  });
  return { check, asked, advance: (ms: number) => (clock += ms) };
}

t.test('a view is refused with 400 NAMESPACE_IS_VIEW; a collection, or a namespace not created yet, passes', async (t) => {
  const { check } = harness({ 'db.view': 'view', 'db.coll': 'collection', 'db.ts': 'timeseries' });
  await t.rejects(check.assertNotView('db', 'view'), { code: 'NAMESPACE_IS_VIEW', status: 400 });
  const err = await check.assertNotView('db', 'view').catch((e: unknown) => e);
  t.ok(isAppError(err), 'a registry error, not an internal one');
  await t.resolves(check.assertNotView('db', 'coll'));
  await t.resolves(check.assertNotView('db', 'missing'), 'inserting creates the collection: nothing to refuse');
  await t.resolves(check.assertNotView('db', 'ts'));
});

t.test("MongoDB's answer is kept per namespace for the bound, then asked again", async (t) => {
  const types: Record<string, string | undefined> = { 'db.coll': 'collection' };
  const { check, asked, advance } = harness(types);
  await check.assertNotView('db', 'coll');
  await check.assertNotView('db', 'coll');
  t.same(asked, ['db.coll'], 'one look within the bound');
  // The collection is dropped and a view takes its name.
  types['db.coll'] = 'view';
  advance(999);
  await t.resolves(check.assertNotView('db', 'coll'), 'within the bound the last answer stands (MongoDB refuses writes to it: 166)');
  advance(1);
  await t.rejects(check.assertNotView('db', 'coll'), { code: 'NAMESPACE_IS_VIEW' }, 'refused once the bound has passed');
  t.same(asked, ['db.coll', 'db.coll']);
});

/**
 * Key alt names stay unique when two instances create keys (or add names) at once. FerretDB's
 * unique index on keyAltNames compares whole arrays, so without the claims both creations got in.
 */
import { UUID } from 'mongodb';
import t from 'tap';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';

const ROUNDS = 25;

t.test('two instances racing for one alt name: exactly one key gets it, every round', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  const create = (app: TestApp, names: string[]) => app.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: names });
  const outcomes: Record<string, number> = {};
  let doubles = 0;
  let created = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const name = `race-${round}`;
    // Two creations through each instance, and (every other round) a name list in another order.
    const lists = round % 2 === 0 ? [[name], [name], [name], [name]] : [[name, `${name}-x`], [`${name}-x`, name], [name], [`${name}-x`]];
    const answers = await Promise.all(lists.map((names, i) => create(i % 2 === 0 ? a : b, names)));
    for (const res of answers) {
      const key = `${res.statusCode} ${res.statusCode === 201 ? '' : res.json().code}`.trim();
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    }
    const docs = await keyVaultDocs(a);
    created += answers.filter((res) => res.statusCode === 201).length;
    t.equal(docs.length, created, `round ${round}: a key exists for each 201, none for a 409`);
    const holders = (n: string) => docs.filter((doc) => (doc.keyAltNames ?? []).includes(n)).length;
    t.ok(answers.every((res) => res.statusCode === 201 || res.json().code === 'KEY_ALT_NAME_CONFLICT'), `round ${round}: the others got 409 KEY_ALT_NAME_CONFLICT`);
    if (round % 2 === 0) {
      if (holders(name) !== 1) doubles++;
      t.equal(holders(name), 1, `round ${round}: one key holds ${name}`);
      t.equal(answers.filter((res) => res.statusCode === 201).length, 1, `round ${round}: one creation won`);
    } else {
      // Overlapping lists may also end with a name nobody got (a creation that lost one of its
      // names gives the other back); never with a name held twice.
      if (holders(name) > 1 || holders(`${name}-x`) > 1) doubles++;
      t.ok(holders(name) <= 1 && holders(`${name}-x`) <= 1, `round ${round}: no name held twice`);
    }
  }
  t.equal(doubles, 0, `no name held twice in ${ROUNDS} rounds; answers ${JSON.stringify(outcomes)}`);
});

t.test('adding a name through one instance while another creates a key with it', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  for (let round = 0; round < 10; round++) {
    const name = `add-race-${round}`;
    const existing = (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`base-${round}`] })).json().id as string;
    const [added, created] = await Promise.all([
      a.call('POST', `/keys/${existing}/alt-names`, { keyAltName: name }),
      b.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] }),
    ]);
    const holders = (await keyVaultDocs(a)).filter((doc) => (doc.keyAltNames ?? []).includes(name));
    t.equal(holders.length, 1, `round ${round}: ${added.statusCode}/${created.statusCode}, one key holds the name`);
  }
});

t.test('a name comes free when its key is purged or lets it go; an abandoned claim is stale after its grace period', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  const create = (app: TestApp, name: string) => app.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
  const first = await create(a, 'freed');
  t.equal(first.statusCode, 201);
  t.equal((await create(b, 'freed')).statusCode, 409);
  t.equal((await a.call('DELETE', `/keys/${first.json().id}`)).statusCode, 204);
  t.equal((await create(b, 'freed')).statusCode, 409, 'a deleted key keeps its name reserved while it can be restored');
  t.equal((await a.call('POST', `/keys/${first.json().id}/purge`)).statusCode, 204);
  t.equal((await create(b, 'freed')).statusCode, 201, 'purging the key released its name');

  const holder = (await create(a, 'moved')).json().id as string;
  t.equal((await a.call('DELETE', `/keys/${holder}/alt-names/moved`)).statusCode, 200);
  t.equal((await create(b, 'moved')).statusCode, 201, 'removing the name released it');

  // An instance that claimed a name and died before storing its key.
  const claims = a.mongo.db(a.keyVaultDb).collection<Record<string, unknown>>('__keyAltNames');
  await claims.insertOne({ _id: '0:orphan-young' as never, name: 'orphan-young', generation: 0, keyId: new UUID(), at: new Date() });
  await claims.insertOne({ _id: '0:orphan-old' as never, name: 'orphan-old', generation: 0, keyId: new UUID(), at: new Date(Date.now() - 60_000) });
  t.equal((await create(b, 'orphan-young')).statusCode, 409, 'a young claim holds (its key may be on its way)');
  t.equal((await create(b, 'orphan-old')).statusCode, 201, 'an old claim whose key does not hold the name is taken over');
  const keys = await keyVaultDocs(a);
  t.same(
    keys.map((doc) => doc.keyAltNames).filter(Boolean).flat().sort(),
    ['freed', 'moved', 'orphan-old'],
    'the key documents keep the drivers\' shape: names only in keyAltNames',
  );
});

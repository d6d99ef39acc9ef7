/**
 * Changes to one client through two instances at once are both kept. On FerretDB, which applies
 * concurrent updates of a document without isolation, a token revoked through one instance while
 * the client's grants changed through another used to stay valid after its 204 (4 rounds in 20),
 * or the grant change was lost after its 200; the client's fleet lock serialises them.
 */
import t from 'tap';
import { createTestApp } from '../helpers/app.js';

t.test('a revocation and a grant change racing through two instances: both are kept, every round', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  const stored = a.mongo.db(a.keyVaultDb).collection<{ _id: string; grants: unknown[]; tokens: { id: string }[] }>('__clients');
  let lost = 0;
  for (let round = 0; round < 20; round++) {
    const created = (await a.call('POST', '/clients', { name: `race-${round}`, grants: [{ scope: 'encrypt' }] })).json();
    const second = (await a.call('POST', `/clients/${created.client.id}/tokens`, {})).json();
    const [revoked, regranted, revokedToo] = await Promise.all([
      a.call('DELETE', `/clients/${created.client.id}/tokens/${created.client.tokens[0].id}`),
      b.call('PATCH', `/clients/${created.client.id}`, { grants: [{ scope: 'encrypt' }, { scope: 'decrypt' }] }),
      b.call('DELETE', `/clients/${created.client.id}/tokens/${second.tokenId}`),
    ]);
    t.same([revoked.statusCode, regranted.statusCode, revokedToo.statusCode], [204, 200, 204], `round ${round}: all answered`);
    const doc = (await stored.findOne({ _id: created.client.id }))!;
    const kept = doc.tokens.length === 0 && doc.grants.length === 2;
    if (!kept) lost++;
    t.ok(kept, `round ${round}: both tokens gone and the grants changed`);
    const asRevoked = await b.app.inject({ method: 'POST', url: '/encrypt', headers: { authorization: `Bearer ${created.token}` }, payload: { value: 'x', algorithm: 'random', keyAltName: 'none' } });
    t.equal(asRevoked.statusCode, 401, `round ${round}: the revoked token is refused`);
  }
  t.equal(lost, 0, 'no change lost');
});

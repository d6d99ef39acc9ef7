/**
 * Changes to one data key through two instances at once are both kept. FerretDB applies concurrent
 * updates of a document without isolation; without the key's fleet lock an alt name removed
 * through one instance came back when a rewrap or another name change went through the other.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';

t.test('alt-name changes and a rewrap of one key racing through two instances: all kept, every round', async (t) => {
  const a = await createTestApp(t);
  const b = await createTestApp(t, { share: a });
  let lost = 0;
  for (let round = 0; round < 15; round++) {
    const created = await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`keep-${round}`, `drop-${round}`] });
    const id = created.json().id as string;
    const before = (await keyVaultDocs(a)).find((d) => d.keyAltNames?.includes(`keep-${round}`))!;
    const answers = await Promise.all([
      a.call('DELETE', `/keys/${id}/alt-names/drop-${round}`),
      b.call('POST', `/keys/${id}/alt-names`, { keyAltName: `add-${round}` }),
      b.call('POST', '/keys/rewrap', { filter: { keyIds: [id] }, masterKey: { provider: 'local' } }),
    ]);
    t.same(answers.map((r) => r.statusCode), [200, 200, 200], `round ${round}: all answered`);
    const doc = (await keyVaultDocs(a)).find((d) => d._id.toString('hex') === before._id.toString('hex'))!;
    const names = [...(doc.keyAltNames ?? [])].sort();
    const rewrapped = !Buffer.from(doc.keyMaterial.buffer).equals(Buffer.from(before.keyMaterial.buffer));
    const kept = JSON.stringify(names) === JSON.stringify([`add-${round}`, `keep-${round}`]) && rewrapped;
    if (!kept) lost++;
    t.ok(kept, `round ${round}: names ${names.join(',')}, rewrapped ${rewrapped}`);
  }
  t.equal(lost, 0, 'no change lost');
});

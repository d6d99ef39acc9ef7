/**
 * Spec prose test 13, "Unique Index on keyAltNames", over HTTP. The spec's setup creates the unique
 * partial index itself; the service keeps its own (a boot check of the key vault), so the test
 * starts from the vault as the service leaves it. Where a driver surfaces the server's error 11000,
 * the service answers 409 KEY_ALT_NAME_CONFLICT, and the key already holding the name is untouched.
 */
import t, { type Test } from 'tap';
import type { Binary } from 'mongodb';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';
import { proseSummary, SPEC_LOCAL_MASTER_KEY } from './prose.js';

const summary = proseSummary(t, 13);
const local = { provider: 'local' };

async function setup(t: Test) {
  const h = await createTestApp(t, { env: { LOCAL_MASTER_KEY: SPEC_LOCAL_MASTER_KEY } });
  const def = await h.call('POST', '/keys', { masterKey: local, keyAltNames: ['def'] });
  t.equal(def.statusCode, 201, `setup: a local key with the alt name "def": ${def.body}`);
  return { h, def: def.json() as { id: string } };
}


async function keyDoc(h: TestApp, id: string) {
  return (await keyVaultDocs(h)).find((d) => Buffer.from((d._id as unknown as Binary).buffer).toString('hex') === id.replaceAll('-', ''));
}

t.test('case 1: creating a key with an alt name another key has fails with KEY_ALT_NAME_CONFLICT', async (t) => {
  summary.track(t);
  const { h, def } = await setup(t);
  const defBefore = await keyDoc(h, def.id);

  const abc = await h.call('POST', '/keys', { masterKey: local, keyAltNames: ['abc'] });
  t.equal(abc.statusCode, 201, 'a key with the alt name "abc" is created');
  const again = await h.call('POST', '/keys', { masterKey: local, keyAltNames: ['abc'] });
  t.equal(again.statusCode, 409, 'a second key with "abc" is refused');
  t.equal(again.json().code, 'KEY_ALT_NAME_CONFLICT');
  const defAgain = await h.call('POST', '/keys', { masterKey: local, keyAltNames: ['def'] });
  t.equal(defAgain.statusCode, 409, 'a key with "def" (the setup key holds it) is refused');
  t.equal(defAgain.json().code, 'KEY_ALT_NAME_CONFLICT');

  const docs = await keyVaultDocs(h);
  t.equal(docs.length, 2, 'no key document was written by the refused requests');
  t.same(await keyDoc(h, def.id), defBefore, 'the key holding "def" is untouched');
  t.equal((await h.call('GET', '/keys/by-alt-name/abc')).json().id, abc.json().id, '"abc" still names the first key');
});

t.test('case 2: adding an alt name another key has fails with KEY_ALT_NAME_CONFLICT; adding one a key has is a no-op', async (t) => {
  summary.track(t);
  const { h, def } = await setup(t);
  const defBefore = await keyDoc(h, def.id);

  const created = await h.call('POST', '/keys', { masterKey: local });
  t.equal(created.statusCode, 201, 'a key without alt names is created');
  const id = created.json().id as string;
  const add = await h.call('POST', `/keys/${id}/alt-names`, { keyAltName: 'abc' });
  t.equal(add.statusCode, 200, `"abc" is added: ${add.body}`);
  const repeat = await h.call('POST', `/keys/${id}/alt-names`, { keyAltName: 'abc' });
  t.equal(repeat.statusCode, 200, 'adding "abc" again does not fail');
  t.ok(repeat.json().keyAltNames.includes('abc'), 'and the key shows "abc"');

  const steal = await h.call('POST', `/keys/${id}/alt-names`, { keyAltName: 'def' });
  t.equal(steal.statusCode, 409, '"def" (held by the setup key) cannot be added to another key');
  t.equal(steal.json().code, 'KEY_ALT_NAME_CONFLICT');
  t.same((await h.call('GET', `/keys/${id}`)).json().keyAltNames, ['abc'], 'the key refused "def" keeps only "abc"');

  const own = await h.call('POST', `/keys/${def.id}/alt-names`, { keyAltName: 'def' });
  t.equal(own.statusCode, 200, 'adding "def" to the key that has it does not fail');
  t.ok(own.json().keyAltNames.includes('def'), 'and the key shows "def"');
  const after = await keyDoc(h, def.id);
  t.same({ ...after, updateDate: undefined }, { ...defBefore, updateDate: undefined }, 'the key holding "def" is otherwise untouched');
  t.same(after!.keyAltNames, ['def']);
});

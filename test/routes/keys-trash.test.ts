/**
 * Recoverable key deletion over HTTP, on the real FerretDB: DELETE /keys/{id} moves a key to the
 * trash (refused while a collection schema names it, unless forced), POST /keys/{id}/restore brings
 * it back, POST /keys/{id}/purge (or the sweep, once the retention ends) shreds it; key views say
 * which state a key is in. Attacked with valid but limited tokens.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';
import { createDocumentsApp } from '../helpers/documents.js';

const local = { masterKey: { provider: 'local' } };

async function createKey(h: TestApp, names: string[]): Promise<string> {
  const res = await h.call('POST', '/keys', { ...local, keyAltNames: names });
  if (res.statusCode !== 201) throw new Error(`creating a key: ${res.statusCode} ${res.body}`);
  return res.json().id;
}

function as(h: TestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

const codeOf = (res: { statusCode: number; body: string }) => [res.statusCode, res.body === '' ? undefined : JSON.parse(res.body).code];

t.test('delete, view, restore, purge: values encrypted before the delete decrypt again after a restore', async (t) => {
  const h = await createTestApp(t);
  const id = await createKey(h, ['trash-me', 'trash-me-too']);
  const ciphertext = (await h.call('POST', '/encrypt', { value: 'CANARY-before-delete', algorithm: 'random', keyId: id })).json().ciphertext;
  const deterministic = (await h.call('POST', '/encrypt', { value: 'same', algorithm: 'deterministic', keyAltName: 'trash-me' })).json().ciphertext;

  t.equal((await h.call('DELETE', `/keys/${id}`)).statusCode, 204);
  const view = (await h.call('GET', `/keys/${id}`)).json();
  t.equal(view.state, 'deleted');
  t.equal(view.deletedBy, 'admin', 'the operator deleted it');
  t.equal(Date.parse(view.purgeAfter) - Date.parse(view.deletedAt), 7 * 86_400_000, 'restorable for 7 days by default');
  t.same((await h.call('GET', '/keys/by-alt-name/trash-me-too')).json().id, id, 'found by its (reserved) alt name too');
  t.same(await keyVaultDocs(h), [], 'gone from the key vault, where drivers would still find it');

  t.same(codeOf(await h.call('POST', '/decrypt', { ciphertext })), [400, 'DECRYPTION_FAILED'], 'unusable at once');
  t.same(codeOf(await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId: id })), [404, 'KEY_NOT_FOUND']);
  t.same(codeOf(await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'trash-me' })), [404, 'KEY_NOT_FOUND']);
  t.same(codeOf(await h.call('POST', '/keys', { ...local, keyAltNames: ['trash-me'] })), [409, 'KEY_ALT_NAME_CONFLICT'], 'its names stay reserved');
  t.same(codeOf(await h.call('POST', `/keys/${id}/alt-names`, { keyAltName: 'more' })), [404, 'KEY_NOT_FOUND'], 'a trashed key is not renamed');

  const restored = await h.call('POST', `/keys/${id}/restore`);
  t.equal(restored.statusCode, 200, restored.body);
  t.match(restored.json(), { id, state: 'active', keyAltNames: ['trash-me', 'trash-me-too'] });
  t.notOk('deletedAt' in restored.json());
  t.same((await h.call('POST', '/decrypt', { ciphertext })).json(), { value: 'CANARY-before-delete' }, 'decrypts again');
  const again = (await h.call('POST', '/encrypt', { value: 'same', algorithm: 'deterministic', keyAltName: 'trash-me' })).json().ciphertext;
  t.equal(again, deterministic, 'the same key: deterministic ciphertexts are identical, so equality queries still match');
  t.same(codeOf(await h.call('POST', `/keys/${id}/restore`)), [409, 'KEY_NOT_DELETED'], 'restoring an active key');
  t.same(codeOf(await h.call('POST', `/keys/${id}/purge`)), [409, 'KEY_NOT_DELETED'], 'purging an active key: delete it first');

  t.equal((await h.call('DELETE', `/keys/${id}`)).statusCode, 204);
  t.equal((await h.call('POST', `/keys/${id}/purge`)).statusCode, 204);
  t.same(codeOf(await h.call('GET', `/keys/${id}`)), [404, 'KEY_NOT_FOUND'], 'purged: gone for good');
  t.same(codeOf(await h.call('POST', `/keys/${id}/restore`)), [404, 'KEY_NOT_FOUND']);
  t.same(codeOf(await h.call('POST', `/keys/${id}/purge`)), [404, 'KEY_NOT_FOUND']);
  t.same(codeOf(await h.call('DELETE', `/keys/${id}`)), [404, 'KEY_NOT_FOUND']);
  t.same(codeOf(await h.call('POST', '/decrypt', { ciphertext })), [400, 'DECRYPTION_FAILED']);
  t.equal((await h.call('POST', '/keys', { ...local, keyAltNames: ['trash-me'] })).statusCode, 201, 'a purged key frees its names');
});

t.test('GET /keys lists active, deleted or all keys, in one id order, pages included, never key material', async (t) => {
  const h = await createTestApp(t);
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await createKey(h, [`listed-${i}`]));
  const deleted = [ids[1]!, ids[3]!, ids[4]!];
  for (const id of deleted) t.equal((await h.call('DELETE', `/keys/${id}`)).statusCode, 204);
  const pages = async (state?: string) => {
    const seen: { id: string; state: string }[] = [];
    let after: string | undefined;
    for (let n = 0; n < 10; n++) {
      const res = await h.call('GET', `/keys?limit=2${state ? `&state=${state}` : ''}${after ? `&after=${after}` : ''}`);
      t.equal(res.statusCode, 200, res.body);
      t.notMatch(res.body, /keyMaterial/);
      seen.push(...res.json().items.map((k: { id: string; state: string }) => ({ id: k.id, state: k.state })));
      after = res.json().next;
      if (after === undefined) break;
    }
    return seen;
  };
  const sorted = (list: string[]) => [...list].sort();
  t.same(await pages(), sorted(ids.filter((id) => !deleted.includes(id))).map((id) => ({ id, state: 'active' })), 'active by default');
  t.same(await pages('deleted'), sorted(deleted).map((id) => ({ id, state: 'deleted' })));
  t.same((await pages('all')).map((k) => k.id), sorted(ids), 'all: every key once, in id order across both collections');
  t.same(codeOf(await h.call('GET', '/keys?state=purged')), [400, 'VALIDATION_FAILED']);
  const byProvider = async (provider: string) => (await h.call('GET', `/keys?state=deleted&provider=${provider}`)).json().items.length;
  t.same([await byProvider('local'), await byProvider('aws')], [3, 0], 'the trash is filtered by master key like the vault (before a master-key migration)');
});

t.test('a key a collection schema names is not deleted unless forced; forced, the collection waits for it (503 SCHEMA_NOT_READY) and is served again after a restore; documents refuse a trashed key like a purged one', async (t) => {
  const h = await createDocumentsApp(t);
  const { keys, ns } = h;
  // salary is under hr-rnd (the schema names it by id), tenantSecret under the key tenantKey names.
  const person = (name: string, tenantKey: string) => ({ document: { name, ssn: `SSN-${name}`, tenantKey, tenantSecret: `SECRET-${name}` } });
  t.equal((await h.call('POST', `/documents/${ns}`, { document: { ...person('before', 'tenant-b').document, salary: 100 } })).statusCode, 201);
  /** The first answer to `find` matching `done` within 10 s (the registry re-reads keys on every key change it is told of). */
  const findUntil = async (done: (status: number) => boolean) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const res = await h.call('POST', `/documents/${ns}/find`, { filter: {} });
      if (done(res.statusCode) || Date.now() > deadline) return res;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  for (const [name, how] of [['hr-det', 'by alt name'], ['hr-rnd', 'by id']] as const) {
    const res = await h.call('DELETE', `/keys/${keys[name]}`);
    t.same(codeOf(res), [409, 'KEY_IN_USE'], `named ${how}`);
    t.match(res.json().detail, ns, 'the answer names the collection');
    t.equal((await h.call('GET', `/keys/${keys[name]}`)).json().state, 'active', 'nothing was deleted');
  }
  const renamed = await h.call('DELETE', `/keys/${keys['hr-det']}/alt-names/hr-det`);
  t.same(codeOf(renamed), [409, 'KEY_IN_USE'], 'the alt name a schema resolves its key by cannot be removed either');
  t.match(renamed.json().detail, ns);
  t.same((await h.call('GET', `/keys/${keys['hr-det']}`)).json().keyAltNames, ['hr-det'], 'the name is still there');
  t.same(codeOf(await h.call('DELETE', `/keys/${keys['hr-rnd']}?force=maybe`)), [400, 'VALIDATION_FAILED']);
  t.equal((await h.call('DELETE', `/keys/${keys['hr-rnd']}?force=true`)).statusCode, 204, 'forced');
  const waiting = await findUntil((status) => status === 503);
  t.same(codeOf(waiting), [503, 'SCHEMA_NOT_READY'], 'the collection waits for the key its schema names: never a 500, never plaintext');
  t.match(waiting.json().detail, keys['hr-rnd']!, 'and names it');
  const write = await h.call('POST', `/documents/${ns}`, { document: { name: 'salaried', ssn: 's', tenantKey: 'x', salary: 1 } });
  t.same(codeOf(write), [503, 'SCHEMA_NOT_READY'], 'writes wait too');

  t.equal((await h.call('POST', `/keys/${keys['hr-rnd']}/restore`)).statusCode, 200);
  const after = await findUntil((status) => status === 200);
  t.equal(after.statusCode, 200, 'served again after the restore');
  t.equal(after.json().items[0].salary, 100, 'the value written before the delete decrypts again');

  // Trashed (tenant-a, restorable) and purged (tenant-b) keys named by the documents themselves get the same answers.
  t.equal((await h.call('DELETE', `/keys/${keys['tenant-a']}`)).statusCode, 204, 'a key named only by documents is not "in use"');
  t.equal((await h.call('DELETE', `/keys/${keys['tenant-b']}`)).statusCode, 204);
  t.equal((await h.call('POST', `/keys/${keys['tenant-b']}/purge`)).statusCode, 204);
  const trashed = codeOf(await h.call('POST', `/documents/${ns}`, person('later-a', 'tenant-a')));
  const purged = codeOf(await h.call('POST', `/documents/${ns}`, person('later-b', 'tenant-b')));
  t.equal(trashed[0], 422);
  t.same(trashed, purged, 'a trashed key is refused exactly as a purged (or never existing) one');
  const failed = await h.call('POST', `/documents/${ns}/find`, { filter: {} });
  t.same(codeOf(failed), [422, 'UNREADABLE_VALUE'], 'never a 500, and by default never a null passed off as the value');
  t.match(failed.json().detail, /tenantSecret/);
  const read = await h.call('POST', `/documents/${ns}/find?onUnreadable=report`, { filter: {} });
  t.equal(read.statusCode, 200, read.body);
  t.same(read.json().items.map((d: { salary: unknown }) => d.salary), [100], 'fields under live keys read');
  t.same(read.json().unreadable[0].paths, ['tenantSecret'], 'the field under the purged key is unreadable');
  t.equal((await h.call('POST', `/documents/${ns}`, { document: { name: 'x', ssn: 's', tenantKey: 'hr-det', salary: 1 } })).statusCode, 201, 'writes under the restored key work');
});

t.test('a valid but limited token: only its own keys, deleted or not; others are 404 whatever their state', async (t) => {
  const h = await createTestApp(t);
  const mine = await createKey(h, ['team-a-1']);
  const minePurge = await createKey(h, ['team-a-2']);
  const theirs = await createKey(h, ['team-b-1']);
  const shared = await createKey(h, ['team-b-shared', 'team-a-shared']);
  const made = await h.call('POST', '/clients', {
    name: 'team a',
    grants: [
      { scope: 'keys:delete', keyAltNames: ['team-a-*'] },
      { scope: 'keys:read', keyAltNames: ['team-a-*'] },
    ],
  });
  const teamA = as(h, made.json().token);
  const reader = as(h, (await h.call('POST', '/clients', { name: 'reader', grants: [{ scope: 'keys:read' }] })).json().token);

  t.same(codeOf(await teamA('DELETE', `/keys/${theirs}`)), [404, 'KEY_NOT_FOUND'], 'another team’s key does not exist for it');
  t.same(codeOf(await teamA('DELETE', `/keys/${theirs}?force=true`)), [404, 'KEY_NOT_FOUND'], 'force changes nothing about who');
  t.equal((await h.call('DELETE', `/keys/${theirs}`)).statusCode, 204, 'the operator deletes it');
  for (const [method, url] of [['GET', `/keys/${theirs}`], ['POST', `/keys/${theirs}/restore`], ['POST', `/keys/${theirs}/purge`], ['DELETE', `/keys/${theirs}`], ['GET', '/keys/by-alt-name/team-b-1']] as const) {
    t.same(codeOf(await teamA(method, url)), [404, 'KEY_NOT_FOUND'], `${method} ${url} of a trashed key beyond its grants`);
  }
  const listed = (await teamA('GET', '/keys?state=all')).json().items.map((k: { id: string }) => k.id);
  t.notOk(listed.includes(theirs), 'left out of its lists');
  t.equal((await h.call('GET', `/keys/${theirs}`)).json().state, 'deleted', 'nothing it tried changed the key');

  t.equal((await teamA('DELETE', `/keys/${mine}`)).statusCode, 204);
  t.equal((await teamA('GET', `/keys/${mine}`)).json().deletedBy, made.json().client.id, 'who deleted it is recorded');
  t.same(codeOf(await reader('POST', `/keys/${mine}/restore`)), [403, 'FORBIDDEN'], 'keys:read alone cannot restore');
  t.same(codeOf(await reader('POST', `/keys/${mine}/purge`)), [403, 'FORBIDDEN'], 'nor purge');
  t.equal((await teamA('POST', `/keys/${mine}/restore`)).statusCode, 200);
  t.equal((await teamA('DELETE', `/keys/${minePurge}`)).statusCode, 204);
  t.equal((await teamA('POST', `/keys/${minePurge}/purge`)).statusCode, 204);
  t.equal((await teamA('DELETE', `/keys/${shared}`)).statusCode, 204, 'a key carrying one of its names is its to delete (as for any use)');
  t.same((await teamA('GET', '/keys?state=deleted')).json().items.map((k: { id: string }) => k.id), [shared]);
  t.same((await teamA('GET', '/keys/by-alt-name/team-b-shared')).json().state, 'deleted', 'found by its other team’s name, as an active key would be');
});

t.test('a deleted key is purged by the sweep once its retention ends', async (t) => {
  const h = await createTestApp(t, { env: { KEY_TRASH_RETENTION_MS: '1000' } });
  await h.app.ready();
  const id = await createKey(h, ['short-lived']);
  t.equal((await h.call('DELETE', `/keys/${id}`)).statusCode, 204);
  const view = (await h.call('GET', `/keys/${id}`)).json();
  t.equal(Date.parse(view.purgeAfter) - Date.parse(view.deletedAt), 1000);
  const started = Date.now();
  let status = 200;
  while (status === 200 && Date.now() - started < 10_000) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    status = (await h.call('GET', `/keys/${id}`)).statusCode;
  }
  t.equal(status, 404, `purged by the sweep ${Date.now() - started} ms after the delete (retention 1 s, sweep every 1 s)`);
  t.equal((await h.call('POST', '/keys', { ...local, keyAltNames: ['short-lived'] })).statusCode, 201, 'and its name is free');
});

/**
 * One trust boundary across instances: a change made through instance A is in force through
 * instance B within 1 s, measured over HTTP, after B had cached what the change revokes. Two apps
 * on the shared FerretDB (same databases, each its own caches and audit spool). The caches are set
 * to live far longer than the bound (60 s), so only the change feed can explain a refusal within it.
 */
import t from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createDocumentsApp } from '../helpers/documents.js';
import { stack } from '../helpers/stack.js';

const BOUND_MS = 1000;
const LONG_CACHES = { AUTH_CACHE_TTL_MS: '60000', DATA_KEY_CACHE_TTL_MS: '60000' };
const measured: Record<string, number> = {};

/**
 * Poll `check` through B until it holds; how long that took from `since` (when A answered).
 * Fails the test when it took longer than the bound.
 */
async function within(t: { ok(...args: any[]): unknown; fail(...args: any[]): unknown }, name: string, since: number, check: () => Promise<boolean>): Promise<number> {
  for (;;) {
    const ok = await check();
    const elapsed = performance.now() - since;
    if (ok) {
      measured[name] = Math.round(elapsed);
      t.ok(elapsed <= BOUND_MS, `${name}: in force through B after ${Math.round(elapsed)} ms (bound ${BOUND_MS} ms)`);
      return elapsed;
    }
    if (elapsed > BOUND_MS + 2000) {
      t.fail(`${name}: still not in force through B after ${Math.round(elapsed)} ms`);
      return elapsed;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function as(app: TestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    app.app.inject({ method: method as 'POST', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

async function kmsUnwraps(app: TestApp, provider: string): Promise<number> {
  const text = (await app.call('GET', '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`kms_calls_total{provider="${provider}",operation="unwrap",outcome="ok"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

t.test('keys: deleted, alt name removed, rewrapped through A; in force through B within 1 s', async (t) => {
  const a = await createTestApp(t, { env: LONG_CACHES, aws: stack.allowed });
  const b = await createTestApp(t, { share: a, env: LONG_CACHES, aws: stack.allowed });
  const create = async (names: string[]) => {
    const res = await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: names });
    if (res.statusCode !== 201) throw new Error(`creating a key: ${res.statusCode} ${res.body}`);
    return res.json().id as string;
  };
  const encrypt = async (app: TestApp, ref: { keyId?: string; keyAltName?: string }) => app.call('POST', '/encrypt', { value: 'fleet-secret', algorithm: 'random', ...ref });

  const doomed = await create(['fleet-doomed']);
  const bystander = await create(['fleet-bystander']);
  const ct = (await encrypt(a, { keyId: doomed })).json().ciphertext as string;
  const other = (await encrypt(a, { keyId: bystander })).json().ciphertext as string;

  t.test('a deleted key: B stops decrypting with it', async (t) => {
    t.equal((await b.call('POST', '/decrypt', { ciphertext: ct })).statusCode, 200);
    t.equal((await b.call('POST', '/decrypt', { ciphertext: other })).statusCode, 200);
    const before = b.app.dataKeyCache.stats();
    t.equal((await b.call('POST', '/decrypt', { ciphertext: ct })).statusCode, 200);
    t.equal(b.app.dataKeyCache.stats().hits, before.hits + 1, 'B serves the key from its cache');

    const deleted = await a.call('DELETE', `/keys/${doomed}`);
    t.equal(deleted.statusCode, 204);
    const since = performance.now();
    await within(t, 'key deleted', since, async () => (await b.call('POST', '/decrypt', { ciphertext: ct })).statusCode !== 200);
    const refused = await b.call('POST', '/decrypt', { ciphertext: ct });
    t.equal(refused.json().code, 'DECRYPTION_FAILED', 'refused with the one generic decryption error');
    t.notMatch(refused.body, /fleet-secret/);

    const hits = b.app.dataKeyCache.stats();
    t.same((await b.call('POST', '/decrypt', { ciphertext: other })).json(), { value: 'fleet-secret' });
    t.same([b.app.dataKeyCache.stats().hits, b.app.dataKeyCache.stats().misses], [hits.hits + 1, hits.misses], 'another key stays cached: the invalidation is targeted');
  });

  t.test('an alt name removed: B no longer resolves it', async (t) => {
    const id = await create(['fleet-alt-gone', 'fleet-alt-kept']);
    t.equal((await encrypt(b, { keyAltName: 'fleet-alt-gone' })).statusCode, 200, 'B resolves (and caches) the name');
    const removed = await a.call('DELETE', `/keys/${id}/alt-names/fleet-alt-gone`);
    t.equal(removed.statusCode, 200, removed.body);
    const since = performance.now();
    await within(t, 'alt name removed', since, async () => (await encrypt(b, { keyAltName: 'fleet-alt-gone' })).statusCode === 404);
    t.equal((await encrypt(b, { keyAltName: 'fleet-alt-kept' })).statusCode, 200, 'the other name still works');
  });

  t.test('an alt name removed: a grant by that name no longer covers the key through B', async (t) => {
    const id = await create(['team-x-key']);
    const client = await a.call('POST', '/clients', { name: 'team-x', grants: [{ scope: 'encrypt', keyAltNames: ['team-x-*'] }] });
    const asTeam = as(b, client.json().token);
    t.equal((await asTeam('POST', '/encrypt', { value: 'v', algorithm: 'random', keyId: id })).statusCode, 200, 'covered by its name (cached by B)');
    t.equal((await a.call('DELETE', `/keys/${id}/alt-names/team-x-key`)).statusCode, 200);
    const since = performance.now();
    await within(t, 'alt name removed (grant)', since, async () => (await asTeam('POST', '/encrypt', { value: 'v', algorithm: 'random', keyId: id })).statusCode === 404); // beyond its grants: as a missing key
  });

  t.test('a rewrapped key: B unwraps it again, under its new master key', async (t) => {
    const id = await create(['fleet-rewrapped']);
    const cipher = (await encrypt(a, { keyId: id })).json().ciphertext as string;
    t.equal((await b.call('POST', '/decrypt', { ciphertext: cipher })).statusCode, 200);
    const awsBefore = await kmsUnwraps(b, 'aws');
    const rewrap = await a.call('POST', '/keys/rewrap', { filter: { keyIds: [id] }, masterKey: { provider: 'aws', key: stack.keyArn } });
    t.equal(rewrap.statusCode, 200, rewrap.body);
    t.equal(rewrap.json().rewrapped, 1);
    const since = performance.now();
    await within(t, 'key rewrapped', since, async () => {
      t.equal((await b.call('POST', '/decrypt', { ciphertext: cipher })).statusCode, 200);
      return (await kmsUnwraps(b, 'aws')) > awsBefore;
    });
  });
});

t.test('clients: a token revoked, a client disabled, a grant narrowed through A; in force through B within 1 s', async (t) => {
  const a = await createTestApp(t, { env: LONG_CACHES });
  const b = await createTestApp(t, { share: a, env: LONG_CACHES });
  const key = await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['fleet-clients'] });
  const ct = (await a.call('POST', '/encrypt', { value: 'v', algorithm: 'random', keyAltName: 'fleet-clients' })).json().ciphertext as string;
  t.equal(key.statusCode, 201);
  const newClient = async (grants: unknown[]) => {
    const res = await a.call('POST', '/clients', { name: 'fleet', grants });
    if (res.statusCode !== 201) throw new Error(`creating a client: ${res.statusCode} ${res.body}`);
    const { client, token } = res.json() as { client: { id: string; tokens: { id: string }[] }; token: string };
    return { id: client.id, tokenId: client.tokens[0]!.id, token, onB: as(b, token) };
  };
  const decrypts = async (call: ReturnType<typeof as>) => (await call('POST', '/decrypt', { ciphertext: ct })).statusCode;

  t.test('a revoked token', async (t) => {
    const c = await newClient([{ scope: 'decrypt' }]);
    t.equal(await decrypts(c.onB), 200, 'B authenticates the token (and caches it)');
    t.equal(await decrypts(c.onB), 200);
    t.equal((await a.call('DELETE', `/clients/${c.id}/tokens/${c.tokenId}`)).statusCode, 204);
    const since = performance.now();
    await within(t, 'token revoked', since, async () => (await decrypts(c.onB)) === 401);
  });

  t.test('a disabled client', async (t) => {
    const c = await newClient([{ scope: 'decrypt' }]);
    t.equal(await decrypts(c.onB), 200);
    t.equal((await a.call('PATCH', `/clients/${c.id}`, { disabled: true })).statusCode, 200);
    const since = performance.now();
    await within(t, 'client disabled', since, async () => (await decrypts(c.onB)) === 401);
  });

  t.test('a narrowed grant', async (t) => {
    const c = await newClient([{ scope: 'decrypt' }, { scope: 'encrypt' }]);
    t.equal(await decrypts(c.onB), 200);
    t.equal((await a.call('PATCH', `/clients/${c.id}`, { grants: [{ scope: 'encrypt' }] })).statusCode, 200);
    const since = performance.now();
    await within(t, 'grant narrowed', since, async () => (await decrypts(c.onB)) === 403);
    t.equal((await c.onB('POST', '/encrypt', { value: 'v', algorithm: 'random', keyAltName: 'fleet-clients' })).statusCode, 200, 'what it keeps still works');
  });

  t.test('a deleted client', async (t) => {
    const c = await newClient([{ scope: 'decrypt' }]);
    t.equal(await decrypts(c.onB), 200);
    t.equal((await a.call('DELETE', `/clients/${c.id}`)).statusCode, 204);
    const since = performance.now();
    await within(t, 'client deleted', since, async () => (await decrypts(c.onB)) === 401);
  });
});

t.test('a collection schema change (a data-key rotation started through A): B writes with the new key within 1 s', async (t) => {
  const h = await createDocumentsApp(t);
  const b = await createTestApp(t, { share: h, env: { SCHEMAS_DIR: h.schemasDir } });
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const keyIdOf = (value: { buffer: Uint8Array }) => Buffer.from(value.buffer.subarray(1, 17)).toString('hex');
  for (let i = 0; i < 20; i++) await h.call('POST', url, { document: { name: `e${i}`, tenantKey: 'tenant-a', ssn: `SSN-${i}` } });
  t.equal((await b.call('POST', url, { document: { name: 'b-before', tenantKey: 'tenant-a', ssn: 'SSN-b' } })).statusCode, 201, 'B has read the rotation state');
  const newKey = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-det-fleet'] })).json().id as string;
  const started = await h.call('POST', `${url}/rotations`, { from: { keyAltName: 'hr-det' }, to: { keyId: newKey }, batchSize: 5, maxDocsPerSecond: 5 });
  t.equal(started.statusCode, 202, started.body);
  const since = performance.now();
  let n = 0;
  await within(t, 'rotation started (schema)', since, async () => {
    const name = `b-during-${n++}`;
    t.equal((await b.call('POST', url, { document: { name, tenantKey: 'tenant-a', ssn: `SSN-${name}` } })).statusCode, 201);
    return keyIdOf((await raw.findOne({ name }))!.ssn) === newKey.replaceAll('-', '');
  });
});

t.teardown(() => {
  // The numbers for the report (tap prints comments).
  console.log(`# fleet trust boundary, ms from A's answer to B in force: ${JSON.stringify(measured)}`);
});

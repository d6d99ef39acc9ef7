import { randomBytes } from 'node:crypto';
import t from 'tap';
import { MongoClient, BSON } from 'mongodb';
import { createClientStore, MAX_TOKENS } from '../../src/clients/client-store.js';
import { AppError } from '../../src/errors.js';
import { stack } from '../helpers/stack.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const mongo = new MongoClient(stack.mongodbUri);
t.teardown(() => mongo.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A store on a fresh database of the real server, dropped with the test. */
function setup(t: { teardown(fn: () => unknown): void }, cacheTtlMs = 60_000) {
  const dbName = `clients_${randomBytes(6).toString('hex')}`;
  const collection = mongo.db(dbName).collection<{ _id: string } & Record<string, any>>('__clients');
  t.teardown(() => mongo.db(dbName).dropDatabase());
  return { collection, store: createClientStore({ collection, cacheTtlMs }) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

const secretOf = (token: string) => token.slice('epx_'.length + 32 + 1);
const tokenIdOf = (token: string) => token.slice('epx_'.length, 'epx_'.length + 32);

t.test('a created client authenticates with its token', async (t) => {
  const { store } = setup(t);
  const grants = [{ scope: 'decrypt', keyAltNames: ['tenant-a*'] }, { scope: 'documents:hr.employees:read' }];
  const { client, token } = await store.createClient({ name: 'payroll', grants });
  t.match(client.id, /^cl_[0-9a-f]{24}$/);
  t.match(token, /^epx_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
  t.match(client, { name: 'payroll', grants, disabled: false, tokens: [{ id: tokenIdOf(token) }] });
  t.notOk('jwtSubject' in client);
  t.same(await store.getClient(client.id), client, 'getClient shows what createClient returned');
  t.same(await store.authenticateToken(token), { clientId: client.id, name: 'payroll', grants });
});

t.test('bad tokens do not authenticate', async (t) => {
  const { store } = setup(t);
  const { token } = await store.createClient({ name: 'c', grants: [{ scope: 'encrypt' }] });
  const other = randomBytes(32).toString('base64url');
  const bad = [
    `epx_${tokenIdOf(token)}_${other}`, // wrong secret
    `epx_${randomBytes(16).toString('hex')}_${secretOf(token)}`, // unknown token id
    '',
    'epx_',
    token.slice(0, -1),
    `${token}A`,
    token.toUpperCase(),
    ` ${token}`,
    token.replace('epx_', 'epy_'),
    `epx_${tokenIdOf(token)}`,
  ];
  for (const candidate of bad) t.equal(await store.authenticateToken(candidate), undefined, JSON.stringify(candidate.slice(0, 40)));
  t.equal(await store.authenticateToken(undefined as unknown as string), undefined, 'not even a string');
  t.ok(await store.authenticateToken(token), 'the real token still works after all that');
});

t.test('the stored document holds no token and no secret', async (t) => {
  const { store, collection } = setup(t);
  const { client, token } = await store.createClient({ name: 'c', grants: [{ scope: 'encrypt' }], jwtSubject: 'sub-1' });
  const issued = await store.issueToken(client.id);
  t.ok(await store.authenticateToken(token));
  await sleep(50);
  // Everything in the collection: the client and any use stamp.
  const docs = await collection.find({}).toArray();
  const text = EJSON.stringify(docs, { relaxed: false });
  for (const full of [token, issued.token]) {
    const secret = secretOf(full);
    const bytes = Buffer.from(secret, 'base64url');
    for (const form of [full, secret, bytes.toString('base64'), bytes.toString('hex'), bytes.toString('base64url')]) {
      t.notOk(text.includes(form), 'no form of the secret is stored');
    }
  }
  const stored = docs.find((doc) => doc._id === client.id)!;
  t.equal(stored.tokens.length, 2);
  for (const token of stored.tokens) t.equal(token.hash.length(), 32, 'a SHA-256 hash per token');
  const view = JSON.stringify(await store.getClient(client.id)) + JSON.stringify(await store.listClients({ limit: 10 }));
  t.notMatch(view, /hash/, 'views show no hash');
});

t.test('revoked and expired tokens, disabled and deleted clients', async (t) => {
  const { store } = setup(t);
  const { client, token } = await store.createClient({ name: 'c', grants: [{ scope: 'encrypt' }] });
  const second = await store.issueToken(client.id);
  t.ok(await store.authenticateToken(token), 'cached now');
  t.ok(await store.authenticateToken(second.token));

  await store.revokeToken(client.id, tokenIdOf(token));
  t.equal(await store.authenticateToken(token), undefined, 'a revoked token fails at once, although it was cached');
  t.ok(await store.authenticateToken(second.token), 'the other token still works');
  t.match(await rejection(store.revokeToken(client.id, tokenIdOf(token))), { code: 'CLIENT_NOT_FOUND' }, 'revoking twice is a 404');
  t.match(await rejection(store.revokeToken(client.id, 'nope')), { code: 'CLIENT_NOT_FOUND' });
  t.same((await store.getClient(client.id)).tokens.map((tk) => tk.id), [second.tokenId]);

  const shortLived = await store.issueToken(client.id, { expiresAt: new Date(Date.now() + 300) });
  t.ok(await store.authenticateToken(shortLived.token), 'valid before its expiry');
  await sleep(400);
  t.equal(await store.authenticateToken(shortLived.token), undefined, 'expired, although it was cached');
  t.match((await store.getClient(client.id)).tokens.find((tk) => tk.id === shortLived.tokenId), { expiresAt: /^\d{4}-/ });
  t.match(await rejection(store.issueToken(client.id, { expiresAt: new Date(Date.now() - 1000) })), { code: 'VALIDATION_FAILED' });
  t.match(await rejection(store.issueToken(client.id, { expiresAt: new Date('nope') })), { code: 'VALIDATION_FAILED' });

  await store.updateClient(client.id, { disabled: true });
  t.equal(await store.authenticateToken(second.token), undefined, 'a disabled client fails at once');
  await store.updateClient(client.id, { disabled: false });
  t.ok(await store.authenticateToken(second.token), 'and works again once enabled');

  await store.deleteClient(client.id);
  t.equal(await store.authenticateToken(second.token), undefined, 'a deleted client fails at once');
  t.match(await rejection(store.getClient(client.id)), { code: 'CLIENT_NOT_FOUND' });
  t.match(await rejection(store.deleteClient(client.id)), { code: 'CLIENT_NOT_FOUND' });
  t.match(await rejection(store.updateClient(client.id, { name: 'x' })), { code: 'CLIENT_NOT_FOUND' });
  t.match(await rejection(store.issueToken(client.id)), { code: 'CLIENT_NOT_FOUND' });
  t.match(await rejection(store.getClient('cl_../../etc')), { code: 'CLIENT_NOT_FOUND' });
});

t.test('expired tokens are pruned and live tokens are capped', async (t) => {
  const { store } = setup(t);
  const { client } = await store.createClient({ name: 'c', grants: [] });
  const expiring = await store.issueToken(client.id, { expiresAt: new Date(Date.now() + 200) });
  await sleep(250);
  for (let i = 2; i < MAX_TOKENS; i++) await store.issueToken(client.id);
  const tokens = (await store.getClient(client.id)).tokens;
  t.equal(tokens.length, MAX_TOKENS - 1);
  t.notOk(tokens.some((tk) => tk.id === expiring.tokenId), 'the expired token was dropped');
  await store.issueToken(client.id);
  const err = await rejection(store.issueToken(client.id));
  t.ok(err instanceof AppError);
  t.match(err, { code: 'VALIDATION_FAILED', detail: /at most 20 tokens/ });
});

t.test('an update of grants takes effect at once in this process', async (t) => {
  const { store } = setup(t);
  const { client, token } = await store.createClient({ name: 'c', grants: [{ scope: 'encrypt' }] });
  t.same((await store.authenticateToken(token))?.grants, [{ scope: 'encrypt' }]);
  const updated = await store.updateClient(client.id, { grants: [{ scope: 'decrypt', keyIds: ['AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE'] }], name: 'renamed' });
  t.same(updated.grants, [{ scope: 'decrypt', keyIds: ['aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'] }], 'grants are stored normalised');
  t.equal(updated.name, 'renamed');
  t.ok(updated.updatedAt >= client.updatedAt);
  t.same(await store.authenticateToken(token), { clientId: client.id, name: 'renamed', grants: updated.grants });
  t.match(await rejection(store.updateClient(client.id, { grants: [{ scope: 'nope' }] })), { code: 'INVALID_SCOPE' });
  t.match(await rejection(store.updateClient(client.id, { name: ' ' })), { code: 'VALIDATION_FAILED' });
  t.match(await rejection(store.updateClient(client.id, { disabled: 'yes' as unknown as boolean })), { code: 'VALIDATION_FAILED' });
  t.same((await store.getClient(client.id)).grants, updated.grants, 'a refused update changes nothing');
});

t.test('a cached principal cannot be changed by its user', async (t) => {
  const { store } = setup(t);
  const { token } = await store.createClient({ name: 'c', grants: [{ scope: 'decrypt', keyAltNames: ['a*'] }] });
  const first = await store.authenticateToken(token);
  t.throws(() => first!.grants.push({ scope: 'clients:admin' }));
  t.throws(() => first!.grants[0]!.keyAltNames!.push('*'));
  t.same((await store.authenticateToken(token))?.grants, [{ scope: 'decrypt', keyAltNames: ['a*'] }]);
});

t.test('authentications are cached: no database read within the TTL', async (t) => {
  const { store, collection } = setup(t, 60_000);
  const { client, token } = await store.createClient({ name: 'c', grants: [{ scope: 'encrypt' }] });
  t.ok(await store.authenticateToken(token));
  // Changed behind the store's back, as another process would: the cache still answers.
  await collection.updateOne({ _id: client.id }, { $set: { disabled: true } });
  t.ok(await store.authenticateToken(token), 'served from the cache');

  const { store: uncached, collection: other } = setup(t, 0);
  const created = await uncached.createClient({ name: 'c', grants: [] });
  t.ok(await uncached.authenticateToken(created.token));
  await other.updateOne({ _id: created.client.id }, { $set: { disabled: true } });
  t.equal(await uncached.authenticateToken(created.token), undefined, 'cacheTtlMs 0 reads every time');

  const { store: short, collection: third } = setup(t, 100);
  const made = await short.createClient({ name: 'c', grants: [] });
  t.ok(await short.authenticateToken(made.token));
  await third.updateOne({ _id: made.client.id }, { $set: { disabled: true } });
  await sleep(150);
  t.equal(await short.authenticateToken(made.token), undefined, 'another process sees the change within cacheTtlMs');
});

t.test('lastUsedAt is recorded, but not on every request', async (t) => {
  const { store, collection } = setup(t, 0);
  const { client, token } = await store.createClient({ name: 'c', grants: [] });
  t.notOk((await store.getClient(client.id)).tokens[0]!.lastUsedAt);
  await store.authenticateToken(token);
  let lastUsedAt: string | undefined;
  for (let i = 0; i < 50 && lastUsedAt === undefined; i++) {
    await sleep(20);
    lastUsedAt = (await store.getClient(client.id)).tokens[0]!.lastUsedAt;
  }
  t.match(lastUsedAt, /^\d{4}-/, 'recorded after the first use');
  const before = (await collection.findOne({ _id: client.id }))!;
  for (let i = 0; i < 5; i++) await store.authenticateToken(token);
  await sleep(100);
  t.equal((await store.getClient(client.id)).tokens[0]!.lastUsedAt, lastUsedAt, 'not written again within a minute');
  t.same(await collection.findOne({ _id: client.id }), before, 'use does not touch the client document');
  t.equal((await store.listClients({ limit: 10 })).items.length, 1, 'use stamps are not listed as clients');
  t.equal((await store.listClients({ limit: 10 })).items[0]!.tokens[0]!.lastUsedAt, lastUsedAt, 'lists show the last use too');

  const stampId = `tu_${tokenIdOf(token)}`;
  t.ok(await collection.findOne({ _id: stampId }));
  await store.revokeToken(client.id, tokenIdOf(token));
  t.equal(await collection.findOne({ _id: stampId }), null, 'revocation removes the stamp');

  const second = await store.issueToken(client.id);
  await store.authenticateToken(second.token);
  await sleep(100);
  t.ok(await collection.findOne({ _id: `tu_${second.tokenId}` }));
  await store.deleteClient(client.id);
  t.equal(await collection.countDocuments({}), 0, 'deleting the client removes its stamps');
});

t.test('uses racing administration lose no change (FerretDB loses concurrent updates of one document)', async (t) => {
  const { store, collection } = setup(t, 0);
  const { client } = await store.createClient({ name: 'c', grants: [] });
  const tokens = await Promise.all(Array.from({ length: 10 }, () => store.issueToken(client.id)));
  for (let round = 0; round < 10; round++) {
    // A fresh store per round: its use stamps are not throttled yet.
    const reader = createClientStore({ collection, cacheTtlMs: 0 });
    const grants = [{ scope: 'documents:db.round' + round + ':read' }];
    await Promise.all([...tokens.map((tk) => reader.authenticateToken(tk.token)), store.updateClient(client.id, { grants })]);
    t.same((await store.getClient(client.id)).grants, grants, `round ${round}: the update stuck`);
  }
  await Promise.all([...tokens.map((tk) => createClientStore({ collection, cacheTtlMs: 0 }).authenticateToken(tk.token)), store.revokeToken(client.id, tokens[0]!.tokenId)]);
  await sleep(100);
  t.equal(await store.authenticateToken(tokens[0]!.token), undefined, 'a revocation sticks');
});

t.test('subjects are unique and map to principals', async (t) => {
  const { store } = setup(t);
  await store.ensureIndexes();
  const a = await store.createClient({ name: 'a', grants: [{ scope: 'encrypt' }], jwtSubject: 'user-a' });
  const b = await store.createClient({ name: 'b', grants: [{ scope: 'decrypt' }], certSubject: 'CN=b,O=acme' });
  await store.createClient({ name: 'none', grants: [] });
  await store.createClient({ name: 'none-2', grants: [] });
  t.equal(a.client.jwtSubject, 'user-a');
  t.equal(b.client.certSubject, 'CN=b,O=acme');

  t.match(await rejection(store.createClient({ name: 'x', grants: [], jwtSubject: 'user-a' })), { code: 'CLIENT_CONFLICT', detail: /jwtSubject/ });
  t.match(await rejection(store.createClient({ name: 'x', grants: [], certSubject: 'CN=b,O=acme' })), { code: 'CLIENT_CONFLICT' });
  const raced = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => store.createClient({ name: `r${i}`, grants: [], jwtSubject: 'raced' })));
  t.equal(raced.filter((r) => r.status === 'fulfilled').length, 1, 'of concurrent creations with one subject, one wins');
  await store.createClient({ name: 'cross', grants: [], certSubject: 'user-a' });
  t.pass('a jwtSubject and a certSubject are different namespaces');

  t.same(await store.findBySubject({ jwtSubject: 'user-a' }), { clientId: a.client.id, name: 'a', grants: [{ scope: 'encrypt' }] });
  t.same(await store.findBySubject({ certSubject: 'CN=b,O=acme' }), { clientId: b.client.id, name: 'b', grants: [{ scope: 'decrypt' }] });
  t.equal(await store.findBySubject({ jwtSubject: 'CN=b,O=acme' }), undefined, 'a cert subject is no JWT subject');
  t.equal(await store.findBySubject({ jwtSubject: 'nobody' }), undefined);
  t.equal(await store.findBySubject({}), undefined);
  t.equal(await store.findBySubject({ jwtSubject: { $ne: null } as unknown as string }), undefined, 'no operator injection');

  await store.updateClient(a.client.id, { grants: [{ scope: 'keys:read' }] });
  t.same((await store.findBySubject({ jwtSubject: 'user-a' }))?.grants, [{ scope: 'keys:read' }], 'updates reach cached subjects');
  await store.updateClient(a.client.id, { disabled: true });
  t.equal(await store.findBySubject({ jwtSubject: 'user-a' }), undefined, 'a disabled client is not found');
  await store.deleteClient(b.client.id);
  t.equal(await store.findBySubject({ certSubject: 'CN=b,O=acme' }), undefined);
  t.match(await rejection(store.createClient({ name: 'x', grants: [], jwtSubject: '' })), { code: 'VALIDATION_FAILED' });
  t.match(await rejection(store.createClient({ name: 'x', grants: [{ scope: '*' }] })), { code: 'INVALID_SCOPE' });
});

t.test('clients are listed in pages', async (t) => {
  const { store } = setup(t);
  t.same(await store.listClients({ limit: 10 }), { items: [] });
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push((await store.createClient({ name: `c${i}`, grants: [] })).client.id);
  ids.sort();
  const seen: string[] = [];
  let after: string | undefined;
  let pages = 0;
  do {
    const page = await store.listClients({ limit: 3, ...(after !== undefined ? { after } : {}) });
    seen.push(...page.items.map((c) => c.id));
    after = page.next;
    pages++;
  } while (after !== undefined);
  t.same(seen, ids, 'every client once, in id order');
  t.equal(pages, 3);
  const exact = await store.listClients({ limit: 7 });
  t.equal(exact.items.length, 7);
  t.equal(exact.next, undefined, 'no next when nothing follows');
  t.equal((await store.listClients({ limit: 0 })).items.length, 1, 'the limit is at least 1');
});

t.test('ensureIndexes can run twice and on a second store', async (t) => {
  const { store, collection } = setup(t);
  await store.ensureIndexes();
  await store.ensureIndexes();
  await createClientStore({ collection, cacheTtlMs: 0 }).ensureIndexes();
  const names = (await collection.listIndexes().toArray()).map((index) => index.name).sort();
  t.same(names, ['_id_', 'certSubject_1', 'jwtSubject_1', 'tokens.id_1']);
});

t.test('a guard judges the client as stored; a grant change racing it makes the write miss and the client judged again', async (t) => {
  const { collection } = setup(t);
  // The race, made deterministic: the first write after `arm` is preceded by another writer's
  // grant change, landing after the guard read and approved the client.
  let raise: (() => Promise<unknown>) | undefined;
  const writes = new Set<PropertyKey>(['findOneAndUpdate', 'updateOne', 'deleteOne']);
  const racing = new Proxy(collection, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (typeof value !== 'function') return value;
      if (!writes.has(prop)) return value.bind(target);
      return async (...args: unknown[]) => {
        const before = raise;
        raise = undefined;
        if (before) await before();
        return value.apply(target, args);
      };
    },
  });
  const store = createClientStore({ collection: racing, cacheTtlMs: 60_000 });
  const { client, token } = await store.createClient({ name: 'target', grants: [{ scope: 'encrypt' }] });
  const arm = () => {
    raise = () => collection.updateOne({ _id: client.id }, { $set: { grants: [{ scope: 'encrypt' }, { scope: 'decrypt' }] } });
  };
  const reset = () => collection.updateOne({ _id: client.id }, { $set: { grants: [{ scope: 'encrypt' }] } });
  const judge = () => {
    const seen: string[][] = [];
    const guard = (current: { id: string; grants: { scope: string }[] }) => {
      seen.push(current.grants.map((grant) => grant.scope));
      if (current.grants.some((grant) => grant.scope !== 'encrypt')) throw new AppError('FORBIDDEN', 'more than the caller holds');
    };
    return { seen, guard };
  };
  const attempts: [string, (guard: ReturnType<typeof judge>['guard']) => Promise<unknown>][] = [
    ['update', (guard) => store.updateClient(client.id, { name: 'renamed', disabled: true }, guard)],
    ['issue a token', (guard) => store.issueToken(client.id, { guard })],
    ['revoke a token', (guard) => store.revokeToken(client.id, tokenIdOf(token), guard)],
    ['delete', (guard) => store.deleteClient(client.id, guard)],
  ];
  for (const [what, attempt] of attempts) {
    await reset();
    const { seen, guard } = judge();
    arm();
    t.match(await rejection(attempt(guard)), { code: 'FORBIDDEN' }, `${what}: refused once the change is seen`);
    t.same(seen, [['encrypt'], ['encrypt', 'decrypt']], `${what}: judged on what was read, then again`);
    const stored = await collection.findOne({ _id: client.id });
    t.match(stored, { name: 'target', disabled: false, tokens: [{ id: tokenIdOf(token) }] }, `${what}: nothing was written`);
    t.equal(stored!.tokens.length, 1, `${what}: no token added`);
  }
  t.ok(await store.authenticateToken(token), 'the token still works');

  await reset();
  const { seen, guard } = judge();
  t.match(await store.updateClient(client.id, { name: 'renamed' }, guard), { name: 'renamed' }, 'without a race, one judgement and the write');
  t.same(seen, [['encrypt']]);
  t.match(await rejection(store.deleteClient(`cl_${'0'.repeat(24)}`, guard)), { code: 'CLIENT_NOT_FOUND' }, 'an unknown client is not found before it is judged');
  t.same(seen, [['encrypt']]);
});

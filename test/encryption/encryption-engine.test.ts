/**
 * The engine on an in-memory key vault (a unit test: the fake holds the libmongocrypt fixture's
 * data key). Every use of a key is authorized against the access context's purpose.
 */
import t from 'tap';
import { BSON, UUID } from 'mongodb';
import type { Principal } from '../../src/clients/scopes.js';
import type { Access, Purpose } from '../../src/encryption/access.js';
import { createEncryptionEngine } from '../../src/encryption/encryption-engine.js';
import { AppError } from '../../src/errors.js';
import type { KeyVault } from '../../src/key-vault/key-vault.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

const { EJSON } = BSON;
const FIXTURE = vectors.keyId;
const OTHER = '22222222-3333-4444-8555-666666666666';
const fixtureKey = Buffer.from(vectors.dataKey, 'base64');
const otherKey = Buffer.alloc(96, 7);

/** A key vault of two keys, named 'fixture' and 'other'; counts key leases. */
function fakeVault() {
  const keys = new Map([
    [FIXTURE, { key: fixtureKey, names: ['fixture'] }],
    [OTHER, { key: otherKey, names: ['other'] }],
  ]);
  const leased: string[][] = [];
  const vault = {
    async resolveAltNames(names: string[]) {
      const out = new Map<string, UUID>();
      for (const [id, k] of keys) for (const name of k.names) if (names.includes(name)) out.set(name, new UUID(id));
      return out;
    },
    async altNamesOf(ids: string[]) {
      return new Map(ids.map((id) => [id, keys.get(id)?.names ?? []]));
    },
    async withDataKeys<T>(ids: Iterable<string>, use: (keys: Map<string, unknown>) => T | Promise<T>) {
      const wanted = [...new Set(ids)];
      leased.push(wanted);
      return use(new Map(wanted.map((id) => [id, keys.get(id)?.key ?? new AppError('KEY_NOT_FOUND')])));
    },
  };
  return { vault: vault as unknown as KeyVault, leased };
}

const principal = (grants: Principal['grants']): Principal => ({ clientId: 'c', name: 'c', grants });
const OPERATOR = principal([{ scope: '*' }]);
const access = (p: Principal, purpose: Purpose, keysNamed?: Set<string>): Access => ({ principal: p, purpose, ...(keysNamed ? { keysNamed } : {}) });
const value = (v: unknown) => EJSON.deserialize({ v } as never, { relaxed: false }).v;

t.test('encrypt: byte-identical to libmongocrypt for deterministic values, key by id or alt name', async (t) => {
  const { vault } = fakeVault();
  const engine = createEncryptionEngine({ keyVault: vault });
  const items = vectors.deterministic.map((v, i) => ({
    value: value(v.value),
    algorithm: 'deterministic' as const,
    ...(i % 2 === 0 ? { keyId: FIXTURE } : { keyAltName: 'fixture' }),
  }));
  const { results, keyIds } = await engine.encrypt(items, access(OPERATOR, { kind: 'encrypt' }));
  results.forEach((r, i) => t.equal(r.ok && Buffer.from(r.value.buffer).toString('base64'), vectors.deterministic[i]!.ciphertext));
  t.same(keyIds, [FIXTURE]);
});

t.test('decrypt: libmongocrypt ciphertexts of both algorithms, item by item', async (t) => {
  const { vault } = fakeVault();
  const engine = createEncryptionEngine({ keyVault: vault });
  const all = [...vectors.deterministic, ...vectors.random];
  const payloads = [...all.map((v) => Buffer.from(v.ciphertext, 'base64')), Buffer.from('not a payload')];
  const { results } = await engine.decrypt(payloads, access(OPERATOR, { kind: 'decrypt' }));
  all.forEach((v, i) => t.same(results[i]!.ok && EJSON.serialize({ v: results[i]!.value }, { relaxed: false }).v, v.value));
  const last = results.at(-1)!;
  t.equal(last.ok ? 'ok' : last.error.code, 'DECRYPTION_FAILED');
});

t.test('each purpose needs its own right on each key', async (t) => {
  const { vault, leased } = fakeVault();
  const engine = createEncryptionEngine({ keyVault: vault });
  const payload = Buffer.from(vectors.deterministic[0]!.ciphertext, 'base64');
  const item = { value: 'x', algorithm: 'deterministic' as const, keyAltName: 'fixture' };
  const code = (r: { ok: boolean; error?: AppError }) => (r.ok ? 'ok' : r.error!.code);

  const encryptOnly = principal([{ scope: 'encrypt' }]);
  t.equal(code((await engine.encrypt([item], access(encryptOnly, { kind: 'encrypt' }))).results[0]!), 'ok');
  t.equal(code((await engine.decrypt([payload], access(encryptOnly, { kind: 'decrypt' }))).results[0]!), 'FORBIDDEN', 'encrypt does not decrypt');
  t.equal(code((await engine.encrypt([item], access(encryptOnly, { kind: 'query' }))).results[0]!), 'FORBIDDEN', 'a query needs decrypt');

  const limited = principal([{ scope: 'decrypt', keyAltNames: ['oth*'] }]);
  t.equal(code((await engine.encrypt([item], access(limited, { kind: 'query' }))).results[0]!), 'FORBIDDEN', 'decrypt on another key is not enough');
  const onKey = principal([{ scope: 'decrypt', keyIds: [FIXTURE] }]);
  t.equal(code((await engine.encrypt([item], access(onKey, { kind: 'query' }))).results[0]!), 'ok');
  t.equal(code((await engine.decrypt([payload], access(onKey, { kind: 'decrypt' }))).results[0]!), 'ok');
  t.equal(code((await engine.encrypt([{ ...item, algorithm: 'random' }], access(onKey, { kind: 'query' }))).results[0]!), 'QUERY_ON_RANDOM_FIELD');

  const writer = principal([{ scope: 'documents:hr.employees:write' }]);
  t.equal(code((await engine.encrypt([item], access(writer, { kind: 'write', collection: 'hr.employees' }))).results[0]!), 'ok');
  t.equal(code((await engine.encrypt([item], access(writer, { kind: 'write', collection: 'hr.other' }))).results[0]!), 'FORBIDDEN');
  t.equal(code((await engine.encrypt([item], access(writer, { kind: 'encrypt' }))).results[0]!), 'KEY_NOT_FOUND', 'a collection grant is no explicit encrypt right (and a key beyond its grants does not exist for it)');

  const before = leased.length;
  await engine.decrypt([payload], access(encryptOnly, { kind: 'decrypt' }));
  t.same(leased.slice(before), [[]], 'a refused key is never leased');
  await t.rejects(engine.decrypt([payload], access(OPERATOR, { kind: 'encrypt' })), /decrypt called for encrypt/);
  await t.rejects(engine.encrypt([item], access(OPERATOR, { kind: 'decrypt' })), /encrypt called for decrypt/);
});

t.test('the key ids a call named are recorded, refused ones included; used ones are returned', async (t) => {
  const { vault } = fakeVault();
  const engine = createEncryptionEngine({ keyVault: vault });
  const named = new Set<string>();
  const onlyOther = principal([{ scope: 'encrypt', keyAltNames: ['other'] }]);
  const { results, keyIds } = await engine.encrypt(
    [
      { value: 'a', algorithm: 'random', keyAltName: 'fixture' },
      { value: 'b', algorithm: 'random', keyAltName: 'other' },
      { value: 'c', algorithm: 'random', keyAltName: 'missing' },
    ],
    access(onlyOther, { kind: 'encrypt' }, named),
  );
  t.same(results.map((r) => (r.ok ? 'ok' : r.error.code)), ['KEY_NOT_FOUND', 'ok', 'KEY_NOT_FOUND'], 'a key it may not use reads as one that does not exist');
  t.same(keyIds, [OTHER]);
  t.same([...named].sort(), [FIXTURE, OTHER].sort());
});

t.test('reencrypt: only from the rotation old key to its new one, keeping the algorithm', async (t) => {
  const { vault } = fakeVault();
  const engine = createEncryptionEngine({ keyVault: vault });
  const det = Buffer.from(vectors.deterministic[0]!.ciphertext, 'base64');
  const rnd = Buffer.from(vectors.random[0]!.ciphertext, 'base64');
  const rotation = { kind: 'rotate' as const, fromKeyId: FIXTURE, toKeyId: OTHER };
  const rotator = principal([{ scope: 'decrypt', keyIds: [FIXTURE] }, { scope: 'encrypt', keyIds: [OTHER] }]);
  const { results } = await engine.reencrypt([det, rnd], access(rotator, rotation));
  t.ok(results.every((r) => r.ok));
  const moved = results.map((r) => (r.ok ? Buffer.from(r.value.buffer) : Buffer.alloc(0)));
  t.same(moved.map((p) => p[0]), [1, 2], 'deterministic stays deterministic, random stays random');
  t.same(moved.map((p) => new UUID(p.subarray(1, 17)).toHexString(true)), [OTHER, OTHER]);
  const back = await engine.decrypt(moved, access(OPERATOR, { kind: 'decrypt' }));
  t.same(EJSON.serialize({ v: (back.results[0] as { value: unknown }).value }, { relaxed: false }).v, vectors.deterministic[0]!.value);

  const verified = await engine.verify(moved, access(rotator, rotation));
  t.ok(verified.results.every((r) => r.ok && r.value === true), 'verify answers true, never the plaintext');
  const notFrom = await engine.reencrypt(moved, access(rotator, rotation));
  t.ok(notFrom.results.every((r) => !r.ok && r.error.code === 'FORBIDDEN'), 'a payload under another key than the old one is refused');
  const half = principal([{ scope: 'decrypt', keyIds: [FIXTURE] }]);
  const refused = await engine.reencrypt([det], access(half, rotation));
  const first = refused.results[0]!;
  t.equal(first.ok ? 'ok' : first.error.code, 'FORBIDDEN', 'without encrypt on the new key, nothing is re-encrypted');
});

/**
 * Field encryption with the real engine over an in-memory key vault (a unit test: the fake holds
 * the libmongocrypt fixture's data key, so ciphertexts are checked against golden vectors). Writes
 * encrypt all fields or none; a query is a read of the field it names; during a rotation a value
 * matches under two keys without any plaintext left in the filter; reads mask what the caller may
 * not decrypt and say what could not be decrypted.
 */
import t from 'tap';
import fc from 'fast-check';
import { Binary, Int32, UUID } from 'mongodb';
import type { Caller } from '../../src/encryption/access.js';
import { collectJobs } from '../../src/documents/document-crypto.js';
import { compilePlan } from '../../src/documents/encryption-plan.js';
import { createFieldEncryption } from '../../src/documents/field-encryption.js';
import { planFilter } from '../../src/documents/query-rewriter.js';
import { AppError } from '../../src/errors.js';
import { fakeEngine, KEY_IDS, OPERATOR, principal } from '../helpers/fake-key-vault.js';
import { RND, unitPlan } from '../helpers/unit-schemas.js';
import { seed } from '../property/arbitraries.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

const plan = unitPlan();
const NS = 'hr.employees';
const same = (id: string) => id;
const only = (id: string) => [id];

function setup(options: Parameters<typeof fakeEngine>[0] = {}) {
  const fake = fakeEngine(options);
  return { ...fake, fields: createFieldEncryption({ engine: fake.engine, resolveAltNames: fake.resolveAltNames }) };
}

const caller = (p = OPERATOR, keysNamed?: Set<string>): Caller => ({ principal: p, ...(keysNamed ? { keysNamed } : {}) });
const writer = principal([{ scope: `documents:${NS}:write` }]);

/** The payload of a subtype-6 value: algorithm byte, key id, BSON type. */
function header(value: unknown): { algorithm: number; keyId: string } {
  const binary = value as Binary;
  if (binary?._bsontype !== 'Binary' || binary.sub_type !== 6) throw new Error(`not ciphertext: ${String(value)}`);
  const bytes = Buffer.from(binary.buffer);
  return { algorithm: bytes[0]!, keyId: new UUID(bytes.subarray(1, 17)).toHexString(true) };
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected a rejection with an AppError');
}

/** Every string anywhere in a value (BSON values other than strings are not looked into). */
function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value !== null && typeof value === 'object' && !('_bsontype' in value)) for (const [k, v] of Object.entries(value)) out.push(k), strings(v, out);
  return out;
}

t.test('encryptJobs encrypts in place, each field under its key and algorithm (golden vector)', async (t) => {
  const { fields } = setup();
  const doc: Record<string, unknown> = {
    name: 'n',
    ssn: 'hello',
    badge: new Int32(7),
    medical: { diagnosis: 'd', ward: 'w' },
    profile: { contact: { email: 'e', secret_a: { any: ['thing'] } } },
    note_1: 'x',
  };
  await fields.encryptJobs(collectJobs(doc, plan, '', doc), caller(), NS, same);
  t.equal(Buffer.from((doc.ssn as Binary).buffer).toString('base64'), vectors.deterministic[0]!.ciphertext, 'byte-identical to libmongocrypt');
  t.same(header(doc.badge), { algorithm: 1, keyId: KEY_IDS.fixture });
  const medical = doc.medical as Record<string, unknown>;
  t.same(header(medical.diagnosis), { algorithm: 2, keyId: KEY_IDS.other });
  t.equal(medical.ward, 'w');
  const contact = (doc.profile as { contact: Record<string, unknown> }).contact;
  t.same(header(contact.email), { algorithm: 1, keyId: KEY_IDS.other });
  t.same(header(contact.secret_a), { algorithm: 2, keyId: KEY_IDS.fixture });
  t.same(header(doc.note_1), { algorithm: 2, keyId: KEY_IDS.fixture });
  t.equal(doc.name, 'n');
});

t.test('encryptJobs is all or nothing: one failing field leaves the document untouched', async (t) => {
  const { fields } = setup();
  const doc: Record<string, unknown> = { ssn: 'hello', medical: { diagnosis: 'd' }, salary: null };
  const before = structuredClone(doc);
  const err = await rejection(fields.encryptJobs(collectJobs(doc, plan, '', doc), caller(), NS, same));
  t.equal(err.code, 'UNSUPPORTED_BSON_TYPE');
  t.match(err.detail, /^salary: /, 'the detail names the path');
  t.same(doc, before, 'no field was replaced');

  const wrongType: Record<string, unknown> = { ssn: 'hello', badge: 1.5 };
  const beforeType = structuredClone(wrongType);
  t.equal((await rejection(fields.encryptJobs(collectJobs(wrongType, plan, '', wrongType), caller(), NS, same))).code, 'UNSUPPORTED_BSON_TYPE', 'a double is no deterministic value');
  t.same(wrongType, beforeType);

  const down = setup({ failing: new Map([[KEY_IDS.other, new AppError('KMS_UNAVAILABLE')]]) });
  const withOutage: Record<string, unknown> = { ssn: 'hello', salary: new Int32(1) };
  const err2 = await rejection(down.fields.encryptJobs(collectJobs(withOutage, plan, '', withOutage), caller(), NS, same));
  t.equal(err2.code, 'KMS_UNAVAILABLE', 'an outage keeps its code');
  t.equal(withOutage.ssn, 'hello', 'and nothing was replaced');
});

t.test('keyId pointers: the key named by the document, or a clear refusal', async (t) => {
  const { fields } = setup();
  const encrypt = (doc: Record<string, unknown>, p = plan) => fields.encryptJobs(collectJobs(doc, p, '', doc), caller(), NS, same);
  const doc: Record<string, unknown> = { tenantKey: 'tenant-a', tenantSecret: 's' };
  await encrypt(doc);
  t.same(header(doc.tenantSecret), { algorithm: 2, keyId: KEY_IDS.tenantA });

  const refusals: [string, Record<string, unknown>, string][] = [
    ['a missing pointer', { tenantSecret: 's', ssn: 'hello' }, 'DOCUMENT_VALIDATION_FAILED'],
    ['an empty pointer', { tenantKey: '', tenantSecret: 's', ssn: 'hello' }, 'DOCUMENT_VALIDATION_FAILED'],
    ['a pointer to a number', { tenantKey: 5, tenantSecret: 's', ssn: 'hello' }, 'DOCUMENT_VALIDATION_FAILED'],
    ['a pointer to an object', { tenantKey: { $ne: 1 }, tenantSecret: 's', ssn: 'hello' }, 'DOCUMENT_VALIDATION_FAILED'],
    ['an unknown alt name', { tenantKey: 'nobody', tenantSecret: 's', ssn: 'hello' }, 'UNKNOWN_KEY_ALT_NAME'],
  ];
  for (const [what, d, code] of refusals) {
    const before = structuredClone(d);
    const err = await rejection(encrypt(d));
    t.equal(err.code, code, what);
    t.match(err.detail, /^tenantSecret: .*\/tenantKey/, `${what}: the detail names the field and the pointer`);
    t.same(d, before, `${what}: nothing encrypted`);
  }

  const nested = compilePlan({ properties: { secret: { encrypt: { algorithm: RND, keyId: '/meta/owner' } } } })!;
  const d2: Record<string, unknown> = { meta: { owner: 'other' }, secret: 1 };
  await encrypt(d2, nested);
  t.same(header(d2.secret), { algorithm: 2, keyId: KEY_IDS.other }, 'a pointer two levels deep');
  t.equal((await rejection(encrypt({ meta: ['other'], secret: 1 }, nested))).code, 'DOCUMENT_VALIDATION_FAILED', 'a pointer is not read through an array');
});

t.test('a write is authorized for its collection; a key the document names also needs encrypt on it', async (t) => {
  const { fields } = setup();
  const doc = () => {
    const d: Record<string, unknown> = { ssn: 'hello', tenantKey: 'tenant-a', tenantSecret: 's' };
    return { d, jobs: collectJobs(d, plan, '', d) };
  };
  const staticOnly = { ssn: 'hello' } as Record<string, unknown>;
  await fields.encryptJobs(collectJobs(staticOnly, plan, '', staticOnly), caller(writer), NS, same);
  t.equal(header(staticOnly.ssn).keyId, KEY_IDS.fixture, 'for a key the schema names, the collection grant is enough');
  const chosen = doc();
  const refused = await rejection(fields.encryptJobs(chosen.jobs, caller(writer), NS, same));
  t.equal(refused.code, 'UNKNOWN_KEY_ALT_NAME', 'a key the document names is the writer choosing a key: beyond its grants, as if no key had the name');
  t.match(refused.detail, /tenantSecret/, 'named by its path');
  t.equal(chosen.d.ssn, 'hello', 'and nothing was encrypted in place');
  const ok = doc();
  const tenantWriter = principal([{ scope: `documents:${NS}:write` }, { scope: 'encrypt', keyAltNames: ['tenant-*'] }]);
  await fields.encryptJobs(ok.jobs, caller(tenantWriter), NS, same);
  t.equal(header(ok.d.ssn).keyId, KEY_IDS.fixture);

  const other = doc();
  const err = await rejection(fields.encryptJobs(other.jobs, caller(writer), 'hr.other', same));
  t.equal(err.code, 'FORBIDDEN', 'a write for another collection');
  t.equal(other.d.ssn, 'hello');
  const keyOnly = doc();
  t.equal((await rejection(fields.encryptJobs(keyOnly.jobs, caller(principal([{ scope: 'encrypt' }])), NS, same))).code, 'FORBIDDEN', 'an encrypt right is no collection grant');
  const reader = doc();
  t.equal((await rejection(fields.encryptJobs(reader.jobs, caller(principal([{ scope: `documents:${NS}:read` }])), NS, same))).code, 'FORBIDDEN');
});

t.test('during a rotation new writes use the successor key', async (t) => {
  const { fields } = setup();
  const d: Record<string, unknown> = { ssn: 'hello', salary: new Int32(1) };
  const named = new Set<string>();
  await fields.encryptJobs(collectJobs(d, plan, '', d), caller(OPERATOR, named), NS, (id) => (id === KEY_IDS.fixture ? KEY_IDS.next : id));
  t.same(header(d.ssn), { algorithm: 1, keyId: KEY_IDS.next });
  t.same(header(d.salary), { algorithm: 2, keyId: KEY_IDS.other });
  t.same([...named].sort(), [KEY_IDS.next, KEY_IDS.other].sort(), 'the keys used are recorded for the audit');
});

t.test('encryptSlots: a query on an encrypted field needs the decrypt right on its key', async (t) => {
  const { fields } = setup();
  const filter: Record<string, unknown> = { ssn: 'hello', name: 'n' };
  await fields.encryptSlots(planFilter(filter, plan), caller(), only);
  t.equal(Buffer.from((filter.ssn as Binary).buffer).toString('base64'), vectors.deterministic[0]!.ciphertext, 'the stored ciphertext, byte for byte');
  t.equal(filter.name, 'n');

  const refusedFor: [string, ReturnType<typeof principal>][] = [
    ['read and write on the collection only', principal([{ scope: `documents:${NS}:read` }, { scope: `documents:${NS}:write` }])],
    ['decrypt on another key', principal([{ scope: 'decrypt', keyAltNames: ['other'] }])],
    ['encrypt on the key', principal([{ scope: 'encrypt', keyIds: [KEY_IDS.fixture] }])],
  ];
  for (const [what, p] of refusedFor) {
    const f: Record<string, unknown> = { $or: [{ name: 'x' }, { 'profile.contact.email': { $in: ['e'] } }, { ssn: { $ne: 'hello' } }] };
    const before = structuredClone(f);
    const err = await rejection(fields.encryptSlots(planFilter(f, plan), caller(p), only));
    t.equal(err.code, 'FORBIDDEN', what);
    t.match(err.detail, /^A query on (ssn|profile\.contact\.email) needs the decrypt right on its data key/, `${what}: the detail names the path`);
    t.same(f, before, `${what}: the filter was not rewritten`);
  }
  const f: Record<string, unknown> = { ssn: { $in: ['hello', 'x'] } };
  await fields.encryptSlots(planFilter(f, plan), caller(principal([{ scope: 'decrypt', keyAltNames: ['fix*'] }])), only);
  t.ok(((f.ssn as { $in: unknown[] }).$in).every((v) => header(v).keyId === KEY_IDS.fixture), 'with decrypt on the key, by alt-name pattern');
  const onlyEmailKey = principal([{ scope: 'decrypt', keyIds: [KEY_IDS.other] }]);
  const mixed = { 'profile.contact.email': 'e', ssn: 'hello' };
  const err = await rejection(fields.encryptSlots(planFilter(mixed, plan), caller(onlyEmailKey), only));
  t.match(err.detail, /ssn/, 'one field of two without the right: refused, naming that one');
  t.equal(typeof mixed.ssn, 'string');
  t.equal(typeof mixed['profile.contact.email'], 'string', 'all or nothing: no slot was rewritten');
});

t.test('during a rotation a value matches under both keys, through $in/$nin, and no plaintext is left', async (t) => {
  const { fields } = setup();
  const both = (id: string) => (id === KEY_IDS.fixture ? [KEY_IDS.fixture, KEY_IDS.next] : [id]);
  const rewrite = async (filter: Record<string, unknown>) => {
    await fields.encryptSlots(planFilter(filter, plan), caller(), both);
    return filter;
  };
  const pair = (f: unknown) => (f as unknown[]).map((v) => header(v).keyId);

  const bare = await rewrite({ ssn: 'CANARY-a' });
  t.same(pair((bare.ssn as { $in: unknown[] }).$in), [KEY_IDS.fixture, KEY_IDS.next], 'a bare value becomes $in of two ciphertexts');
  const eq = await rewrite({ ssn: { $eq: 'CANARY-a' } });
  t.same(Object.keys(eq.ssn as object), ['$in']);
  const ne = await rewrite({ ssn: { $ne: 'CANARY-a' } });
  t.same(pair((ne.ssn as { $nin: unknown[] }).$nin), [KEY_IDS.fixture, KEY_IDS.next], '$ne becomes $nin of both');
  const inList = await rewrite({ ssn: { $in: ['CANARY-a', 'CANARY-b'] } });
  t.equal(((inList.ssn as { $in: unknown[] }).$in).length, 4, 'each value of $in under both keys');
  const nin = await rewrite({ ssn: { $nin: ['CANARY-a'] } });
  t.equal(((nin.ssn as { $nin: unknown[] }).$nin).length, 2);
  const not = await rewrite({ ssn: { $not: { $eq: 'CANARY-a' } } });
  t.same(Object.keys((not.ssn as { $not: object }).$not), ['$in'], '$not of $eq becomes $not of $in');
  const other = await rewrite({ 'profile.contact.email': 'CANARY-e' });
  t.equal(header(other['profile.contact.email']).keyId, KEY_IDS.other, 'a field under a key not being rotated: one ciphertext');

  // Issue 11: {"ssn": {"$eq": "a", "$in": ["b"]}} was rewritten into one $in holding "b" in plaintext.
  const issue = await rewrite({ ssn: { $eq: 'CANARY-a', $in: ['CANARY-b'] } });
  t.same(Object.keys(issue), ['$and']);
  const parts = issue.$and as Record<string, Record<string, unknown[]>>[];
  t.same(parts.map((p) => Object.keys(p.ssn!)), [['$in'], ['$in']], 'each operator in its own part, each widened alone');
  t.same(pair(parts[0]!.ssn!.$in), [KEY_IDS.fixture, KEY_IDS.next]);
  t.same(pair(parts[1]!.ssn!.$in), [KEY_IDS.fixture, KEY_IDS.next]);
  for (const filter of [bare, eq, ne, inList, nin, not, other, issue]) {
    t.same(strings(filter).filter((s) => s.startsWith('CANARY')), [], `no plaintext in ${JSON.stringify(filter).slice(0, 80)}`);
  }
});

/** MongoDB's meaning of the equality operators on one field; BSON binaries compare by bytes. */
function equal(a: unknown, b: unknown): boolean {
  if (a instanceof Binary && b instanceof Binary) return a.sub_type === b.sub_type && Buffer.from(a.buffer).equals(Buffer.from(b.buffer));
  return a === b;
}
function matches(filter: Record<string, unknown>, doc: Record<string, unknown>): boolean {
  return Object.entries(filter).every(([key, condition]) => {
    if (key === '$and') return (condition as Record<string, unknown>[]).every((f) => matches(f, doc));
    if (key === '$or') return (condition as Record<string, unknown>[]).some((f) => matches(f, doc));
    if (key === '$nor') return !(condition as Record<string, unknown>[]).some((f) => matches(f, doc));
    return holds(condition, doc[key]);
  });
}
function holds(condition: unknown, value: unknown): boolean {
  const isOperators = typeof condition === 'object' && condition !== null && !('_bsontype' in condition) && Object.keys(condition).every((k) => k.startsWith('$'));
  if (!isOperators) return equal(value, condition);
  return Object.entries(condition as Record<string, unknown>).every(([op, arg]) => {
    if (op === '$eq') return equal(value, arg);
    if (op === '$ne') return !equal(value, arg);
    if (op === '$in') return (arg as unknown[]).some((a) => equal(value, a));
    if (op === '$nin') return !(arg as unknown[]).some((a) => equal(value, a));
    if (op === '$not') return !holds(arg, value);
    throw new Error(`no model for ${op}`);
  });
}

t.test('during a rotation the rewritten filter matches exactly what the plaintext filter meant, under either key', async (t) => {
  const { fields, engine } = setup();
  const values = ['a', 'b', 'c'];
  // The stored documents: each value under the old key and under the new one, and one without ssn.
  const stored: { plain: Record<string, unknown>; raw: Record<string, unknown> }[] = [{ plain: {}, raw: {} }];
  for (const keyId of [KEY_IDS.fixture, KEY_IDS.next]) {
    const { results } = await engine.encrypt(values.map((value) => ({ value, algorithm: 'deterministic' as const, keyId })), { principal: OPERATOR, purpose: { kind: 'encrypt' } });
    results.forEach((r, i) => stored.push({ plain: { ssn: values[i] }, raw: { ssn: r.ok ? r.value : undefined } }));
  }
  const valueArb = fc.constantFrom(...values);
  const opArb = fc.oneof(
    valueArb.map((v) => ['$eq', v] as const),
    valueArb.map((v) => ['$ne', v] as const),
    fc.array(valueArb, { maxLength: 3 }).map((v) => ['$in', v] as const),
    fc.array(valueArb, { maxLength: 3 }).map((v) => ['$nin', v] as const),
    valueArb.map((v) => ['$not', { $eq: v }] as const),
    valueArb.map((v) => ['$not', { $ne: v }] as const),
    fc.array(valueArb, { maxLength: 2 }).map((v) => ['$not', { $in: v }] as const),
    fc.array(valueArb, { maxLength: 2 }).map((v) => ['$not', { $nin: v }] as const),
  );
  const conditionArb = fc.oneof(
    valueArb,
    fc.uniqueArray(opArb, { minLength: 1, maxLength: 4, selector: ([op]) => op }).map((ops) => Object.fromEntries(ops)),
  );
  const filterArb = fc.oneof(
    conditionArb.map((ssn) => ({ ssn })),
    fc.tuple(conditionArb, conditionArb).map(([a, b]) => ({ $or: [{ ssn: a }, { ssn: b }] })),
    fc.tuple(conditionArb, conditionArb).map(([a, b]) => ({ ssn: a, $nor: [{ ssn: b }] })),
  );
  const both = (id: string) => [id, KEY_IDS.next];
  await fc.assert(
    fc.asyncProperty(filterArb, async (filter) => {
      const rewritten = structuredClone(filter) as Record<string, unknown>;
      await fields.encryptSlots(planFilter(rewritten, plan), caller(), both);
      if (strings(rewritten).some((s) => values.includes(s))) throw new Error(`plaintext left in ${JSON.stringify(rewritten)}`);
      for (const { plain, raw } of stored) {
        if (matches(filter, plain) !== matches(rewritten, raw)) {
          throw new Error(`${JSON.stringify(filter)} and its rewrite disagree on ${JSON.stringify(plain)}`);
        }
      }
    }),
    { seed, numRuns: 150 },
  );
  t.pass('holds');
});

t.test('decryptDocuments: decrypted in place; masked where the caller has no right; unreadable where tampered', async (t) => {
  const { fields, engine } = setup();
  const enc = async (value: unknown, keyId: string, algorithm: 'deterministic' | 'random' = 'random') => {
    const { results } = await engine.encrypt([{ value, algorithm, keyId }], { principal: OPERATOR, purpose: { kind: 'encrypt' } });
    return (results[0] as { value: Binary }).value;
  };
  const tamper = (b: Binary) => {
    const bytes = Buffer.from(b.buffer);
    bytes[bytes.length - 1]! ^= 1;
    return new Binary(bytes, 6);
  };
  const unknownKey = (b: Binary) => {
    const bytes = Buffer.from(b.buffer);
    Buffer.from('99999999999949998999999999999999', 'hex').copy(bytes, 1);
    return new Binary(bytes, 6);
  };
  const build = async () => [
    { _id: 1, ssn: await enc('hello', KEY_IDS.fixture, 'deterministic'), salary: await enc(new Int32(5), KEY_IDS.other), list: [await enc('in a list', KEY_IDS.fixture)] },
    { _id: 2, name: 'plain only' },
    { _id: 3, note_1: tamper(await enc('x', KEY_IDS.fixture)), medical: { diagnosis: await enc('d', KEY_IDS.fixture), bad: new Binary(Buffer.from([2, 1]), 6) } },
  ];

  const fixtureReader = principal([{ scope: 'decrypt', keyIds: [KEY_IDS.fixture] }]);
  const docs = await build();
  const { masked, unreadable } = await fields.decryptDocuments(docs, caller(fixtureReader));
  t.equal(docs[0]!.ssn, 'hello');
  t.same(docs[0]!.list, ['in a list'], 'inside arrays too');
  t.equal(docs[0]!.salary, null, 'masked: null, never ciphertext');
  t.same([...masked], [[0, ['salary']]]);
  t.same([...unreadable], [[2, ['note_1', 'medical.bad']]], 'a tampered payload and a malformed one are unreadable');
  t.equal(docs[2]!.note_1, null);
  t.equal((docs[2]!.medical as Record<string, unknown>).diagnosis, 'd');

  const all = await build();
  const asOperator = await fields.decryptDocuments(all, caller());
  t.same([...asOperator.masked], []);
  t.same(all[0]!.salary, new Int32(5), 'the BSON type comes back');

  const nobody = await build();
  const none = await fields.decryptDocuments(nobody, caller(principal([{ scope: `documents:${NS}:read` }])));
  t.same([...none.masked], [[0, ['ssn', 'salary', 'list.0']], [2, ['note_1', 'medical.diagnosis']]], 'a reader without decrypt sees every field masked');
  t.same([...none.unreadable], [[2, ['medical.bad']]]);

  const lost = [{ _id: 4, ssn: unknownKey(await enc('hello', KEY_IDS.fixture)) }];
  const gone = await fields.decryptDocuments(lost, caller());
  t.same([...gone.unreadable], [[0, ['ssn']]], 'a payload naming no key is unreadable');

  const empty = await fields.decryptDocuments([{ a: 1 }], caller());
  t.same([empty.masked.size, empty.unreadable.size], [0, 0]);
});

t.test('decryptDocuments fails the whole read when the KMS is unavailable', async (t) => {
  const healthy = setup();
  const { results } = await healthy.engine.encrypt([{ value: 'x', algorithm: 'random', keyId: KEY_IDS.fixture }], { principal: OPERATOR, purpose: { kind: 'encrypt' } });
  const ciphertext = (results[0] as { value: Binary }).value;
  const down = setup({ failing: new Map([[KEY_IDS.fixture, new AppError('KMS_UNAVAILABLE')]]) });
  const docs = [{ _id: 1, a: ciphertext, b: 'plain' }];
  const err = await rejection(down.fields.decryptDocuments(docs, caller()));
  t.equal(err.code, 'KMS_UNAVAILABLE');
  t.equal(err.status, 503);
});

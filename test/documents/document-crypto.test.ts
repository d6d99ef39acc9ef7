/**
 * The document walker (a unit test, no key): collectJobs finds the fields a plan encrypts, and
 * refuses, naming the path, every shape that could carry an encrypted field past it in plaintext;
 * findCiphertexts finds subtype-6 values in documents read back.
 */
import t from 'tap';
import { Binary, Code, DBRef, Int32, ObjectId, UUID } from 'mongodb';
import { collectJobs, findCiphertexts, type FieldJob, type FoundCiphertext } from '../../src/documents/document-crypto.js';
import { compilePlan, type ObjectNode } from '../../src/documents/encryption-plan.js';
import { KEY_IDS } from '../helpers/fake-key-vault.js';
import { keyIdOf, RND, unitPlan } from '../helpers/unit-schemas.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };
import { errorOf } from '../helpers/errors.js';

const plan = unitPlan();
const CANARY = 'CANARY-walker-plaintext';


const paths = (jobs: FieldJob[]) => jobs.map((j) => j.path);
const walk = (doc: Record<string, unknown>) => collectJobs(doc, plan, '', doc);
const ciphertext = () => new Binary(Buffer.from(vectors.deterministic[0]!.ciphertext, 'base64'), 6);

t.test('collectJobs: every field the plan encrypts, at any depth, and nothing else', async (t) => {
  const doc: Record<string, unknown> = {
    _id: new ObjectId(),
    name: 'Ann',
    tags: [{ ssn: 'not the encrypted ssn: tags is plain' }, ['x']],
    ssn: CANARY,
    badge: new Int32(1),
    medical: { diagnosis: CANARY, allergies: [CANARY, { deep: CANARY }], ward: ['plain', { $any: 'plain' }] },
    profile: { contact: { email: CANARY, secret_pin: { any: [CANARY] }, city: 'c' }, other: [1] },
    tenantKey: 'tenant-a',
    tenantSecret: CANARY,
    note_a: CANARY,
  };
  const jobs = walk(doc);
  t.same(paths(jobs), ['ssn', 'badge', 'medical.diagnosis', 'medical.allergies', 'profile.contact.email', 'profile.contact.secret_pin', 'tenantSecret', 'note_a']);
  const diagnosis = jobs[2]!;
  t.equal(diagnosis.parent, doc.medical, 'a job points at the object holding the field, to replace it in place');
  t.equal(diagnosis.name, 'diagnosis');
  t.equal(diagnosis.root, doc, 'and at the document, for keyId pointers');
  t.equal(diagnosis.node.algorithm, 'random');
  t.equal(jobs[5]!.node.schemaPath, '$.properties.profile.properties.contact.patternProperties.^secret_');

  t.same(paths(walk({ name: 'only plain fields', level: 1 })), []);
  t.same(paths(walk({ medical: {}, profile: { contact: {} } })), [], 'empty subtrees');
  // An encrypted field holding a document, an array or a value of any type is encrypted whole
  // (the engine then refuses what the algorithm cannot take): the walker does not look inside.
  t.same(paths(walk({ note_x: { $ref: 'x', $id: 1 }, note_y: [[CANARY]], salary: null })), ['note_x', 'note_y', 'salary']);
});

t.test('a field with encrypted fields below it holds a plain document, nothing else', async (t) => {
  const refused: [string, unknown, string][] = [
    ['an array of documents', [{ diagnosis: CANARY }], 'an array'],
    ['an empty array', [], 'an array'],
    ['a nested array', [[{ diagnosis: CANARY }]], 'an array'],
    ['a DBRef (the driver class)', new DBRef('x', new ObjectId(), undefined, { diagnosis: CANARY }), 'a DBRef'],
    ['null', null, 'a value of type null'],
    ['a string', CANARY, 'a value of type string'],
    ['a number', 5, 'a value of type int'],
    ['a boolean', true, 'a value of type bool'],
    ['a date', new Date(0), 'a value of type date'],
    ['a regex', /x/, 'a value of type regex'],
    ['code', new Code('x'), 'a value of type javascript'],
    ['a binary', new Binary(Buffer.from(CANARY)), 'a value of type binData'],
    ['ciphertext', ciphertext(), 'a value of type binData'],
    ['an ObjectId', new ObjectId(), 'a value of type objectId'],
    ['a UUID', new UUID(), 'a value of type binData'],
  ];
  for (const [what, medical, found] of refused) {
    const err = errorOf(() => walk({ name: 'n', medical }));
    t.equal(err.code, 'INVALID_DOCUMENT_SHAPE', what);
    t.equal(err.status, 400);
    t.equal(err.detail, `medical must be a plain document: it has encrypted fields (found ${found}).`, what);
  }
  const deep = errorOf(() => walk({ profile: { contact: [{ email: CANARY }] } }));
  t.match(deep.detail, /^profile\.contact must be a plain document.*an array/, 'two levels down, the full path');
  const middle = errorOf(() => walk({ profile: [{ contact: { email: CANARY } }] }));
  t.match(middle.detail, /^profile must be a plain document/);
  t.match(errorOf(() => walk([{ ssn: CANARY }] as never)).detail, /^The document must be a plain document/, 'the document itself');
  // A DBRef-shaped object that is still a plain object (not turned into a DBRef) has $ names.
  t.equal(errorOf(() => walk({ medical: { $ref: 'x', $id: 1, diagnosis: CANARY } })).code, 'INVALID_DOCUMENT_SHAPE');
});

t.test('$-prefixed and dotted names are refused wherever fields are encrypted', async (t) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['a $ name in a subtree', { medical: { diagnosis: 'd', $where: CANARY } }, /^medical: field names/],
    ['a $ name alone', { medical: { $diagnosis: CANARY } }, /^medical: field names/],
    ['a dotted name in a subtree', { medical: { 'diagnosis.x': CANARY } }, /^medical: field names/],
    ['a dotted name two levels down', { profile: { contact: { 'email.x': CANARY } } }, /^profile\.contact: field names/],
    ['a $ name at the top', { name: 'n', $set: { ssn: CANARY } }, /^The document: field names/],
    ['a dotted name at the top', { name: 'n', 'medical.diagnosis': CANARY }, /^The document: field names/],
    ['a dotted pattern name at the top', { 'note_.x': CANARY }, /^The document: field names/],
  ];
  for (const [what, doc, detail] of cases) {
    const err = errorOf(() => walk(doc));
    t.equal(err.code, 'INVALID_DOCUMENT_SHAPE', what);
    t.match(err.detail, detail, what);
    t.notMatch(err.detail, /CANARY/, `${what}: never the value`);
  }
  // Below a plain field the walker does not go: MongoDB's rules apply there.
  t.same(paths(walk({ medical: { ward: { $x: 1, 'a.b': 2 } } })), []);
});

t.test('ciphertext already at an encrypted field is refused, not stored as if encrypted by us', async (t) => {
  const err = errorOf(() => walk({ ssn: ciphertext() }));
  t.equal(err.code, 'UNSUPPORTED_BSON_TYPE');
  t.match(err.detail, /^ssn: the value is already ciphertext/);
  t.equal(errorOf(() => walk({ medical: { diagnosis: ciphertext() } })).code, 'UNSUPPORTED_BSON_TYPE');
  // Inside a value that is encrypted whole it is just bytes of the value.
  t.same(paths(walk({ medical: { allergies: [ciphertext()] } })), ['medical.allergies']);
});

t.test('patternProperties at two levels, and a name two patterns claim', async (t) => {
  t.same(paths(walk({ note_1: 'a', note_2: 'b', notes: 'plain', profile: { contact: { secret_a: 1, secret_b: 2, secretc: 3 } } })), [
    'note_1',
    'note_2',
    'profile.contact.secret_a',
    'profile.contact.secret_b',
  ]);
  const ambiguous = compilePlan({
    patternProperties: {
      '^a': { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } },
      'b$': { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.other) } },
    },
  })!;
  const doc = { ab: CANARY };
  const err = errorOf(() => collectJobs(doc, ambiguous, '', doc));
  t.equal(err.code, 'SCHEMA_RULE_CONFLICT');
  t.match(err.detail, /^ab matches two patternProperties rules/);
});

t.test('collectJobs below a $set path: the value at an encrypted field or a subtree', async (t) => {
  const set: Record<string, unknown> = { 'medical.diagnosis': CANARY, profile: { contact: { email: 'e' } } };
  const diagnosisNode = (plan.properties.get('medical') as ObjectNode).properties.get('diagnosis')!;
  const jobs = collectJobs(set['medical.diagnosis'], diagnosisNode, 'medical.diagnosis', {}, [], { object: set, name: 'medical.diagnosis' });
  t.same(paths(jobs), ['medical.diagnosis']);
  t.equal(jobs[0]!.parent, set, 'the $set object is the parent: its value is replaced in place');
  const profileNode = plan.properties.get('profile')!;
  t.same(paths(collectJobs(set.profile, profileNode, 'profile', {}, [], { object: set, name: 'profile' })), ['profile.contact.email']);
  t.equal(errorOf(() => collectJobs([{ contact: {} }], profileNode, 'profile', {}, [], { object: set, name: 'profile' })).code, 'INVALID_DOCUMENT_SHAPE');
  t.throws(() => collectJobs('x', diagnosisNode, 'x', {}), /needs a parent/, 'an encrypt rule is always reached through its parent');
});

t.test('findCiphertexts: subtype 6 anywhere, with its path, parent and parsed payload', async (t) => {
  const det = ciphertext();
  const rnd = new Binary(Buffer.from(vectors.random[0]!.ciphertext, 'base64'), 6);
  const broken = new Binary(Buffer.from([1, 2, 3]), 6);
  const docs: Record<string, unknown>[] = [
    { _id: 1, ssn: det, other: new Binary(Buffer.from('not 6'), 0), list: [1, { x: rnd }, [broken]] },
    { _id: 2, name: 'nothing here' },
    { _id: 3, medical: { diagnosis: rnd } },
  ];
  const found: FoundCiphertext[] = [];
  docs.forEach((doc, i) => findCiphertexts(doc, '', i, found));
  t.same(found.map((f) => [f.document, f.path, f.name]), [
    [0, 'ssn', 'ssn'],
    [0, 'list.1.x', 'x'],
    [0, 'list.2.0', 0],
    [2, 'medical.diagnosis', 'diagnosis'],
  ]);
  t.equal(found[0]!.parent, docs[0]);
  t.equal(found[0]!.parsed?.algorithm, 'deterministic');
  t.equal(found[1]!.parsed?.algorithm, 'random');
  t.equal(Buffer.from(found[0]!.parsed!.keyId).toString('hex'), KEY_IDS.fixture.replaceAll('-', ''));
  t.equal(found[2]!.parsed, undefined, 'a malformed payload is found, unparsed');
  const none: FoundCiphertext[] = [];
  findCiphertexts({ a: new Binary(Buffer.alloc(16), 4), b: [new Binary(Buffer.from('x'), 0)], c: 'AQ==' }, '', 0, none);
  t.same(none, []);
});

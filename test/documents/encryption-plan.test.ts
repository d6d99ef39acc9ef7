/**
 * compilePlan on MongoDB's automatic-encryption schema syntax (a unit test): what a valid schema
 * compiles to, and the SchemaError (naming the schema path) of each mistake that must stop the
 * boot rather than encrypt a field wrongly, or not at all.
 */
import t from 'tap';
import { compilePlan, listEncryptedPaths, ruleFor, SchemaError, type EncryptNode, type ObjectNode, type PlanNode } from '../../src/documents/encryption-plan.js';
import { KEY_IDS } from '../helpers/fake-key-vault.js';
import { DET, RND, keyIdOf, unitSchema } from '../helpers/unit-schemas.js';

const asObject = (node: PlanNode | undefined | 'conflict'): ObjectNode => {
  if (node === undefined || node === 'conflict' || node.kind !== 'object') throw new Error(`not an object node: ${JSON.stringify(node)}`);
  return node;
};
const asEncrypt = (node: PlanNode | undefined | 'conflict'): EncryptNode => {
  if (node === undefined || node === 'conflict' || node.kind !== 'encrypt') throw new Error(`not an encrypt node: ${JSON.stringify(node)}`);
  return node;
};

/** The SchemaError compilePlan throws for `schema`. */
function schemaError(schema: unknown): SchemaError {
  try {
    compilePlan(schema);
  } catch (err) {
    if (err instanceof SchemaError) return err;
    throw err;
  }
  throw new Error(`compiled: ${JSON.stringify(schema)}`);
}

t.test('a valid schema compiles to a plan of its encrypted fields only', async (t) => {
  const plan = compilePlan(unitSchema())!;
  t.same([...plan.properties.keys()], ['ssn', 'badge', 'salary', 'medical', 'profile', 'tenantSecret'], 'plain fields are not in the plan');
  t.same(asEncrypt(plan.properties.get('ssn')), {
    kind: 'encrypt',
    algorithm: 'deterministic',
    bsonTypes: ['string'],
    key: { kind: 'id', id: KEY_IDS.fixture },
    schemaPath: '$.properties.ssn',
  });
  t.same(asEncrypt(plan.properties.get('salary')).algorithm, 'random');

  // encryptMetadata gives algorithm and key to every field below it.
  const medical = asObject(plan.properties.get('medical'));
  t.same([...medical.properties.keys()], ['diagnosis', 'allergies']);
  const diagnosis = asEncrypt(medical.properties.get('diagnosis'));
  t.equal(diagnosis.algorithm, 'random');
  t.same(diagnosis.key, { kind: 'id', id: KEY_IDS.other });
  t.equal(diagnosis.schemaPath, '$.properties.medical.properties.diagnosis');
  t.same(asEncrypt(medical.properties.get('allergies')).bsonTypes, ['array']);

  // Two levels of subtrees, with patternProperties at the lower one.
  const contact = asObject(asObject(plan.properties.get('profile')).properties.get('contact'));
  t.equal(asEncrypt(contact.properties.get('email')).algorithm, 'deterministic');
  t.equal(contact.patterns.length, 1);
  t.equal(contact.patterns[0]!.source, '^secret_');
  t.equal(asEncrypt(ruleFor(contact, 'secret_pin')).bsonTypes, undefined, 'random without bsonType takes any type');
  t.equal(ruleFor(contact, 'city'), undefined);

  // A keyId pointer into the document.
  t.same(asEncrypt(plan.properties.get('tenantSecret')).key, { kind: 'pointer', pointer: '/tenantKey', segments: ['tenantKey'] });
  t.equal(asEncrypt(ruleFor(plan, 'note_1')).schemaPath, '$.patternProperties.^note_');
  t.equal(ruleFor(plan, 'xnote_1'), undefined, 'patterns are regexes, anchored as written');
});

t.test('encryptMetadata is inherited down several levels; the nearest one and encrypt itself win', async (t) => {
  const plan = compilePlan({
    encryptMetadata: { algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) },
    properties: {
      a: { encrypt: {} },
      b: {
        bsonType: 'object',
        properties: {
          c: {
            bsonType: 'object',
            encryptMetadata: { keyAltName: 'hr-det' },
            properties: {
              d: { encrypt: { bsonType: 'string', algorithm: DET } },
              e: { encrypt: { keyId: keyIdOf(KEY_IDS.other) } },
            },
          },
          f: { encrypt: { bsonType: ['int', 'string'] } },
        },
      },
    },
  })!;
  const a = asEncrypt(plan.properties.get('a'));
  t.same([a.algorithm, a.key], ['random', { kind: 'id', id: KEY_IDS.fixture }], 'from the root');
  const b = asObject(plan.properties.get('b'));
  const c = asObject(b.properties.get('c'));
  const d = asEncrypt(c.properties.get('d'));
  t.same([d.algorithm, d.key], ['deterministic', { kind: 'altName', name: 'hr-det' }], 'the algorithm of encrypt, the key of the nearer metadata');
  const e = asEncrypt(c.properties.get('e'));
  t.same([e.algorithm, e.key], ['random', { kind: 'id', id: KEY_IDS.other }], "encrypt's own key");
  t.same(asEncrypt(b.properties.get('f')).bsonTypes, ['int', 'string'], 'random may take several types');
});

t.test('key sources: UUID forms, alt name (extension), JSON pointers', async (t) => {
  const uuidBinary = { $binary: { base64: Buffer.from(KEY_IDS.other.replaceAll('-', ''), 'hex').toString('base64'), subType: '04' } };
  const plan = compilePlan({
    properties: {
      byUuid: { encrypt: { algorithm: RND, keyId: [{ $uuid: KEY_IDS.fixture }] } },
      byBinary: { encrypt: { algorithm: RND, keyId: [uuidBinary] } },
      byName: { encrypt: { algorithm: RND, keyAltName: 'tenant-a' } },
      byPointer: { encrypt: { algorithm: RND, keyId: '/a~1b/c~0d' } },
    },
  })!;
  const key = (name: string) => asEncrypt(plan.properties.get(name)).key;
  t.same(key('byUuid'), { kind: 'id', id: KEY_IDS.fixture });
  t.same(key('byBinary'), { kind: 'id', id: KEY_IDS.other });
  t.same(key('byName'), { kind: 'altName', name: 'tenant-a' });
  t.same(key('byPointer'), { kind: 'pointer', pointer: '/a~1b/c~0d', segments: ['a/b', 'c~d'] }, 'RFC 6901 escapes');
});

t.test('patternProperties compile as unicode regexes; nested subtrees under patterns', async (t) => {
  const plan = compilePlan({
    patternProperties: {
      '^x_': { bsonType: 'object', properties: { code: { encrypt: { bsonType: 'int', algorithm: DET, keyId: keyIdOf(KEY_IDS.fixture) } } } },
      '^\\p{Lu}$': { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } },
      '^plain_': { bsonType: 'string' },
    },
  })!;
  t.equal(plan.patterns.length, 2, 'a pattern without encrypted fields is not in the plan');
  t.equal(asObject(ruleFor(plan, 'x_1')).properties.get('code')?.kind, 'encrypt');
  t.equal(asEncrypt(ruleFor(plan, 'É')).algorithm, 'random', 'a unicode property class matches');
  t.equal(ruleFor(plan, 'plain_1'), undefined);
});

t.test('nothing encrypted: no plan', async (t) => {
  t.equal(compilePlan({ bsonType: 'object', properties: { a: { bsonType: 'string' } } }), undefined);
  t.equal(compilePlan({}), undefined);
  t.equal(compilePlan({ properties: { a: { properties: { b: { bsonType: 'int' } } } } }), undefined);
});

t.test('each schema mistake is a SchemaError naming the schema path', async (t) => {
  const key = keyIdOf(KEY_IDS.fixture);
  const cases: [string, unknown, RegExp][] = [
    ['deterministic without bsonType', { properties: { a: { encrypt: { algorithm: DET, keyId: key } } } }, /^\$\.properties\.a: deterministic encryption needs exactly one bsonType/],
    ['deterministic with two bsonTypes', { properties: { a: { encrypt: { bsonType: ['string', 'int'], algorithm: DET, keyId: key } } } }, /\$\.properties\.a: deterministic encryption needs exactly one bsonType/],
    ['deterministic with a type it refuses', { properties: { a: { encrypt: { bsonType: 'double', algorithm: DET, keyId: key } } } }, /\$\.properties\.a: deterministic encryption does not support bsonType "double"/],
    ['deterministic of a document', { properties: { a: { encrypt: { bsonType: 'object', algorithm: DET, keyId: key } } } }, /does not support bsonType "object"/],
    ['a type no algorithm encrypts', { properties: { a: { encrypt: { bsonType: 'null', algorithm: RND, keyId: key } } } }, /bsonType "null" cannot be encrypted/],
    ['a pointer with deterministic', { properties: { a: { encrypt: { bsonType: 'string', algorithm: DET, keyId: '/k' } } } }, /\$\.properties\.a: a keyId pointer works only with the random algorithm/],
    ['a pointer inherited by a deterministic field', { encryptMetadata: { keyId: '/k' }, properties: { a: { encrypt: { bsonType: 'string', algorithm: DET } } } }, /keyId pointer works only with the random/],
    ['encrypt under items', { properties: { a: { bsonType: 'array', items: { encrypt: { algorithm: RND, keyId: key } } } } }, /^\$\.properties\.a\.items: encrypt is supported only under properties and patternProperties/],
    ['encrypt deep under items', { properties: { a: { items: { properties: { b: { encrypt: { algorithm: RND, keyId: key } } } } } } }, /\$\.properties\.a\.items: encrypt is supported only/],
    ['encrypt under additionalItems', { properties: { a: { additionalItems: { encrypt: { algorithm: RND, keyId: key } } } } }, /\.additionalItems: encrypt is supported only/],
    ['encrypt under anyOf', { anyOf: [{ properties: { a: { encrypt: { algorithm: RND, keyId: key } } } }] }, /^\$\.anyOf: encrypt is supported only/],
    ['encrypt under oneOf', { properties: { a: { oneOf: [{ encrypt: { algorithm: RND, keyId: key } }] } } }, /\.oneOf: encrypt/],
    ['encrypt under allOf', { allOf: [{ encrypt: { algorithm: RND, keyId: key } }] }, /\$\.allOf: encrypt/],
    ['encrypt under not', { not: { properties: { a: { encrypt: { algorithm: RND, keyId: key } } } } }, /\$\.not: encrypt/],
    ['encrypt under additionalProperties', { additionalProperties: { encrypt: { algorithm: RND, keyId: key } } }, /\$\.additionalProperties: encrypt/],
    ['encrypt under dependencies', { dependencies: { a: { properties: { b: { encrypt: { algorithm: RND, keyId: key } } } } } }, /\$\.dependencies: encrypt/],
    ['an encrypted _id', { properties: { _id: { encrypt: { algorithm: RND, keyId: key } } } }, /^\$\.properties\._id: _id cannot be encrypted/],
    ['a property an encrypting pattern also matches', { properties: { note_a: { bsonType: 'string' } }, patternProperties: { '^note_': { encrypt: { algorithm: RND, keyId: key } } } }, /\$\.properties\.note_a: conflicts with patternProperties "\^note_"/],
    ['an encrypted property a plain pattern would not reach but an encrypting one does', { properties: { ab: { encrypt: { algorithm: RND, keyId: key } } }, patternProperties: { '^a': { bsonType: 'object', properties: { c: { encrypt: { algorithm: RND, keyId: key } } } } } }, /\$\.properties\.ab: conflicts/],
    ['encrypted fields below a field that does not say it is a document (as mongocryptd)', { properties: { foo: { properties: { bar: { encrypt: { algorithm: RND, keyId: key } } } } } }, /^\$\.properties\.foo: a field with encrypted fields below it must say "bsonType": "object"/],
    ['an unknown algorithm', { properties: { a: { encrypt: { algorithm: 'AES-ECB', keyId: key } } } }, /\$\.properties\.a: algorithm must be one of/],
    ['an algorithm of another case', { properties: { a: { encrypt: { algorithm: DET.toLowerCase(), bsonType: 'string', keyId: key } } } }, /algorithm must be one of/],
    ['an algorithm from the prototype', { properties: { a: { encrypt: { algorithm: 'toString', keyId: key } } } }, /algorithm must be one of/],
    ['no algorithm anywhere', { properties: { a: { encrypt: { keyId: key } } } }, /algorithm must be one of/],
    ['no key anywhere', { properties: { a: { encrypt: { algorithm: RND } } } }, /\$\.properties\.a: no key/],
    ['keyId and keyAltName', { properties: { a: { encrypt: { algorithm: RND, keyId: key, keyAltName: 'x' } } } }, /give keyId or keyAltName, not both/],
    ['two key ids', { properties: { a: { encrypt: { algorithm: RND, keyId: [...key, ...key] } } } }, /keyId must list exactly one key UUID/],
    ['a key id of another subtype', { properties: { a: { encrypt: { algorithm: RND, keyId: [{ $binary: { base64: 'AAAAAAAAAAAAAAAAAAAAAA==', subType: '00' } }] } } } }, /keyId must hold a UUID/],
    ['a key id that is a string', { properties: { a: { encrypt: { algorithm: RND, keyId: [KEY_IDS.fixture] } } } }, /keyId must hold a UUID/],
    ['a malformed $uuid', { properties: { a: { encrypt: { algorithm: RND, keyId: [{ $uuid: 'nope' }] } } } }, /keyId must hold a UUID/],
    ['a pointer without a slash', { properties: { a: { encrypt: { algorithm: RND, keyId: 'tenantKey' } } } }, /a keyId pointer must look like "\/field"/],
    ['an empty pointer', { properties: { a: { encrypt: { algorithm: RND, keyId: '/' } } } }, /a keyId pointer must look like/],
    ['an unknown encrypt option', { properties: { a: { encrypt: { algorithm: RND, keyId: key, queries: {} } } } }, /unknown encrypt option "queries"/],
    ['encrypt beside other keywords', { properties: { a: { bsonType: 'string', encrypt: { algorithm: RND, keyId: key } } } }, /\$\.properties\.a: an encrypted field takes no other keywords \(found bsonType\)/],
    ['encrypt that is no object', { properties: { a: { encrypt: true } } }, /encrypt must be an object/],
    ['encryptMetadata that is no object', { encryptMetadata: 'x', properties: {} }, /^\$: encryptMetadata must be an object/],
    ['properties that is no object', { properties: [] }, /\$\.properties: must be an object/],
    ['an invalid pattern', { patternProperties: { '(': { encrypt: { algorithm: RND, keyId: key } } } }, /\$\.patternProperties: invalid pattern/],
    ['a schema that is no object', ['x'], /the schema must be an object/],
  ];
  for (const [what, schema, message] of cases) {
    const err = schemaError(schema);
    t.equal(err.name, 'SchemaError', what);
    t.match(err.message, message, what);
  }
});

t.test('listEncryptedPaths: every encrypted field with its path, patterns as /regex/', async (t) => {
  const paths = listEncryptedPaths(compilePlan(unitSchema()));
  t.same(
    paths.map(({ path, node }) => `${path} ${node.algorithm}`),
    [
      'ssn deterministic',
      'badge deterministic',
      'salary random',
      'medical.diagnosis random',
      'medical.allergies random',
      'profile.contact.email deterministic',
      'profile.contact./^secret_/ random',
      'tenantSecret random',
      '/^note_/ random',
    ],
  );
  t.same(listEncryptedPaths(undefined), []);
  const underPattern = listEncryptedPaths(compilePlan({ patternProperties: { '^x_': { bsonType: 'object', properties: { code: { encrypt: { algorithm: RND, keyId: keyIdOf(KEY_IDS.fixture) } } } } } }));
  t.same(underPattern.map((p) => p.path), ['/^x_/.code']);
});

// Finding (see the report of this test file): compilePlan refuses `properties._id` with encrypt,
// but a top-level pattern that matches "_id", or encrypted fields below an `_id` subtree, compile;
// the walker then encrypts the document's _id (random: it can never be looked up again, and the
// insert answers with ciphertext as its insertedId). Held here until the rule covers every route.
t.test('no rule can encrypt _id or a field inside it', async (t) => {
  const key = keyIdOf(KEY_IDS.fixture);
  const byPattern = { patternProperties: { '^_': { encrypt: { algorithm: RND, keyId: key } } } };
  t.throws(() => compilePlan(byPattern), SchemaError, 'a top-level pattern that matches "_id"');
  const inside = { properties: { _id: { properties: { tenant: { encrypt: { algorithm: RND, keyId: key } } } } } };
  t.throws(() => compilePlan(inside), SchemaError, 'encrypted fields inside _id');
});

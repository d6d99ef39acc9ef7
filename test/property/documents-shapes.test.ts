/**
 * Issue 11's promise, as a property over HTTP against the real servers: whatever the shape of a
 * document or an update (nested objects, arrays, nested arrays, $-keys, DBRef-like objects,
 * Extended JSON wrappers, wrong types, nulls, at encrypted and plain paths; $set of parents,
 * dotted paths, numeric segments, $unset, $inc, unknown operators), after every accepted write
 * the raw documents, read with the plain driver, hold no plaintext at any path the schema marks
 * encrypted, each value there being subtype 6 under the schema's key and algorithm; after every
 * refused write the raw collection is exactly as before; and nothing answers 5xx.
 *
 * The expected encryption of each schema is written out by hand below (not taken from
 * compilePlan), so a mistake in the plan compiler cannot hide a leak. Raw documents are walked
 * with MongoDB's path semantics, arrays included: `medical.diagnosis` is also reached through
 * `medical: [{diagnosis: …}]`. Plaintext strings are unique canaries (CANARY-…), so a leak
 * anywhere in the raw bytes is easy to spot.
 *
 * One app per schema; few runs (every request writes audit events to the database).
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { Binary, BSON, type Document } from 'mongodb';
import { createTestApp } from '../helpers/app.js';
import { createDocumentsApp, DET, RND, type DocumentsTestApp } from '../helpers/documents.js';
import { seed } from './arbitraries.js';

const { EJSON } = BSON;

// ---------------------------------------------------------------- what each schema encrypts

type Key = string | { pointer: string[] };
type EncSpec = { kind: 'enc'; algorithm: 1 | 2; key: Key };
type ObjSpec = { kind: 'obj'; props: Record<string, Spec>; patterns?: [RegExp, Spec][] };
type Spec = EncSpec | ObjSpec;

const det = (key: Key): EncSpec => ({ kind: 'enc', algorithm: 1, key });
const rnd = (key: Key): EncSpec => ({ kind: 'enc', algorithm: 2, key });
const obj = (props: Record<string, Spec>, patterns?: [RegExp, Spec][]): ObjSpec => ({ kind: 'obj', props, ...(patterns ? { patterns } : {}) });

function ruleOf(spec: ObjSpec, name: string): Spec | undefined {
  if (Object.hasOwn(spec.props, name)) return spec.props[name];
  return spec.patterns?.find(([regex]) => regex.test(name))?.[1];
}

interface SchemaCase {
  name: string;
  schema?: (keys: Record<string, string>) => unknown;
  spec: ObjSpec;
  /** A valid document; the string 'CANARY' stands for a fresh canary. */
  base: Record<string, unknown>;
  /** Paths a generated document or update changes. */
  paths: string[];
  /** Paths only updates use: numeric segments, positional operators, paths inside ciphertext … */
  updateOnlyPaths: string[];
  /** Values the schema accepts at some paths, so that enough writes are accepted. */
  good: Record<string, unknown[]>;
  /** Sequences run before the generated ones, whatever the seed: the shapes of issue 11. */
  examples?: Op[][];
}

const tenantNames = ['tenant-a', 'tenant-b', 'hr-det', 'nobody'];

const cases: SchemaCase[] = [
  {
    name: 'employees (deterministic, random, encryptMetadata subtree, keyId pointer, patternProperties)',
    // No schema function: createDocumentsApp boots with the shared employees schema.
    spec: obj(
      {
        ssn: det('hr-det'),
        badge: det('hr-det'),
        salary: rnd('hr-rnd'),
        medical: obj({ diagnosis: rnd('hr-rnd'), allergies: rnd('hr-rnd') }),
        tenantSecret: rnd({ pointer: ['tenantKey'] }),
      },
      [[/^note_/, rnd('hr-rnd')]],
    ),
    base: {
      name: 'E',
      tenantKey: 'tenant-a',
      level: 1,
      ssn: 'CANARY',
      badge: 5,
      salary: 7,
      medical: { diagnosis: 'CANARY', allergies: ['CANARY', 'dust'], ward: 'north' },
      tenantSecret: 'CANARY',
      note_a: 'CANARY',
    },
    paths: ['ssn', 'badge', 'salary', 'tenantKey', 'tenantSecret', 'medical', 'medical.diagnosis', 'medical.allergies', 'medical.ward', 'medical.extra', 'note_a', 'note_b', 'level', 'name', 'other'],
    updateOnlyPaths: ['medical.0', 'medical.0.diagnosis', 'medical.1.allergies', 'ssn.x', 'note_a.b', 'medical.diagnosis.x', 'medical.$.diagnosis', 'medical.$[].diagnosis', '_id', '$where', 'a..b'],
    good: {
      ssn: ['CANARY'],
      badge: [6],
      salary: [8],
      tenantKey: tenantNames,
      tenantSecret: ['CANARY'],
      medical: [{ diagnosis: 'CANARY', ward: 'south' }, { allergies: ['CANARY', { deep: 'CANARY' }] }, {}],
      'medical.diagnosis': ['CANARY'],
      'medical.allergies': [['CANARY', ['CANARY']]],
      'medical.ward': ['CANARY'],
      'medical.extra': [['CANARY'], { $ref: 'x', $id: 1, diagnosis: 'CANARY' }],
      note_a: ['CANARY'],
      note_b: ['CANARY'],
      level: [2],
    },
    examples: [
      [
        { kind: 'insert', document: { name: 'E', tenantKey: 'tenant-a', ssn: 'CANARY', medical: { $ref: 'x', $id: 1, diagnosis: 'CANARY' } } },
        { kind: 'insert', document: { name: 'E', tenantKey: 'tenant-a', ssn: 'CANARY', medical: [{ diagnosis: 'CANARY' }] } },
        { kind: 'replace', document: { name: 'E', tenantKey: 'tenant-a', ssn: 'CANARY', medical: [[{ diagnosis: 'CANARY' }]] } },
        { kind: 'insertMany', documents: [{ name: 'E', tenantKey: 'tenant-a', ssn: 'CANARY', medical: [{ diagnosis: 'CANARY' }] }, { name: 'E', tenantKey: 'tenant-b', ssn: 'CANARY' }] },
      ],
      [
        { kind: 'patch', update: { $set: { medical: [{ diagnosis: 'CANARY' }] } } },
        { kind: 'patch', update: { $set: { medical: { $ref: 'x', $id: 1, diagnosis: 'CANARY' } } } },
        { kind: 'updateWhere', update: { $set: { 'medical.0': { diagnosis: 'CANARY' } } }, many: false },
        { kind: 'updateWhere', update: { $set: { 'medical.0.diagnosis': 'CANARY' } }, many: true },
        { kind: 'patch', update: { $set: { 'medical.diagnosis': 'CANARY', tenantKey: 'tenant-b', tenantSecret: 'CANARY' } } },
      ],
    ],
  },
  {
    name: 'nested (subtrees two levels deep, patternProperties at three levels)',
    schema: () => ({
      bsonType: 'object',
      required: ['name'],
      properties: {
        _id: {},
        name: { bsonType: 'string' },
        tags: { bsonType: 'array' },
        profile: {
          bsonType: 'object',
          properties: {
            contact: {
              bsonType: 'object',
              properties: {
                email: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
                phone: { encrypt: { algorithm: RND, keyAltName: 'hr-rnd' } },
                city: { bsonType: 'string' },
              },
              patternProperties: { '^secret_': { encrypt: { algorithm: RND, keyAltName: 'tenant-a' } } },
            },
            history: { bsonType: 'array' },
          },
          patternProperties: { '^pii_': { encrypt: { algorithm: RND, keyAltName: 'tenant-b' } } },
        },
      },
      patternProperties: {
        '^x_': { bsonType: 'object', properties: { code: { encrypt: { bsonType: 'int', algorithm: DET, keyAltName: 'hr-det' } } } },
      },
    }),
    spec: obj(
      {
        profile: obj(
          { contact: obj({ email: det('hr-det'), phone: rnd('hr-rnd') }, [[/^secret_/, rnd('tenant-a')]]) },
          [[/^pii_/, rnd('tenant-b')]],
        ),
      },
      [[/^x_/, obj({ code: det('hr-det') })]],
    ),
    base: {
      name: 'N',
      tags: ['t'],
      profile: { contact: { email: 'CANARY', phone: 'CANARY', secret_a: 'CANARY', city: 'c' }, pii_x: 'CANARY', history: [] },
      x_1: { code: 5 },
    },
    paths: [
      'profile', 'profile.contact', 'profile.contact.email', 'profile.contact.phone', 'profile.contact.secret_b', 'profile.contact.city',
      'profile.pii_y', 'profile.history', 'profile.other', 'x_1', 'x_1.code', 'x_2', 'tags', 'other', 'other.deep',
    ],
    updateOnlyPaths: [
      'profile.0', 'profile.0.contact', 'profile.contact.0', 'profile.contact.1.email', 'profile.0.contact.email', 'x_1.0', 'x_1.0.code',
      'profile.contact.email.x', 'profile.pii_x.0', 'profile.$.contact', 'tags.$[]', 'tags.0', '_id.x', '$rename',
    ],
    good: {
      profile: [{ contact: { email: 'CANARY' } }, { pii_z: ['CANARY'], history: ['CANARY'] }],
      'profile.contact': [{ email: 'CANARY', secret_z: { deep: ['CANARY'] } }, { phone: [['CANARY']] }],
      'profile.contact.email': ['CANARY'],
      'profile.contact.phone': [{ any: 'CANARY' }, 'CANARY'],
      'profile.contact.secret_b': ['CANARY'],
      'profile.contact.city': ['CANARY'],
      'profile.pii_y': [['CANARY']],
      'profile.history': [[{ email: 'CANARY' }]],
      'x_1': [{ code: 6 }, { code: 7, other: ['CANARY'] }],
      'x_1.code': [8],
      'x_2': [{ code: 9 }],
      tags: [[{ contact: { email: 'CANARY' } }]],
    },
  },
  {
    name: 'metadata (encryptMetadata with a keyId pointer at the root, an alt name below)',
    schema: () => ({
      bsonType: 'object',
      required: ['name'],
      encryptMetadata: { algorithm: RND, keyId: '/meta/owner' },
      properties: {
        _id: {},
        name: { bsonType: 'string' },
        meta: { bsonType: 'object', properties: { owner: { bsonType: 'string' } } },
        secret: { encrypt: { bsonType: 'string' } },
        misc: { encrypt: {} },
        card: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
        vault: {
          bsonType: 'object',
          encryptMetadata: { keyAltName: 'hr-rnd' },
          properties: {
            pin: { encrypt: { bsonType: 'int' } },
            box: { bsonType: 'object', properties: { gem: { encrypt: {} } } },
          },
        },
      },
    }),
    spec: obj({
      secret: rnd({ pointer: ['meta', 'owner'] }),
      misc: rnd({ pointer: ['meta', 'owner'] }),
      card: det('hr-det'),
      vault: obj({ pin: rnd('hr-rnd'), box: obj({ gem: rnd('hr-rnd') }) }),
    }),
    base: {
      name: 'M',
      meta: { owner: 'tenant-a' },
      secret: 'CANARY',
      misc: { any: ['CANARY'] },
      card: 'CANARY',
      vault: { pin: 5, box: { gem: 'CANARY' } },
    },
    paths: ['meta', 'meta.owner', 'secret', 'misc', 'card', 'vault', 'vault.pin', 'vault.box', 'vault.box.gem', 'vault.other', 'other'],
    updateOnlyPaths: ['vault.0', 'vault.box.0', 'vault.1.box.gem', 'vault.box.gem.x', 'misc.any', 'meta.0', 'meta.owner.x', 'vault.$[i]', '_id', '$currentDate'],
    good: {
      meta: [{ owner: 'tenant-b' }, { owner: 'hr-rnd' }, {}],
      'meta.owner': tenantNames,
      secret: ['CANARY'],
      misc: ['CANARY', ['CANARY', { x: 'CANARY' }], { $ref: 'x', $id: 1, y: 'CANARY' }],
      card: ['CANARY'],
      vault: [{ pin: 6, box: { gem: ['CANARY'] } }, {}],
      'vault.pin': [7],
      'vault.box': [{ gem: { deep: 'CANARY' } }],
      'vault.box.gem': ['CANARY'],
      'vault.other': [['CANARY']],
    },
  },
];

// ---------------------------------------------------------------- generated shapes (JSON, as sent)

/** The names generated objects use: the schemas' own (so encrypted paths are hit), and trouble. */
const names = [
  'ssn', 'diagnosis', 'allergies', 'ward', 'note_x', 'email', 'phone', 'secret_q', 'pii_q', 'code', 'contact', 'box', 'gem', 'pin', 'owner',
  '0', '1', '$where', '$ref', '$id', '$db', '$set', 'a.b', 'diagnosis.x', 'other',
];
const FORGED = { $forged: true };

/**
 * BSON types FerretDB (the test database) cannot store in plaintext: it drops the connection (a
 * panic on its side), which the service answers with 503 DATABASE_UNAVAILABLE, or, in a batch,
 * with a false success (held by test/documents/insert-many-failure.test.ts). MongoDB stores them,
 * so they are generated there only; on FerretDB they would fail nearly every run and hide the rest.
 */
const ferretUnstorable: unknown[] = [{ $numberDecimal: '1.5' }, { $minKey: 1 }, { $maxKey: 1 }, { $symbol: 'CANARY' }, { $code: 'CANARY' }];

function leafArb(onFerret: boolean): fc.Arbitrary<unknown> {
  const wrappers: unknown[] = [
    { $numberInt: '7' },
    { $numberLong: '9007199254740993' },
    { $numberDouble: '1.5' },
    { $date: '2020-01-01T00:00:00Z' },
    { $oid: '0123456789abcdef01234567' },
    { $binary: { base64: 'AAEC', subType: '00' } },
    // Subtype 6 with a made-up payload, and (FORGED) a real ciphertext of the service's.
    { $binary: { base64: 'AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8=', subType: '06' } },
    FORGED,
    { $uuid: '00112233-4455-6677-8899-aabbccddeeff' },
    { $regularExpression: { pattern: 'CANARY', options: 'i' } },
    { $timestamp: { t: 1, i: 2 } },
    { $undefined: true },
    // Malformed: refused as Extended JSON.
    { $numberInt: 'abc' },
    { $date: 'nope' },
    { $numberInt: '1', extra: 'CANARY' },
    ...(onFerret ? [] : ferretUnstorable),
  ];
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant('CANARY') },
    { weight: 2, arbitrary: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.double({ noNaN: true, noDefaultInfinity: true })) },
    { weight: 2, arbitrary: fc.constantFrom(null, true, false, '') },
    { weight: 3, arbitrary: fc.constantFrom(...wrappers) },
  );
}

interface Arbs {
  shape: fc.Arbitrary<unknown>;
}

function shapeArb(onFerret: boolean): fc.Arbitrary<unknown> {
  return fc.letrec<{ value: unknown; object: unknown; array: unknown; dbref: unknown }>((tie) => ({
    value: fc.oneof({ depthSize: 'small', maxDepth: 4 }, leafArb(onFerret), tie('object'), tie('array'), tie('dbref')),
    object: fc.uniqueArray(fc.tuple(fc.constantFrom(...names), tie('value')), { maxLength: 4, selector: ([k]) => k }).map((e) => Object.fromEntries(e)),
    array: fc.array(tie('value'), { maxLength: 3 }),
    dbref: fc
      .tuple(fc.constantFrom<unknown>(1, 'x', { $oid: '0123456789abcdef01234567' }), tie('object'))
      .map(([id, rest]) => ({ $ref: 'other', $id: id, ...(rest as object) })),
  })).value;
}

/** A value for a path: often one the schema accepts there, otherwise any shape. */
function valueFor(c: SchemaCase, arbs: Arbs, path: string): fc.Arbitrary<unknown> {
  const good = c.good[path];
  return good ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...good) }, { weight: 2, arbitrary: arbs.shape }) : arbs.shape;
}

const DELETE = Symbol('delete');

/** A document: the valid base with a few paths set to generated values, or removed. */
function documentArb(c: SchemaCase, arbs: Arbs): fc.Arbitrary<Record<string, unknown>> {
  const change = fc.constantFrom(...c.paths).chain((path) => fc.tuple(fc.constant(path), fc.oneof({ weight: 5, arbitrary: valueFor(c, arbs, path) }, { weight: 1, arbitrary: fc.constant<unknown>(DELETE) })));
  return fc.array(change, { maxLength: 2 }).map((changes) => {
    const doc = structuredClone(c.base);
    for (const [path, value] of changes) setPath(doc, path, value);
    return doc;
  });
}

function setPath(doc: Record<string, unknown>, path: string, value: unknown): void {
  const segments = path.split('.');
  let node: Record<string, unknown> = doc;
  for (const segment of segments.slice(0, -1)) {
    const next = node[segment];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[segment] = {};
    node = node[segment] as Record<string, unknown>;
  }
  const last = segments.at(-1)!;
  if (value === DELETE) delete node[last];
  else node[last] = structuredClone(value);
}

function updateArb(c: SchemaCase, arbs: Arbs): fc.Arbitrary<Record<string, unknown>> {
  // Mostly the schema's own paths (so that writes are accepted), sometimes the troublesome ones.
  const pathArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...c.paths) }, { weight: 1, arbitrary: fc.constantFrom(...c.updateOnlyPaths) });
  const entry = (value: (path: string) => fc.Arbitrary<unknown>) => pathArb.chain((path) => fc.tuple(fc.constant(path), value(path)));
  const fields = (value: (path: string) => fc.Arbitrary<unknown>) =>
    fc.uniqueArray(entry(value), { minLength: 1, maxLength: 3, selector: ([p]) => p }).map((e) => Object.fromEntries(e));
  const operation = fc.oneof(
    { weight: 8, arbitrary: fields((p) => valueFor(c, arbs, p)).map((f) => ['$set', f] as const) },
    { weight: 2, arbitrary: fields(() => fc.constantFrom<unknown>('', 1, 'CANARY')).map((f) => ['$unset', f] as const) },
    { weight: 2, arbitrary: fields(() => fc.constantFrom<unknown>(1, -2, { $numberLong: '3' }, 'x')).map((f) => ['$inc', f] as const) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom('$push', '$rename', '$setOnInsert', '$addToSet', '$currentDate', '$foo', 'notAnOperator'), fields(() => arbs.shape))
        .map(([op, f]) => [op, f] as const),
    },
  );
  return fc.uniqueArray(operation, { minLength: 1, maxLength: 2, selector: ([op]) => op }).map((ops) => Object.fromEntries(ops));
}

type Op =
  | { kind: 'insert'; document: Record<string, unknown> }
  | { kind: 'insertMany'; documents: Record<string, unknown>[] }
  | { kind: 'replace'; document: Record<string, unknown> }
  | { kind: 'patch'; update: Record<string, unknown> }
  | { kind: 'updateWhere'; update: Record<string, unknown>; many: boolean };

function opsArb(c: SchemaCase, arbs: Arbs): fc.Arbitrary<Op[]> {
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: documentArb(c, arbs).map((document) => ({ kind: 'insert' as const, document })) },
    { weight: 1, arbitrary: fc.array(documentArb(c, arbs), { minLength: 2, maxLength: 3 }).map((documents) => ({ kind: 'insertMany' as const, documents })) },
    { weight: 3, arbitrary: documentArb(c, arbs).map((document) => ({ kind: 'replace' as const, document })) },
    { weight: 4, arbitrary: updateArb(c, arbs).map((update) => ({ kind: 'patch' as const, update })) },
    { weight: 3, arbitrary: fc.tuple(updateArb(c, arbs), fc.boolean()).map(([update, many]) => ({ kind: 'updateWhere' as const, update, many })) },
  );
  return fc.array(op, { minLength: 1, maxLength: 4 });
}

// ---------------------------------------------------------------- canaries and where they go

let canaryCount = 0;

/** Each 'CANARY' becomes a unique canary, each FORGED marker the forged ciphertext. */
function materialize(value: unknown, forged: unknown): unknown {
  if (value === 'CANARY') return `CANARY-P${++canaryCount}-Z`;
  if (Array.isArray(value)) return value.map((v) => materialize(v, forged));
  if (typeof value === 'object' && value !== null) {
    if ((value as { $forged?: unknown }).$forged === true) return forged;
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, materialize(v, forged)]));
  }
  return value;
}

function canariesIn(value: unknown, out: Set<string>): void {
  if (typeof value === 'string') for (const m of value.match(/CANARY-P\d+-Z/g) ?? []) out.add(m);
  else if (Array.isArray(value)) for (const v of value) canariesIn(v, out);
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) canariesIn(k, out), canariesIn(v, out);
}

/** The canaries a request puts at a position the schema encrypts (arrays traversed, as MongoDB does). */
function encryptedCanariesOfDocument(value: unknown, spec: ObjSpec, out: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) encryptedCanariesOfDocument(item, spec, out);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  for (const [name, inner] of Object.entries(value)) {
    const rule = ruleOf(spec, name);
    if (rule?.kind === 'enc') canariesIn(inner, out);
    else if (rule?.kind === 'obj') encryptedCanariesOfDocument(inner, rule, out);
  }
}

/** The same for a $set path: a numeric segment may index an array, so both readings are followed. */
function encryptedCanariesAtPath(segments: string[], value: unknown, spec: Spec, out: Set<string>): void {
  if (spec.kind === 'enc') {
    canariesIn(value, out);
    return;
  }
  if (segments.length === 0) {
    encryptedCanariesOfDocument(value, spec, out);
    return;
  }
  const [head, ...rest] = segments as [string, ...string[]];
  const rule = ruleOf(spec, head);
  if (rule !== undefined) encryptedCanariesAtPath(rest, value, rule, out);
  if (/^\d+$/.test(head) || head.startsWith('$')) encryptedCanariesAtPath(rest, value, spec, out);
}

function encryptedCanariesOf(op: Op, spec: ObjSpec): Set<string> {
  const out = new Set<string>();
  if (op.kind === 'insert' || op.kind === 'replace') encryptedCanariesOfDocument(op.document, spec, out);
  else if (op.kind === 'insertMany') for (const d of op.documents) encryptedCanariesOfDocument(d, spec, out);
  else {
    for (const [operator, fields] of Object.entries(op.update)) {
      if (operator === '$unset' || typeof fields !== 'object' || fields === null) continue;
      for (const [path, value] of Object.entries(fields)) encryptedCanariesAtPath(path.split('.'), value, spec, out);
    }
  }
  return out;
}

// ---------------------------------------------------------------- the raw documents, checked

interface RawContext {
  keys: Record<string, string>;
  /** Base64 of the forged ciphertext: found at an encrypted path, it came from the client. */
  forged: string;
  /** Ciphertexts at encrypted paths before the write, by document and path. */
  before: Map<string, string>;
  /** Pointer-keyed ciphertexts left under a key their pointer no longer names (reported, not failed). */
  stalePointers: string[];
}

const asObject = (value: unknown): Record<string, unknown> | undefined => {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) return undefined;
  const tag = (value as { _bsontype?: string })._bsontype;
  if (tag === 'DBRef') {
    const ref = value as unknown as { collection: string; oid: unknown; db?: string; fields: Document };
    return { $ref: ref.collection, $id: ref.oid, ...(ref.db ? { $db: ref.db } : {}), ...ref.fields };
  }
  return tag === undefined ? (value as Record<string, unknown>) : undefined;
};

function readPointer(doc: Record<string, unknown>, segments: string[]): unknown {
  let value: unknown = doc;
  for (const s of segments) value = asObject(value)?.[s];
  return value;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return (value as { _bsontype?: string })?._bsontype ?? typeof value;
}

/** Every problem of one raw document: plaintext, a wrong key or algorithm, or a shape that could hide them. */
function checkRaw(doc: Record<string, unknown>, spec: ObjSpec, ctx: RawContext, problems: string[], collect?: Map<string, string>): void {
  const id = EJSON.stringify(doc._id as never);
  const visit = (value: unknown, node: ObjSpec, path: string) => {
    if (Array.isArray(value)) {
      if (path !== '') problems.push(`${id} ${path}: an array where fields are encrypted`);
      // MongoDB reaches the fields of array elements by the same path: look there too.
      for (const item of value) visit(item, node, path);
      return;
    }
    const object = asObject(value);
    if (object === undefined) {
      problems.push(`${id} ${path}: ${typeOf(value)} where fields are encrypted`);
      return;
    }
    if ((value as { _bsontype?: string })._bsontype === 'DBRef') problems.push(`${id} ${path}: a DBRef where fields are encrypted`);
    for (const [name, inner] of Object.entries(object)) {
      const rule = ruleOf(node, name);
      const at = path === '' ? name : `${path}.${name}`;
      if (rule?.kind === 'obj') visit(inner, rule, at);
      if (rule?.kind === 'enc') checkValue(inner, rule, at);
    }
  };
  const checkValue = (value: unknown, rule: EncSpec, path: string) => {
    if (!(value instanceof Binary) || value.sub_type !== 6) {
      problems.push(`${id} ${path}: plaintext (${typeOf(value)}) at an encrypted path: ${EJSON.stringify(value as never).slice(0, 80)}`);
      return;
    }
    const bytes = Buffer.from(value.buffer);
    const base64 = bytes.toString('base64');
    collect?.set(`${id} ${path}`, base64);
    if (base64 === ctx.forged) problems.push(`${id} ${path}: the client's own ciphertext was stored as if encrypted by the service`);
    if (bytes[0] !== rule.algorithm) problems.push(`${id} ${path}: algorithm byte ${bytes[0]}, the schema says ${rule.algorithm}`);
    const keyId = [bytes.subarray(1, 5), bytes.subarray(5, 7), bytes.subarray(7, 9), bytes.subarray(9, 11), bytes.subarray(11, 17)].map((b) => b.toString('hex')).join('-');
    if (typeof rule.key === 'string') {
      if (keyId !== ctx.keys[rule.key]) problems.push(`${id} ${path}: key ${keyId}, the schema says ${rule.key} (${ctx.keys[rule.key]})`);
      return;
    }
    const named = readPointer(doc, rule.key.pointer);
    const expected = typeof named === 'string' ? ctx.keys[named] : undefined;
    if (keyId === expected) return;
    if (ctx.before.get(`${id} ${path}`) === base64 && Object.values(ctx.keys).includes(keyId)) {
      // Written earlier, under the key the pointer named then; the pointer has changed since.
      ctx.stalePointers.push(`${path} under ${keyId}, pointer now ${JSON.stringify(named)}`);
      return;
    }
    problems.push(`${id} ${path}: key ${keyId}, but the pointer /${rule.key.pointer.join('/')} names ${JSON.stringify(named)} (${expected})`);
  };
  visit(doc, spec, '');
}

// ---------------------------------------------------------------- the property

async function forgedCiphertext(h: DocumentsTestApp): Promise<string> {
  const res = await h.call('POST', '/encrypt', { value: 'CANARY-FORGED-Z', algorithm: 'deterministic', keyAltName: 'hr-det' });
  if (res.statusCode !== 200) throw new Error(`encrypt: ${res.statusCode} ${res.body}`);
  return res.json().ciphertext as string;
}

function requestOf(op: Op, url: string, id: string): [string, string, unknown] {
  switch (op.kind) {
    case 'insert':
      return ['POST', url, { document: op.document }];
    case 'insertMany':
      return ['POST', url, { documents: op.documents }];
    case 'replace':
      return ['PUT', `${url}/${id}`, { document: op.document }];
    case 'patch':
      return ['PATCH', `${url}/${id}`, { update: op.update }];
    case 'updateWhere':
      return ['POST', `${url}/update`, { filter: { _id: { $oid: id } }, update: op.update, many: op.many }];
  }
}

const stats = { accepted: 0, refused: 0, byCode: new Map<string, number>() };

async function runSchema(t: Test, c: SchemaCase, numRuns: number) {
  const setup = await createDocumentsApp(t, c.schema);
  // The app under test is a second instance on the same database and schemas, with heap-based
  // shedding off: this process hosts several apps and fast-check, and its lazily collected heap
  // would pass the production limit and answer 503 OVERLOADED. Shedding has its own test
  // (test/plugins/hardening.test.ts), as the helpers already do for event-loop delay.
  const app = await createTestApp(t, { share: setup, env: { SCHEMAS_DIR: setup.schemasDir, MAX_HEAP_USED_BYTES: '0' } });
  const h: DocumentsTestApp = { ...app, ns: setup.ns, keys: setup.keys, schemasDir: setup.schemasDir };
  const url = `/documents/${h.ns}`;
  const raw = h.mongo.db(h.keyVaultDb).collection('employees');
  const forged = await forgedCiphertext(h);
  const forgedJson = { $binary: { base64: forged, subType: '06' } };
  const stalePointers: string[] = [];
  const buildInfo = await h.mongo.db('admin').command({ buildInfo: 1 });
  const arbs: Arbs = { shape: shapeArb('ferretdbVersion' in buildInfo) };

  const snapshot = async () => {
    const docs = (await raw.find({}).sort({ _id: 1 }).toArray()) as Record<string, unknown>[];
    return { docs, text: EJSON.stringify(docs, { relaxed: false }) };
  };

  await fc.assert(
    fc.asyncProperty(opsArb(c, arbs), async (generated) => {
      await raw.deleteMany({});
      const base = materialize(c.base, forgedJson) as Record<string, unknown>;
      const created = await h.call('POST', url, { document: base });
      if (created.statusCode !== 201) throw new Error(`the base document was refused: ${created.statusCode} ${created.body}`);
      const id = created.json().insertedId.$oid as string;

      let before = await snapshot();
      for (const generatedOp of generated) {
        const op = materialize(generatedOp, forgedJson) as Op;
        const [method, path, body] = requestOf(op, url, id);
        const res = await h.call(method, path, body);
        const what = `${method} ${path.replace(url, '')} ${JSON.stringify(body).slice(0, 600)}`;
        if (res.statusCode >= 500) throw new Error(`${res.statusCode} ${res.body} for ${what}`);
        const after = await snapshot();

        if (res.statusCode >= 400) {
          stats.refused++;
          const code = (res.json() as { code?: string }).code ?? String(res.statusCode);
          stats.byCode.set(code, (stats.byCode.get(code) ?? 0) + 1);
          if (after.text !== before.text) throw new Error(`refused (${res.statusCode} ${res.body}) yet the collection changed: ${what}`);
          continue;
        }
        stats.accepted++;
        if (op.kind === 'insertMany') {
          const inserted = (res.json() as { inserted: number }).inserted;
          if (after.docs.length !== before.docs.length + inserted) throw new Error(`${inserted} inserted, but the collection went from ${before.docs.length} to ${after.docs.length}: ${what}`);
        }

        // The encrypted paths, walked in every raw document.
        const ciphertextsBefore = new Map<string, string>();
        const scratch: string[] = [];
        for (const doc of before.docs) checkRaw(doc, c.spec, { keys: h.keys, forged, before: new Map(), stalePointers: [] }, scratch, ciphertextsBefore);
        const problems: string[] = [];
        const ctx: RawContext = { keys: h.keys, forged, before: ciphertextsBefore, stalePointers };
        for (const doc of after.docs) checkRaw(doc, c.spec, ctx, problems);
        if (problems.length > 0) throw new Error(`after ${res.statusCode} for ${what}:\n  ${problems.join('\n  ')}`);

        // No canary the request put at an encrypted position is anywhere in the raw bytes.
        const bytes = Buffer.concat(after.docs.map((d) => Buffer.from(BSON.serialize(d))));
        for (const canary of encryptedCanariesOf(op, c.spec)) {
          if (bytes.includes(Buffer.from(canary))) throw new Error(`${canary}, sent at an encrypted path, is in the raw collection after ${what}`);
        }
        before = after;
      }
      // Whatever was stored reads back without a server error.
      const read = await h.call('POST', `${url}/find`, { filter: {} });
      if (read.statusCode >= 500) throw new Error(`find: ${read.statusCode} ${read.body}`);
    }),
    { seed, numRuns, examples: (c.examples ?? []).map((ops) => [ops] as [Op[]]) },
  );
  t.pass(`holds for ${numRuns} runs`);
  if (stalePointers.length > 0) {
    t.comment(`${stalePointers.length} pointer-keyed value(s) left under a key their pointer no longer names, e.g. ${stalePointers[0]}`);
  }
}

t.test('the raw checker itself: it flags plaintext, wrong keys or algorithms, hidden shapes and leaked canaries', async (t) => {
  const keys = { 'hr-det': '11111111-2222-4333-8444-555555555555', 'hr-rnd': '22222222-3333-4444-8555-666666666666', 'tenant-a': '33333333-4444-4555-8666-777777777777' };
  const cipher = (algorithm: number, keyId: string, fill = 0) =>
    new Binary(Buffer.concat([Buffer.from([algorithm]), Buffer.from(keyId.replaceAll('-', ''), 'hex'), Buffer.from([2]), Buffer.alloc(32, fill)]), 6);
  const forged = cipher(1, keys['hr-det'], 0xf0);
  const spec = cases[0]!.spec;
  const problemsOf = (doc: Record<string, unknown>, before = new Map<string, string>()) => {
    const problems: string[] = [];
    checkRaw({ _id: 1, ...doc }, spec, { keys, forged: Buffer.from(forged.buffer).toString('base64'), before, stalePointers: [] }, problems);
    return problems;
  };
  const good = { ssn: cipher(1, keys['hr-det']), medical: { diagnosis: cipher(2, keys['hr-rnd']), ward: 'w' }, tenantKey: 'tenant-a', tenantSecret: cipher(2, keys['tenant-a']), note_z: cipher(2, keys['hr-rnd']) };
  t.same(problemsOf(good), [], 'a correctly encrypted document');
  const flagged: [string, Record<string, unknown>, RegExp][] = [
    ['plaintext', { ...good, ssn: 'CANARY-x' }, /ssn: plaintext \(string\)/],
    ['plaintext in an array element of a subtree', { medical: [{ diagnosis: 'CANARY-x' }] }, /medical\.diagnosis: plaintext/],
    ['plaintext in a nested array', { medical: [[{ diagnosis: 'CANARY-x' }]] }, /medical\.diagnosis: plaintext/],
    ['an array where fields are encrypted', { medical: [] }, /medical: an array/],
    ['a scalar at a subtree', { medical: 'CANARY-x' }, /medical: string where fields are encrypted/],
    ['null at a subtree', { medical: null }, /medical: null/],
    ['another subtype', { ...good, ssn: new Binary(Buffer.from('CANARY-x'), 0) }, /ssn: plaintext \(Binary\)/],
    ['the wrong algorithm', { ...good, ssn: cipher(2, keys['hr-det']) }, /ssn: algorithm byte 2/],
    ['the wrong key', { ...good, note_z: cipher(2, keys['hr-det']) }, /note_z: key 1111/],
    ['a pointer naming another key', { ...good, tenantSecret: cipher(2, keys['hr-rnd']) }, /tenantSecret: key 2222.*pointer/],
    ['the client\'s ciphertext', { ...good, badge: forged }, /badge: the client's own ciphertext/],
  ];
  for (const [what, doc, problem] of flagged) t.match(problemsOf(doc).join('\n'), problem, what);
  const stale = { ...good, tenantKey: 'hr-rnd' };
  const before = new Map([['1 tenantSecret', Buffer.from(good.tenantSecret.buffer).toString('base64')]]);
  t.same(problemsOf(stale, before), [], 'a value written under the key its pointer named then is not a leak');

  const op: Op = { kind: 'patch', update: { $set: { 'medical.0.diagnosis': 'CANARY-P1-Z', 'medical.ward': 'CANARY-P2-Z', note_q: { a: ['CANARY-P3-Z'] }, 'x.y': 'CANARY-P4-Z' } } };
  t.same([...encryptedCanariesOf(op, spec)].sort(), ['CANARY-P1-Z', 'CANARY-P3-Z'], 'canaries at encrypted positions of an update, array indexes included');
  const insert: Op = { kind: 'insert', document: { medical: [{ diagnosis: 'CANARY-P5-Z', ward: 'CANARY-P6-Z' }], $where: 'CANARY-P7-Z' } };
  t.same([...encryptedCanariesOf(insert, spec)], ['CANARY-P5-Z']);
});

// Sized for well under 60 s on a loaded 2-core machine (about 15 s on an idle one): each run is 2
// to 6 requests plus a raw read per write. DOCUMENT_SHAPES_RUNS raises it for a longer hunt
// (FC_SEED picks another seed, as in every property file).
const RUNS = Number(process.env.DOCUMENT_SHAPES_RUNS ?? 60);

t.test('no plaintext at an encrypted path, whatever the shape, on three schemas', async (t) => {
  for (const c of cases) await t.test(c.name, (t) => runSchema(t, c, RUNS));
  t.comment(`accepted writes: ${stats.accepted}; refused: ${stats.refused} (${[...stats.byCode].map(([k, v]) => `${k} ${v}`).join(', ')})`);
  t.ok(stats.accepted > RUNS, 'enough writes were accepted for the property to mean something');
});


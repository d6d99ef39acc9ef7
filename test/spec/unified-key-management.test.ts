/**
 * MongoDB's unified-format key management tests (client-side-encryption/unified/*.json) run through
 * /keys. Each ClientEncryption operation becomes the HTTP request in OPERATIONS, and its answer is
 * translated back to the driver's result shape there too; the key vault collection is read directly
 * with the driver for the `outcome`, and for the tests' own find/aggregate on it.
 */
import t from 'tap';
import { Binary, UUID, type Document } from 'mongodb';
import type { LightMyRequestResponse } from 'fastify';
import { readSpecJson } from './spec-data.js';
import { canon, fromEjson, matchEjson, mismatch } from './runner/ejson-match.js';
import { createSpecApp, mapArnsDeep } from './runner/spec-app.js';
import { saveSuite, type FileResults, type TestResult } from './runner/results.js';
import type { TestApp } from '../helpers/app.js';

const FILES = [
  'addKeyAltName',
  'createDataKey',
  'createDataKey-kms_providers-invalid',
  'deleteKey',
  'getKey',
  'getKeyByAltName',
  'getKeys',
  'removeKeyAltName',
  'rewrapManyDataKey',
  'rewrapManyDataKey-decrypt_failure',
  'rewrapManyDataKey-encrypt_failure',
];

/** Providers a spec test may name that this service does not offer. */
const UNSUPPORTED_PROVIDERS = ['azure', 'gcp', 'kmip'];

type Args = Record<string, any>;
type Request = { method: 'GET' | 'POST' | 'DELETE'; url: string; body?: unknown };

/** A spec filter the HTTP key selection cannot say: the test fails with this reason. */
class Untranslatable extends Error {}

const uuidOf = (id: unknown) => new UUID(Buffer.from((fromEjson(id) as Binary).buffer)).toHexString(true);
const b64 = (value: unknown) => (value === undefined ? undefined : Buffer.from((fromEjson(value) as Binary).buffer).toString('base64'));
const masterKeyOf = (provider: string, masterKey: Args | undefined) => ({ provider, ...masterKey });

/** rewrapManyDataKey's filter (a MongoDB query on the key vault) as the HTTP key selection, where it can be one. */
function selectionOf(filter: Args): Args {
  const out: Args = {};
  for (const [field, value] of Object.entries(filter)) {
    if (field === 'keyAltNames' && typeof value === 'string') out.keyAltNames = [value];
    else throw new Untranslatable(`the filter ${JSON.stringify({ [field]: value })} has no equivalent in the HTTP key selection (keyIds, keyAltNames, provider, masterKey)`);
  }
  return out;
}

/** A key as /keys shows it, in the driver's key document shape (the API never serves keyMaterial). */
function keyDocOf(view: Args): Document {
  return {
    _id: new Binary(Buffer.from(view.id.replace(/-/g, ''), 'hex'), 4),
    ...(view.keyAltNames.length > 0 ? { keyAltNames: view.keyAltNames } : {}),
    creationDate: new Date(view.creationDate),
    updateDate: new Date(view.updateDate),
    status: view.status,
    masterKey: view.masterKey,
  };
}

const notFound = (res: LightMyRequestResponse) => res.statusCode === 404;

/** HTTP errors that are the driver's empty answer (null, deletedCount 0) rather than a failure. */
function answersNothing(operation: string, res: LightMyRequestResponse): boolean {
  if (operation === 'deleteKey' && res.statusCode === 409 && res.json().code === 'KEY_ALREADY_DELETED') return true;
  return res.statusCode === 404 && ['getKey', 'getKeyByAltName', 'addKeyAltName', 'removeKeyAltName', 'deleteKey'].includes(operation);
}

/**
 * Tests that fail today for a known difference of the product from the driver, with the reason:
 * reported as failed in docs/conformance.md, and as todo (not failing) by tap. Remove an entry when
 * the product changes.
 */
const KNOWN_GAPS: Record<string, string> = {
  'unified/removeKeyAltName.json: remove non-existent keyAltName from existing data key':
    'DELETE /keys/{id}/alt-names/{name} answers 404 for a name the key does not hold; the driver answers the key unchanged',
};

/**
 * The tests' own aggregate on the key vault collection ($project / $unwind / $sort), evaluated here:
 * FerretDB does not evaluate field paths such as "$keyAltNames" in $project.
 */
function aggregateLocally(docs: Document[], pipeline: Document[]): Document[] {
  let out = docs;
  for (const stage of pipeline) {
    const [name, spec] = Object.entries(stage)[0]!;
    if (name === '$project') {
      out = out.map((d) => {
        const p: Document = {};
        for (const [field, how] of Object.entries(spec as Document)) {
          if (how === 0 || how === false) continue;
          const value = typeof how === 'string' && how.startsWith('$') ? d[how.slice(1)] : d[field];
          if (value !== undefined) p[field] = value;
        }
        if ((spec as Document)._id !== 0 && (spec as Document)._id !== false) p._id = d._id;
        return p;
      });
    } else if (name === '$unwind') {
      const field = String(spec).slice(1);
      out = out.flatMap((d) => (Array.isArray(d[field]) ? d[field].map((v: unknown) => ({ ...d, [field]: v })) : []));
    } else if (name === '$sort') {
      const [field, dir] = Object.entries(spec as Document)[0]!;
      out = [...out].sort((a, b) => (a[field] < b[field] ? -dir : a[field] > b[field] ? dir : 0));
    } else {
      throw new Error(`aggregate stage ${name} is not evaluated by the runner`);
    }
  }
  return out;
}

/**
 * The mapping table: ClientEncryption operation → HTTP request, and the HTTP answer → the driver's
 * result. `expect` rewrites the spec's expected result where the two APIs differ on purpose.
 */
const OPERATIONS: Record<string, { request(a: Args): Request; result(res: LightMyRequestResponse, a: Args): unknown; expect?(expected: any, a: Args): unknown }> = {
  createDataKey: {
    request: (a) => ({ method: 'POST', url: '/keys', body: { masterKey: masterKeyOf(a.kmsProvider, a.opts?.masterKey), keyAltNames: a.opts?.keyAltNames, keyMaterial: b64(a.opts?.keyMaterial) } }),
    result: (res) => new Binary(Buffer.from(res.json().id.replace(/-/g, ''), 'hex'), 4),
  },
  getKey: {
    request: (a) => ({ method: 'GET', url: `/keys/${uuidOf(a.id)}` }),
    result: (res) => (notFound(res) ? null : keyDocOf(res.json())),
    expect: withoutKeyMaterial,
  },
  getKeyByAltName: {
    request: (a) => ({ method: 'GET', url: `/keys/by-alt-name/${encodeURIComponent(a.keyAltName)}` }),
    result: (res) => (notFound(res) ? null : keyDocOf(res.json())),
    expect: withoutKeyMaterial,
  },
  getKeys: {
    request: () => ({ method: 'GET', url: '/keys?limit=1000' }),
    result: (res) => res.json().items.map(keyDocOf),
    expect: (expected) => (Array.isArray(expected) ? expected.map(withoutKeyMaterial) : expected),
  },
  deleteKey: {
    // force: the spec deletes keys no schema names; the trash is beside the vault collection.
    request: (a) => ({ method: 'DELETE', url: `/keys/${uuidOf(a.id)}?force=true` }),
    // 409 KEY_ALREADY_DELETED: the key is in the trash, not in the vault, where the driver deletes nothing.
    result: (res) => ({ deletedCount: res.statusCode === 204 ? 1 : 0 }),
  },
  addKeyAltName: {
    request: (a) => ({ method: 'POST', url: `/keys/${uuidOf(a.id)}/alt-names`, body: { keyAltName: a.keyAltName } }),
    result: (res) => (notFound(res) ? null : keyDocOf(res.json())),
    // The driver answers the key before the change (findAndModify), the API the key after it.
    expect: (expected, a) => afterChange(expected, (names) => (names.includes(a.keyAltName) ? names : [...names, a.keyAltName])),
  },
  removeKeyAltName: {
    request: (a) => ({ method: 'DELETE', url: `/keys/${uuidOf(a.id)}/alt-names/${encodeURIComponent(a.keyAltName)}` }),
    result: (res) => (notFound(res) ? null : keyDocOf(res.json())),
    expect: (expected, a) => afterChange(expected, (names) => names.filter((n) => n !== a.keyAltName)),
  },
  rewrapManyDataKey: {
    request: (a) => ({
      method: 'POST',
      url: '/keys/rewrap',
      // A driver has no downgrade guard: moving keys to the local master key is consented to, as the operator may.
      body: { filter: selectionOf(a.filter), masterKey: a.opts?.provider === undefined ? undefined : masterKeyOf(a.opts.provider, a.opts.masterKey), ...(a.opts?.provider === 'local' ? { allowDowngrade: true } : {}) },
    }),
    result: (res) => {
      const { matched, rewrapped } = res.json();
      if (matched === 0) return {};
      return { bulkWriteResult: { insertedCount: 0, matchedCount: matched, modifiedCount: rewrapped, deletedCount: 0, upsertedCount: 0, upsertedIds: {}, insertedIds: {} } };
    },
  },
};

function withoutKeyMaterial(expected: any) {
  if (expected === null || typeof expected !== 'object' || !('_id' in expected)) return expected;
  const { keyMaterial: _, ...rest } = expected;
  return rest;
}

function afterChange(expected: any, change: (names: string[]) => string[]) {
  const doc = withoutKeyMaterial(expected);
  if (doc === null || typeof doc !== 'object' || !('_id' in doc)) return doc;
  const names = change(Array.isArray(doc.keyAltNames) ? doc.keyAltNames : []);
  const { keyAltNames: _, updateDate: __, ...rest } = doc;
  // updateDate: the driver's pre-image shows it before the change.
  return { ...rest, updateDate: { $$type: 'date' }, ...(names.length > 0 ? { keyAltNames: names } : {}) };
}

/** Why a test needs a provider this service does not offer, if it does. */
async function unsupportedProvider(test: Args, vault: ReturnType<typeof vaultOf>): Promise<string | undefined> {
  for (const op of test.operations as Args[]) {
    const provider = op.arguments?.kmsProvider ?? op.arguments?.opts?.provider;
    if (UNSUPPORTED_PROVIDERS.includes(provider)) return `uses the ${provider} KMS provider, which this service does not offer`;
    if (op.name === 'rewrapManyDataKey') {
      const hit = await vault.findOne({ ...(fromEjson(op.arguments.filter) as Document), 'masterKey.provider': { $in: UNSUPPORTED_PROVIDERS } });
      if (hit) return `rewraps data keys wrapped by ${hit.masterKey.provider}, a KMS provider this service does not offer`;
    }
  }
  return undefined;
}

const vaultOf = (app: TestApp) => app.mongo.db(app.keyVaultDb).collection('__keyVault');

async function runTest(app: TestApp, spec: Args, test: Args): Promise<TestResult> {
  const vault = vaultOf(app);
  const db = app.mongo.db(app.keyVaultDb);
  for (const c of await db.listCollections({}, { nameOnly: true }).toArray()) await db.collection(c.name).deleteMany({});
  for (const data of spec.initialData ?? []) {
    if (data.documents.length > 0) await vault.insertMany(data.documents.map((d: unknown) => fromEjson(d) as Document));
  }
  const unsupported = await unsupportedProvider(test, vault);
  // The errors that answered the operations the test expects to fail, for the report.
  const errors: string[] = [];
  if (unsupported) return { test: test.description, status: 'not supported', reason: unsupported };

  for (const [i, op] of (test.operations as Args[]).entries()) {
    const at = `operation ${i} (${op.name})`;
    let actual: unknown;
    if (op.object === 'collection0') {
      // The test's own look at the key vault collection: read directly, as the outcome is.
      const a = op.arguments;
      actual =
        op.name === 'find'
          ? await vault.find(fromEjson(a.filter) as Document, { projection: a.projection, sort: a.sort }).toArray()
          : aggregateLocally(await vault.find({}).toArray(), fromEjson(a.pipeline) as Document[]);
    } else {
      const mapping = OPERATIONS[op.name];
      if (!mapping) return { test: test.description, status: 'fail', reason: `${at}: no mapping to the HTTP API` };
      let request: Request;
      try {
        request = mapping.request(op.arguments ?? {});
      } catch (error) {
        if (error instanceof Untranslatable) return { test: test.description, status: 'fail', reason: `${at}: ${error.message}` };
        throw error;
      }
      const res = await app.call(request.method, request.url, request.body);
      if (op.expectError) {
        if (res.statusCode >= 400 && res.statusCode !== 500) {
          errors.push(`${at}: ${res.statusCode} ${res.json().code}`);
          continue;
        }
        return { test: test.description, status: 'fail', reason: `${at}: expected an error, got ${res.statusCode} ${res.body.slice(0, 300)}` };
      }
      if (res.statusCode >= 400 && !answersNothing(op.name, res)) {
        return { test: test.description, status: 'fail', reason: `${at}: ${request.method} ${request.url} answered ${res.statusCode} ${res.body.slice(0, 300)}` };
      }
      actual = mapping.result(res, op.arguments ?? {});
      if ('expectResult' in op) {
        const expected = mapping.expect ? mapping.expect(op.expectResult, op.arguments ?? {}) : op.expectResult;
        const why = matchEjson(expected, actual);
        if (why) return { test: test.description, status: 'fail', reason: `${at}: result ${why}` };
      }
      continue;
    }
    if ('expectResult' in op) {
      const why = matchEjson(op.expectResult, actual);
      if (why) return { test: test.description, status: 'fail', reason: `${at}: result ${why}` };
    }
  }
  for (const outcome of test.outcome ?? []) {
    const actual = await vault.find({}).sort({ _id: 1 }).toArray();
    const why = mismatch(canon(fromEjson(outcome.documents)), canon(actual), '', false);
    if (why) return { test: test.description, status: 'fail', reason: `outcome: key vault ${why}` };
  }
  return { test: test.description, status: 'pass', ...(errors.length > 0 ? { errors } : {}) };
}

const files: FileResults[] = [];

for (const name of FILES) {
  const file = `unified/${name}.json`;
  t.test(file, async (t) => {
    // Every MongoDB ARN in the file names a moto CMK instead (runner/spec-app.ts).
    const spec = mapArnsDeep(readSpecJson<Args>(`client-side-encryption/${file}`));
    const app = await createSpecApp(t);
    const results: TestResult[] = [];
    for (const test of spec.tests as Args[]) {
      const result = test.skipReason ? { test: test.description, status: 'not applicable' as const, reason: `skipped by the spec: ${test.skipReason}` } : await runTest(app, spec, test);
      results.push(result);
      const gap = KNOWN_GAPS[`${file}: ${test.description}`];
      if (gap) result.reason = `${gap} (${result.reason ?? 'passes now: remove it from KNOWN_GAPS'})`;
      if (result.status === 'pass' || result.status === 'fail') t.equal(result.status, 'pass', `${test.description}${result.reason ? `: ${result.reason}` : ''}`, gap ? { todo: gap } : {});
    }
    files.push({ file, results });
  });
}

t.teardown(() => {
  files.sort((a, b) => a.file.localeCompare(b.file));
  saveSuite(
    {
      id: 'unified-key-management',
      title: 'Key management (unified format, through /keys)',
      notes: [
        '`expectEvents` (command monitoring of the key vault commands) is not applicable: which commands reach the database is driver-internal; each operation\'s effect is checked through its result and the key vault `outcome` instead.',
        'The API never serves key material: expected key documents are compared without `keyMaterial` (the outcome, read from the key vault, still checks it).',
        'addKeyAltName / removeKeyAltName: the driver answers the key before the change, the API the key after it; the expectation is rewritten accordingly (alt name added / removed, updateDate any date).',
        'deleteKey: `DELETE /keys/{id}?force=true`; the key moves to the trash collection beside the vault, so the vault collection no longer holds it.',
        'rewrapManyDataKey → POST /keys/rewrap. Its filter (a MongoDB query on the key vault) must be one the HTTP key selection can say (ids, alt names, provider, master key); a rewrap to the local master key carries `allowDowngrade: true`, the consent the API asks of the operator and a driver does not. The app\'s AWS allow-list also holds the mapped ARNs in us-east-2 (keys moto does not have), so the KMS-failure tests reach the KMS.',
        'Tests with keys of providers this service does not offer (azure, gcp, kmip) in what they rewrap are not supported as a whole, even where the target provider is local or aws.',
      ],
      files,
    },
    process.env.WRITE_CONFORMANCE === '1',
  );
});

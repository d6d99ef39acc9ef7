/**
 * MongoDB's legacy-format automatic encryption tests (client-side-encryption/legacy/*.json, without
 * Queryable Encryption) run through /documents: the test's json_schema (or schemaMap) becomes the
 * collection's schema (PUT /schemas/{ns}), `data` and `key_vault_data` are written directly with
 * the driver, each operation is the HTTP request in OPERATIONS, and the stored collection is
 * compared with `outcome.collection.data`.
 */
import t from 'tap';
import { Binary, type Document } from 'mongodb';
import type { LightMyRequestResponse } from 'fastify';
import { readSpecJson, specTestdata } from './spec-data.js';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { canon, fromEjson, matchEjson, mismatch } from './runner/ejson-match.js';
import { createSpecApp, motoWrapped, SPEC_AWS_DATA_KEY, SPEC_LOCAL_MASTER_KEY } from './runner/spec-app.js';
import { decryptBlob, unwrapLocal } from './runner/csfle-decrypt.js';
import { saveSuite, type FileResults, type TestResult } from './runner/results.js';
import type { TestApp } from '../helpers/app.js';

/**
 * Operations (and update operators) other branches are adding. A test using one is recorded as
 * failed ("no route yet" / "not offered yet") while it is missing, and is not asserted by tap until
 * its entry is removed: remove an entry once it is merged (and adjust its one-line mapping if needed).
 */
export const PENDING_OPERATIONS: string[] = [];

/** The pending operations and update operators a test uses. */
function pendingIn(test: Args): string[] {
  return (test.operations ?? []).flatMap((op: Args) => [op.name, ...Object.keys(op.arguments?.update ?? {}), ...(op.arguments?.upsert ? ['upsert'] : [])]).filter((name: string) => PENDING_OPERATIONS.includes(name));
}

type Args = Record<string, any>;
type Request = { method: 'POST' | 'GET'; url: string; body?: unknown };
interface Mapping {
  /** The route, as Fastify knows it (to tell whether it exists on this branch). */
  route: `${'POST' | 'GET'} ${string}`;
  request(ns: string, a: Args): Request;
  /** The HTTP answer (Extended JSON already read into BSON values) in the driver's result shape. */
  result(body: any): unknown;
}

const docs = (ns: string, tail = '') => `/documents/${encodeURIComponent(ns)}${tail}?format=canonical`;
const writeResult = (r: any) => ({ matchedCount: r.matched, modifiedCount: r.modified, upsertedCount: r.upsertedId === undefined ? 0 : 1 });
const upsert = (a: Args) => (a.upsert ? { upsert: true } : {});
const returnDocument = (a: Args) => (a.returnDocument === undefined ? undefined : String(a.returnDocument).toLowerCase());

/** The mapping table: driver operation → HTTP request, HTTP answer → driver result. One line each. */
const OPERATIONS: Record<string, Mapping> = {
  insertOne: { route: 'POST /documents/:ns', request: (ns, a) => ({ method: 'POST', url: docs(ns), body: { document: a.document } }), result: (r) => ({ insertedId: r.insertedId }) },
  insertMany: { route: 'POST /documents/:ns', request: (ns, a) => ({ method: 'POST', url: docs(ns), body: { documents: a.documents } }), result: (r) => ({ insertedIds: Object.fromEntries(r.items.map((i: any) => [i.index, i.insertedId])) }) },
  find: { route: 'POST /documents/:ns/find', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/find'), body: { filter: a.filter, sort: a.sort, skip: a.skip, limit: a.limit, projection: a.projection } }), result: (r) => r.items },
  findOne: { route: 'POST /documents/:ns/find', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/find'), body: { filter: a.filter, sort: a.sort, limit: 1 } }), result: (r) => r.items[0] ?? null },
  count: { route: 'POST /documents/:ns/count', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/count'), body: { filter: a.filter } }), result: (r) => r.count },
  countDocuments: { route: 'POST /documents/:ns/count', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/count'), body: { filter: a.filter } }), result: (r) => r.count },
  deleteOne: { route: 'POST /documents/:ns/delete', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/delete'), body: { filter: a.filter, many: false } }), result: (r) => ({ deletedCount: r.deleted }) },
  deleteMany: { route: 'POST /documents/:ns/delete', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/delete'), body: { filter: a.filter, many: true } }), result: (r) => ({ deletedCount: r.deleted }) },
  updateOne: { route: 'POST /documents/:ns/update', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/update'), body: { filter: a.filter, update: a.update, many: false, ...upsert(a) } }), result: writeResult },
  updateMany: { route: 'POST /documents/:ns/update', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/update'), body: { filter: a.filter, update: a.update, many: true, ...upsert(a) } }), result: writeResult },
  replaceOne: { route: 'POST /documents/:ns/replace', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/replace'), body: { filter: a.filter, replacement: a.replacement } }), result: writeResult },
  aggregate: { route: 'POST /documents/:ns/aggregate', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/aggregate'), body: { pipeline: a.pipeline } }), result: (r) => r.items },
  distinct: { route: 'POST /documents/:ns/distinct', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/distinct'), body: { key: a.fieldName, filter: a.filter } }), result: (r) => r.values },
  findOneAndDelete: { route: 'POST /documents/:ns/find-one-and-delete', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/find-one-and-delete'), body: { filter: a.filter } }), result: (r) => r.document ?? null },
  findOneAndReplace: { route: 'POST /documents/:ns/find-one-and-replace', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/find-one-and-replace'), body: { filter: a.filter, replacement: a.replacement, returnDocument: returnDocument(a) } }), result: (r) => r.document ?? null },
  findOneAndUpdate: { route: 'POST /documents/:ns/find-one-and-update', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/find-one-and-update'), body: { filter: a.filter, update: a.update, returnDocument: returnDocument(a) } }), result: (r) => r.document ?? null },
  bulkWrite: { route: 'POST /documents/:ns/bulk', request: (ns, a) => ({ method: 'POST', url: docs(ns, '/bulk'), body: { ordered: a.options?.ordered ?? true, operations: a.requests.map((q: Args) => ({ [q.name]: q.arguments })) } }), result: (r) => r },
};

/**
 * Tests that fail today for a known difference of the product from a driver, with the reason:
 * reported as failed in docs/conformance.md, and as todo (not failing) by tap. Remove an entry when
 * the product changes.
 */
const KNOWN_GAPS: Record<string, string> = {
  'legacy/badQueries.json: geo operators succeed on unencrypted, error on encrypted':
    'FerretDB does not implement geo query operators: the service sends the query on the unencrypted field as MongoDB would run it, and FerretDB answers NotImplemented (422 DATABASE_UNSUPPORTED_OPERATION); the encrypted-field half is refused as the spec expects',
  'legacy/badQueries.json: $addToSet succeeds on unencrypted, error on encrypted':
    'FerretDB stores no nested arrays: the service sends the $addToSet of ["a"] to the unencrypted field as MongoDB would run it, and FerretDB refuses it (422 DATABASE_UNSUPPORTED_OPERATION); the encrypted-field half is refused as the spec expects',
};

/** Providers a spec test may name that this service does not offer. */
const UNSUPPORTED_PROVIDERS = ['azure', 'gcp', 'kmip'];

/** Why a test is not applicable over HTTP (exact reasons), or not supported, if it is either. */
function classify(test: Args): Pick<TestResult, 'status' | 'reason'> | undefined {
  const auto = test.clientOptions?.autoEncryptOpts ?? {};
  const providers = Object.keys(auto.kmsProviders ?? {});
  const unsupported = providers.find((p) => UNSUPPORTED_PROVIDERS.includes(p));
  if (unsupported) return { status: 'not supported', reason: `uses the ${unsupported} KMS provider, which this service does not offer` };
  if (providers.some((p) => p.startsWith('awsTemporary'))) {
    return { status: 'not applicable', reason: "the client's AWS credentials (temporary ones, with or without a session token): the service's KMS credentials are its own configuration (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN), never passed by a request" };
  }
  if (auto.bypassAutoEncryption) return { status: 'not applicable', reason: 'bypassAutoEncryption is a driver client option; every /documents request is encrypted by the collection schema, with no bypass by design' };
  if (auto.extraOptions) return { status: 'not applicable', reason: `mongocryptd options (${Object.keys(auto.extraOptions).join(', ')}) and the driver's refusal of servers older than 4.2 (maxWireVersion < 8): the service has no mongocryptd` };
  for (const op of test.operations ?? []) {
    if (op.object === 'database' || op.object === 'testRunner' || op.name === 'mapReduce') {
      return { status: 'not applicable', reason: `${op.name}${op.arguments?.command ? ` (${Object.keys(op.arguments.command)[0]})` : ''}: database commands and collection administration (runCommand, createCollection, dropCollection, createIndexes, explain, mapReduce) are not proxied; the HTTP API serves documents of collections with a schema, by design` };
    }
  }
  return undefined;
}

/** Test files of the legacy folder in scope: everything but Queryable Encryption (fle2v2-*). */
function legacyFiles(): string[] {
  return readdirSync(path.join(specTestdata(), 'client-side-encryption', 'legacy'))
    .filter((f) => f.endsWith('.json') && !f.startsWith('fle2'))
    .sort();
}

/** The data keys the spec's ciphertexts are under, for the runner's own decryption of what was stored. */
function specDataKeys(spec: Args): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const doc of spec.key_vault_data ?? []) {
    const id = doc._id.$binary.base64;
    if (doc.masterKey.provider === 'aws') keys.set(id, Buffer.from(SPEC_AWS_DATA_KEY, 'base64'));
    if (doc.masterKey.provider === 'local') keys.set(id, unwrapLocal(Buffer.from(doc.keyMaterial.$binary.base64, 'base64'), Buffer.from(SPEC_LOCAL_MASTER_KEY, 'base64')));
  }
  return keys;
}

/** Every ciphertext in the stored documents decrypts under the spec's data keys with a valid HMAC. */
function undecryptable(value: unknown, keys: Map<string, Buffer>, at = ''): string | undefined {
  if (value instanceof Binary) {
    if (value.sub_type !== 6) return undefined;
    const out = decryptBlob(Buffer.from(value.buffer), keys);
    return typeof out === 'string' ? `${at}: stored ciphertext does not decrypt (${out})` : undefined;
  }
  if (Array.isArray(value)) return value.map((v, i) => undecryptable(v, keys, `${at}[${i}]`)).find(Boolean);
  if (value && typeof value === 'object' && !('_bsontype' in value)) {
    return Object.entries(value).map(([k, v]) => undecryptable(v, keys, `${at}.${k}`)).find(Boolean);
  }
  return undefined;
}

/** An answer that refuses the request: never a 500, nor the database failing (which says nothing of the service). */
const isError = (res: LightMyRequestResponse) => res.statusCode >= 400 && res.statusCode !== 500 && res.json().code !== 'DATABASE_UNAVAILABLE';

async function runTest(app: TestApp, spec: Args, test: Args, file: string, keyVaultDocs: Document[]): Promise<TestResult> {
  const db = app.mongo.db(app.keyVaultDb);
  const collectionName = spec.collection_name as string;
  const ns = `${app.keyVaultDb}.${collectionName}`;
  const collection = db.collection(collectionName);
  const vault = db.collection('__keyVault');
  await vault.deleteMany({});
  // missingKey: the client's key vault (keyVaultNamespace) is another collection, without the key.
  if (!test.clientOptions?.autoEncryptOpts?.keyVaultNamespace && keyVaultDocs.length > 0) await vault.insertMany(keyVaultDocs.map((d) => ({ ...d })));
  await collection.deleteMany({});
  if (spec.data?.length) await collection.insertMany(spec.data.map((d: unknown) => fromEjson(d) as Document));
  // The collection's schema: the server-side json_schema, or the client's schemaMap entry; a
  // collection without either is one the service serves with a schema that encrypts nothing.
  const schemaMap = test.clientOptions?.autoEncryptOpts?.schemaMap;
  // The client's schemaMap takes precedence over the server's schema, as it does for a driver.
  const schema = schemaMap?.[`${spec.database_name}.${collectionName}`] ?? spec.json_schema ?? { bsonType: 'object' };
  const put = await app.call('PUT', `/schemas/${encodeURIComponent(ns)}`, { schema });
  if (put.statusCode >= 300 && !(test.operations ?? []).every((op: Args) => op.result?.errorContains !== undefined)) {
    return { test: test.description, status: 'fail', reason: `PUT /schemas answered ${put.statusCode} ${put.body.slice(0, 300)}` };
  }
  const schemaRefused = put.statusCode >= 300;
  // The errors that answered the operations the test expects to fail, for the report.
  const errors: string[] = [];
  const codeOf = (r: LightMyRequestResponse) => `${r.statusCode} ${r.json().code ?? ''}`.trim();

  for (const [i, op] of (test.operations as Args[]).entries()) {
    const at = `operation ${i} (${op.name})`;
    const expectError = op.result !== null && typeof op.result === 'object' && !Array.isArray(op.result) && 'errorContains' in op.result;
    if (schemaRefused) {
      // The schema itself was refused (400): every write the test expects to fail is refused with it.
      if (expectError) {
        errors.push(`${at}: PUT /schemas ${codeOf(put)}`);
        continue;
      }
      return { test: test.description, status: 'fail', reason: `${at}: PUT /schemas answered ${put.statusCode} ${put.body.slice(0, 200)}` };
    }
    const mapping = OPERATIONS[op.name];
    if (!mapping) return { test: test.description, status: 'fail', reason: `${at}: no mapping to the HTTP API` };
    const [method, url] = mapping.route.split(' ') as ['POST' | 'GET', string];
    if (!app.app.hasRoute({ method, url })) {
      return { test: test.description, status: 'fail', pending: PENDING_OPERATIONS.includes(op.name), reason: `${at}: no route yet (${mapping.route})` };
    }
    const request = mapping.request(ns, op.arguments ?? {});
    let res = await app.call(request.method, request.url, request.body);
    let body = res.statusCode < 300 && res.body ? (fromEjson(res.json()) as any) : undefined;
    // A find answers a page at a time: follow `next` as a driver's getMore does.
    while (body?.next !== undefined && op.name === 'find') {
      const nextRes = await app.call('POST', request.url, { ...(request.body as object), cursor: body.next });
      if (nextRes.statusCode >= 300) { res = nextRes; body = undefined; break; }
      const page = fromEjson(nextRes.json()) as any;
      body = { ...page, items: [...body.items, ...page.items] };
    }
    const pending = pendingIn({ operations: [op] });
    if (pending.length > 0 && res.statusCode === 400 && res.json().code === 'VALIDATION_FAILED') {
      // Refused as a malformed request, not for what the test is about.
      return { test: test.description, status: 'fail', pending: true, reason: `${at}: ${pending.join(', ')} not offered yet (400 VALIDATION_FAILED)` };
    }
    if (expectError) {
      if (isError(res)) {
        errors.push(`${at}: ${codeOf(res)}`);
        continue;
      }
      return { test: test.description, status: 'fail', reason: `${at}: expected an error (${JSON.stringify(op.result.errorContains)}), got ${res.statusCode} ${res.body.slice(0, 300)}` };
    }
    if (res.statusCode >= 300) {
      return { test: test.description, status: 'fail', reason: `${at}: ${request.method} ${request.url} answered ${res.statusCode} ${res.body.slice(0, 300)}` };
    }
    if (op.name === 'insertMany' && body.failed > 0) return { test: test.description, status: 'fail', reason: `${at}: ${body.failed} documents refused: ${res.body.slice(0, 300)}` };
    if ('result' in op && op.result !== undefined) {
      const why = matchEjson(op.result, mapping.result(body));
      if (why) return { test: test.description, status: 'fail', reason: `${at}: result ${why}` };
    }
  }
  const expected = test.outcome?.collection?.data;
  if (expected) {
    const stored = await collection.find({}).sort({ _id: 1 }).toArray();
    // Deterministic ciphertext must be byte for byte the spec's; random ciphertext ($$type binData
    // in the spec) is checked by decrypting it under the spec's data keys.
    const why = mismatch(canon(fromEjson(expected)), canon(stored), '', false) ?? undecryptable(stored, specDataKeys(spec));
    if (why) return { test: test.description, status: 'fail', reason: `outcome: collection ${why}` };
  }
  void file;
  return { test: test.description, status: 'pass', ...(errors.length > 0 ? { errors } : {}) };
}

const files: FileResults[] = [];

for (const name of legacyFiles()) {
  const file = `legacy/${name}`;
  t.test(file, async (t) => {
    const spec = readSpecJson<Args>(`client-side-encryption/${file}`);
    const results: TestResult[] = [];
    const classified = (spec.tests as Args[]).map((test) => ({ test, verdict: classify(test) }));
    let app: TestApp | undefined;
    let keyVaultDocs: Document[] = [];
    for (const { test, verdict } of classified) {
      let result: TestResult;
      if (verdict) {
        result = { test: test.description, ...verdict };
      } else {
        if (!app) {
          app = await createSpecApp(t);
          const aws = (spec.key_vault_data ?? []).some((d: Args) => d.masterKey.provider === 'aws') ? await motoWrapped(app, SPEC_AWS_DATA_KEY) : undefined;
          // The AWS-wrapped key, wrapped by moto's CMK instead (same _id, names and bytes).
          keyVaultDocs = (spec.key_vault_data ?? []).map((d: Args) => ({ ...(fromEjson(d) as Document), ...(d.masterKey.provider === 'aws' ? aws : {}) }));
        }
        result = await runTest(app, spec, test, file, keyVaultDocs);
        // The spec skips some tests for server bugs long fixed: they are run all the same, and only
        // a failure of one is left out of the count, with the spec's reason.
        if (test.skipReason) {
          result =
            result.status === 'pass'
              ? { ...result, reason: `skipped by the spec itself (${test.skipReason}), run anyway` }
              : { test: test.description, status: 'not applicable', reason: `skipped by the spec itself: ${test.skipReason} (run anyway, it fails here: ${result.reason})` };
        }
      }
      results.push(result);
      if (result.status === 'pass' || result.status === 'fail') {
        const pending = pendingIn(test);
        const gap = KNOWN_GAPS[`${file}: ${test.description}`];
        if (gap) result.reason = `${gap} (${result.reason ?? 'passes now: remove it from KNOWN_GAPS'})`;
        const todo = pending.length > 0 ? `pending: ${pending.join(', ')} (PENDING_OPERATIONS)` : gap;
        t.equal(result.status, 'pass', `${test.description}${result.reason ? `: ${result.reason}` : ''}`, todo ? { todo } : {});
      }
    }
    files.push({ file, results });
  });
}

t.teardown(() => {
  files.sort((a, b) => a.file.localeCompare(b.file));
  saveSuite(
    {
      id: 'legacy-auto-encryption',
      title: 'Automatic encryption (legacy format, through /documents)',
      notes: [
        'Queryable Encryption (fle2v2-* files) is out of scope and not run.',
        '`expectations` (command monitoring of the driver\'s and mongocryptd\'s commands) are not applicable: which commands reach mongocryptd, the key vault and the server is internal to a driver. Each operation\'s effect is checked through its result and the stored collection instead.',
        'json_schema (or the client\'s schemaMap entry) → PUT /schemas/{ns}; a collection with neither is served with `{"bsonType": "object"}`, a schema that encrypts nothing. `data` and `key_vault_data` are written directly with the driver; each file has its own database and key vault.',
        'outcome.collection.data is compared with the stored collection: deterministic ciphertext byte for byte, random ciphertext (`$$type: binData` in the spec) by decrypting it under the spec\'s data keys (HMAC checked), numbers by value, field order ignored.',
        'find follows the API\'s `next` cursor as a driver follows getMore. Results are compared in the driver\'s shape: insertOne → `{insertedId}`, update → `{matchedCount, modifiedCount, upsertedCount}`, delete → `{deletedCount}`, count → the number.',
        'localSchema.json "A local schema with no encryption is an error" passes because the service enforces `required` (the inserted document lacks the field: 400 DOCUMENT_VALIDATION_FAILED), whereas a driver refuses the keyword in a local schema: the same refusal, for another reason.',
        ...(PENDING_OPERATIONS.length > 0 ? [`Operations whose route is being added (${PENDING_OPERATIONS.join(', ')}) fail with "no route yet" where the route is missing.`] : []),
      ],
      files,
    },
    process.env.WRITE_CONFORMANCE === '1',
  );
});

/**
 * The authorization matrix (issue 11): every operation of openapi.yaml × a set of identities, with
 * the status each cell must get, checked over HTTP. The table below is the contract; an operation
 * of openapi.yaml without a row fails the test, so a new route cannot ship unjudged.
 *
 * Every request is valid for its operation (the operator's cell shows it: it always succeeds), so
 * a refusal is about who asks, never about what was asked. Fixtures are made once by the operator;
 * a row whose success consumes its target (a delete) makes a fresh one for each cell.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { InjectOptions } from 'fastify';
import { SCOPES } from '../../src/clients/scopes.js';
import { ADMIN_TOKEN, createTestApp } from '../helpers/app.js';
import { createDocumentsApp, type DocumentsTestApp } from '../helpers/documents.js';

const ISSUER = 'https://idp.matrix.test/';
const AUDIENCE = 'encryption-proxy';

/**
 * The identities (columns). `grants` is what the client holds; `refused` identities present
 * credentials that must not authenticate (401 in every cell, whatever their client holds).
 */
interface Identity {
  grants?: (ns: string) => object[];
  via?: 'operator' | 'token' | 'jwt' | 'jwt-wrong-audience' | 'none' | 'disabled' | 'expired';
}
const only = (scope: string) => () => [{ scope }];
/** Every scope a client can hold, without key limits: what the operator has, minus being the operator. */
const everything = () => [...SCOPES.map((scope) => ({ scope })), { scope: 'documents:*:read' }, { scope: 'documents:*:write' }];

const identities = {
  anonymous: { via: 'none' },
  operator: { via: 'operator' },
  'all scopes (JWT)': { via: 'jwt', grants: everything },
  encrypt: { grants: only('encrypt') },
  decrypt: { grants: only('decrypt') },
  'keys:read': { grants: only('keys:read') },
  'keys:write': { grants: only('keys:write') },
  'keys:delete': { grants: only('keys:delete') },
  'keys:rewrap': { grants: only('keys:rewrap') },
  'clients:admin': { grants: only('clients:admin') },
  'audit:read': { grants: only('audit:read') },
  'metrics:read': { grants: only('metrics:read') },
  'jobs:read': { grants: only('jobs:read') },
  'jobs:admin': { grants: only('jobs:admin') },
  'schemas:read': { grants: only('schemas:read') },
  'schemas:admin': { grants: only('schemas:admin') },
  /** The masked reader: reads the collection, may decrypt nothing. */
  'documents:ns:read': { grants: (ns) => [{ scope: `documents:${ns}:read` }] },
  'documents:ns:write': { grants: (ns) => [{ scope: `documents:${ns}:write` }] },
  'documents of another ns': {
    grants: (ns) => [{ scope: `documents:${ns.split('.')[0]}.other:read` }, { scope: `documents:${ns.split('.')[0]}.other:write` }],
  },
  /** A reader who may decrypt (and so query) the hr-* fields. */
  'reader + decrypt[hr-*]': { grants: (ns) => [{ scope: `documents:${ns}:read` }, { scope: 'decrypt', keyAltNames: ['hr-*'] }] },
  'decrypt[tenant-a*]': { grants: () => [{ scope: 'decrypt', keyAltNames: ['tenant-a*'] }] },
  'keys:read[tenant-a*]': { grants: () => [{ scope: 'keys:read', keyAltNames: ['tenant-a*'] }] },
  'keys:write[billing-*]': { grants: () => [{ scope: 'keys:write', keyAltNames: ['billing-*'] }] },
  /** clients:admin bounded by what it holds itself: it may hand out encrypt on tenant-a* and nothing more. */
  'delegated admin': { grants: () => [{ scope: 'clients:admin' }, { scope: 'encrypt', keyAltNames: ['tenant-a*'] }] },
  'JWT, wrong audience': { via: 'jwt-wrong-audience', grants: everything },
  'disabled client': { via: 'disabled', grants: everything },
  'expired token': { via: 'expired', grants: everything },
} satisfies Record<string, Identity>;
type Who = keyof typeof identities;
const everyone = Object.keys(identities) as Who[];
const unauthenticated = everyone.filter((who) => ['none', 'jwt-wrong-audience', 'disabled', 'expired'].includes((identities[who] as Identity).via ?? ''));

/** What the operator prepared once. */
interface Fixtures {
  ns: string;
  keys: Record<string, string>;
  /** A ciphertext under tenant-a. */
  ciphertext: string;
  readDocId: string;
  writeDocId: string;
  /** A client holding encrypt on tenant-a*: within the delegated admin's grants, beyond clients:admin alone. */
  targetClientId: string;
  /** A job the operator started. */
  jobId: string;
  /** The operator's own calls, to make a fresh target for one cell. */
  call: DocumentsTestApp['call'];
  /** A fresh job of the operator's that no instance runs (so a cancel of it can succeed). */
  plantJob: () => Promise<string>;
}

interface Req {
  url: string;
  body?: object;
}

/** A cell: a status, or a status and what its problem detail (an error) or its body (a success) must say. */
type Cell = number | [number, RegExp];

interface Row {
  /** The request, built for one cell (`n` is unique per cell, for names and fresh targets). */
  request: (fx: Fixtures, n: number) => Req | Promise<Req>;
  /** The success status, and the identities that get it. */
  ok: number;
  allowed: Who[];
  /** Cells that get something else than `ok`, 401 (unauthenticated) or 403 for the route's scope. */
  other?: Partial<Record<Who, Cell>>;
}

const all: Who[] = ['operator', 'all scopes (JWT)'];
/** A collection schema that needs no key: each PUT cell makes its own namespace. */
const plainSchema = { properties: { name: { bsonType: 'string' } } };
const targetGrants = [{ scope: 'encrypt', keyAltNames: ['tenant-a*'] }];
const person = (n: number | string) => ({ name: `person ${n}`, ssn: `900-00-${String(n).padStart(4, '0')}`, tenantKey: 'tenant-a', tenantSecret: 'CANARY-matrix' });

async function created(res: { statusCode: number; body: string; json(): any }, what: string) {
  if (res.statusCode >= 300) throw new Error(`fixture ${what}: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** A fresh key, deleted by the operator: in the trash. */
async function trashedKey(fx: Fixtures, n: number): Promise<string> {
  const key = await created(await fx.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`trashed-${n}`] }), 'key');
  const deleted = await fx.call('DELETE', `/keys/${key.id}`);
  if (deleted.statusCode !== 204) throw new Error(`fixture deleted key: ${deleted.statusCode} ${deleted.body}`);
  return key.id;
}

/** The expected status of every operation (openapi.yaml's, except /health/*, /openapi.json, /docs) for every identity. */
const matrix: Record<string, Row> = {
  'POST /encrypt': {
    request: () => ({ url: '/encrypt', body: { value: 'x', algorithm: 'random', keyAltName: 'tenant-b' } }),
    ok: 200,
    allowed: [...all, 'encrypt'],
    other: { 'delegated admin': [404, /KEY_NOT_FOUND/] }, // encrypt on tenant-a* only: other keys do not exist for it
  },
  'POST /decrypt': {
    request: (fx) => ({ url: '/decrypt', body: { ciphertext: fx.ciphertext } }),
    ok: 200,
    allowed: [...all, 'decrypt', 'decrypt[tenant-a*]'],
    other: { 'reader + decrypt[hr-*]': [403, /data key/] }, // no decryption oracle for other keys
  },
  'POST /keys': {
    // Two names, each needing cover: billing-* must not claim an hr-* name alongside its own.
    request: (_fx, n) => ({ url: '/keys', body: { masterKey: { provider: 'local' }, keyAltNames: [`billing-new-${n}`, `hr-new-${n}`] } }),
    ok: 201,
    allowed: [...all, 'keys:write'],
    other: { 'keys:write[billing-*]': [403, /keyAltNames\[1\]/] },
  },
  'GET /keys': {
    request: () => ({ url: '/keys?limit=1000' }),
    ok: 200,
    allowed: [...all, 'keys:read'],
    other: { 'keys:read[tenant-a*]': [200, /^(?!.*"hr-det").*"keyAltNames":\["tenant-a"\]/] }, // other keys are left out
  },
  'GET /keys/rotation-report': {
    request: () => ({ url: '/keys/rotation-report' }),
    ok: 200,
    allowed: [...all, 'keys:read'],
    other: { 'keys:read[tenant-a*]': [200, /"dataKeys":1,/] }, // only tenant-a is counted
  },
  'GET /keys/{id}': {
    request: (fx) => ({ url: `/keys/${fx.keys['tenant-a']}` }),
    ok: 200,
    allowed: [...all, 'keys:read', 'keys:read[tenant-a*]'],
  },
  'GET /keys/by-alt-name/{name}': {
    request: () => ({ url: '/keys/by-alt-name/hr-det' }),
    ok: 200,
    allowed: [...all, 'keys:read'],
    other: { 'keys:read[tenant-a*]': [404, /KEY_NOT_FOUND/] }, // not revealed
  },
  'POST /keys/{id}/alt-names': {
    request: (fx, n) => ({ url: `/keys/${fx.keys['billing-base']}/alt-names`, body: { keyAltName: `billing-alt-${n}` } }),
    ok: 200,
    allowed: [...all, 'keys:write', 'keys:write[billing-*]'],
  },
  'DELETE /keys/{id}/alt-names/{name}': {
    request: async (fx, n) => {
      await created(await fx.call('POST', `/keys/${fx.keys['billing-base']}/alt-names`, { keyAltName: `billing-rm-${n}` }), 'alt name');
      return { url: `/keys/${fx.keys['billing-base']}/alt-names/billing-rm-${n}` };
    },
    ok: 200,
    allowed: [...all, 'keys:write', 'keys:write[billing-*]'],
  },
  'DELETE /keys/{id}': {
    request: async (fx, n) => {
      const key = await created(await fx.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`doomed-${n}`] }), 'key');
      return { url: `/keys/${key.id}` };
    },
    ok: 204,
    allowed: [...all, 'keys:delete'],
  },
  'POST /keys/{id}/restore': {
    request: async (fx, n) => ({ url: `/keys/${await trashedKey(fx, n)}/restore` }),
    ok: 200,
    allowed: [...all, 'keys:delete'],
  },
  'POST /keys/{id}/purge': {
    request: async (fx, n) => ({ url: `/keys/${await trashedKey(fx, n)}/purge` }),
    ok: 204,
    allowed: [...all, 'keys:delete'],
  },
  'POST /keys/rewrap': {
    request: () => ({ url: '/keys/rewrap', body: { filter: { keyAltNames: ['tenant-b'] }, masterKey: { provider: 'local' } } }),
    ok: 200,
    allowed: [...all, 'keys:rewrap'],
  },
  'POST /keys/migrations': {
    request: () => ({ url: '/keys/migrations', body: { filter: { keyAltNames: ['tenant-b'] }, masterKey: { provider: 'local' }, dryRun: true } }),
    ok: 200,
    allowed: [...all, 'keys:rewrap'],
  },
  'POST /documents/{ns}': {
    // A write encrypts under the keys the schema (the operator's) chose: the collection's write grant
    // is the right. tenantSecret's key is named by the document (/tenantKey): the writer chooses it,
    // so it also needs encrypt on that key; without, the name reads as naming no key (422).
    request: (fx, n) => ({ url: `/documents/${fx.ns}`, body: { document: person(n) } }),
    ok: 201,
    allowed: all,
    other: { 'documents:ns:write': [422, /tenantSecret/] },
  },
  'GET /documents/{ns}': {
    request: (fx) => ({ url: `/documents/${fx.ns}?limit=2` }),
    ok: 200,
    allowed: [...all, 'documents:ns:read', 'reader + decrypt[hr-*]'], // the masked reader gets masked fields
  },
  'POST /documents/{ns}/find': {
    // An equality query on ssn (hr-det) is a read of ssn: without decrypt on hr-det, 403 naming the path.
    request: (fx) => ({ url: `/documents/${fx.ns}/find`, body: { filter: { ssn: person(1).ssn } } }),
    ok: 200,
    allowed: [...all, 'reader + decrypt[hr-*]'],
    other: { 'documents:ns:read': [403, /ssn/] },
  },
  'POST /documents/{ns}/count': {
    request: (fx) => ({ url: `/documents/${fx.ns}/count`, body: { filter: { ssn: { $in: [person(1).ssn, person(2).ssn] } } } }),
    ok: 200,
    allowed: [...all, 'reader + decrypt[hr-*]'],
    other: { 'documents:ns:read': [403, /ssn/] },
  },
  'POST /documents/{ns}/aggregate': {
    // A $match equality on ssn is a read of ssn, as find's: without decrypt on hr-det, 403 naming the path.
    request: (fx) => ({ url: `/documents/${fx.ns}/aggregate`, body: { pipeline: [{ $match: { ssn: person(1).ssn } }, { $count: 'n' }] } }),
    ok: 200,
    allowed: [...all, 'reader + decrypt[hr-*]'],
    other: { 'documents:ns:read': [403, /ssn/] },
  },
  'POST /documents/{ns}/distinct': {
    // The distinct values of ssn are its plaintexts: decrypt on hr-det is needed before anything is read.
    request: (fx) => ({ url: `/documents/${fx.ns}/distinct`, body: { key: 'ssn' } }),
    ok: 200,
    allowed: [...all, 'reader + decrypt[hr-*]'],
    other: { 'documents:ns:read': [403, /ssn/] },
  },
  'POST /documents/{ns}/explain': {
    request: (fx) => ({ url: `/documents/${fx.ns}/explain`, body: { filter: { ssn: 'x' } } }),
    ok: 200,
    allowed: [...all, 'documents:ns:read', 'reader + decrypt[hr-*]'],
  },
  'POST /documents/{ns}/update': {
    // The filter is on ssn: a writer without decrypt on hr-det may not probe it either.
    request: (fx) => ({ url: `/documents/${fx.ns}/update`, body: { filter: { ssn: person(2).ssn }, update: { $set: { level: 2 } } } }),
    ok: 200,
    allowed: all,
    other: { 'documents:ns:write': [403, /ssn/] },
  },
  'POST /documents/{ns}/replace': {
    // Keys the schema names need the collection's write grant only; no key is named by this document.
    request: (fx, n) => ({ url: `/documents/${fx.ns}/replace`, body: { filter: { name: `nobody-${n}` }, replacement: { name: 'R', ssn: '900-00-0009', tenantKey: 'tenant-b' } } }),
    ok: 200,
    allowed: [...all, 'documents:ns:write'],
  },
  'POST /documents/{ns}/find-one-and-update': {
    // It returns a document: it needs the read grant as well as the write grant.
    request: (fx) => ({ url: `/documents/${fx.ns}/find-one-and-update`, body: { filter: { name: 'nobody' }, update: { $set: { level: 2 } } } }),
    ok: 200,
    allowed: all,
    other: { 'documents:ns:write': [403, /read/] },
  },
  'POST /documents/{ns}/find-one-and-replace': {
    request: (fx) => ({ url: `/documents/${fx.ns}/find-one-and-replace`, body: { filter: { name: 'nobody' }, replacement: { name: 'R', ssn: '900-00-0009', tenantKey: 'tenant-b' } } }),
    ok: 200,
    allowed: all,
    other: { 'documents:ns:write': [403, /read/] },
  },
  'POST /documents/{ns}/find-one-and-delete': {
    request: (fx) => ({ url: `/documents/${fx.ns}/find-one-and-delete`, body: { filter: { name: 'nobody' } } }),
    ok: 200,
    allowed: all,
    other: { 'documents:ns:write': [403, /read/] },
  },
  'POST /documents/{ns}/bulk': {
    request: (fx) => ({ url: `/documents/${fx.ns}/bulk`, body: { operations: [{ deleteMany: { filter: { name: 'nobody' } } }] } }),
    ok: 200,
    allowed: [...all, 'documents:ns:write'],
  },
  'POST /documents/{ns}/delete': {
    request: (fx) => ({ url: `/documents/${fx.ns}/delete`, body: { filter: { name: 'nobody' } } }),
    ok: 200,
    allowed: [...all, 'documents:ns:write'],
  },
  'POST /documents/{ns}/rotations': {
    // Needs the collection's write grant, decrypt on the old key and encrypt on the new one.
    request: (fx) => ({ url: `/documents/${fx.ns}/rotations`, body: { from: { keyAltName: 'rot-from' }, to: { keyAltName: 'rot-to' } } }),
    ok: 202,
    allowed: all,
    // A key beyond the caller's grants reads as one that does not exist.
    other: { 'documents:ns:write': [404, /KEY_NOT_FOUND/] },
  },
  'GET /documents/{ns}/{id}': {
    request: (fx) => ({ url: `/documents/${fx.ns}/${fx.readDocId}` }),
    ok: 200,
    allowed: all,
    other: {
      // Each reader sees what its decrypt grants cover; the rest is masked (null), never ciphertext.
      'documents:ns:read': [200, /"ssn":null.*"tenantSecret":null.*"masked":\["ssn","tenantSecret"\]/],
      'reader + decrypt[hr-*]': [200, /"ssn":"900-00-0001".*"tenantSecret":null.*"masked":\["tenantSecret"\]/],
    },
  },
  'PATCH /documents/{ns}/{id}': {
    request: (fx) => ({ url: `/documents/${fx.ns}/${fx.writeDocId}`, body: { update: { $set: { ssn: '900-99-0001' } } } }),
    ok: 200,
    allowed: [...all, 'documents:ns:write'],
  },
  'PUT /documents/{ns}/{id}': {
    request: (fx) => ({ url: `/documents/${fx.ns}/${fx.writeDocId}`, body: { document: person(2) } }),
    ok: 200,
    allowed: all,
    other: { 'documents:ns:write': [422, /tenantSecret/] }, // as for POST: the document names tenantSecret's key
  },
  'DELETE /documents/{ns}/{id}': {
    request: async (fx, n) => {
      const doc = await created(await fx.call('POST', `/documents/${fx.ns}`, { document: person(`doomed-${n}`) }), 'document');
      return { url: `/documents/${fx.ns}/${doc.insertedId.$oid}` };
    },
    ok: 204,
    allowed: [...all, 'documents:ns:write'],
  },
  'POST /clients': {
    // Hands out encrypt on tenant-a*: clients:admin alone does not hold it, the delegated admin does.
    request: (_fx, n) => ({ url: '/clients', body: { name: `made by cell ${n}`, grants: targetGrants } }),
    ok: 201,
    allowed: [...all, 'delegated admin'],
    other: { 'clients:admin': [403, /grants\[0\] \(encrypt\) is a scope you do not hold/] },
  },
  'GET /clients': { request: () => ({ url: '/clients' }), ok: 200, allowed: [...all, 'clients:admin', 'delegated admin'] },
  'GET /clients/{id}': {
    // Reading a client is not acting with its power: any client administrator may.
    request: (fx) => ({ url: `/clients/${fx.targetClientId}` }),
    ok: 200,
    allowed: [...all, 'clients:admin', 'delegated admin'],
  },
  'PATCH /clients/{id}': {
    request: (fx, n) => ({ url: `/clients/${fx.targetClientId}`, body: { name: `renamed by cell ${n}` } }),
    ok: 200,
    allowed: [...all, 'delegated admin'],
    other: { 'clients:admin': [403, /That client holds more than you do/] },
  },
  'DELETE /clients/{id}': {
    request: async (fx, n) => {
      const made = await created(await fx.call('POST', '/clients', { name: `doomed ${n}`, grants: targetGrants }), 'client');
      return { url: `/clients/${made.client.id}` };
    },
    ok: 204,
    allowed: [...all, 'delegated admin'],
    other: { 'clients:admin': [403, /That client holds more than you do/] },
  },
  'POST /clients/{id}/tokens': {
    request: (fx) => ({ url: `/clients/${fx.targetClientId}/tokens`, body: {} }),
    ok: 201,
    allowed: [...all, 'delegated admin'],
    other: { 'clients:admin': [403, /That client holds more than you do/] },
  },
  'DELETE /clients/{id}/tokens/{tokenId}': {
    request: async (fx, n) => {
      const made = await created(await fx.call('POST', '/clients', { name: `token holder ${n}`, grants: targetGrants }), 'client');
      return { url: `/clients/${made.client.id}/tokens/${made.client.tokens[0].id}` };
    },
    ok: 204,
    allowed: [...all, 'delegated admin'],
    other: { 'clients:admin': [403, /That client holds more than you do/] },
  },
  'GET /audit': { request: () => ({ url: '/audit?limit=5' }), ok: 200, allowed: [...all, 'audit:read'] },
  'GET /audit/verify': { request: () => ({ url: '/audit/verify' }), ok: 200, allowed: [...all, 'audit:read'] },
  'GET /metrics': { request: () => ({ url: '/metrics' }), ok: 200, allowed: [...all, 'metrics:read'] },
  'PUT /schemas/{ns}': {
    request: (fx, n) => ({ url: `/schemas/${fx.ns.split('.')[0]}.matrix_${n}`, body: { schema: plainSchema } }),
    ok: 201,
    allowed: [...all, 'schemas:admin'],
  },
  'GET /schemas': { request: () => ({ url: '/schemas' }), ok: 200, allowed: [...all, 'schemas:read', 'schemas:admin'] },
  'GET /schemas/{ns}': { request: (fx) => ({ url: `/schemas/${fx.ns}` }), ok: 200, allowed: [...all, 'schemas:read', 'schemas:admin'] },
  'GET /schemas/{ns}/versions': { request: (fx) => ({ url: `/schemas/${fx.ns}/versions` }), ok: 200, allowed: [...all, 'schemas:read', 'schemas:admin'] },
  'DELETE /schemas/{ns}': {
    request: async (fx, n) => {
      const ns = `${fx.ns.split('.')[0]}.doomed_${n}`;
      await created(await fx.call('PUT', `/schemas/${ns}`, { schema: plainSchema }), 'schema');
      return { url: `/schemas/${ns}` };
    },
    ok: 204,
    allowed: [...all, 'schemas:admin'],
  },
  'GET /jobs/{id}': {
    request: (fx) => ({ url: `/jobs/${fx.jobId}` }),
    ok: 200,
    allowed: [...all, 'jobs:admin'],
    // Not its creator: the job does not exist for it.
    other: { 'jobs:read': 404 },
  },
  'GET /jobs': {
    request: () => ({ url: '/jobs' }),
    ok: 200,
    allowed: [...all, 'jobs:admin'],
    // It started no job, and sees no one else's.
    other: { 'jobs:read': [200, /^\{"items":\[\]\}$/] },
  },
  'POST /jobs/{id}/cancel': {
    request: async (fx) => ({ url: `/jobs/${await fx.plantJob()}/cancel` }),
    ok: 202,
    allowed: [...all, 'jobs:admin'],
    // Not its creator: the job does not exist for it, so it cannot stop it either.
    other: { 'jobs:read': 404 },
  },
};

/** What each cell must get. */
function expected(row: Row, who: Who): { status: number; detail?: RegExp } {
  if (unauthenticated.includes(who)) return { status: 401 };
  const special = row.other?.[who];
  if (special !== undefined) return typeof special === 'number' ? { status: special } : { status: special[0], detail: special[1] };
  if (row.allowed.includes(who)) return { status: row.ok };
  // Refused by the route's scope, before anything else is looked at.
  return { status: 403, detail: /^This needs the / };
}
const codeOf: Record<number, string> = { 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'JOB_NOT_FOUND', 422: 'UNKNOWN_KEY_ALT_NAME' };

const spec = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));
const operations = Object.entries<Record<string, unknown>>(spec.paths)
  .filter(([path]) => !path.startsWith('/health/') && path !== '/openapi.json' && !path.startsWith('/docs'))
  .flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`));

t.test('every operation in openapi.yaml has a row in the matrix, and every row an operation', async (t) => {
  t.same([...operations].sort(), Object.keys(matrix).sort());
  for (const [operation, row] of Object.entries(matrix)) {
    t.ok(row.allowed.includes('operator'), `${operation}: the operator may (its cell proves the request is valid)`);
    for (const who of [...row.allowed, ...Object.keys(row.other ?? {})]) t.ok(who in identities, `${operation}: ${who} is an identity`);
  }
});

t.test('the matrix: every operation × every identity gets exactly its expected status', async (t) => {
  const started = Date.now();
  const jwksDir = mkdtempSync(join(tmpdir(), 'matrix-jwks-'));
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwksFile = join(jwksDir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'm1', alg: 'ES256' }] }));
  const h = await createDocumentsApp(t, undefined, {
    env: {
      JWT_JWKS_FILE: jwksFile,
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
      // The 401 cells are failed authentications from one address: the limiter would cut off the
      // rest of the matrix. Its own test is below.
      AUTH_FAILURES_PER_MINUTE: '1000000',
    },
  });

  // Fixtures, by the operator.
  const keys: Record<string, string> = { ...h.keys };
  for (const name of ['billing-base', 'rot-from', 'rot-to']) {
    keys[name] = (await created(await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] }), name)).id;
  }
  const ciphertext = (await created(await h.call('POST', '/encrypt', { value: 'CANARY-tenant-a', algorithm: 'random', keyAltName: 'tenant-a' }), 'ciphertext')).ciphertext;
  const readDocId = (await created(await h.call('POST', `/documents/${h.ns}`, { document: person(1) }), 'document')).insertedId.$oid;
  const writeDocId = (await created(await h.call('POST', `/documents/${h.ns}`, { document: person(2) }), 'document')).insertedId.$oid;
  const targetClientId = (await created(await h.call('POST', '/clients', { name: 'target', grants: targetGrants }), 'client')).client.id;
  const job = await h.call('POST', '/keys/migrations', { filter: { keyAltNames: ['rot-to'] }, masterKey: { provider: 'local' } });
  const jobId = (await created(job, 'job')).id;
  // As a stopped instance leaves it: running, never leased; under an AWS key this app cannot use, so its scan leaves it be.
  const plantJob = async () => {
    const id = `job_${randomBytes(12).toString('hex')}`;
    const at = new Date(Date.now() - 60_000);
    await h.mongo.db(h.keyVaultDb).collection('__jobs').insertOne({
      _id: id as never,
      type: 'keys.migration',
      state: 'running',
      createdBy: 'admin',
      params: {},
      spec: { keyIds: [], masterKey: { provider: 'aws', key: 'arn:aws:kms:eu-west-1:111122223333:key/matrix', region: 'eu-west-1' } },
      runs: 1,
      progress: { total: 0, done: 0, failed: 0, phase: 'rewrapping' },
      createdAt: at,
      updatedAt: at,
      heartbeatAt: new Date(),
    });
    return id;
  };
  const fx: Fixtures = { ns: h.ns, keys, ciphertext, readDocId, writeDocId, targetClientId, jobId, call: h.call, plantJob };

  // One client (and one credential) per identity.
  const sign = (subject: string, audience: string) =>
    new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'm1' }).setSubject(subject).setIssuer(ISSUER).setAudience(audience).setIssuedAt().setExpirationTime('10m').sign(privateKey);
  const credentials = new Map<Who, string | undefined>();
  let expiresAt = 0;
  for (const who of everyone) {
    const identity: Identity = identities[who];
    if (identity.via === 'none') credentials.set(who, undefined);
    else if (identity.via === 'operator') credentials.set(who, ADMIN_TOKEN);
    else {
      const jwtSubject = identity.via?.startsWith('jwt') ? `matrix-${who.replace(/\W+/g, '-')}` : undefined;
      const made = await created(await h.call('POST', '/clients', { name: who, grants: identity.grants!(h.ns), ...(jwtSubject ? { jwtSubject } : {}) }), who);
      let token: string = made.token;
      if (identity.via === 'disabled') await created(await h.call('PATCH', `/clients/${made.client.id}`, { disabled: true }), 'disable');
      if (identity.via === 'expired') {
        // Valid when issued, expired by the time the matrix runs (the client's first token is never used).
        expiresAt = Date.now() + 1500;
        token = (await created(await h.call('POST', `/clients/${made.client.id}/tokens`, { expiresAt: new Date(expiresAt).toISOString() }), 'token')).token;
      }
      if (identity.via === 'jwt') token = await sign(jwtSubject!, AUDIENCE);
      if (identity.via === 'jwt-wrong-audience') token = await sign(jwtSubject!, 'another-service');
      credentials.set(who, token);
    }
  }
  const wait = expiresAt - Date.now() + 50;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const fixturesMs = Date.now() - started;

  const got: Record<string, Record<string, number>> = {};
  const want: Record<string, Record<string, number>> = {};
  let n = 0;
  for (const [operation, row] of Object.entries(matrix)) {
    const method = operation.split(' ')[0] as InjectOptions['method'];
    got[operation] = {};
    want[operation] = {};
    for (const who of everyone) {
      const { url, body } = await row.request(fx, ++n);
      const token = credentials.get(who);
      const res = await h.app.inject({
        method,
        url,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        ...(body === undefined ? {} : { payload: body }),
      });
      const expect = expected(row, who);
      got[operation]![who] = res.statusCode;
      want[operation]![who] = expect.status;
      if (res.statusCode !== expect.status) {
        t.comment(`${operation} as ${who}: ${res.statusCode} ${res.body.slice(0, 300)}`);
        continue;
      }
      if (expect.status < 400) {
        if (expect.detail !== undefined && !expect.detail.test(res.body)) t.fail(`${operation} as ${who}: ${res.body} does not match ${expect.detail}`);
        continue;
      }
      const problem = res.json();
      // A row's pattern may name the code itself (KEY_NOT_FOUND, UNKNOWN_KEY_ALT_NAME …); else the status's usual one.
      const namesCode = expect.detail !== undefined && /^\/?[A-Z_]+\/?$/.test(expect.detail.source);
      const code = namesCode ? expect.detail!.source : codeOf[expect.status];
      if (code !== undefined && problem.code !== code) t.fail(`${operation} as ${who}: ${problem.code}, not ${code}`);
      if (!namesCode && expect.detail !== undefined && !expect.detail.test(problem.detail ?? '')) {
        t.fail(`${operation} as ${who}: the detail "${problem.detail}" does not match ${expect.detail}`);
      }
    }
  }
  t.same(got, want, `${operations.length} operations × ${everyone.length} identities`);
  t.comment(`${n} cells; fixtures ${fixturesMs} ms, all ${Date.now() - started} ms`);
});

t.test('the failed-authentication limiter still trips with its default limit, for the refused credentials of the matrix', async (t) => {
  const h = await createTestApp(t);
  const made = await created(await h.call('POST', '/clients', { name: 'soon disabled', grants: [{ scope: 'keys:read' }] }), 'client');
  await created(await h.call('PATCH', `/clients/${made.client.id}`, { disabled: true }), 'disable');
  const asDisabled = () => h.app.inject({ method: 'GET', url: '/keys', headers: { authorization: `Bearer ${made.token}` } });
  for (let i = 0; i < 30; i++) {
    const res = await asDisabled();
    if (res.statusCode !== 401) t.fail(`failure ${i + 1}: ${res.statusCode}`);
  }
  const cutOff = await asDisabled();
  t.equal(cutOff.statusCode, 429, 'the 31st failure in the minute is refused before its credentials are looked at');
  t.equal(cutOff.json().code, 'RATE_LIMITED');
  t.ok(Number(cutOff.headers['retry-after']) > 0, 'with Retry-After');
  const operator = await h.call('GET', '/keys');
  t.equal(operator.statusCode, 429, 'the address is cut off, whatever it presents next (a guesser learns nothing when it guesses right)');
});

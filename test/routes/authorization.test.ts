import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { createDocumentsApp } from '../helpers/documents.js';

/**
 * The scope each operation needs, or the scopes any one of which will do: the contract this test
 * holds the server to.
 */
const expectedScopes: Record<string, string | string[]> = {
  'POST /encrypt': 'encrypt',
  'POST /decrypt': 'decrypt',
  'POST /keys': 'keys:write',
  'GET /keys': 'keys:read',
  'GET /keys/{id}': 'keys:read',
  'GET /keys/rotation-report': 'keys:read',
  'GET /keys/by-alt-name/{name}': 'keys:read',
  'POST /keys/{id}/alt-names': 'keys:write',
  'DELETE /keys/{id}/alt-names/{name}': 'keys:write',
  'DELETE /keys/{id}': 'keys:delete',
  'POST /keys/{id}/restore': 'keys:delete',
  'POST /keys/{id}/purge': 'keys:delete',
  'POST /keys/rewrap': 'keys:rewrap',
  'POST /documents/{ns}': 'documents:{ns}:write',
  'GET /documents/{ns}': 'documents:{ns}:read',
  'POST /documents/{ns}/find': 'documents:{ns}:read',
  'POST /documents/{ns}/count': 'documents:{ns}:read',
  'POST /documents/{ns}/explain': 'documents:{ns}:read',
  'POST /documents/{ns}/aggregate': 'documents:{ns}:read',
  'POST /documents/{ns}/distinct': 'documents:{ns}:read',
  'POST /documents/{ns}/update': 'documents:{ns}:write',
  'POST /documents/{ns}/replace': 'documents:{ns}:write',
  'POST /documents/{ns}/bulk': 'documents:{ns}:write',
  // Writes that answer with the document: both scopes, in one token ("+").
  'POST /documents/{ns}/find-one-and-update': 'documents:{ns}:read+documents:{ns}:write',
  'POST /documents/{ns}/find-one-and-replace': 'documents:{ns}:read+documents:{ns}:write',
  'POST /documents/{ns}/find-one-and-delete': 'documents:{ns}:read+documents:{ns}:write',
  'POST /documents/{ns}/delete': 'documents:{ns}:write',
  'POST /documents/{ns}/rotations': 'documents:{ns}:write',
  'GET /documents/{ns}/{id}': 'documents:{ns}:read',
  'PATCH /documents/{ns}/{id}': 'documents:{ns}:write',
  'PUT /documents/{ns}/{id}': 'documents:{ns}:write',
  'DELETE /documents/{ns}/{id}': 'documents:{ns}:write',
  'POST /clients': 'clients:admin',
  'GET /clients': 'clients:admin',
  'GET /clients/{id}': 'clients:admin',
  'PATCH /clients/{id}': 'clients:admin',
  'DELETE /clients/{id}': 'clients:admin',
  'POST /clients/{id}/tokens': 'clients:admin',
  'DELETE /clients/{id}/tokens/{tokenId}': 'clients:admin',
  'GET /audit': 'audit:read',
  'GET /audit/verify': 'audit:read',
  'GET /metrics': 'metrics:read',
  'GET /jobs': ['jobs:read', 'jobs:admin'],
  'GET /jobs/{id}': ['jobs:read', 'jobs:admin'],
  'POST /jobs/{id}/cancel': ['jobs:read', 'jobs:admin'],
  'POST /keys/migrations': 'keys:rewrap',
  'PUT /schemas/{ns}': 'schemas:admin',
  'DELETE /schemas/{ns}': 'schemas:admin',
  'GET /schemas': ['schemas:read', 'schemas:admin'],
  'GET /schemas/{ns}': ['schemas:read', 'schemas:admin'],
  'GET /schemas/{ns}/versions': ['schemas:read', 'schemas:admin'],
};

const spec = parse(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8'));
const operations = Object.entries<Record<string, unknown>>(spec.paths).flatMap(([path, ops]) =>
  Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
);

t.test('every operation in openapi.yaml has a declared scope', async (t) => {
  const guarded = operations.filter((op) => !op.includes(' /health/'));
  t.same(guarded.sort(), Object.keys(expectedScopes).sort());
});

t.test('every guarded route: no token → 401, wrong scope → 403, right scope → through', async (t) => {
  const h = await createDocumentsApp(t);
  const ciphertext = (await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'hr-rnd' })).json().ciphertext;
  const bodies: Record<string, unknown> = {
    'POST /encrypt': { value: 'x', algorithm: 'random', keyAltName: 'hr-rnd' },
    'POST /decrypt': { ciphertext },
    'POST /keys': { masterKey: { provider: 'local' } },
    'POST /keys/{id}/alt-names': { keyAltName: 'extra' },
    'POST /keys/rewrap': { filter: { keyAltNames: ['nothing-matches'] }, masterKey: { provider: 'local' } },
    'POST /keys/migrations': { filter: { keyAltNames: ['nothing-matches'] }, masterKey: { provider: 'local' }, dryRun: true },
    'POST /documents/{ns}': { document: { name: 'a', ssn: 's', tenantKey: 'tenant-a' } },
    'POST /documents/{ns}/find': { filter: {} },
    'POST /documents/{ns}/count': { filter: {} },
    'POST /documents/{ns}/explain': { filter: {} },
    'POST /documents/{ns}/update': { filter: { name: 'nobody' }, update: { $set: { level: 2 } } },
    'POST /documents/{ns}/aggregate': { pipeline: [{ $match: { name: 'nobody' } }] },
    'POST /documents/{ns}/distinct': { key: 'name' },
    'POST /documents/{ns}/replace': { filter: { name: 'nobody' }, replacement: { name: 'a', ssn: 's', tenantKey: 'tenant-a' } },
    'POST /documents/{ns}/bulk': { operations: [{ deleteOne: { filter: { name: 'nobody' } } }] },
    'POST /documents/{ns}/find-one-and-update': { filter: { name: 'nobody' }, update: { $set: { level: 2 } } },
    'POST /documents/{ns}/find-one-and-replace': { filter: { name: 'nobody' }, replacement: { name: 'a', ssn: 's', tenantKey: 'tenant-a' } },
    'POST /documents/{ns}/find-one-and-delete': { filter: { name: 'nobody' } },
    'POST /documents/{ns}/delete': { filter: { name: 'nobody' } },
    'PATCH /documents/{ns}/{id}': { update: { $set: { level: 2 } } },
    'PUT /documents/{ns}/{id}': { document: { name: 'a', ssn: 's', tenantKey: 'tenant-a' } },
    'POST /clients': { name: 'made by the matrix', grants: [] },
    'PATCH /clients/{id}': { name: 'renamed' },
    'POST /clients/{id}/tokens': {},
    'PUT /schemas/{ns}': { schema: { properties: { name: { bsonType: 'string' } } } },
  };
  const tokens = new Map<string, string>();
  async function tokenFor(scope: string): Promise<string> {
    if (!tokens.has(scope)) {
      const res = await h.call('POST', '/clients', { name: `only ${scope}`, grants: scope.split('+').map((one) => ({ scope: one })) });
      t.equal(res.statusCode, 201, res.body);
      tokens.set(scope, res.json().token);
    }
    return tokens.get(scope)!;
  }
  const params: Record<string, string> = {
    '{ns}': h.ns,
    '{name}': 'hr-det',
    '{tokenId}': '0'.repeat(32),
  };
  for (const operation of Object.keys(expectedScopes)) {
    const [method, template] = operation.split(' ') as [string, string];
    const idParam = template.startsWith('/keys')
      ? '00000000-0000-4000-8000-000000000000'
      : template.startsWith('/jobs')
        ? `job_${'0'.repeat(24)}`
        : template.startsWith('/clients')
        ? `cl_${'0'.repeat(24)}`
        : '000000000000000000000000';
    // Schema routes work on a namespace of their own: the documents routes need the collection's schema as it is.
    const ns = template.startsWith('/schemas') ? `${h.ns.split('.')[0]}.authz_schemas` : h.ns;
    const url = template.replace(/\{[a-zA-Z]+\}/g, (p) => (p === '{id}' ? idParam : p === '{ns}' ? ns : params[p]!));
    const scopes = [expectedScopes[operation]!].flat().map((scope) => scope.replaceAll('{ns}', h.ns));
    const body = bodies[operation];
    const send = (authorization?: string) =>
      h.app.inject({
        method: method as 'GET',
        url,
        headers: authorization ? { authorization } : {},
        ...(body === undefined ? {} : { payload: body as object }),
      });

    const anonymous = await send();
    t.equal(anonymous.statusCode, 401, `${operation} without a token`);
    t.equal(anonymous.json().code, 'UNAUTHORIZED');

    const wrong = await send(`Bearer ${await tokenFor(scopes.includes('encrypt') ? 'decrypt' : 'encrypt')}`);
    t.equal(wrong.statusCode, 403, `${operation} with the wrong scope`);
    t.equal(wrong.json().code, 'FORBIDDEN');

    for (const scope of scopes) {
      const right = await send(`Bearer ${await tokenFor(scope)}`);
      t.notOk([401, 403].includes(right.statusCode), `${operation} with ${scope} gets through (${right.statusCode})`);
      t.ok(right.statusCode < 500, `${operation} with ${scope} is no 5xx: ${right.body.slice(0, 200)}`);
    }
  }
});

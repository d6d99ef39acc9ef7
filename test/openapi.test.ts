import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { errorCodes } from '../src/errors.js';
import { renderOpenApi } from '../scripts/openapi.js';
import { createTestApp } from './helpers/app.js';

const file = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');

t.test('openapi.yaml is exactly what the server serves (run `npm run openapi` after changing a route)', async (t) => {
  t.equal(await renderOpenApi(), file);
  const h = await createTestApp(t);
  const served = await h.app.inject({ method: 'GET', url: '/openapi.json' });
  t.equal(served.statusCode, 200, 'served without credentials');
  t.same(served.json(), parse(file));
  const docs = await h.app.inject({ method: 'GET', url: '/docs/' });
  t.equal(docs.statusCode, 200, 'the docs UI is served');
});

t.test('every route declares its errors as problem documents, and every error code is reachable in the contract', async (t) => {
  const spec = parse(file);
  const described = new Set<string>();
  for (const [path, operations] of Object.entries<Record<string, { responses: Record<string, { description: string; content?: Record<string, unknown> }>; security?: unknown }>>(spec.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const statuses = Object.keys(operation.responses);
      t.ok(statuses.some((s) => s.startsWith('2')), `${method} ${path} has a success response`);
      if (!path.startsWith('/health')) {
        t.ok(statuses.includes('401') && statuses.includes('500'), `${method} ${path} declares 401 and 500`);
        t.ok(operation.security, `${method} ${path} requires a bearer token`);
      }
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        t.ok(response.content?.['application/problem+json'], `${method} ${path} ${status} is problem+json`);
        for (const code of response.description.replace(/^Error: /, '').split(', ')) described.add(code);
      }
    }
  }
  for (const code of Object.keys(errorCodes)) t.ok(described.has(code), `${code} appears in some route's responses`);
});

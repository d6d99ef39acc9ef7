import { readFileSync } from 'node:fs';
import t from 'tap';
import { errorCodes } from '../src/errors.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const envExample = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
const configSource = readFileSync(new URL('../src/config.ts', import.meta.url), 'utf8');

t.test('the README documents every error code with its status, and no code that does not exist', async (t) => {
  const rows = [...readme.matchAll(/^\| (\d{3}) \| `([A-Z_]+)` \|/gm)].map(([, status, code]) => [code!, Number(status)] as const);
  t.same(Object.fromEntries(rows), Object.fromEntries(Object.entries(errorCodes).map(([code, e]) => [code, e.status])));
});

t.test('every configuration variable is in the README and in .env.example', async (t) => {
  const variables = [...configSource.matchAll(/^ {4}([A-Z][A-Z0-9_]+): \{ type:/gm)].map((m) => m[1]!);
  t.ok(variables.length > 15, 'variables were found in src/config.ts');
  for (const name of variables) {
    t.match(readme, new RegExp(`\`${name}\``), `README documents ${name}`);
    t.match(envExample, new RegExp(`^#? ?${name}=`, 'm'), `.env.example lists ${name}`);
  }
});

t.test('the README has a curl example for every path of openapi.yaml', async (t) => {
  const { parse } = await import('yaml');
  const spec = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8'));
  for (const path of Object.keys(spec.paths)) {
    const pattern = path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[a-zA-Z]+\\?\}/g, '[^ /`"?]+');
    t.match(readme, new RegExp(`localhost:8080${pattern}([ ?"'\`]|$)`, 'm'), `an example for ${path}`);
  }
});

t.test('the README opens with the two commands, and CI runs the test one', async (t) => {
  const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
  t.match(readme, /^# .+\n\n```sh\nnpm run local .*\nnpm test .*\n```/);
  t.match(ci, /^npm test$/m);
});

const security = readFileSync(new URL('../docs/security.md', import.meta.url), 'utf8');

/** The lines of the first table whose header row is `header`. */
function tableAfter(text: string, header: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(header);
  if (start === -1) return [];
  const end = lines.findIndex((line, i) => i > start && !line.startsWith('|'));
  return lines.slice(start, end === -1 ? undefined : end);
}

t.test("docs/security.md's scope table is the README's, with a row for every scope", async (t) => {
  const { SCOPES } = await import('../src/clients/scopes.js');
  const table = tableAfter(readme, '| Scope | Allows |');
  t.ok(table.length > 2, 'the README has the table');
  t.same(tableAfter(security, '| Scope | Allows |'), table, 'the same, line for line');
  const rows = table.slice(2).map((row) => row.split(' | ')[0]!);
  for (const scope of [...SCOPES, 'documents:<db.coll>:read', 'documents:<db.coll>:write', 'documents:*:read']) {
    t.ok(rows.some((row) => row.includes(`\`${scope}\``)), `a row for ${scope}`);
  }
});

t.test('every test docs/security.md names exists, in the file it names', async (t) => {
  let file: string | undefined;
  let source = '';
  let names = 0;
  for (const [, path, name] of security.matchAll(/`(test\/[\w/.-]+\.test\.ts)`|› "([^"]+)"/g)) {
    if (path !== undefined) {
      file = path;
      source = readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
      continue;
    }
    t.ok(file, `"${name}" follows a file`);
    names++;
    t.ok(source.includes(`'${name}'`) || source.includes(`"${name}"`) || source.includes(`\`${name}\``), `${file} › "${name}"`);
  }
  t.ok(names > 40, `${names} tests named`);
});

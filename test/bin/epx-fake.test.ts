/**
 * A unit test of the CLI against a small fake HTTP server: the requests each command sends (method,
 * path, query, body, token) and how it prints the answers and errors. For the commands whose routes
 * are being built elsewhere (collection schemas, the key trash), in the shapes agreed for them; the
 * end-to-end run against the real service is test/bin/epx-commands.test.ts.
 */
import { createServer, type IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EXIT, run } from '../../bin/epx.js';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: unknown;
}

type Answer = { status: number; body?: unknown; raw?: string };

const TOKEN = 'epx-fake-token-0123456789';

/** A server that records each request and answers from `answers` (by "METHOD path?query"), else 404. */
async function fakeServer(t: { teardown(fn: () => unknown): void }) {
  const seen: Seen[] = [];
  const answers = new Map<string, Answer>();
  const server = createServer(async (req: IncomingMessage, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body: text === '' ? undefined : JSON.parse(text) });
    const answer = answers.get(`${req.method} ${req.url}`) ?? { status: 404, body: { type: 'x', title: 'No such route.', status: 404, code: 'NOT_FOUND' } };
    const payload = answer.raw ?? (answer.body === undefined ? '' : JSON.stringify(answer.body));
    res.writeHead(answer.status, answer.body !== undefined && answer.status >= 400 ? { 'content-type': 'application/problem+json' } : {});
    res.end(payload);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const epx = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(args, { EPX_URL: url, EPX_TOKEN: TOKEN }, (line) => out.push(line), { err: (line) => err.push(line) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  return { seen, answers, epx, last: () => seen.at(-1) };
}

const problem = (status: number, code: string, detail: string) => ({ status, body: { type: `urn:encryption-proxy:error:${code}`, title: 't', status, code, detail } });
const NS = 'hr.employees';
const SCHEMA = { bsonType: 'object', properties: { ssn: { encrypt: { bsonType: 'string', algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic', keyAltName: 'hr-det' } } } };
const KEY = '6f1b0b6e-8f0a-4c1e-9a57-2d3c4b5a6978';

t.test('schemas: list, get, put (dry run, comment, ifVersion), delete and history send the agreed requests', async (t) => {
  const f = await fakeServer(t);
  const dir = mkdtempSync(join(tmpdir(), 'epx-schemas-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'employees.json');
  writeFileSync(file, JSON.stringify(SCHEMA));

  f.answers.set('GET /schemas', { status: 200, body: { items: [{ namespace: NS, version: 3, updatedAt: '2026-12-01T10:00:00.000Z', updatedBy: 'admin', comment: 'add badge' }] } });
  const list = await f.epx('schemas', 'list');
  t.equal(list.code, EXIT.ok);
  t.match(list.out, /^hr\.employees {2}v3 {2}2026-12-01T10:00:00\.000Z {2}admin {2}add badge$/);
  t.same(f.last(), { method: 'GET', url: '/schemas', authorization: `Bearer ${TOKEN}`, body: undefined });

  f.answers.set(`GET /schemas/${NS}`, { status: 200, body: { namespace: NS, version: 3, schema: SCHEMA } });
  const got = await f.epx('schemas', 'get', NS);
  t.equal(got.code, EXIT.ok);
  t.match(got.out, /^# hr\.employees v3\n\{\n {2}"bsonType": "object"/, 'the schema, pretty-printed under its version');
  t.same(JSON.parse((await f.epx('schemas', 'get', NS, '--json')).out), { namespace: NS, version: 3, schema: SCHEMA }, '--json prints the answer as it came');

  f.answers.set(`PUT /schemas/${NS}?dryRun=true`, { status: 200, body: { namespace: NS, version: 4, dryRun: true } });
  const dry = await f.epx('schemas', 'put', NS, file, '--dry-run', '--comment', 'add ssn', '--if-version', '3');
  t.equal(dry.code, EXIT.ok, dry.err);
  t.same(f.last(), { method: 'PUT', url: `/schemas/${NS}?dryRun=true`, authorization: `Bearer ${TOKEN}`, body: { schema: SCHEMA, comment: 'add ssn', ifVersion: 3 } });
  t.match(dry.out, /dry run: .* would become v4; nothing was written/);

  f.answers.set(`PUT /schemas/${NS}`, { status: 200, body: { namespace: NS, version: 4 } });
  const put = await f.epx('schemas', 'put', NS, file);
  t.equal(put.code, EXIT.ok);
  t.same(f.last()?.body, { schema: SCHEMA }, 'no comment or ifVersion unless given');
  t.equal(f.last()?.url, `/schemas/${NS}`, 'no dryRun unless asked');
  t.equal(put.out, 'hr.employees is now v4');

  f.answers.set(`PUT /schemas/${NS}?dryRun=true`, problem(409, 'SCHEMA_VERSION_CONFLICT', 'The current version is 5, not 3.'));
  const conflict = await f.epx('schemas', 'put', NS, file, '--dry-run', '--if-version', '3');
  t.equal(conflict.code, EXIT.refused, 'a 4xx is exit 1');
  t.equal(conflict.err, 'epx: 409 SCHEMA_VERSION_CONFLICT: The current version is 5, not 3.', 'the problem, in one line on stderr');
  t.equal(conflict.out, '');

  f.answers.set(`DELETE /schemas/${NS}`, { status: 204 });
  const deleted = await f.epx('schemas', 'delete', NS);
  t.equal(deleted.code, EXIT.ok);
  t.equal(deleted.out, 'deleted the schema of hr.employees');
  t.equal(f.last()?.method, 'DELETE');

  f.answers.set(`GET /schemas/${NS}/versions`, {
    status: 200,
    body: { items: [{ version: 2, createdAt: '2026-11-30T09:00:00.000Z', createdBy: 'ops', comment: 'first' }, { version: 1, createdAt: '2026-11-29T09:00:00.000Z', createdBy: 'ops' }] },
  });
  const history = await f.epx('schemas', 'history', NS);
  t.equal(history.code, EXIT.ok);
  t.same(history.out.split('\n'), ['v2  2026-11-30T09:00:00.000Z  ops  first', 'v1  2026-11-29T09:00:00.000Z  ops']);
});

t.test('schemas put refuses a file it cannot use before sending anything; namespaces are one path segment', async (t) => {
  const f = await fakeServer(t);
  const dir = mkdtempSync(join(tmpdir(), 'epx-schemas-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'broken.json'), '{"bsonType": "object",');
  writeFileSync(join(dir, 'list.json'), '[1, 2]');
  writeFileSync(join(dir, 'ok.json'), JSON.stringify(SCHEMA));
  for (const [args, why] of [
    [['schemas', 'put', NS, join(dir, 'missing.json')], /cannot read .*ENOENT/],
    [['schemas', 'put', NS, join(dir, 'broken.json')], /is not JSON/],
    [['schemas', 'put', NS, join(dir, 'list.json')], /must hold a JSON object/],
    [['schemas', 'put', NS], /name the schema file/],
    [['schemas', 'put', NS, join(dir, 'ok.json'), '--if-version', 'two'], /--if-version must be a whole number/],
    [['schemas', 'get'], /name the namespace/],
  ] as const) {
    const res = await f.epx(...args);
    t.equal(res.code, EXIT.usage, args.join(' '));
    t.match(res.err, why);
  }
  t.equal(f.seen.length, 0, 'nothing was sent');
  await f.epx('schemas', 'get', '../keys');
  t.equal(f.last()?.url, '/schemas/..%2Fkeys', 'a hostile namespace cannot reach another route');
  const before = f.seen.length;
  t.equal((await f.epx('schemas', 'get', '..')).code, EXIT.usage, '".." alone would climb out of the path');
  t.equal((await f.epx('keys', 'restore', '.')).code, EXIT.usage);
  t.equal(f.seen.length, before, 'and is not sent');
  t.equal((await f.epx('schemas', 'drop', NS)).code, EXIT.usage, 'an unknown command');
});

t.test('keys: delete (--force), restore, purge and the trash listing send the agreed requests', async (t) => {
  const f = await fakeServer(t);
  f.answers.set(`DELETE /keys/${KEY}`, problem(409, 'KEY_IN_USE', 'The schema of hr.employees names this key.'));
  const inUse = await f.epx('keys', 'delete', KEY);
  t.equal(inUse.code, EXIT.refused);
  t.equal(inUse.err, 'epx: 409 KEY_IN_USE: The schema of hr.employees names this key. (a collection schema names it; --force deletes it anyway)');

  f.answers.set(`DELETE /keys/${KEY}?force=true`, { status: 204 });
  const forced = await f.epx('keys', 'delete', KEY, '--force');
  t.equal(forced.code, EXIT.ok);
  t.match(forced.out, /^deleted 6f1b0b6e-.* \(forced\): restore it with epx keys restore 6f1b0b6e-/);
  t.equal(f.last()?.url, `/keys/${KEY}?force=true`);
  t.same(JSON.parse((await f.epx('keys', 'delete', KEY, '--force', '--json')).out), { id: KEY, deleted: true }, '--json on a 204: what was done');

  const deletedKey = { id: KEY, keyAltNames: ['old'], masterKey: { provider: 'local' }, wrapAgeDays: 3, state: 'deleted', deletedAt: '2026-12-02T08:00:00.000Z' };
  f.answers.set(`POST /keys/${KEY}/restore`, { status: 200, body: { ...deletedKey, state: 'active', deletedAt: undefined } });
  const restored = await f.epx('keys', 'restore', KEY);
  t.equal(restored.code, EXIT.ok);
  t.equal(restored.out, `restored ${KEY}`);
  t.same([f.last()?.method, f.last()?.url, f.last()?.body], ['POST', `/keys/${KEY}/restore`, undefined]);

  f.answers.set(`POST /keys/${KEY}/purge`, { status: 204 });
  const purged = await f.epx('keys', 'purge', KEY);
  t.equal(purged.code, EXIT.ok);
  t.match(purged.out, /^purged 6f1b0b6e-.*: everything encrypted with it is unreadable for good$/);
  f.answers.set(`POST /keys/${KEY}/purge`, problem(409, 'KEY_NOT_DELETED', 'Delete the key first.'));
  t.equal((await f.epx('keys', 'purge', KEY)).code, EXIT.refused);

  f.answers.set('GET /keys?limit=100&state=deleted', { status: 200, body: { items: [deletedKey] } });
  const trash = await f.epx('keys', 'list', '--state', 'deleted');
  t.equal(trash.code, EXIT.ok);
  t.equal(trash.out, `${KEY}  local  wrapped 3d ago  deleted 2026-12-02T08:00:00.000Z  old`);
  t.equal((await f.epx('keys', 'list', '--state', 'gone')).code, EXIT.usage, 'only active, deleted or all');
  f.answers.set('GET /keys?limit=100', { status: 200, body: { items: [] } });
  await f.epx('keys', 'list');
  t.equal(f.last()?.url, '/keys?limit=100', 'no state unless asked (a server without the trash accepts the request)');
});

t.test('failures: 5xx and unreachable are exit 3, an answer that is not JSON too, and the token is never printed', async (t) => {
  const f = await fakeServer(t);
  f.answers.set('GET /schemas', { status: 503, body: { type: 'x', title: 'The database is unavailable.', status: 503, code: 'DATABASE_UNAVAILABLE' } });
  const down = await f.epx('schemas', 'list');
  t.equal(down.code, EXIT.unavailable);
  t.equal(down.err, 'epx: 503 DATABASE_UNAVAILABLE: The database is unavailable.');
  f.answers.set('GET /schemas', { status: 502, raw: '<html>Bad gateway</html>' });
  const html = await f.epx('schemas', 'list');
  t.equal(html.code, EXIT.unavailable);
  t.match(html.err, /502: the answer from .* is not JSON/);
  const unreachable = await run(['schemas', 'list'], { EPX_URL: 'http://127.0.0.1:1', EPX_TOKEN: TOKEN }, () => undefined, { err: () => undefined });
  t.equal(unreachable, EXIT.unavailable);
  const everything = [down, html].map((r) => r.out + r.err).join('\n');
  t.notMatch(everything, TOKEN);
});

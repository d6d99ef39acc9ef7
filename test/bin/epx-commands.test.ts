/**
 * The operator CLI against the real service (an HTTP listen of the app on the shared stack): every
 * command, as the operator and as a client with a valid but limited token. epx-fake.test.ts checks
 * the exact requests and the printing of answers and errors against a fake server.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { EXIT, run } from '../../bin/epx.js';
import { ADMIN_TOKEN, recordSecret } from '../helpers/app.js';
import { createDocumentsApp } from '../helpers/documents.js';

async function listening(t: { teardown(fn: () => unknown): void }) {
  const h = await createDocumentsApp(t);
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  const as = (token: string) => async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(args, { EPX_URL: url, EPX_TOKEN: token }, (line) => out.push(line), { err: (line) => err.push(line), pollMs: 100 });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };
  return { h, url, as, epx: as(ADMIN_TOKEN) };
}

t.test('help lists every command; usage mistakes are exit 2 before anything is sent', async (t) => {
  const lines: string[] = [];
  t.equal(await run(['--help'], {}, (line) => lines.push(line)), EXIT.ok, 'no token needed for help');
  const help = lines.join('\n');
  for (const command of [
    'keys list', 'keys get', 'keys create', 'keys delete ID [--force]', 'keys restore', 'keys purge', 'keys alt-names add', 'keys alt-names remove', 'keys report', 'keys migrate',
    'schemas list', 'schemas get', 'schemas put NS FILE [--dry-run] [--comment TEXT]', 'schemas delete', 'schemas history',
    'rotations start', 'rotations status', 'jobs list [--state', 'jobs status JOB_ID [--wait]', 'jobs cancel', 'clients create', 'clients list', 'clients revoke-tokens', 'audit verify',
  ]) {
    t.ok(help.includes(`  ${command}`), `epx --help lists ${command}`);
  }
  t.match(help, /Exit codes: 0 done, 1 the API refused/);
  const keysHelp: string[] = [];
  t.equal(await run(['keys', '--help'], {}, (line) => keysHelp.push(line)), EXIT.ok);
  t.match(keysHelp.join('\n'), /^Usage: epx keys <command>/);
  t.notMatch(keysHelp.join('\n'), /schemas put/, 'a group\'s help is that group');

  const quiet = (args: string[]) => run(args, { EPX_TOKEN: 'x', EPX_URL: 'http://127.0.0.1:1' }, () => undefined);
  t.equal(await quiet([]), EXIT.usage);
  t.equal(await quiet(['frobnicate']), EXIT.usage);
  t.equal(await quiet(['jobs']), EXIT.usage, 'a group without a command');
  t.equal(await quiet(['jobs', 'cancel']), EXIT.usage, 'no job named');
  t.equal(await quiet(['jobs', 'list', '--state', 'done']), EXIT.usage);
  t.equal(await quiet(['jobs', 'list', '--force']), EXIT.usage, "another group's option is refused");
  t.equal(await quiet(['keys', 'list', '--limit', 'many']), EXIT.usage);
  t.equal(await quiet(['rotations', 'start', 'db.c', '--from', 'a']), EXIT.usage, 'both keys are needed');
  t.equal(await quiet(['clients', 'create', '--name', 'x']), EXIT.usage, 'a client needs a grant');
  t.equal(await run(['jobs', 'list', '--token-file', '/nonexistent/token'], {}, () => undefined), EXIT.usage, 'an unreadable token file');
});

t.test('keys, jobs, clients and audit against the real service, as the operator', async (t) => {
  const { h, epx, as } = await listening(t);

  const key = (await epx('keys', 'create', '--provider', 'local', '--alt-name', 'cli-a')).out;
  t.match(key, /^[0-9a-f-]{36}$/);
  t.match((await epx('keys', 'get', key)).out, new RegExp(`^${key}  local  wrapped 0d ago  cli-a$`));
  t.match((await epx('keys', 'get', '--alt-name', 'cli-a')).out, new RegExp(`^${key} `));
  const added = await epx('keys', 'alt-names', 'add', key, 'cli-b');
  t.equal(added.code, EXIT.ok, added.err);
  t.match(added.out, /cli-a,cli-b$/);
  t.match((await epx('keys', 'alt-names', 'remove', key, 'cli-a')).out, / cli-b$/);
  const missing = await epx('keys', 'get', '--alt-name', 'cli-a');
  t.equal(missing.code, EXIT.refused);
  t.match(missing.err, /^epx: 404 KEY_NOT_FOUND/);

  // Four keys of the documents app and this one: pages of two, followed to the end.
  const paged = await epx('keys', 'list', '--limit', '2', '--all', '--json');
  t.equal(JSON.parse(paged.out).items.length, 5, '--all follows every page');
  t.match((await epx('keys', 'list', '--limit', '2')).out, /more: --all, or the API with after=/);

  const migrated = await epx('keys', 'migrate', '--id', key, '--to-provider', 'local');
  t.equal(migrated.code, EXIT.ok, migrated.err);
  t.match(migrated.out, /job job_[0-9a-f]{24} succeeded: .*"rewrapped":1/);
  const jobs = JSON.parse((await epx('jobs', 'list', '--json')).out);
  t.equal(jobs.items.length, 1);
  t.match((await epx('jobs', 'list', '--state', 'succeeded', '--type', 'keys.migration')).out, /^job_[0-9a-f]{24}  keys\.migration  succeeded  1\/1 /);
  t.equal((await epx('jobs', 'list', '--state', 'running')).out, 'no jobs');
  const done = await epx('jobs', 'cancel', jobs.items[0].id);
  t.equal(done.code, EXIT.refused);
  t.match(done.err, /409 JOB_FINISHED: The job already ended succeeded/);

  const deleted = await epx('keys', 'delete', key);
  t.equal(deleted.code, EXIT.ok, deleted.err);
  t.match(deleted.out, /restore it with epx keys restore/);
  t.match(JSON.parse((await epx('keys', 'get', key, '--json')).out), { state: 'deleted' }, 'a deleted key is in the trash');
  t.match((await epx('keys', 'list', '--state', 'deleted', '--json')).out, key);
  t.equal((await epx('keys', 'delete', key)).code, EXIT.refused, 'a second delete is refused');
  const restored = await epx('keys', 'restore', key);
  t.equal(restored.code, EXIT.ok, restored.err);
  t.match(JSON.parse((await epx('keys', 'get', key, '--json')).out), { state: 'active' }, 'restored');
  t.equal((await epx('keys', 'purge', key)).code, EXIT.refused, 'an active key cannot be purged');
  t.equal((await epx('keys', 'delete', key)).code, EXIT.ok);
  const purged = await epx('keys', 'purge', key);
  t.equal(purged.code, EXIT.ok, purged.err);
  t.equal((await epx('keys', 'get', key)).code, EXIT.refused, 'a purged key is gone');
  const report = await epx('keys', 'report', '--json');
  t.equal(report.code, EXIT.ok, report.err);
  t.equal(JSON.parse(report.out).olderThanDays, 365, "the report's default period is the server's");

  const created = await epx('clients', 'create', '--name', 'cli-ops', '--grant', 'jobs:read', '--grant', 'keys:read=hr-*', '--json');
  t.equal(created.code, EXIT.ok, created.err);
  const client = JSON.parse(created.out);
  recordSecret(client.token);
  t.same(client.client.grants, [{ scope: 'jobs:read' }, { scope: 'keys:read', keyAltNames: ['hr-*'] }], '--grant SCOPE=PATTERN is a key limit');
  const limited = as(client.token);
  t.equal((await limited('jobs', 'list')).out, 'no jobs', "a jobs:read client sees none of the operator's jobs");
  const hrOnly = JSON.parse((await limited('keys', 'list', '--json')).out).items.map((k: { keyAltNames: string[] }) => k.keyAltNames[0]);
  t.same(hrOnly.sort(), ['hr-det', 'hr-rnd'], 'and only the keys its limit covers');
  t.match((await epx('clients', 'list')).out, new RegExp(`${client.client.id}  cli-ops  enabled  1 tokens  jobs:read keys:read=hr-\\*`));
  const revoked = await epx('clients', 'revoke-tokens', client.client.id);
  t.equal(revoked.code, EXIT.ok, revoked.err);
  t.equal(revoked.out, `revoked token ${client.client.tokens[0].id} of client ${client.client.id}`);
  const after = await limited('jobs', 'list');
  t.equal(after.code, EXIT.refused, 'its token no longer works');
  t.match(after.err, /401 UNAUTHORIZED/);
  t.equal((await epx('clients', 'revoke-tokens', client.client.id)).out, `client ${client.client.id} has no tokens`);

  const verified = await epx('audit', 'verify');
  t.equal(verified.code, EXIT.ok);
  t.match(verified.out, /^audit trail valid: \d+ events in \d+ chains/);
  t.equal(JSON.parse((await epx('audit', 'verify', '--full', '--json')).out).valid, true);
  t.equal((await as(client.token)('audit', 'verify')).code, EXIT.refused);
  t.ok(h.app.server.listening);
});

t.test('rotations start and status, and jobs cancel: a running rotation stops at its next document and ends cancelled', async (t) => {
  const { h, url, epx, as } = await listening(t);
  for (let i = 0; i < 30; i++) {
    const res = await h.call('POST', `/documents/${h.ns}`, { document: { name: `e${i}`, ssn: `SSN-${i}`, tenantKey: 'tenant-a' } });
    t.equal(res.statusCode, 201);
  }
  const next = (await epx('keys', 'create', '--provider', 'local', '--alt-name', 'hr-det-next')).out;

  // A client that may read jobs, but not write this collection: it can see nothing and stop nothing.
  const made = JSON.parse((await epx('clients', 'create', '--name', 'watcher', '--grant', 'jobs:read', '--json')).out);
  recordSecret(made.token);
  const watcher = as(made.token);

  const started = await epx('rotations', 'start', h.ns, '--from', 'hr-det', '--to', next, '--batch-size', '1', '--max-docs-per-second', '10', '--no-wait');
  t.equal(started.code, EXIT.ok, started.err);
  const jobId = /started job (job_[0-9a-f]{24})/.exec(started.out)![1]!;
  const running = await epx('rotations', 'status', h.ns);
  t.match(running.out, new RegExp(`^${jobId}  documents\\.rotation  running  .* → ${next}$`), 'the rotations of a collection, by namespace');
  t.match((await epx('jobs', 'list', '--state', 'running')).out, new RegExp(`^${jobId} `));

  const refused = await watcher('jobs', 'cancel', jobId);
  t.equal(refused.code, EXIT.refused);
  t.match(refused.err, /404 JOB_NOT_FOUND/, "another client's job does not exist for it");
  t.equal((await epx('jobs', 'status', jobId)).code, EXIT.ok, 'still running');

  const cancelled = await epx('jobs', 'cancel', jobId, '--wait');
  t.equal(cancelled.code, EXIT.ok, cancelled.err);
  t.match(cancelled.out, new RegExp(`job ${jobId} cancelled by admin after (\\d+)/30 documents \\(rotating\\); what was done stays valid$`));
  const stoppedAt = Number(/after (\d+)\/30/.exec(cancelled.out)![1]);
  t.ok(stoppedAt < 30, `stopped after ${stoppedAt} of 30 documents`);
  const status = await epx('jobs', 'status', jobId);
  t.equal(status.code, EXIT.jobFailed, 'a cancelled job did not succeed: exit 4 for whoever waited for it');
  const found = (await h.call('POST', `/documents/${h.ns}/find`, { filter: {}, limit: 100 })).json();
  t.equal(found.items.length, 30);
  t.notOk(found.unreadable, 'every document readable, under one key or the other');

  const finished = await epx('rotations', 'start', h.ns, '--from', 'hr-det', '--to', next);
  t.equal(finished.code, EXIT.ok, finished.err);
  t.match(finished.out, /^job job_[0-9a-f]{24} running: \d+\/\d+ documents \((starting|rotating|verifying)\)$/m, 'plain progress lines when stdout is not a terminal');
  const rest = Number(/succeeded: \{"documents":(\d+),/.exec(finished.out)?.[1]);
  t.equal(rest, 30 - stoppedAt, 'started again, it goes on from where the cancelled run stopped');
  t.match((await epx('rotations', 'status', h.ns)).out, /succeeded[\s\S]*cancelled/, 'both runs, newest first');
  t.equal((await epx('rotations', 'status', jobId, '--json')).code, EXIT.jobFailed);

  // On a terminal (a pseudo-terminal made by script(1)), the real command draws a progress bar.
  const third = (await epx('keys', 'create', '--provider', 'local', '--alt-name', 'hr-det-3')).out;
  const slow = await epx('rotations', 'start', h.ns, '--from', next, '--to', third, '--max-docs-per-second', '20', '--no-wait', '--json');
  t.equal(slow.code, EXIT.ok, slow.err);
  const command = [process.execPath, '--import', 'tsx', 'bin/epx.ts', 'jobs', 'status', JSON.parse(slow.out).id, '--wait'].join(' ');
  // Asynchronously: the server answering the command runs in this very process.
  const tty = await promisify(execFile)('script', ['-qec', command, '/dev/null'], { env: { ...process.env, EPX_URL: url, EPX_TOKEN: ADMIN_TOKEN } });
  t.match(tty.stdout, /\u2588/, 'a bar is drawn');
  t.match(tty.stdout, /\d+\/30 documents \| (rotating|verifying|done)/, 'with its count and phase');
  t.notMatch(tty.stdout, /running: \d+\/30/, 'instead of plain lines');
  t.match(tty.stdout, /succeeded: \{"documents":30,/);
});

t.test('schemas: put from a file (dry run first), get, list, history, a refused key delete, delete — against the real service', async (t) => {
  const { h, epx, as } = await listening(t);
  const dir = mkdtempSync(join(tmpdir(), 'epx-schemas-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ns = `${h.ns.split('.')[0]}.cli_schemas`;
  const file = join(dir, 'schema.json');
  writeFileSync(file, JSON.stringify({ bsonType: 'object', properties: { ssn: { encrypt: { bsonType: 'string', algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic', keyAltName: 'hr-det' } } } }));

  const dry = await epx('schemas', 'put', ns, file, '--dry-run', '--json');
  t.equal(dry.code, EXIT.ok, dry.err);
  t.equal((await epx('schemas', 'get', ns)).code, EXIT.refused, 'a dry run stores nothing');
  const put = await epx('schemas', 'put', ns, file, '--comment', 'from the CLI test');
  t.equal(put.code, EXIT.ok, put.err);
  const got = JSON.parse((await epx('schemas', 'get', ns, '--json')).out);
  t.match(got, { version: 1, status: 'ready' });
  t.match((await epx('schemas', 'list')).out, ns);
  const history = await epx('schemas', 'history', ns);
  t.equal(history.code, EXIT.ok, history.err);
  t.match(history.out, /from the CLI test/);

  const keyId = (await h.call('GET', '/keys/by-alt-name/hr-det')).json().id as string;
  const refused = await epx('keys', 'delete', keyId);
  t.equal(refused.code, EXIT.refused, 'a key a schema names is not deleted');
  t.match(refused.err, /409 KEY_IN_USE/);

  const reader = (await h.call('POST', '/clients', { name: 'schema reader', grants: [{ scope: 'schemas:read' }] })).json().token as string;
  recordSecret(reader);
  t.equal((await as(reader)('schemas', 'get', ns)).code, EXIT.ok, 'schemas:read reads');
  const denied = await as(reader)('schemas', 'delete', ns);
  t.equal(denied.code, EXIT.refused, 'and changes nothing');
  t.match(denied.err, /403/);

  const deleted = await epx('schemas', 'delete', ns);
  t.equal(deleted.code, EXIT.ok, deleted.err);
  t.equal((await epx('schemas', 'get', ns)).code, EXIT.refused, 'gone');
});

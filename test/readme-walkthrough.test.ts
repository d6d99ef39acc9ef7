/**
 * The README's documents walkthrough, run as a newcomer would: its marked block's commands, in
 * order, with bash and curl, against a real HTTP server on an empty database (a fresh key vault
 * database; the namespace moved into it so parallel runs do not meet). Every curl's answer is
 * checked against the "#   → <status> <body>" line after it, where … stands for anything.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ADMIN_TOKEN, createTestApp } from './helpers/app.js';

const MARKER = '<!-- walkthrough:';
const README_NS = 'hr.employees';
const STATUS_LINE = '@@status ';

/** The first ```sh block after the marker. */
function walkthroughBlock(readme: string): string {
  const at = readme.indexOf(MARKER);
  if (at === -1) throw new Error('README.md has no walkthrough marker');
  const open = readme.indexOf('```sh\n', at);
  const close = readme.indexOf('\n```\n', open);
  return readme.slice(open + '```sh\n'.length, close + 1);
}

/** The expected answers, in order: status and a pattern for the body. */
function expectations(block: string, replace: (text: string) => string): { status: number; body: RegExp; text: string }[] {
  return [...block.matchAll(/^#\s+→ (\d{3}) (.*)$/gm)].map(([, status, text]) => {
    const escaped = replace(text!)
      .split('…')
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*');
    return { status: Number(status), body: new RegExp(`^${escaped}$`, 's'), text: text! };
  });
}

/** Run a script without blocking the event loop: the server under test answers from this process. */
function bash(script: string, cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-e', '-u', '-o', 'pipefail', '-c', script], { cwd, timeout: 60_000, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

t.test('the README walkthrough (key → schema → documents, no restart) works as written', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const block = walkthroughBlock(readme);
  t.match(block, /PUT[^\n]*localhost:8080\/schemas\//, 'the walkthrough stores a schema through the API');
  t.notMatch(block, /restart|SCHEMAS_DIR/, 'and needs no restart or schema file');

  const h = await createTestApp(t);
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const base = `127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  const work = mkdtempSync(join(tmpdir(), 'readme-walkthrough-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  writeFileSync(join(work, 'admin-token'), ADMIN_TOKEN);
  const ns = `${h.keyVaultDb}.employees`;
  const replace = (text: string) => text.replaceAll('localhost:8080', base).replaceAll(README_NS, ns);

  const expected = expectations(block, replace);
  const curls = block.split('\n').filter((line) => /^curl /.test(line));
  t.equal(curls.length, expected.length, 'every curl in the walkthrough is followed by its expected answer');
  t.ok(expected.length >= 6, `${expected.length} steps`);

  // Each curl also prints its status on a line of its own, so the answers can be told apart.
  const script = replace(block)
    .replaceAll('data/admin-token', join(work, 'admin-token'))
    .replace(/^curl -s /gm, `curl -s -w '\\n${STATUS_LINE}%{http_code}\\n' `);
  const run = await bash(script, work);
  t.equal(run.status, 0, `the script ran to its end: ${run.stderr}`);

  const answers: { status: number; body: string }[] = [];
  let body: string[] = [];
  for (const line of run.stdout.split('\n')) {
    if (line.startsWith(STATUS_LINE)) {
      answers.push({ status: Number(line.slice(STATUS_LINE.length)), body: body.join('\n') });
      body = [];
    } else body.push(line);
  }
  t.equal(answers.length, expected.length, 'one answer per curl');
  expected.forEach((want, i) => {
    const got = answers[i];
    t.equal(got?.status, want.status, `step ${i + 1} (${curls[i]!.slice(0, 90)}): status`);
    t.match(got?.body ?? '', want.body, `step ${i + 1}: the answer reads as the README says (${want.text.slice(0, 60)}…): ${got?.body.slice(0, 400)}`);
  });

  const raw = await h.mongo.db(h.keyVaultDb).collection('employees').findOne({});
  t.equal(raw?.ssn?.sub_type, 6, 'and the document was stored with ssn encrypted');
});

/**
 * Contract fuzzing: schemathesis (v4) generates requests from the served OpenAPI document, sends
 * them to the real app (real FerretDB, real key vault, the employees collection schema) and checks
 * that no answer is a 5xx and that every answer matches the contract (status, content type,
 * headers, body schema), that invalid requests are refused and that authentication is enforced.
 *
 * Bounded: 25 examples per operation, one worker, a fixed seed, and a hard 240 s limit (it grows with the operations: about 2 s each on a quiet machine).
 * To replay locally: SCHEMATHESIS_SEED=7 npx tap test/contract/schemathesis.test.ts
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { ADMIN_TOKEN } from '../helpers/app.js';
import { createDocumentsApp } from '../helpers/documents.js';

const python = process.env.PYTHON ?? 'python3';
const seed = process.env.SCHEMATHESIS_SEED ?? '1';
const TIMEOUT_MS = 240_000;

/**
 * scripts/test installs test/requirements.txt only when moto or pymongo is missing, so a machine
 * set up before schemathesis joined the list would not have it: install that one line here.
 */
function ensureSchemathesis(): string | undefined {
  const probe = () => spawnSync(python, ['-c', 'import schemathesis'], { stdio: 'ignore' }).status === 0;
  if (probe()) return undefined;
  const requirement = readFileSync(new URL('../requirements.txt', import.meta.url), 'utf8')
    .split('\n')
    .find((line) => line.startsWith('schemathesis'));
  if (requirement === undefined) return 'test/requirements.txt does not list schemathesis';
  for (const extra of [[], ['--break-system-packages']]) {
    spawnSync(python, ['-m', 'pip', 'install', '--quiet', ...extra, requirement.trim()], { stdio: 'inherit', timeout: 150_000 });
    if (probe()) return undefined;
  }
  return `could not install ${requirement.trim()} with ${python} -m pip`;
}

/** Run a command without blocking the event loop: the app under test answers from this process. */
function run(command: string, args: string[], cwd: string): Promise<{ status: number | null; signal: string | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      timeout: TIMEOUT_MS,
      killSignal: 'SIGKILL',
      env: { ...process.env, NO_COLOR: '1', PYTHONIOENCODING: 'utf-8' },
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, output }));
  });
}

const checks = [
  'not_a_server_error',
  'status_code_conformance',
  'content_type_conformance',
  'response_headers_conformance',
  'response_schema_conformance',
  'negative_data_rejection',
  'missing_required_header',
  'ignored_auth',
  'use_after_free',
  'ensure_resource_availability',
  // Left out, on purpose:
  // - positive_data_acceptance: many schema-valid requests are refused on purpose by rules JSON
  //   Schema cannot express (a grant scope must name a known scope, expiresAt must be in the
  //   future, documents must match the collection's CSFLE schema, many-document deletes need a
  //   filter, aws master keys need a configured provider): those 400/422 answers are correct.
  // - unsupported_method, allow_header_conformance: an unrouted method answers the documented
  //   404 NOT_FOUND ("No such route") rather than 405 with an Allow header, as Fastify routes do.
].join(',');

t.setTimeout(TIMEOUT_MS + 60_000); // beyond the suite's 180 s per file: the run's own limit is the bound

t.test('schemathesis finds no server error and no contract violation', async (t) => {
  const missing = ensureSchemathesis();
  if (missing !== undefined) {
    t.fail(`schemathesis is not available: ${missing}`);
    return;
  }

  // Every operation is probed without credentials (missing_required_header, ignored_auth): with
  // more operations than the per-address limit of failed authentications, the later probes would
  // meet 429 instead of the 401 they check for. The limit itself has its own tests.
  const h = await createDocumentsApp(t, undefined, { env: { AUTH_FAILURES_PER_MINUTE: '100000' } });
  // A real document, so the /documents/{ns}/{id} operations reach more than DOCUMENT_NOT_FOUND.
  const inserted = await h.call('POST', `/documents/${h.ns}`, { document: { name: 'Ada', ssn: '123-45-6789', tenantKey: 'tenant-a' } });
  t.equal(inserted.statusCode, 201, inserted.body);
  const documentId = (inserted.json().insertedId as { $oid: string }).$oid;
  const fuzzKey = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['fuzz-target'] });
  t.equal(fuzzKey.statusCode, 201, fuzzKey.body);
  const fuzzKeyId = fuzzKey.json().id as string;

  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = h.app.server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  const spec = await fetch(`${base}/openapi.json`);
  t.equal(spec.status, 200);

  const dir = mkdtempSync(join(tmpdir(), 'schemathesis-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'openapi.json'), await spec.text());
  // The spec's `ns` is any <db>.<collection>: pin it to the configured collection, and the
  // document id to the real document (the other {id} parameters keep being generated).
  writeFileSync(
    join(dir, 'schemathesis.toml'),
    [
      '[parameters]',
      `"path.ns" = ${JSON.stringify(h.ns)}`,
      '',
      '[[operations]]',
      'include-path-regex = "^/documents/\\\\{ns\\\\}/\\\\{id\\\\}$"',
      `parameters = { "path.id" = ${JSON.stringify(documentId)} }`,
      '',
      // Key ids in paths name a key of the fuzzer's own: deleting the keys the collection schema
      // names leaves the collection waiting for them (every /documents operation 503
      // SCHEMA_NOT_READY, by design), and nothing else of /documents would be fuzzed.
      '[[operations]]',
      'include-path-regex = "^/keys/\\\\{id\\\\}"',
      `parameters = { "path.id" = ${JSON.stringify(fuzzKeyId)} }`,
      '',
      // Schemas are fuzzed on a namespace of their own: random schemas stored over the employees
      // collection would leave the /documents operations fuzzing whatever schema came last.
      '[[operations]]',
      'include-path-regex = "^/schemas/"',
      `parameters = { "path.ns" = ${JSON.stringify(`${h.ns.split('.')[0]}.fuzzed`)} }`,
      '',
      // A body over BODY_LIMIT_BYTES is refused with the documented 413 before it is validated.
      '[checks.negative_data_rejection]',
      'expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]',
      '',
    ].join('\n'),
  );

  const started = Date.now();
  const result = await run(
    python,
    [
      '-m', 'schemathesis.cli',
      '--config-file', join(dir, 'schemathesis.toml'),
      'run', join(dir, 'openapi.json'),
      '--url', base,
      '--header', `Authorization: Bearer ${ADMIN_TOKEN}`,
      '--checks', checks,
      '--max-examples', '25',
      '--seed', seed,
      // One worker: deterministic order, and hypothesis has raced in its own code with two.
      '--workers', '1',
      '--generation-database', 'none',
      '--suppress-health-check', 'all',
      '--request-timeout', '10',
      '--no-color',
    ],
    dir,
  );
  t.comment(`schemathesis ran ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (result.signal !== null) t.fail(`schemathesis was stopped by ${result.signal} after ${TIMEOUT_MS / 1000} s`);
  if (result.status !== 0) {
    // Its report names each failing operation, the check, the answer and a curl line to replay
    // it. It goes to stderr: as TAP comments, some of its lines would confuse the TAP parser.
    const report = result.output
      .split('\n')
      .map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line))
      .join('\n');
    console.error(`\n===== schemathesis report (seed ${seed}) =====\n${report}\n===== end of schemathesis report =====\n`);
  }
  t.equal(result.status, 0, 'schemathesis exited 0 (its report is on stderr)');
});

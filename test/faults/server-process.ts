/**
 * The real server process for the shutdown and soak tests: `dist/` built when older than the
 * sources (tsc -p tsconfig.build.json writes into dist/ only), then `node dist/src/server.js` on a
 * free loopback port with the given environment, killed at teardown.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sleep, stopChild } from './servers.js';

export const root = fileURLToPath(new URL('../../', import.meta.url));

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Build dist/ when it is missing or older than any source file. */
export function ensureBuilt(): { built: boolean; ms: number; output: string } {
  const server = join(root, 'dist/src/server.js');
  const sources = Math.max(...['src', 'routes', 'schemas'].map((d) => newestMtime(join(root, d))));
  if (existsSync(server) && statSync(server).mtimeMs >= sources) return { built: false, ms: 0, output: '' };
  const started = Date.now();
  const result = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  // tsc emits even when others' work in progress has type errors; what matters is a fresh server.js.
  if (!existsSync(server) || statSync(server).mtimeMs < started - 1000) {
    throw new Error(`the build did not produce dist/src/server.js: ${result.stdout}${result.stderr}`);
  }
  return { built: true, ms: Date.now() - started, output: `${result.stdout}${result.stderr}`.trim() };
}

export interface ServerProcess {
  child: ChildProcess;
  base: string;
  port: number;
  /** Whether it answered /health/ready 200 within the boot deadline. */
  up: boolean;
  /** Everything it wrote to stdout and stderr (pino JSON lines). */
  output(): string;
  /** Its audit spool (a process of its own, as an instance of a fleet has). */
  spoolDir: string;
}

/**
 * Start `node [nodeArgs] dist/src/server.js` with `env` (plus HOST, PORT, PATH), with an IPC
 * channel when asked; wait up to 20 s for readiness. Its audit spool is a new directory, removed
 * at teardown, unless `spoolDir` names one (a restart of the same instance).
 */
export async function startServerProcess(
  t: { teardown(fn: () => unknown): void },
  env: Record<string, string>,
  options: { nodeArgs?: string[]; ipc?: boolean; spoolDir?: string } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const spoolDir = options.spoolDir ?? mkdtempSync(join(tmpdir(), 'server-spool-'));
  if (options.spoolDir === undefined) t.teardown(() => rmSync(spoolDir, { recursive: true, force: true }));
  let output = '';
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), 'dist/src/server.js'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env, AUDIT_SPOOL_DIR: spoolDir, HOST: '127.0.0.1', PORT: String(port) },
    stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  // Kept bounded: a long soak at LOG_LEVEL=info writes a lot.
  const keep = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 4_000_000) output = output.slice(-2_000_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  t.teardown(() => stopChild(child, 2000));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 45_000; // a busy machine: FerretDB may answer the readiness check slowly for a while
  let up = false;
  while (!up && Date.now() < deadline && child.exitCode === null) {
    up = await fetch(`${base}/health/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (!up) await sleep(100);
  }
  return { child, base, port, up, output: () => output, spoolDir };
}

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestApp } from '../helpers/app.js';

const peer = fileURLToPath(new URL('./pymongo_peer.py', import.meta.url));
const tlsProxy = fileURLToPath(new URL('./kms_tls_proxy.py', import.meta.url));
const python = process.env.PYTHON ?? 'python3';

/** Ask pymongo's ClientEncryption (libmongocrypt) to do something with a test app's key vault. */
export function pymongo(h: TestApp, request: Record<string, unknown>): { id?: string; items?: unknown[]; kmsHosts: string[] } {
  const input = JSON.stringify({
    uri: h.env.MONGODB_URI,
    keyVault: h.env.KEY_VAULT_NAMESPACE,
    localKey: h.env.LOCAL_MASTER_KEY,
    ...request,
  });
  const run = spawnSync(python, [peer], { input, encoding: 'utf8', timeout: 60_000 });
  if (run.status !== 0) throw new Error(`pymongo peer failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** A request that went through the TLS endpoint: its Host header, X-Amz-Target and moto's status. */
export interface TlsKmsRequest {
  host: string;
  action: string;
  status: number;
}

/**
 * A TLS endpoint for AWS KMS in front of moto (test/interop/kms_tls_proxy.py): a CA and a server
 * certificate made now, for `names` and 127.0.0.1. Stopped with the test.
 */
export async function startKmsTlsEndpoint(
  t: { teardown(fn: () => unknown): void },
  upstream: string,
  names: string[],
): Promise<{ port: number; caFile: string; requests: TlsKmsRequest[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-tls-'));
  const child = spawn(python, [tlsProxy, '--upstream', upstream, '--dir', dir, '--names', names.join(',')], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.stdin.end(); // it exits when its standard input closes
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const requests: TlsKmsRequest[] = [];
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise<{ port: number; caFile: string }>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`kms_tls_proxy.py exited (${code}): ${stderr}`)));
    lines.on('line', (line) => {
      const message = JSON.parse(line);
      if ('port' in message) resolve(message);
      else requests.push(message);
    });
  });
  return { ...(await ready), requests };
}

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestApp } from '../helpers/app.js';

const peer = fileURLToPath(new URL('./pymongo_peer.py', import.meta.url));

/** Ask pymongo's ClientEncryption (libmongocrypt) to do something with a test app's key vault. */
export function pymongo(h: TestApp, request: Record<string, unknown>): { id?: string; items?: unknown[] } {
  const input = JSON.stringify({
    uri: h.env.MONGODB_URI,
    keyVault: h.env.KEY_VAULT_NAMESPACE,
    localKey: h.env.LOCAL_MASTER_KEY,
    ...request,
  });
  const run = spawnSync(process.env.PYTHON ?? 'python3', [peer], { input, encoding: 'utf8', timeout: 60_000 });
  if (run.status !== 0) throw new Error(`pymongo peer failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

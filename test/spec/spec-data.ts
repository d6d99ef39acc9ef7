// MongoDB's client-side encryption spec tests, read at test time from a pinned release of the Go
// driver module, which carries them (Apache-2.0) under testdata/. The Go module proxy is one of the
// registries CI reaches, and the module's h1: hash pins the exact bytes: a changed or tampered copy
// fails here instead of silently changing what "conformant" means.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SPEC_MODULE = 'go.mongodb.org/mongo-driver';
export const SPEC_VERSION = 'v1.17.10';
export const SPEC_SUM = 'h1:kdAgQvu8TROXZpSkJQd5wzfaNCCrMbpZyKFtQ6qkPCE=';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cacheDir = path.join(repo, '.cache', 'gomod');

let root: string | undefined;

/** The module's testdata directory, downloaded into .cache/gomod on first use. */
export function specTestdata(): string {
  if (root) return root;
  mkdirSync(cacheDir, { recursive: true });
  const out = execFileSync('go', ['mod', 'download', '-json', `${SPEC_MODULE}@${SPEC_VERSION}`], {
    cwd: cacheDir,
    env: { ...process.env, GOMODCACHE: cacheDir, GOFLAGS: '-mod=mod -modcacherw', GOTOOLCHAIN: 'local', GO111MODULE: 'on' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const info = JSON.parse(out) as { Dir?: string; Sum?: string; Error?: string };
  if (info.Error || !info.Dir) throw new Error(`go mod download ${SPEC_MODULE}@${SPEC_VERSION}: ${info.Error ?? 'no directory'}`);
  if (info.Sum !== SPEC_SUM) throw new Error(`${SPEC_MODULE}@${SPEC_VERSION} has hash ${info.Sum}, pinned ${SPEC_SUM}`);
  root = path.join(info.Dir, 'testdata');
  return root;
}

/** A JSON file of the spec tests, by path under testdata/ (e.g. 'client-side-encryption/legacy/find.json'). */
export function readSpecJson<T = unknown>(relative: string): T {
  return JSON.parse(readFileSync(path.join(specTestdata(), relative), 'utf8')) as T;
}

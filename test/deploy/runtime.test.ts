// One Node.js line everywhere it is named: the Docker image, the compose helpers, package.json
// engines, the LTS that scripts/test installs for its second pass (.nvmrc) and the README's table.
// Moving to the next LTS means changing them together; this fails while they disagree.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

const nvmrc = read('.nvmrc');
const dockerfile = read('Dockerfile');
const compose = parse(read('docker-compose.yml'));
const pkg = JSON.parse(read('package.json'));
const lock = JSON.parse(read('package-lock.json'));
const readme = read('README.md');
const testScript = read('scripts/test');

const lts = /^(\d+)\.(\d+)\.(\d+)\n?$/.exec(nvmrc);
const major = Number(lts?.[1]);

t.test('.nvmrc pins one exact release of an LTS line', async (t) => {
  t.ok(lts, `.nvmrc is a version like 26.10.0 (${JSON.stringify(nvmrc)})`);
  t.equal(major % 2, 0, 'an even major: only even lines become LTS');
});

t.test('scripts/test installs that release from npm and runs its pass with it', async (t) => {
  t.match(testScript, /<\.nvmrc\)/, 'the version comes from .nvmrc');
  t.match(testScript, /"dependencies": \{ "node": "\$\{node_lts_version#v\}" \}/, "npm's node package at that version");
  t.match(testScript, /npm install --prefix "\$NODE_LTS_DIR"/, 'installed into a directory of its own');
  t.match(testScript, /PATH=\$node_lts_bin:\$PATH run_pass/, 'the pass runs with that node first on PATH');
  t.match(testScript, /CI:-\} == true/, 'CI cannot skip it');
});

t.test('the Docker image builds and runs on that line', async (t) => {
  const arg = /^ARG NODE_MAJOR=(\d+)$/m.exec(dockerfile);
  t.ok(arg, 'the Dockerfile names the line once, in ARG NODE_MAJOR');
  t.equal(Number(arg?.[1]), major, `ARG NODE_MAJOR=${arg?.[1]}, .nvmrc ${nvmrc.trim()}`);
  t.ok(dockerfile.indexOf('ARG NODE_MAJOR') < dockerfile.indexOf('FROM '), 'declared before the first FROM, so every stage can use it');
  const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
  t.equal(bases.length, 2, 'a build stage and a runtime stage');
  for (const base of bases) t.match(base, /^node:\$\{NODE_MAJOR\}-[a-z]+-slim$/, `${base}: the official image of that line`);
  t.equal(new Set(bases).size, 1, 'the runtime stage runs on the base the addon was built on');
});

t.test("docker-compose.yml's Node helper images follow the same line and base", async (t) => {
  const base = /^FROM node:\$\{NODE_MAJOR\}-(\S+)/m.exec(dockerfile)?.[1];
  const nodeImages = Object.entries(compose.services as Record<string, { image?: string }>).filter(([, s]) => s.image?.startsWith('node:'));
  t.ok(nodeImages.length > 0, 'the secrets service runs node');
  for (const [name, service] of nodeImages) t.equal(service.image, `node:${major}-${base}`, `${name}: ${service.image}`);
});

t.test('package.json engines names that line from the pinned release on, and the lock file agrees', async (t) => {
  const engines = pkg.engines?.node as string;
  const range = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(engines);
  t.ok(range, `engines.node is one caret range (${engines})`);
  t.equal(Number(range?.[1]), major, 'of the LTS line');
  const [, , minor, patch] = lts ?? [];
  t.ok(Number(range?.[2]) * 1e6 + Number(range?.[3]) <= Number(minor) * 1e6 + Number(patch), `the pinned ${nvmrc.trim()} satisfies ${engines}`);
  t.equal(lock.packages[''].engines?.node, engines, 'package-lock.json carries the same engines');
});

t.test('the README says which Node.js versions are supported, as the files do', async (t) => {
  const supported = [...readme.matchAll(/^\| (\d+) \| \*\*supported\*\*/gm)].map((m) => Number(m[1]));
  t.same(supported, [major], 'one supported line in the table: the LTS');
  t.match(readme, new RegExp(`\`engines\` \\(\`${pkg.engines.node.replace(/[.^]/g, '\\$&')}\`\\)`), 'the README quotes engines');
  const base = /^FROM (node:)\$\{NODE_MAJOR\}(-\S+)/m.exec(dockerfile);
  t.match(readme, `\`${base?.[1]}${major}${base?.[2]}\``, 'and names the image');
});

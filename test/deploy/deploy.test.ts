import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.js';

// No Docker engine runs here: check what can be checked without one.
const root = new URL('../../', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'));
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');

const proxies = Object.keys(compose.services).filter((name) => /^proxy\d+$/.test(name)).sort();
const mongods = Object.keys(compose.services).filter((name) => /^mongo\d+$/.test(name)).sort();

t.test('docker-compose.yml: a three-member MongoDB replica set, initiated once, a KMS emulator, three proxies and a load balancer', async (t) => {
  t.same(Object.keys(compose.services).sort(), ['kms', 'lb', 'mongo-init', 'mongo1', 'mongo2', 'mongo3', 'proxy1', 'proxy2', 'proxy3', 'secrets']);
  t.equal(mongods.length, 3, 'three mongod members');
  for (const name of mongods) {
    const m = compose.services[name];
    t.match(m.image, /^mongo:8/);
    t.same(m.command.slice(m.command.indexOf('--replSet'), m.command.indexOf('--replSet') + 2), ['--replSet', 'rs0'], `${name} is a member of rs0`);
    t.ok(m.healthcheck?.test, `${name} has a health check`);
    t.ok(m.volumes.some((v: string) => v.endsWith(':/data/db')), `${name} keeps its data in a volume`);
  }
  t.equal(new Set(mongods.map((name) => compose.services[name].volumes[0].split(':')[0])).size, 3, 'each member its own data volume');
  // The init container adds every member and waits for a primary and two secondaries.
  const init = compose.services['mongo-init'];
  const script = init.command.join(' ');
  for (const name of mongods) t.match(script, new RegExp(`host: '${name}:27017'`), `rs.initiate names ${name}`);
  t.match(script, /rs\.initiate/);
  t.match(script, /PRIMARY/);
  for (const name of mongods) t.same(init.depends_on[name], { condition: 'service_healthy' });
  t.ok(compose.services.kms.healthcheck?.test, 'the KMS emulator has a health check');
});

t.test('three proxy instances: the same configuration, the replica set as their store, an audit spool volume each', async (t) => {
  t.same(proxies, ['proxy1', 'proxy2', 'proxy3']);
  const spools = new Set<string>();
  for (const name of proxies) {
    const p = compose.services[name];
    t.equal(p.build, '.', `${name} runs the image built here`);
    t.same(p.depends_on, {
      'mongo-init': { condition: 'service_completed_successfully' },
      kms: { condition: 'service_healthy' },
      secrets: { condition: 'service_completed_successfully' },
    }, `${name} starts once the replica set is initiated`);
    const query = new URLSearchParams(String(p.environment.MONGODB_URI).split('?')[1] ?? '');
    t.equal(query.get('replicaSet'), 'rs0', `${name} connects to the replica set`);
    t.same(p.environment.MONGODB_URI.slice('mongodb://'.length).split('/')[0].split(','), mongods.map((m) => `${m}:27017`), `${name} seeds every member`);
    t.notOk('AUDIT_CHAIN_ID' in p.environment, `${name}: no shared AUDIT_CHAIN_ID (each spool names its own chain)`);
    const spool = (p.volumes as string[]).find((v) => v.endsWith(`:${p.environment.AUDIT_SPOOL_DIR}`));
    t.ok(spool, `${name}: AUDIT_SPOOL_DIR (${p.environment.AUDIT_SPOOL_DIR}) is a mounted volume`);
    const volume = spool!.split(':')[0]!;
    t.ok(volume in compose.volumes, `${name}: the spool is the named volume ${volume} (it outlives the container)`);
    spools.add(volume);
    t.equal(p.read_only, true, `${name}: read-only root filesystem, the spool volume writable`);
    t.notOk(p.ports, `${name} is reached through the load balancer only`);
  }
  t.equal(spools.size, 3, 'a spool volume per instance');
  const envs = proxies.map((name) => JSON.stringify(compose.services[name].environment));
  t.equal(new Set(envs).size, 1, 'every instance has the same configuration');
  t.match(dockerfile, /^ENV AUDIT_SPOOL_DIR=(\S+)$/m, 'the image has the spool directory as its default');
  t.equal(/^ENV AUDIT_SPOOL_DIR=(\S+)$/m.exec(dockerfile)?.[1], compose.services.proxy1.environment.AUDIT_SPOOL_DIR, 'the same path as compose mounts');
});

t.test('the load balancer: HAProxy in front of the three instances, health-checking /health/ready', async (t) => {
  const lb = compose.services.lb;
  t.match(lb.image, /^haproxy:/);
  t.same(lb.ports, ['127.0.0.1:8080:8080']);
  const mount = (lb.volumes as string[]).find((v) => v.endsWith(':/usr/local/etc/haproxy/haproxy.cfg:ro'));
  t.ok(mount, 'its configuration is mounted from the repository');
  const cfgPath = new URL(mount!.split(':')[0]!.replace(/^\.\//, ''), root);
  const cfg = readFileSync(cfgPath, 'utf8');
  const servers = [...cfg.matchAll(/^\s*server (\S+) (\S+):(\d+)/gm)].map((m) => [m[1], m[2], m[3]]);
  t.same(servers, proxies.map((name) => [name, name, '8080']), 'one server line per instance');
  t.match(cfg, /http-check send meth GET uri \/health\/ready/, 'instances are checked on /health/ready');
  t.match(cfg, /^\s*bind :8080$/m);
  for (const name of proxies) t.same(lb.depends_on[name], { condition: 'service_started' }, `starts without waiting for ${name} to be healthy`);
  // HAProxy's own parser, where it is installed (scripts/cluster installs it; the test does not).
  const check = spawnSync('haproxy', ['-c', '-f', fileURLToPath(cfgPath)], { encoding: 'utf8' });
  if (check.error) t.comment('haproxy is not installed here: its configuration check is skipped');
  else t.equal(check.status, 0, 'haproxy -c accepts the configuration', { output: `${check.stdout}${check.stderr}` });
});

t.test("each proxy's compose environment passes the service's own configuration check", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'compose-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'local-master-key'), Buffer.alloc(96, 1));
  writeFileSync(join(dir, 'admin-token'), 'x'.repeat(43));
  writeFileSync(join(dir, 'audit-hmac-key'), Buffer.alloc(32, 2).toString('base64'));
  for (const name of proxies) {
    const env = { ...compose.services[name].environment } as Record<string, string>;
    for (const key of ['LOCAL_MASTER_KEY_FILE', 'ADMIN_TOKEN_FILE', 'AUDIT_HMAC_KEY_FILE']) env[key] = join(dir, env[key]!.split('/').pop()!);
    const config = loadConfig({ ...env, HOST: '0.0.0.0' });
    t.equal(config.kms.aws?.endpoint, 'http://kms:5000');
    t.same(config.kms.aws?.allowedKeys, ['arn:aws:kms:us-east-1:123456789012:key/*'], 'with aws on, the KMS keys clients may name are listed');
    t.equal(config.kms.localMasterKey?.length, 96);
    t.same(config.audit.hmacKey, Buffer.alloc(32, 2), `${name}: the shared audit HMAC key, from the secrets volume`);
  }
  // The secrets service writes the three files the proxies read.
  const writer = compose.services.secrets.command.join(' ');
  for (const file of ['local-master-key', 'admin-token', 'audit-hmac-key']) t.match(writer, new RegExp(`/secrets/${file}`), `the secrets service writes ${file}`);
});

t.test('the Dockerfile builds in one stage and runs, as a non-root user, the command the build produces', async (t) => {
  t.match(dockerfile, /^RUN mkdir -p \/var\/lib\/encryption-proxy\/audit-spool \\\n\s+&& chown -R node:node/m, 'the spool directory exists and belongs to the node user');
  t.match(dockerfile, /^VOLUME \["\/var\/lib\/encryption-proxy\/audit-spool"\]$/m, 'and is a volume');
  t.equal((dockerfile.match(/^FROM /gm) ?? []).length, 2, 'multi-stage');
  t.match(dockerfile, /npm prune --omit=dev/, 'no dev dependencies in the runtime image');
  t.match(dockerfile, /^USER node$/m);
  t.match(dockerfile, /^HEALTHCHECK /m);
  const cmd = /^CMD \["node", "([^"]+)"\]$/m.exec(dockerfile)?.[1];
  t.equal(cmd, 'dist/src/server.js');
  t.equal(JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).main, cmd, 'the image starts what npm start starts');
  t.ok(existsSync(new URL('src/server.ts', root)), 'and the build makes it from src/server.ts');
  const heapBound = '--max-old-space-size=512';
  t.match(dockerfile, new RegExp(`^ENV NODE_OPTIONS=${heapBound}$`, 'm'), 'the image bounds the heap');
  const start = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).scripts.start as string;
  t.equal(start, `node ${heapBound} ${cmd}`, 'as npm start does');
  t.match(dockerfile, /COPY --from=build [^\n]*aead_native\.node/, 'the runtime image carries the native AEAD addon');
});

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.js';

// No Docker engine runs here: check what can be checked without one.
const root = new URL('../../', import.meta.url);
const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'));
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');

t.test('docker-compose.yml wires MongoDB (a replica set), a KMS emulator and the proxy with health checks', async (t) => {
  t.same(Object.keys(compose.services).sort(), ['kms', 'mongodb', 'proxy', 'secrets']);
  t.match(compose.services.mongodb.image, /^mongo:8/);
  t.ok(compose.services.mongodb.command.includes('--replSet'));
  for (const name of ['mongodb', 'kms']) t.ok(compose.services[name].healthcheck?.test, `${name} has a health check`);
  t.same(compose.services.proxy.depends_on, {
    mongodb: { condition: 'service_healthy' },
    kms: { condition: 'service_healthy' },
    secrets: { condition: 'service_completed_successfully' },
  });
  t.match(compose.services.proxy.environment.MONGODB_URI, /replicaSet=rs0/);
});

t.test("the proxy's compose environment passes the service's own configuration check", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'compose-'));
  writeFileSync(join(dir, 'local-master-key'), Buffer.alloc(96, 1));
  writeFileSync(join(dir, 'admin-token'), 'x'.repeat(43));
  const env = { ...compose.services.proxy.environment } as Record<string, string>;
  env.LOCAL_MASTER_KEY_FILE = join(dir, 'local-master-key');
  env.ADMIN_TOKEN_FILE = join(dir, 'admin-token');
  const config = loadConfig({ ...env, HOST: '0.0.0.0' });
  t.equal(config.kms.aws?.endpoint, 'http://kms:5000');
  t.same(config.kms.aws?.allowedKeys, ['arn:aws:kms:us-east-1:123456789012:key/*'], 'with aws on, the KMS keys clients may name are listed');
  t.equal(config.kms.localMasterKey?.length, 96);
});

t.test('the Dockerfile builds in one stage and runs, as a non-root user, the command the build produces', async (t) => {
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

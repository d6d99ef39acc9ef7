import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createTestApp } from '../helpers/app.js';

const dir = mkdtempSync(join(tmpdir(), 'identities-'));

t.test('JWTs from the configured JWKS act as the client with that subject', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }));
  const h = await createTestApp(t, { env: { JWT_JWKS_FILE: jwksFile, JWT_ISSUER: 'https://idp.test/', JWT_AUDIENCE: 'proxy' } });
  await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['jwt-key'] });
  t.equal((await h.call('POST', '/clients', { name: 'svc', grants: [{ scope: 'encrypt' }], jwtSubject: 'service-42' })).statusCode, 201);
  const sign = (sub: string, aud = 'proxy') =>
    new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject(sub).setIssuer('https://idp.test/').setAudience(aud).setIssuedAt().setExpirationTime('5m').sign(privateKey);
  const call = async (jwt: string, url: string) =>
    h.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${jwt}` }, payload: { value: 'x', algorithm: 'random', keyAltName: 'jwt-key' } });
  t.equal((await call(await sign('service-42'), '/encrypt')).statusCode, 200, 'a valid JWT of a known subject works');
  t.equal((await call(await sign('service-42'), '/decrypt')).statusCode, 403, 'with that client’s grants only');
  t.equal((await call(await sign('nobody'), '/encrypt')).statusCode, 401, 'an unknown subject is refused');
  t.equal((await call(await sign('service-42', 'someone-else'), '/encrypt')).statusCode, 401, 'a wrong audience is refused');
});

t.test('mTLS: a client certificate from the configured CA acts as the client with that CN', async (t) => {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test-ca');
  const leaf = (name: string, cn: string, ca = 'ca') => {
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(join(dir, `${name}.ext`), cn === 'localhost' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n');
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  };
  leaf('server', 'localhost');
  leaf('client', 'billing-service');
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'rogue-ca.key', '-out', 'rogue-ca.crt', '-days', '1', '-subj', '/CN=rogue');
  leaf('rogue', 'billing-service', 'rogue-ca');

  const h = await createTestApp(t, {
    env: { TLS_CERT_FILE: join(dir, 'server.crt'), TLS_KEY_FILE: join(dir, 'server.key'), TLS_CA_FILE: join(dir, 'ca.crt') },
  });
  await h.call('POST', '/clients', { name: 'billing', grants: [{ scope: 'keys:read' }], certSubject: 'billing-service' });
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = h.app.server.address() as AddressInfo;

  const get = (path: string, cert?: string) =>
    new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          ca: readFileSync(join(dir, 'ca.crt')),
          servername: 'localhost',
          ...(cert ? { cert: readFileSync(join(dir, `${cert}.crt`)), key: readFileSync(join(dir, `${cert}.key`)) } : {}),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      req.end();
    });
  t.equal(await get('/keys', 'client'), 200, 'the certificate CN maps to the client');
  t.equal(await get('/clients', 'client'), 403, 'with that client’s grants only');
  t.equal(await get('/keys'), 401, 'no certificate, no token: refused');
  t.equal(await get('/keys', 'rogue'), 401, 'a certificate from another CA is not trusted');
});

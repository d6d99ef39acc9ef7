import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import { createJwtVerifier } from '../../src/clients/jwt-verifier.js';
import { AppError } from '../../src/errors.js';

const ISSUER = 'https://idp.example.test/';
const AUDIENCE = 'encryption-proxy';
const names = { issuer: ISSUER, audience: AUDIENCE };

const dir = mkdtempSync(join(tmpdir(), 'jwks-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const es = await generateKeyPair('ES256', { extractable: true });
const rsa = await generateKeyPair('RS256', { extractable: true });
const ed = await generateKeyPair('EdDSA', { extractable: true });
const stranger = await generateKeyPair('ES256', { extractable: true });

async function publicJwk(key: CryptoKey, kid: string, alg: string): Promise<JWK> {
  return { ...(await exportJWK(key)), kid, alg, use: 'sig' };
}

const jwks = { keys: [await publicJwk(es.publicKey, 'es', 'ES256'), await publicJwk(rsa.publicKey, 'rsa', 'RS256'), await publicJwk(ed.publicKey, 'ed', 'EdDSA')] };
const jwksFile = join(dir, 'jwks.json');
writeFileSync(jwksFile, JSON.stringify(jwks));

function writeJwks(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

interface SignOptions {
  key?: CryptoKey | Uint8Array;
  alg?: string;
  kid?: string;
  claims?: JWTPayload;
  issuer?: string | null;
  audience?: string | null;
  subject?: string | null;
  expiresIn?: string | number | null;
}

function sign(options: SignOptions = {}): Promise<string> {
  const { key = es.privateKey, alg = 'ES256', kid = 'es', claims = {}, issuer = ISSUER, audience = AUDIENCE, subject = 'user-1', expiresIn = '5m' } = options;
  let jwt = new SignJWT(claims).setProtectedHeader({ alg, kid }).setIssuedAt();
  if (issuer !== null) jwt = jwt.setIssuer(issuer);
  if (audience !== null) jwt = jwt.setAudience(audience);
  if (subject !== null) jwt = jwt.setSubject(subject);
  if (expiresIn !== null) jwt = jwt.setExpirationTime(expiresIn);
  return jwt.sign(key);
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function refusal(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return undefined;
}

/** Every way a token must fail, checked against one verifier. */
interface Asserts {
  ok(value: unknown, message: string): unknown;
  match(value: unknown, pattern: unknown, message: string): unknown;
}

async function checkRefusals(t: Asserts, verifier: ReturnType<typeof createJwtVerifier>) {
  const now = Math.floor(Date.now() / 1000);
  const hmacSecret = new TextEncoder().encode('a'.repeat(32));
  const bad: [string, string | Promise<string>][] = [
    ['expired', sign({ expiresIn: now - 3600 })],
    ['not yet valid', sign({ claims: { nbf: now + 3600 } })],
    ['wrong issuer', sign({ issuer: 'https://evil.example.test/' })],
    ['no issuer', sign({ issuer: null })],
    ['wrong audience', sign({ audience: 'another-service' })],
    ['no audience', sign({ audience: null })],
    ['no subject', sign({ subject: null })],
    ['empty subject', sign({ subject: '' })],
    ['no expiry', sign({ expiresIn: null })],
    ['signed by another key under a known kid', sign({ key: stranger.privateKey })],
    ['signed by another key under an unknown kid', sign({ key: stranger.privateKey, kid: 'stranger' })],
    ['HS256 with a shared secret', sign({ key: hmacSecret, alg: 'HS256' })],
    ['HS256 keyed with the public key (key confusion)', sign({ key: new TextEncoder().encode(JSON.stringify(jwks.keys[0])), alg: 'HS256' })],
    ['alg none', `${b64({ alg: 'none' })}.${b64({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE, exp: now + 300 })}.`],
    ['alg none with a kid', `${b64({ alg: 'none', kid: 'es' })}.${b64({ sub: 'user-1', iss: ISSUER, aud: AUDIENCE, exp: now + 300 })}.`],
    ['ES384 is not allowed', (async () => sign({ key: (await generateKeyPair('ES384')).privateKey, alg: 'ES384' }))()],
    ['a tampered payload', (async () => {
      const [header, , signature] = (await sign()).split('.');
      return `${header}.${b64({ sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now + 300 })}.${signature}`;
    })()],
    ['garbage', 'not.a.jwt'],
    ['empty', ''],
    ['huge', 'a'.repeat(20_000)],
  ];
  for (const [name, token] of bad) {
    const err = await refusal(verifier.verify(await token));
    t.ok(err instanceof AppError, `${name}: refused with an AppError`);
    t.match(err, { code: 'UNAUTHORIZED', status: 401, detail: undefined }, `${name}: UNAUTHORIZED, no detail`);
    t.ok((err as Error | undefined)?.cause, `${name}: the cause is kept for the log`);
  }
}

t.test('a JWKS file: valid tokens give their subject, the rest are refused', async (t) => {
  const verifier = createJwtVerifier({ jwksFile, issuer: ISSUER, audience: AUDIENCE });
  t.same(await verifier.verify(await sign()), { subject: 'user-1' }, 'ES256');
  t.same(await verifier.verify(await sign({ key: rsa.privateKey, alg: 'RS256', kid: 'rsa' })), { subject: 'user-1' }, 'RS256');
  t.same(await verifier.verify(await sign({ key: ed.privateKey, alg: 'EdDSA', kid: 'ed', subject: 'svc' })), { subject: 'svc' }, 'EdDSA');
  t.same(await verifier.verify(await sign({ expiresIn: Math.floor(Date.now() / 1000) - 10 })), { subject: 'user-1' }, 'within the default clock tolerance');
  await checkRefusals(t, verifier);
  const strict = createJwtVerifier({ jwksFile, issuer: ISSUER, audience: AUDIENCE, clockToleranceSec: 0 });
  t.match(await refusal(strict.verify(await sign({ expiresIn: Math.floor(Date.now() / 1000) - 10 }))), { code: 'UNAUTHORIZED' }, 'no tolerance when told');
});

t.test('issuer and audience are required: no verifier skips them', async (t) => {
  const unchecked = [{ jwksFile }, { jwksFile, issuer: ISSUER }, { jwksFile, audience: AUDIENCE }, { jwksFile, issuer: '', audience: AUDIENCE }, { jwksFile, issuer: ISSUER, audience: '' }];
  for (const options of unchecked) {
    t.throws(() => createJwtVerifier(options as never), /give the (issuer|audience)/, JSON.stringify(Object.keys(options)));
  }
  const verifier = createJwtVerifier({ jwksFile, ...names });
  t.match(await refusal(verifier.verify(await sign({ issuer: null, audience: null }))), { code: 'UNAUTHORIZED' }, 'a token naming neither is refused');
});

t.test('a JWKS URL', async (t) => {
  let fetches = 0;
  const server = createServer((req, res) => {
    fetches++;
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const { port } = server.address() as AddressInfo;

  const verifier = createJwtVerifier({ jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`, issuer: ISSUER, audience: AUDIENCE });
  t.same(await verifier.verify(await sign()), { subject: 'user-1' });
  t.same(await verifier.verify(await sign({ key: rsa.privateKey, alg: 'RS256', kid: 'rsa' })), { subject: 'user-1' });
  t.equal(fetches, 1, 'the key set is fetched once and cached');
  await checkRefusals(t, verifier);

  const missing = createJwtVerifier({ jwksUrl: `http://127.0.0.1:${port}/nothing-here`, issuer: ISSUER, audience: AUDIENCE });
  t.match(await refusal(missing.verify(await sign())), { code: 'UNAUTHORIZED' }, 'an unreachable key set refuses');
});

t.test('misconfiguration fails when the verifier is built', async (t) => {
  t.throws(() => createJwtVerifier({ ...names }), /exactly one/);
  t.throws(() => createJwtVerifier({ jwksFile, jwksUrl: 'https://idp.example.test/jwks', ...names }), /exactly one/);
  t.throws(() => createJwtVerifier({ jwksFile: join(dir, 'missing.json'), ...names }), /cannot be read/);
  t.throws(() => createJwtVerifier({ jwksFile: writeJwks('broken.json', '{"keys": ['), ...names }), /cannot be read/);
  t.throws(() => createJwtVerifier({ jwksFile: writeJwks('empty.json', { keys: [] }), ...names }), /at least one key/);
  t.throws(() => createJwtVerifier({ jwksFile: writeJwks('not-a-set.json', [1, 2]), ...names }), /at least one key/);
  const privateJwk = { ...(await exportJWK(es.privateKey)), kid: 'es' };
  t.throws(() => createJwtVerifier({ jwksFile: writeJwks('private.json', { keys: [privateJwk] }), ...names }), /public keys only/);
  t.throws(() => createJwtVerifier({ jwksFile: writeJwks('oct.json', { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), ...names }), /public keys only/);
  t.throws(() => createJwtVerifier({ jwksUrl: 'not a url', ...names }), /not a valid URL/);
  t.throws(() => createJwtVerifier({ jwksUrl: 'http://idp.example.test/jwks', ...names }), /must use https/);
  t.throws(() => createJwtVerifier({ jwksUrl: 'ftp://idp.example.test/jwks', ...names }), /must use https/);
  t.ok(createJwtVerifier({ jwksUrl: 'https://idp.example.test/jwks', ...names }), 'https is fine (nothing is fetched before the first token)');
  t.ok(createJwtVerifier({ jwksUrl: 'http://localhost:8080/jwks', ...names }), 'plain http on loopback is fine');
});

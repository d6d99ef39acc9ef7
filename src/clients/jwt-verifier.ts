/**
 * Verification of JWTs issued by an external identity provider, whose `sub` then maps to a client
 * (`jwtSubject`). The public keys come from a JWKS file or a JWKS URL.
 */
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { AppError } from '../errors.js';

export interface JwtVerifierOptions {
  jwksFile?: string;
  /** https, or http on a loopback host only: keys fetched over plain HTTP could be anyone's. */
  jwksUrl?: string;
  /** Required `iss`: a key set may be shared by several issuers. */
  issuer: string;
  /** Required `aud`: the identity provider also signs tokens meant for other services. */
  audience: string;
  /** Allowed clock skew for exp / nbf / iat (default 30 s). */
  clockToleranceSec?: number;
}

/**
 * Asymmetric algorithms only. HS256 would let anyone holding the "secret" mint tokens, and with a
 * JWKS the secret would be a public key (the classic key-confusion attack); `none` is never allowed.
 */
export const JWT_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
/** A bearer JWT larger than this is refused unparsed. */
const MAX_JWT_LENGTH = 16 * 1024;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function loadJwksFile(path: string): JWTVerifyGetKey {
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(readFileSync(path, 'utf8')) as JSONWebKeySet;
  } catch (err) {
    throw new Error(`JWKS file ${path} cannot be read as JSON`, { cause: err });
  }
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new Error(`JWKS file ${path} must be {"keys": [...]} with at least one key`);
  }
  // Private or symmetric keys have no business on this server, and could not verify anything here.
  if (jwks.keys.some((key) => key.kty === 'oct' || 'd' in key || 'k' in key)) {
    throw new Error(`JWKS file ${path} must hold public keys only`);
  }
  return createLocalJWKSet(jwks);
}

function remoteJwks(url: string): JWTVerifyGetKey {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new Error('JWKS URL is not a valid URL', { cause: err });
  }
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && LOOPBACK_HOSTS.has(parsed.hostname))) {
    throw new Error('JWKS URL must use https (plain http is allowed on a loopback host only)');
  }
  // jose caches the set (10 min) and refetches on an unknown kid at most every 30 s.
  return createRemoteJWKSet(parsed);
}

/**
 * Build a verifier. Misconfiguration (no or two key sources, no issuer or audience, an unreadable
 * or private JWKS file, a plain-http remote URL) throws here, at boot. `verify` resolves to the
 * token's subject or rejects with `UNAUTHORIZED` and no detail; the reason is kept as the cause,
 * for the log. Tokens must carry `sub`, `exp`, the configured `iss` and the configured `aud`.
 */
export function createJwtVerifier(options: JwtVerifierOptions) {
  const { jwksFile, jwksUrl, issuer, audience, clockToleranceSec = 30 } = options;
  if ((jwksFile === undefined) === (jwksUrl === undefined)) throw new Error('give exactly one of jwksFile and jwksUrl');
  // Checked here too, not only in the config: a verifier that skips them must not be buildable.
  if (typeof issuer !== 'string' || issuer === '') throw new Error('give the issuer that tokens must name (iss)');
  if (typeof audience !== 'string' || audience === '') throw new Error('give the audience that tokens must name (aud)');
  const keys = jwksFile !== undefined ? loadJwksFile(jwksFile) : remoteJwks(jwksUrl!);

  return {
    async verify(jwt: string): Promise<{ subject: string }> {
      try {
        if (typeof jwt !== 'string' || jwt.length > MAX_JWT_LENGTH) throw new Error('not a JWT of acceptable size');
        const { payload } = await jwtVerify(jwt, keys, {
          algorithms: JWT_ALGORITHMS,
          // Without an expiry a leaked token would be good forever.
          requiredClaims: ['sub', 'exp', 'iss', 'aud'],
          clockTolerance: clockToleranceSec,
          issuer,
          audience,
        });
        if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw new Error('sub is not a non-empty string');
        return { subject: payload.sub };
      } catch (err) {
        throw new AppError('UNAUTHORIZED', undefined, { cause: err });
      }
    },
  };
}

export type JwtVerifier = ReturnType<typeof createJwtVerifier>;

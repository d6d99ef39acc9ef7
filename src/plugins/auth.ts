import { createHash, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import { allows, OPERATOR, type Principal } from '../clients/scopes.js';
import { keyAuthorizer, type KeyAuthorizer } from '../clients/key-authorizer.js';
import type { Caller } from '../encryption/access.js';
import { AppError } from '../errors.js';
import { DOCS_PREFIX } from './swagger.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Routes reachable without credentials (health probes, the API description). */
    public?: boolean;
    /**
     * The scope a route needs, or a list of scopes any one of which will do (a scope that implies
     * another, as `jobs:admin` implies reading jobs); `{ns}` stands for the route's `ns` parameter.
     */
    scope?: string | readonly string[];
  }
  interface FastifyRequest {
    principal?: Principal;
    /** The route's scope with its parameters filled in (of a list, the first the principal holds). */
    scope?: string;
    /** The data keys this request's principal may manage under a scope (the route's by default). */
    authorizeKeys(scope?: string): KeyAuthorizer;
    /** Who calls, for the encryption engine; it records the data keys the request used. */
    caller: Caller | undefined;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Who is calling: the operator token, a client API token, a JWT from the configured issuer, or a
 * client certificate (mTLS); then whether the route's scope is granted. 401 for no or bad
 * credentials, 403 for a missing scope. Tokens are compared by digest, in constant time.
 *
 * The request limits run inside this hook, around the credential check: it is the first hook of
 * every request that writes anything (audit, idempotency come later), and a limit must refuse a
 * request before anything is written for it.
 */
export default fp(
  async (app) => {
    const operatorDigest = digest(app.config.adminToken);

    async function authenticate(request: FastifyRequest): Promise<Principal | undefined> {
      const header = request.headers.authorization;
      if (header !== undefined) {
        // The scheme is case-insensitive (RFC 9110).
        const token = /^bearer ([\x21-\x7e]+)$/i.exec(header)?.[1];
        if (token === undefined) return undefined;
        if (timingSafeEqual(digest(token), operatorDigest)) return OPERATOR;
        if (token.startsWith('epx_')) return app.clients.authenticateToken(token);
        if (app.jwtVerifier !== undefined && token.split('.').length === 3) {
          const { subject } = await app.jwtVerifier.verify(token);
          return app.clients.findBySubject({ jwtSubject: subject });
        }
        return undefined;
      }
      const socket = request.raw.socket as TLSSocket;
      if (socket.encrypted && socket.authorized) {
        const subject = socket.getPeerCertificate()?.subject?.CN;
        if (typeof subject === 'string' && subject.length > 0) return app.clients.findBySubject({ certSubject: subject });
      }
      return undefined;
    }

    app.decorateRequest('principal', undefined);
    app.decorateRequest('scope', undefined);
    app.decorateRequest('caller', undefined);
    app.decorateRequest('authorizeKeys', function (this: FastifyRequest, scope?: string) {
      return keyAuthorizer(this.principal!, scope ?? this.scope!, app.keyVault);
    });

    app.addHook('onRequest', async (request, reply) => {
      const { url, config } = request.routeOptions;
      if (config.public === true || url === DOCS_PREFIX || url?.startsWith(`${DOCS_PREFIX}/`)) {
        await app.limits.spend(request, reply);
        return;
      }
      // A source that keeps failing is cut off before its credentials are looked at: a guesser
      // learns nothing more, even when it guesses right.
      app.limits.checkFailedAuth(request, reply);
      let principal: Principal | undefined;
      try {
        principal = await authenticate(request);
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== 'UNAUTHORIZED') throw err;
      }
      if (principal === undefined) {
        // Only presented credentials count: a request without any guessed nothing.
        if (request.headers.authorization !== undefined) app.limits.recordFailedAuth(request);
        reply.header('www-authenticate', 'Bearer');
        throw new AppError('UNAUTHORIZED');
      }
      request.principal = principal;
      request.caller = { principal, keysNamed: new Set() };
      // Before the scope check: a refused (403) request is audited, and that write is spent too.
      await app.limits.spend(request, reply);
      if (config.scope === undefined) return; // unknown routes: answered 404 after authentication
      const ns = (request.params as { ns?: string } | undefined)?.ns ?? '';
      const needed = (typeof config.scope === 'string' ? [config.scope] : config.scope).map((scope) => scope.replace('{ns}', ns));
      const held = needed.find((scope) => allows(principal, scope));
      request.scope = held ?? needed[0];
      if (held === undefined) throw new AppError('FORBIDDEN', `This needs the ${needed.join(' or the ')} scope.`);
    });
  },
  { name: 'auth', dependencies: ['config', 'clients', 'key-vault', 'hardening'] },
);

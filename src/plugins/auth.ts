import { createHash, timingSafeEqual } from 'node:crypto';
import fp from 'fastify-plugin';
import { AppError } from '../errors.js';
import { DOCS_PREFIX } from './swagger.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Routes reachable without credentials (health probes, the API description). */
    public?: boolean;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Bearer-token authentication; comparing digests keeps the check constant-time whatever the length. */
export default fp(
  async (app) => {
    const expected = digest(app.config.adminToken);
    app.addHook('onRequest', async (request, reply) => {
      const url = request.routeOptions.url;
      if (request.routeOptions.config.public === true || url === DOCS_PREFIX || url?.startsWith(`${DOCS_PREFIX}/`)) return;
      const header = request.headers.authorization;
      // The scheme is case-insensitive (RFC 9110); the token is compared by digest, in constant time.
      const match = header === undefined ? null : /^bearer ([\x21-\x7e]+)$/i.exec(header);
      if (match === null || !timingSafeEqual(digest(match[1]!), expected)) {
        reply.header('www-authenticate', 'Bearer');
        throw new AppError('UNAUTHORIZED');
      }
    });
  },
  { name: 'auth', dependencies: ['config'] },
);

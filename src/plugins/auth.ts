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
    app.addHook('onRequest', async (request) => {
      if (request.routeOptions.config.public === true || request.routeOptions.url?.startsWith(DOCS_PREFIX)) return;
      const header = request.headers.authorization;
      const match = header === undefined ? null : /^Bearer ([\x21-\x7e]+)$/.exec(header);
      if (match === null || !timingSafeEqual(digest(match[1]!), expected)) throw new AppError('UNAUTHORIZED');
    });
  },
  { name: 'auth', dependencies: ['config'] },
);

import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { sharedSchemas } from '../../schemas/http/common.js';
import { keySchemas } from '../../schemas/http/keys.js';
import { auditEventSchema } from '../../schemas/http/audit.js';
import { clientSchemas } from '../../schemas/http/clients.js';
import { jobSchema } from '../../schemas/http/jobs.js';
import { schemaSchemas } from '../../schemas/http/schemas.js';

export const DOCS_PREFIX = '/docs';

/** Shared schemas, the OpenAPI document generated from the route schemas, and its UI. */
export default fp(
  async (app) => {
    for (const schema of [...sharedSchemas, ...keySchemas, auditEventSchema, ...clientSchemas, jobSchema, ...schemaSchemas]) app.addSchema(schema);
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'MongoDB encryption proxy',
          version: '0.1.0',
          description:
            'Field encryption for MongoDB over HTTP, byte-compatible with MongoDB client-side field level encryption (CSFLE). Data keys and master keys never leave the service.',
        },
        components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
      },
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
    });
    await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });
    app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'swagger' },
);

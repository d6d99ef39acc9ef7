import type { FastifyInstance } from 'fastify';
import { errorResponses } from '../schemas/http/common.js';

const status = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['ok'] } },
} as const;

export default async function healthRoutes(app: FastifyInstance) {
  app.get(
    '/health/live',
    {
      config: { public: true },
      schema: { tags: ['health'], summary: 'Liveness: the process answers', response: { 200: status } },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/health/ready',
    {
      config: { public: true },
      schema: {
        tags: ['health'],
        summary: 'Readiness: the database and the key vault answer',
        response: { 200: status, ...errorResponses(503) },
      },
    },
    async () => {
      await app.mongo.client.db('admin').command({ ping: 1 });
      if (app.mongo.keyVaultClient !== app.mongo.client) await app.mongo.keyVaultClient.db('admin').command({ ping: 1 });
      return { status: 'ok' };
    },
  );
}

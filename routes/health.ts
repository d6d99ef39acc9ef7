import type { FastifyInstance } from 'fastify';
import { errorResponses } from '../schemas/http/common.js';
import { AppError } from '../src/errors.js';

const status = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['ok'] } },
} as const;

const readiness = {
  type: 'object',
  required: ['status', 'mongodb', 'kms'],
  properties: {
    status: { type: 'string', enum: ['ok'] },
    mongodb: { type: 'string', enum: ['ok'] },
    kms: { type: 'string', enum: ['ok'], description: 'Not failing: no KMS circuit is open.' },
  },
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
        summary: 'Readiness: the databases answer and KMS is not failing (503 DATABASE_UNAVAILABLE or KMS_UNAVAILABLE otherwise)',
        response: { 200: readiness, ...errorResponses(503) },
      },
    },
    async () => {
      const clients = [...new Set([app.mongo.client, app.mongo.keyVaultClient, app.mongo.auditClient])];
      try {
        await Promise.all(clients.map((client) => client.db('admin').command({ ping: 1 })));
      } catch (err) {
        // Whatever way the ping fails, the database is not there for this instance.
        throw new AppError('DATABASE_UNAVAILABLE', undefined, { cause: err });
      }
      if (!app.kms.isHealthy()) throw new AppError('KMS_UNAVAILABLE', 'KMS keeps failing.');
      return { status: 'ok', mongodb: 'ok', kms: 'ok' };
    },
  );
}

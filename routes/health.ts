import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { errorResponses } from '../schemas/http/common.js';
import { AppError } from '../src/errors.js';

/** How long a probe waits for the audit chain head before it answers 503 (probes have short timeouts). */
const AUDIT_READY_WAIT_MS = 1000;

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
    kms: { type: 'string', enum: ['ok'], description: 'Not failing: no circuit of a configured KMS region is open.' },
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
        summary:
          'Readiness: the databases answer, the audit trail can be appended to and KMS is not failing (503 DATABASE_UNAVAILABLE, AUDIT_UNAVAILABLE or KMS_UNAVAILABLE otherwise)',
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
      if (!app.audit.status().ready) {
        // Started by the audit plugin at boot; this waits a moment for it, or starts it again after a failure.
        const prepared = await Promise.race([app.audit.prepare().then(() => true, () => false), sleep(AUDIT_READY_WAIT_MS, false, { ref: false })]);
        if (!prepared || !app.audit.status().ready) throw new AppError('AUDIT_UNAVAILABLE', 'The audit trail cannot be appended to yet.');
      }
      // Configured regions only (AWS_KMS_ALLOWED_KEYS, replica regions): a key a client named in
      // some other region cannot take the instance out of the load balancer.
      if (!app.kms.isHealthy()) throw new AppError('KMS_UNAVAILABLE', 'KMS keeps failing.');
      return { status: 'ok', mongodb: 'ok', kms: 'ok' };
    },
  );
}

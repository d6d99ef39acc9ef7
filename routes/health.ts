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
    kms: {
      type: 'string',
      enum: ['ok', 'degraded'],
      description:
        'degraded: a circuit of a configured KMS region is open. Cached data keys (and other regions, and local keys) still serve, so the instance stays ready: taking instances out over a KMS outage would only throw away the caches that keep the service up.',
    },
    schemas: {
      type: 'object',
      description:
        'Present when some collection schemas name data keys that do not exist: those collections answer 503 SCHEMA_NOT_READY, the others serve, so the instance stays ready (every instance shares the key vault: a 503 here would take the whole fleet out). GET /schemas names the missing keys.',
      required: ['notReady'],
      properties: { notReady: { type: 'array', items: { type: 'string' }, description: 'Their namespaces.' } },
    },
  },
} as const;

export default async function healthRoutes(app: FastifyInstance) {
  let lastKms: 'ok' | 'degraded' = 'ok';
  /** A metric always, a log line when it changes. */
  const noteKms = (kms: 'ok' | 'degraded') => {
    app.metrics.kmsDegraded(kms === 'degraded');
    if (kms === lastKms) return;
    lastKms = kms;
    if (kms === 'degraded') app.log.warn({ kms }, 'KMS degraded: a circuit is open; cached data keys still serve');
    else app.log.info({ kms }, 'KMS healthy again');
  };

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
          'Readiness: this instance can serve requests now: the databases answer and the audit trail can be appended to (503 DATABASE_UNAVAILABLE or AUDIT_UNAVAILABLE otherwise); a KMS outage is reported as kms: degraded, and collection schemas waiting for data keys under schemas.notReady, not as a 503',
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
      if (!app.schemaRegistry.isLoaded()) {
        // Ready means the first requests are served: /documents needs the collection schemas read once.
        const loaded = await Promise.race([app.schemaRegistry.whenLoaded().then(() => true, () => false), sleep(AUDIT_READY_WAIT_MS, false, { ref: false })]);
        if (!loaded) throw new AppError('DATABASE_UNAVAILABLE', 'The collection schemas cannot be read yet.');
      }
      // Configured regions only (AWS_KMS_ALLOWED_KEYS, replica regions). Reported, not refused:
      // every instance shares KMS, and cached keys keep serving through an outage.
      const kms = app.kms.isHealthy() ? 'ok' : 'degraded';
      noteKms(kms);
      const notReady = app.schemaRegistry.notReady();
      return { status: 'ok', mongodb: 'ok', kms, ...(notReady.length > 0 ? { schemas: { notReady } } : {}) };
    },
  );
}

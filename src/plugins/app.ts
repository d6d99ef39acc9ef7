import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Config } from '../config.js';
import { AppError, toProblem } from '../errors.js';
import { buildValidator } from './validators.js';
import configPlugin from './config.js';
import errorsPlugin from './errors.js';
import swaggerPlugin from './swagger.js';
import mongodbPlugin from './mongodb.js';
import metricsPlugin from './metrics.js';
import fleetPlugin from './fleet.js';
import kmsPlugin from './kms.js';
import keyVaultPlugin from './key-vault.js';
import encryptionPlugin from './encryption.js';
import schemasPlugin from './schemas.js';
import documentsPlugin from './documents.js';
import clientsPlugin from './clients.js';
import authPlugin from './auth.js';
import hardeningPlugin from './hardening.js';
import auditPlugin from './audit.js';
import idempotencyPlugin from './idempotency.js';
import jobsPlugin from './jobs.js';
import keyDeletionPlugin from './key-deletion.js';
import keyMaintenancePlugin from './key-maintenance.js';
import healthRoutes from '../../routes/health.js';
import encryptRoutes from '../../routes/encrypt.js';
import decryptRoutes from '../../routes/decrypt.js';
import keyRoutes from '../../routes/keys.js';
import documentRoutes from '../../routes/documents.js';
import documentWriteRoutes from '../../routes/document-writes.js';
import documentReadRoutes from '../../routes/document-reads.js';
import clientRoutes from '../../routes/clients.js';
import auditRoutes from '../../routes/audit.js';
import metricsRoutes from '../../routes/metrics.js';
import jobRoutes from '../../routes/jobs.js';
import schemaRoutes from '../../routes/schemas.js';

export interface BuildOptions {
  /** Where log lines go (tests capture them); stdout when absent. */
  logStream?: { write(line: string): void };
}

/** Log options: request lines carry the path only (a query string may hold plaintext). */
export function loggerOptions(config: Config, stream?: BuildOptions['logStream']): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    ...(stream ? { stream } : {}),
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        '*.authorization',
        '*.token',
        '*.value',
        '*.plaintext',
        '*.keyMaterial',
        '*.masterKey',
        '*.dataKey',
        '*.ciphertext',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
    },
  };
}

/** The whole application, built from a checked configuration. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(config, options.logStream),
    bodyLimit: config.bodyLimitBytes,
    // Slow or stalled clients are cut off rather than holding sockets and memory.
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.requestTimeoutMs + 5_000,
    ...(config.tls
      ? {
          https: {
            cert: config.tls.cert,
            key: config.tls.key,
            // With a CA, clients may present a certificate that maps to a client identity;
            // those without one still reach the token check.
            ...(config.tls.ca ? { ca: config.tls.ca, requestCert: true, rejectUnauthorized: false } : {}),
          },
        }
      : {}),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // Behind a load balancer every connection comes from it: only its X-Forwarded-For names the client.
    ...(config.trustProxy.length > 0 ? { trustProxy: config.trustProxy } : {}),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Requests that arrive while closing get the service's own problem+json 503 (hook below).
    return503OnClosing: false,
    schemaController: { compilersFactory: { buildValidator: buildValidator as never } },
    // Key alt names of up to 255 characters, URL-encoded, fit in a path parameter.
    routerOptions: { maxParamLength: 3100 },
    // Errors Fastify meets before routing (a malformed URL): a problem document like any other.
    frameworkErrors: (_error, request, reply) => {
      const problem = toProblem(new AppError('VALIDATION_FAILED', 'The URL is malformed or too long.'), request.id);
      void (reply as unknown as { code(n: number): { type(t: string): { send(b: unknown): unknown } } }).code(400).type('application/problem+json').send(problem);
    },
  });
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    reply.header('connection', 'close');
    throw new AppError('SHUTTING_DOWN');
  });
  // JSON only: a text body would reach schemas as a string and fail with a confusing message.
  app.removeContentTypeParser('text/plain');
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  try {
    await app.register(configPlugin, { config });
    await app.register(errorsPlugin);
    await app.register(swaggerPlugin);
    await app.register(metricsPlugin);
    await app.register(mongodbPlugin);
    await app.register(fleetPlugin);
    await app.register(kmsPlugin);
    await app.register(keyVaultPlugin);
    await app.register(encryptionPlugin);
    await app.register(schemasPlugin);
    await app.register(documentsPlugin);
    await app.register(clientsPlugin);
    await app.register(hardeningPlugin);
    await app.register(authPlugin);
    await app.register(auditPlugin);
    await app.register(idempotencyPlugin);
    await app.register(jobsPlugin);
    await app.register(keyDeletionPlugin);
    await app.register(keyMaintenancePlugin);

    await app.register(healthRoutes);
    await app.register(encryptRoutes);
    await app.register(decryptRoutes);
    await app.register(keyRoutes);
    await app.register(documentRoutes);
    await app.register(documentWriteRoutes);
    await app.register(documentReadRoutes);
    await app.register(clientRoutes);
    await app.register(auditRoutes);
    await app.register(metricsRoutes);
    await app.register(jobRoutes);
    await app.register(schemaRoutes);
  } catch (err) {
    // A boot that fails half way must not leave database connections open behind it.
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}

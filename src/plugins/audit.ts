import fp from 'fastify-plugin';
import { createAuditLog, type AuditRecord } from '../audit/audit-log.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The audit action of a route; routes without one are not audited (health, docs). */
    audit?: string;
  }
  interface FastifyRequest {
    auditStarted: boolean;
    /** What the handler touched, for the outcome event: key ids and field paths, never values. */
    auditDetails: { keyIds?: string[]; paths?: string[] } | undefined;
  }
  interface FastifyInstance {
    audit: ReturnType<typeof createAuditLog>;
  }
}

/**
 * Every audited operation writes a "started" event before it runs and an outcome event after.
 * Fail closed: if the "started" event cannot be written, the request ends with 503
 * AUDIT_UNAVAILABLE and the operation does not happen.
 */
export default fp(
  async (app) => {
    const { audit: settings } = app.config;
    const audit = createAuditLog({
      collection: app.mongo.auditClient.db(settings.db).collection<AuditRecord>(settings.collection),
      hmacKey: settings.hmacKey,
      chainId: settings.chainId,
      // No longer than the database gets to answer: an outage fails appends fast, not in queue.
      timeoutMs: app.config.serverSelectionTimeoutMs + 1000,
    });
    // Outcome events of requests answered just before a shutdown are written before the clients
    // close (onClose hooks run in reverse order of registration: this one before mongodb's).
    app.addHook('onClose', async () => audit.flush());
    // The head of a long chain can take seconds to find (FerretDB scans it): load it before traffic
    // arrives, not inside the first requests' deadlines. Not awaited: the service may start while
    // the database is away; readiness says when the trail can be written.
    app.addHook('onReady', async () => {
      audit.prepare().catch((err: unknown) => app.log.warn({ err }, 'audit chain head not loaded yet; retrying on first append'));
    });
    app.decorate('audit', audit);
    app.decorateRequest('auditStarted', false);
    app.decorateRequest('auditDetails', undefined);

    /** The key ids the handler named, and those the encryption engine used for it. */
    const keyIdsOf = (request: import('fastify').FastifyRequest) => {
      const ids = new Set([...(request.auditDetails?.keyIds ?? []), ...(request.caller?.keysNamed ?? [])]);
      return ids.size > 0 ? { keyIds: [...ids] } : {};
    };

    const base = (request: import('fastify').FastifyRequest) => {
      const ns = (request.params as { ns?: string } | undefined)?.ns;
      return {
        clientId: request.principal?.clientId ?? 'anonymous',
        action: request.routeOptions.config.audit!,
        requestId: request.id,
        ...(ns ? { collection: ns } : {}),
      };
    };

    app.addHook('preHandler', async (request) => {
      if (request.routeOptions.config.audit === undefined) return;
      // Document operations record the encrypted field paths of their collection (never values).
      const ns = (request.params as { ns?: string } | undefined)?.ns;
      if (ns !== undefined && request.auditDetails === undefined) {
        try {
          request.auditDetails = { paths: app.documents.encryptedFields(ns).map((field) => field.path) };
        } catch {
          // An unknown collection: the handler answers 404, with nothing to record.
        }
      }
      try {
        await audit.append({ ...base(request), outcome: 'started' });
      } catch (err) {
        app.metrics.auditWriteFailure();
        throw err;
      }
      request.auditStarted = true;
    });

    app.addHook('onResponse', async (request, reply) => {
      if (request.routeOptions.config.audit === undefined) return;
      const status = reply.statusCode;
      // A refused request (403) never started; it is recorded as denied. 401s are not: no client is known.
      if (!request.auditStarted && status !== 403) return;
      const outcome = status < 400 ? 'succeeded' : status === 403 ? 'denied' : 'failed';
      try {
        await audit.append({
          ...base(request),
          outcome,
          status,
          ...(request.errorCode ? { code: request.errorCode } : {}),
          ...keyIdsOf(request),
          ...(request.auditDetails?.paths?.length ? { paths: request.auditDetails.paths } : {}),
        });
      } catch (err) {
        app.metrics.auditWriteFailure();
        request.log.error({ err, code: 'AUDIT_UNAVAILABLE' }, 'audit outcome event not written');
      }
    });
  },
  { name: 'audit', dependencies: ['config', 'mongodb', 'auth', 'documents'] },
);

import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import type { AuditRecord } from '../audit/audit-record.js';
import type { CheckpointDocument, HeadDocument } from '../audit/audit-store.js';
import { createAuditTrail, type AuditTrail } from '../audit/audit-trail.js';
import { AppError, retryAfterFor, toProblem } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The audit action of a route; routes without one are not audited (health, docs). */
    audit?: string;
    /**
     * The route changes nothing (GET routes are taken as such): one event, recording its outcome,
     * is enough. Routes that change state also record a `started` event before they act.
     */
    readOnly?: boolean;
  }
  interface FastifyRequest {
    /** The request passed authentication, rate limits and validation: its outcome is audited. */
    auditReached: boolean;
    /** What the handler touched, for the outcome event: key ids and field paths, never values. */
    auditDetails: { keyIds?: string[]; paths?: string[] } | undefined;
  }
  interface FastifyInstance {
    audit: AuditTrail;
  }
}

/**
 * The audit contract: no answer leaves before the event recording its outcome is durable (in the
 * instance's spool, or in the database; see src/audit/audit-trail.ts). A request that changes
 * state first records a durable `started` event, so a crash between the change and its outcome
 * still leaves a trace. Fail closed: if an event cannot be made durable, the request ends with 503
 * AUDIT_UNAVAILABLE: before it acts when `started` fails, instead of its answer when the outcome
 * fails. Refusals before the handler (no credentials, rate limit, malformed request) are not
 * recorded, except 403s, which are recorded as denied.
 */
export default fp(
  async (app) => {
    const { audit: settings } = app.config;
    const db = app.mongo.auditClient.db(settings.db);
    const audit = await createAuditTrail({
      records: db.collection<AuditRecord>(settings.collection),
      heads: db.collection<HeadDocument>(`${settings.collection}.heads`),
      checkpoints: db.collection<CheckpointDocument>(`${settings.collection}.checkpoints`),
      hmacKey: settings.hmacKey,
      ...(settings.mode === 'spool' ? { spool: settings.spool } : {}),
      ...(settings.chainId !== undefined ? { chainId: settings.chainId } : {}),
      // Database mode: no longer than the database gets to answer, so an outage fails appends fast.
      timeoutMs: app.config.serverSelectionTimeoutMs + 1000,
      log: app.log,
      onShipped: (count) => app.metrics.auditShipped(count),
    });
    app.log.info({ chainId: audit.status().chainId, mode: audit.status().mode }, 'audit trail open');
    app.metrics.watchAuditBacklog(() => audit.status().backlog ?? 0);
    if (audit.recovery?.quarantined) {
      // Never acknowledged (its flush did not finish), but never silently dropped either.
      const { file, bytes, segment } = audit.recovery.quarantined;
      app.log.error({ file, bytes, segment }, 'audit spool: a torn tail was cut off at start-up and kept for inspection');
      app.metrics.auditSpoolQuarantined();
      await audit.append({ clientId: 'system', action: 'audit.spoolRecovered', outcome: 'failed', requestId: `recovery:${file}`, code: 'TORN_TAIL_QUARANTINED' });
    }
    // Events of requests answered just before a shutdown reach the database before the clients
    // close (onClose hooks run in reverse order of registration: this one before mongodb's).
    app.addHook('onClose', async () => audit.close());
    // Database mode: the head of a long chain can take seconds to find; load it before traffic.
    app.addHook('onReady', async () => {
      audit.prepare().catch((err: unknown) => app.log.warn({ err }, 'audit chain head not loaded yet; retrying on first append'));
    });
    app.decorate('audit', audit);
    app.decorateRequest('auditReached', false);
    app.decorateRequest('auditDetails', undefined);

    const base = (request: FastifyRequest) => {
      const ns = (request.params as { ns?: string } | undefined)?.ns;
      return {
        clientId: request.principal?.clientId ?? 'anonymous',
        action: request.routeOptions.config.audit!,
        requestId: request.id,
        ...(ns ? { collection: ns } : {}),
      };
    };

    /** The key ids the handler named, and those the encryption engine was asked to use for it. */
    const keyIdsOf = (request: FastifyRequest) => {
      const ids = new Set([...(request.auditDetails?.keyIds ?? []), ...(request.caller?.keysNamed ?? [])]);
      return ids.size > 0 ? { keyIds: [...ids] } : {};
    };

    const readOnly = (request: FastifyRequest) => request.method === 'GET' || request.routeOptions.config.readOnly === true;

    app.addHook('preHandler', async (request) => {
      if (request.routeOptions.config.audit === undefined) return;
      request.auditReached = true;
      // Document operations record the encrypted field paths of their collection (never values).
      const ns = (request.params as { ns?: string } | undefined)?.ns;
      if (ns !== undefined && request.auditDetails === undefined && request.routeOptions.url?.startsWith('/documents/')) {
        try {
          request.auditDetails = { paths: (await app.documents.encryptedFields(ns)).map((field) => field.path) };
        } catch {
          // An unknown collection (or one not ready): the handler answers so, with nothing to record.
        }
      }
      if (readOnly(request)) return;
      try {
        await audit.append({ ...base(request), outcome: 'started' });
      } catch (err) {
        app.metrics.auditWriteFailure();
        throw err;
      }
    });

    app.addHook('onSend', async (request, reply, payload) => {
      if (request.routeOptions.config.audit === undefined) return payload;
      const status = reply.statusCode;
      // A refused request (403) never reached the handler; it is recorded as denied.
      if (!request.auditReached && status !== 403) return payload;
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
        return payload;
      } catch (err) {
        // The answer does not leave without its event: it becomes a 503 (for a change already
        // made, its `started` event is in the trail; a retry with the same Idempotency-Key is safe).
        app.metrics.auditWriteFailure();
        request.log.error({ err, code: 'AUDIT_UNAVAILABLE', status }, 'audit outcome event not written; answer withheld');
        const error = new AppError('AUDIT_UNAVAILABLE');
        request.errorCode = error.code;
        reply.code(error.status).type('application/problem+json').header('retry-after', String(retryAfterFor(error.code)));
        return JSON.stringify(toProblem(error, request.id));
      }
    });
  },
  { name: 'audit', dependencies: ['config', 'mongodb', 'auth', 'documents', 'metrics'] },
);

import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { auditPageSchema, listAuditQuerySchema, verifyResponseSchema } from '../schemas/http/audit.js';
import type { AuditRecord } from '../src/audit/audit-log.js';

const tags = ['audit'];
const security = [{ bearerAuth: [] }];

function view(record: AuditRecord) {
  const { _id, prev: _prev, hmac: _hmac, time, ...rest } = record;
  return { id: _id, time: time.toISOString(), ...rest };
}

export default async function auditRoutes(app: FastifyInstance) {
  app.get(
    '/audit',
    {
      config: { scope: 'audit:read', audit: 'audit.list' },
      schema: {
        tags,
        security,
        summary: 'Page through the audit trail',
        querystring: listAuditQuerySchema,
        response: { 200: auditPageSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => {
      const query = request.query as { limit: number; after?: string; action?: string; clientId?: string };
      const page = await app.audit.list(query);
      return { items: page.items.map(view), ...(page.next ? { next: page.next } : {}) };
    },
  );

  app.get(
    '/audit/verify',
    {
      config: { scope: 'audit:read', audit: 'audit.verify' },
      schema: {
        tags,
        security,
        summary: 'Check the HMAC chain of the audit trail: a changed or removed event is reported',
        response: { 200: verifyResponseSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async () => app.audit.verify(),
  );
}

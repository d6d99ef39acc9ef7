import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { auditPageSchema, listAuditQuerySchema, verifyQuerySchema, verifyResponseSchema } from '../schemas/http/audit.js';
import type { AuditRecord } from '../src/audit/audit-record.js';

const tags = ['audit'];
/** How long a listing waits for this instance's spool to reach the database. */
const LIST_FLUSH_MS = 2000;
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
      // This instance's newest events first reach the database (bounded): a caller sees its own.
      await app.audit.flush(LIST_FLUSH_MS);
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
        summary: 'Check the HMAC chains of the audit trail, one per instance: a changed, removed or truncated chain is reported',
        description:
          'By default each chain is checked from its last signed checkpoint (the cost is what was appended since), after checking that the record the checkpoint vouches for is unchanged; `full=true` checks every chain from its first record.',
        querystring: verifyQuerySchema,
        response: { 200: verifyResponseSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => {
      await app.audit.flush(LIST_FLUSH_MS);
      return app.audit.verify({ full: (request.query as { full: boolean }).full });
    },
  );
}

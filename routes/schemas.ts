import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import {
  deleteSchemaQuerySchema,
  putOkResponseSchema,
  putSchemaBodySchema,
  putSchemaQuerySchema,
  putSchemaResponseSchema,
  schemaDetailSchema,
  schemaListSchema,
  schemaNamespaceParamsSchema,
  versionsQuerySchema,
  versionsResponseSchema,
} from '../schemas/http/schemas.js';
import type { PutInput } from '../src/documents/schema-admin.js';

const tags = ['schemas'];
const security = [{ bearerAuth: [] }];
// schemas:admin alone is enough to read: it may change what it reads.
const read = (audit: string) => ({ scope: ['schemas:read', 'schemas:admin'], audit });
const write = (audit: string) => ({ scope: 'schemas:admin', audit });
const lag = 'This instance\'s view: a change made through another instance is in force here within about a second.';

type NsParams = { ns: string };

export default async function schemaRoutes(app: FastifyInstance) {
  const admin = app.schemaAdmin;

  app.put(
    '/schemas/:ns',
    {
      config: write('schemas.put'),
      schema: {
        tags,
        security,
        summary: "Store a new version of a collection's CSFLE schema; every instance serves it within seconds, without a restart",
        description:
          'Checked as schema files are at boot (400 INVALID_SCHEMA naming the schema path; nothing is stored). Data keys the schema names need not exist yet: the collection is then notReady (/documents answers 503 SCHEMA_NOT_READY) until they do. With dryRun, reports what would change and stores nothing. The same schema as the live one stores no new version. Requests already running keep the version they started with.',
        params: schemaNamespaceParamsSchema,
        querystring: putSchemaQuerySchema,
        body: putSchemaBodySchema,
        response: {
          200: putOkResponseSchema,
          201: { ...putSchemaResponseSchema, description: 'Created: the namespace had no schema.' },
          ...errorResponses(...commonErrors, 403, 409, 429),
        },
      },
    },
    async (request, reply) => {
      const { ns } = request.params as NsParams;
      const body = request.body as PutInput;
      if ((request.query as { dryRun: boolean }).dryRun) return admin.dryRun(ns, body);
      const { created, summary } = await admin.put(ns, body, request.principal!.clientId);
      return reply.code(created ? 201 : 200).header('location', `/schemas/${encodeURIComponent(ns)}`).send(summary);
    },
  );

  app.get(
    '/schemas',
    {
      config: read('schemas.list'),
      schema: {
        tags,
        security,
        summary: 'Every collection schema: version, origin, and whether this instance serves it (ready) or waits for data keys (notReady)',
        description: lag,
        response: { 200: schemaListSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async () => ({ items: await admin.list() }),
  );

  app.get(
    '/schemas/:ns',
    {
      config: read('schemas.get'),
      schema: {
        tags,
        security,
        summary: "One collection's current schema, with its version and status",
        description: lag,
        params: schemaNamespaceParamsSchema,
        response: { 200: schemaDetailSchema, ...errorResponses(...commonErrors, 403, 404, 429) },
      },
    },
    async (request) => admin.get((request.params as NsParams).ns),
  );

  app.get(
    '/schemas/:ns/versions',
    {
      config: read('schemas.versions'),
      schema: {
        tags,
        security,
        summary: "A collection schema's history, newest first: every version stored and every deletion, with who, when and why",
        params: schemaNamespaceParamsSchema,
        querystring: versionsQuerySchema,
        response: { 200: versionsResponseSchema, ...errorResponses(...commonErrors, 403, 404, 429) },
      },
    },
    async (request) => admin.versions((request.params as NsParams).ns, request.query as { limit: number; before?: number }),
  );

  app.delete(
    '/schemas/:ns',
    {
      config: write('schemas.delete'),
      schema: {
        tags,
        security,
        summary: 'Stop serving a collection through /documents (404 COLLECTION_NOT_FOUND there, on every instance within seconds); its data stays as stored',
        description: 'The history keeps the deletion; PUT the schema again to serve the collection again.',
        params: schemaNamespaceParamsSchema,
        querystring: deleteSchemaQuerySchema,
        response: { 204: { type: 'null', description: 'Deleted.' }, ...errorResponses(...commonErrors, 403, 404, 409, 429) },
      },
    },
    async (request, reply) => {
      await admin.remove((request.params as NsParams).ns, request.principal!.clientId, (request.query as { ifVersion?: number }).ifVersion);
      return reply.code(204).send();
    },
  );
}

import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { aggregateBodySchema, aggregateResponseSchema, distinctBodySchema, distinctResponseSchema, readQuerySchema } from '../schemas/http/document-reads.js';
import { namespaceParamsSchema } from '../schemas/http/documents.js';
import type { UnreadablePolicy } from '../src/documents/unreadable-values.js';
import { toEjson, type EjsonFormat } from '../src/ejson.js';
import { presentRead } from './documents.js';

const tags = ['documents'];
const security = [{ bearerAuth: [] }];
const readErrors = errorResponses(...commonErrors, 403, 404, 422, 429, 502);

type NsParams = { ns: string };
type ReadQuery = { format: EjsonFormat; onUnreadable: UnreadablePolicy };

export default async function documentReadRoutes(app: FastifyInstance) {
  const { documents } = app;

  app.post(
    '/documents/:ns/aggregate',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.aggregate', readOnly: true },
      schema: {
        tags,
        security,
        summary: 'Run an aggregation pipeline, decrypted; equality $match on deterministic fields is rewritten to ciphertext',
        description:
          'As automatic encryption does it: a stage that would compute on an encrypted value (group, sort, project, unwind or bucket on it) is refused naming the stage and the path, and so are $out, $merge, $lookup, $graphLookup, $unionWith and server-side JavaScript. Matching on an encrypted field needs the decrypt right on its key; fields the caller may not decrypt are masked. With `explain: true`, nothing runs: the answer says what would be sent as ciphertext, or why the pipeline is refused.',
        params: namespaceParamsSchema,
        querystring: readQuerySchema,
        body: aggregateBodySchema,
        response: { 200: aggregateResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const { format, onUnreadable } = request.query as ReadQuery;
      const { pipeline, explain } = request.body as { pipeline: unknown[]; explain: boolean };
      if (explain) return documents.explainAggregate(ns, pipeline);
      const result = await documents.aggregate(ns, { pipeline, onUnreadable }, request.caller!);
      return { ...presentRead(result, format), truncated: result.truncated };
    },
  );

  app.post(
    '/documents/:ns/distinct',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.distinct', readOnly: true },
      schema: {
        tags,
        security,
        summary: 'The distinct values of a field among the documents a filter matches, decrypted',
        description:
          'On a plaintext field, its values; on a deterministic-encrypted field, its decrypted values (the decrypt right on its key is needed, checked before anything is read); a random-encrypted field has no distinct values to give (400 QUERY_ON_RANDOM_FIELD).',
        params: namespaceParamsSchema,
        querystring: readQuerySchema,
        body: distinctBodySchema,
        response: { 200: distinctResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const { format, onUnreadable } = request.query as ReadQuery;
      const { key, filter } = request.body as { key: string; filter?: unknown };
      const result = await documents.distinct(ns, { key, filter, onUnreadable }, request.caller!);
      return { ...result, values: result.values.map((value) => toEjson(value, format)) };
    },
  );
}

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { commonErrors, errorResponses, idempotencyHeaders } from '../schemas/http/common.js';
import {
  bulkBodySchema,
  bulkResponseSchema,
  findAndModifyResponseSchema,
  findOneAndDeleteBodySchema,
  findOneAndReplaceBodySchema,
  findOneAndUpdateBodySchema,
  replaceWhereBodySchema,
  writeCountsSchema,
} from '../schemas/http/document-writes.js';
import { formatQuerySchema, namespaceParamsSchema } from '../schemas/http/documents.js';
import { readQuerySchema } from '../schemas/http/document-reads.js';
import type { UnreadablePolicy } from '../src/documents/unreadable-values.js';
import { allows } from '../src/clients/scopes.js';
import type { BulkOperation, FindAndModifyRequest, KeptFindAndModify, ReplaceRequest } from '../src/documents/document-writes.js';
import { toEjson, type EjsonFormat } from '../src/ejson.js';
import { AppError } from '../src/errors.js';
import { itemError } from './item-results.js';

const tags = ['documents'];
const security = [{ bearerAuth: [] }];
const writeErrors = errorResponses(...commonErrors, 403, 404, 409, 422, 429, 502);

type NsParams = { ns: string };
type Format = { format: EjsonFormat };

/** findOneAnd* answer with a document: they write and read, so they need both scopes. */
function requireRead(request: FastifyRequest): void {
  const scope = `documents:${(request.params as NsParams).ns}:read`;
  if (!allows(request.principal!, scope)) throw new AppError('FORBIDDEN', `This needs the documents:{ns}:write and the ${scope} scope.`);
}

export default async function documentWriteRoutes(app: FastifyInstance) {
  const { documents } = app;

  app.post(
    '/documents/:ns/replace',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.replace', idempotent: true },
      schema: {
        headers: idempotencyHeaders,
        tags,
        security,
        summary: 'Replace the first document a filter matches (upsert: insert it when none does), validated and encrypted like an insert',
        params: namespaceParamsSchema,
        querystring: formatQuerySchema,
        body: replaceWhereBodySchema,
        response: { 200: writeCountsSchema, ...writeErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const result = await documents.replaceWhere(ns, request.body as ReplaceRequest, request.caller!);
      return { ...result, ...(result.upsertedId !== undefined ? { upsertedId: toEjson(result.upsertedId, (request.query as Format).format) } : {}) };
    },
  );

  const findAndModify = (path: string, audit: string, summary: string, body: object) =>
    app.post(
      `/documents/:ns/${path}`,
      {
        config: { scope: 'documents:{ns}:write', audit, idempotent: true, replayInHandler: true },
        schema: {
          headers: idempotencyHeaders,
          tags,
          security,
          summary,
          description:
            'Needs the documents:{ns}:write and documents:{ns}:read scopes. The document returned is decrypted and masked exactly as find returns it to the caller; a value that cannot be decrypted answers 422 UNREADABLE_VALUE (the write was applied) unless onUnreadable=report.',
          params: namespaceParamsSchema,
          querystring: readQuerySchema,
          body,
          response: { 200: findAndModifyResponseSchema, ...writeErrors },
        },
      },
      async (request, reply) => {
        requireRead(request);
        const { ns } = request.params as NsParams;
        const { format, onUnreadable } = request.query as Format & { onUnreadable: UnreadablePolicy };
        let result;
        if (request.idempotencyReplay !== undefined) {
          // A retry: the document the first attempt returned, read again under today's grants.
          result = await documents.rereadFindAndModify(request.idempotencyReplay, request.caller!, onUnreadable);
          reply.header('idempotent-replayed', 'true');
        } else {
          const keep = request.idempotencyId === undefined ? undefined : (kept: KeptFindAndModify) => (request.idempotencyRecord = kept);
          result = await documents.findOneAndModify(ns, { ...(request.body as FindAndModifyRequest), onUnreadable }, request.caller!, keep);
        }
        return {
          document: result.document === null ? null : toEjson(result.document, format),
          matched: result.matched,
          ...(result.upsertedId !== undefined ? { upsertedId: toEjson(result.upsertedId, format) } : {}),
          ...(result.masked.length > 0 ? { masked: result.masked } : {}),
          ...(result.unreadable.length > 0 ? { unreadable: result.unreadable } : {}),
        };
      },
    );

  findAndModify('find-one-and-update', 'documents.findOneAndUpdate', 'Update the first document a filter (and sort) selects and return it, before or after, decrypted', findOneAndUpdateBodySchema);
  findAndModify('find-one-and-replace', 'documents.findOneAndReplace', 'Replace the first document a filter (and sort) selects and return it, before or after, decrypted', findOneAndReplaceBodySchema);
  findAndModify('find-one-and-delete', 'documents.findOneAndDelete', 'Delete the first document a filter (and sort) selects and return it, decrypted', findOneAndDeleteBodySchema);

  app.post(
    '/documents/:ns/bulk',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.bulkWrite', idempotent: true },
      schema: {
        headers: idempotencyHeaders,
        tags,
        security,
        summary: 'Bulk write: insertOne, updateOne, updateMany, replaceOne, deleteOne, deleteMany, ordered or not, answered operation by operation',
        description:
          'Every operation is checked and encrypted before any is sent, so an operation refused by a check is never half applied. Ordered (the default): if any operation is refused, none is sent; the first the database refuses stops the rest (answered skipped). Unordered: the refused ones are answered failed and every other is sent. Consecutive inserts are sent together (one insertMany), other operations one by one: no transaction, so a database failure leaves the operations before it applied.',
        params: namespaceParamsSchema,
        querystring: formatQuerySchema,
        body: bulkBodySchema(app.config.maxBatchItems),
        response: { 200: bulkResponseSchema, ...writeErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const format = (request.query as Format).format;
      const { operations, ordered } = request.body as { operations: BulkOperation[]; ordered: boolean };
      const results = await documents.bulkWrite(ns, operations, ordered, request.caller!, request.idempotencySeed);
      const totals = { inserted: 0, matched: 0, modified: 0, deleted: 0, upserted: 0, failed: 0, skipped: 0 };
      const items = results.map((r) => {
        if (r.status === 'failed') {
          totals.failed++;
          return { index: r.index, op: r.op, status: r.status, error: itemError(r.error) };
        }
        if (r.status === 'skipped') {
          totals.skipped++;
          return r;
        }
        if (r.insertedId !== undefined) totals.inserted++;
        totals.matched += r.matched ?? 0;
        totals.modified += r.modified ?? 0;
        totals.deleted += r.deleted ?? 0;
        if (r.upsertedId !== undefined) totals.upserted++;
        return {
          ...r,
          ...(r.insertedId !== undefined ? { insertedId: toEjson(r.insertedId, format) } : {}),
          ...(r.upsertedId !== undefined ? { upsertedId: toEjson(r.upsertedId, format) } : {}),
        };
      });
      return { ok: totals.failed === 0 && totals.skipped === 0, ...totals, items };
    },
  );
}

import type { FastifyInstance } from 'fastify';
import secureJson from 'secure-json-parse';
import { commonErrors, errorResponses, idempotencyHeaders } from '../schemas/http/common.js';
import {
  countBodySchema,
  countResponseSchema,
  deleteResultSchema,
  deleteWhereBodySchema,
  documentParamsSchema,
  explainBodySchema,
  explainResponseSchema,
  findBodySchema,
  findQuerySchema,
  findResponseSchema,
  formatQuerySchema,
  getResponseSchema,
  insertBodySchema,
  insertResponseSchema,
  namespaceParamsSchema,
  replaceBodySchema,
  rotationBodySchema,
  updateByIdBodySchema,
  updateWhereBodySchema,
  writeResultSchema,
} from '../schemas/http/documents.js';
import { readQuerySchema } from '../schemas/http/document-reads.js';
import type { UnreadablePolicy } from '../src/documents/unreadable-values.js';
import { parseDocumentId, type FindRequest, type ReadResult } from '../src/documents/documents-service.js';
import { toEjson, type EjsonFormat } from '../src/ejson.js';
import { AppError } from '../src/errors.js';
import { itemError } from './item-results.js';
import { startDataKeyRotation, type KeyRef } from '../src/jobs/start-data-key-rotation.js';

const tags = ['documents'];
const security = [{ bearerAuth: [] }];
const readErrors = errorResponses(...commonErrors, 403, 404, 422, 429, 502);
const writeErrors = errorResponses(...commonErrors, 403, 404, 409, 422, 429, 502);

type NsParams = { ns: string };
type DocParams = { ns: string; id: string };
type Format = { format: EjsonFormat };

export function presentRead(result: Omit<ReadResult, 'next'> & { next?: string }, format: EjsonFormat) {
  const items = result.documents.map((doc) => toEjson(doc, format));
  const out: { items: unknown[]; unreadable?: unknown[]; masked?: unknown[]; next?: string } = { items };
  const list = (byIndex: Map<number, string[]>) =>
    [...byIndex].map(([index, paths]) => ({ index, _id: toEjson(result.documents[index]!._id, format), paths }));
  if (result.unreadable.size > 0) out.unreadable = list(result.unreadable);
  if (result.masked.size > 0) out.masked = list(result.masked);
  if (result.next !== undefined) out.next = result.next;
  return out;
}

function parseQueryJson(text: string | undefined, what: string): unknown {
  if (text === undefined) return undefined;
  try {
    // The same prototype-poisoning protection request bodies get.
    return secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    throw new AppError('INVALID_QUERY', `The ${what} parameter is not valid JSON.`);
  }
}

export default async function documentRoutes(app: FastifyInstance) {
  const { documents, keyVault } = app;

  app.post(
    '/documents/:ns',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.insert', idempotent: true },
      schema: {
        headers: idempotencyHeaders,
        tags,
        security,
        summary: 'Insert one document, or many (answered item by item); schema fields are encrypted before the write',
        params: namespaceParamsSchema,
        querystring: formatQuerySchema,
        body: insertBodySchema(app.config.maxBatchItems),
        response: { 200: insertResponseSchema, 201: insertResponseSchema, ...writeErrors },
      },
    },
    async (request, reply) => {
      const { ns } = request.params as NsParams;
      const { format } = request.query as Format;
      const body = request.body as { document: unknown } | { documents: unknown[] };
      if ('document' in body) {
        const { insertedId } = await documents.insertOne(ns, body.document, request.caller!, request.idempotencySeed);
        return reply.code(201).send({ insertedId: toEjson(insertedId, format) });
      }
      const results = await documents.insertMany(ns, body.documents, request.caller!, request.idempotencySeed);
      const items = results.map((r, index) => (r.ok ? { index, insertedId: toEjson(r.insertedId, format) } : { index, error: itemError(r.error) }));
      const inserted = results.filter((r) => r.ok).length;
      return { inserted, failed: results.length - inserted, items };
    },
  );

  app.get(
    '/documents/:ns',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.find' },
      schema: {
        tags,
        security,
        summary: 'Find documents (filter, projection and sort as URL-encoded JSON), decrypted',
        params: namespaceParamsSchema,
        querystring: findQuerySchema,
        response: { 200: findResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const q = request.query as Record<string, string | number | undefined> & Format;
      const find: FindRequest = {
        filter: parseQueryJson(q.filter as string | undefined, 'filter'),
        projection: parseQueryJson(q.projection as string | undefined, 'projection'),
        sort: parseQueryJson(q.sort as string | undefined, 'sort'),
        skip: q.skip as number | undefined,
        limit: q.limit as number | undefined,
        cursor: q.cursor as string | undefined,
        onUnreadable: q.onUnreadable as UnreadablePolicy,
      };
      return presentRead(await documents.find(ns, find, request.caller!), q.format);
    },
  );

  app.post(
    '/documents/:ns/find',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.find', readOnly: true },
      schema: {
        tags,
        security,
        summary: 'Find documents, decrypted; equality on deterministic fields is rewritten to ciphertext',
        params: namespaceParamsSchema,
        querystring: readQuerySchema,
        body: findBodySchema,
        response: { 200: findResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const { format, onUnreadable } = request.query as Format & { onUnreadable: UnreadablePolicy };
      return presentRead(await documents.find(ns, { ...(request.body as FindRequest), onUnreadable }, request.caller!), format);
    },
  );

  app.post(
    '/documents/:ns/count',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.count', readOnly: true },
      schema: {
        tags,
        security,
        summary: 'Count the documents a filter matches',
        params: namespaceParamsSchema,
        body: countBodySchema,
        response: { 200: countResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      return { count: await documents.count(ns, (request.body as { filter?: unknown }).filter, request.caller!) };
    },
  );

  app.post(
    '/documents/:ns/update',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.update', idempotent: true },
      schema: {
        headers: idempotencyHeaders,
        tags,
        security,
        summary: 'Update the first (or, with many, every) document a filter matches; with upsert, insert one when none does',
        params: namespaceParamsSchema,
        body: updateWhereBodySchema,
        response: { 200: writeResultSchema, ...writeErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const { filter, update, many, upsert, arrayFilters } = request.body as { filter: unknown; update: unknown; many: boolean; upsert: boolean; arrayFilters?: unknown[] };
      const result = await documents.updateWhere(ns, filter, update, many, request.caller!, { upsert, arrayFilters });
      return { ...result, ...(result.upsertedId !== undefined ? { upsertedId: toEjson(result.upsertedId) } : {}) };
    },
  );

  app.post(
    '/documents/:ns/delete',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.delete' },
      schema: {
        tags,
        security,
        summary: 'Delete the first (or, with many, every) document a filter matches',
        params: namespaceParamsSchema,
        body: deleteWhereBodySchema,
        response: { 200: deleteResultSchema, ...writeErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      const { filter, many } = request.body as { filter: unknown; many: boolean };
      return { deleted: await documents.deleteWhere(ns, filter, many, request.caller!) };
    },
  );

  app.post(
    '/documents/:ns/explain',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.explain', readOnly: true },
      schema: {
        tags,
        security,
        summary: 'Dry run: which paths of a document or query would be encrypted, with which key and algorithm, and why',
        params: namespaceParamsSchema,
        body: explainBodySchema,
        response: { 200: explainResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns } = request.params as NsParams;
      return documents.explain(ns, request.body as Parameters<typeof documents.explain>[1]);
    },
  );

  app.post(
    '/documents/:ns/rotations',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.rotation' },
      schema: {
        tags,
        security,
        summary: 'Re-encrypt the fields of a collection from one data key to another, as a resumable background job',
        description:
          'Answers 202 with the job (Location: /jobs/{id}). Meanwhile writes use the new key and equality queries on deterministic fields match both keys; a verification pass checks nothing is left under the old key before the job succeeds. If its instance stops, another takes the job over and resumes it, as its creator with the grants the creator has then; starting a failed rotation again resumes where it stopped.',
        params: namespaceParamsSchema,
        body: rotationBodySchema,
        response: { 202: { $ref: 'Job#' }, ...writeErrors },
      },
    },
    async (request, reply) => {
      const { ns } = request.params as NsParams;
      const body = request.body as { from: KeyRef; to: KeyRef; batchSize: number; maxDocsPerSecond: number };
      const job = await startDataKeyRotation({ keyVault, documents, jobs: app.jobs }, {
        namespace: ns,
        ...body,
        createdBy: request.principal!.clientId,
        authorize: (scope) => request.authorizeKeys(scope),
        onAuthorized: (keyIds) => (request.auditDetails = { keyIds }),
      });
      return reply.code(202).header('location', `/jobs/${job.id}`).send(job);
    },
  );

  app.get(
    '/documents/:ns/:id',
    {
      config: { scope: 'documents:{ns}:read', audit: 'documents.get' },
      schema: {
        tags,
        security,
        summary: 'Get one document by _id, decrypted',
        params: documentParamsSchema,
        querystring: readQuerySchema,
        response: { 200: getResponseSchema, ...readErrors },
      },
    },
    async (request) => {
      const { ns, id } = request.params as DocParams;
      const { onUnreadable } = request.query as { onUnreadable: UnreadablePolicy };
      const result = await documents.findById(ns, parseDocumentId(id), request.caller!, { onUnreadable });
      const unreadable = result.unreadable.get(0);
      const masked = result.masked.get(0);
      return {
        document: toEjson(result.documents[0], (request.query as Format).format),
        ...(unreadable ? { unreadable } : {}),
        ...(masked ? { masked } : {}),
      };
    },
  );

  app.patch(
    '/documents/:ns/:id',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.update' },
      schema: {
        tags,
        security,
        summary: 'Update one document by _id ($set re-encrypts encrypted fields)',
        params: documentParamsSchema,
        body: updateByIdBodySchema,
        response: { 200: writeResultSchema, ...writeErrors },
      },
    },
    async (request) => {
      const { ns, id } = request.params as DocParams;
      return documents.updateById(ns, parseDocumentId(id), (request.body as { update: unknown }).update, request.caller!);
    },
  );

  app.put(
    '/documents/:ns/:id',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.replace' },
      schema: {
        tags,
        security,
        summary: 'Replace one document by _id, validated and encrypted like an insert',
        params: documentParamsSchema,
        body: replaceBodySchema,
        response: { 200: writeResultSchema, ...writeErrors },
      },
    },
    async (request) => {
      const { ns, id } = request.params as DocParams;
      return documents.replaceById(ns, parseDocumentId(id), (request.body as { document: unknown }).document, request.caller!);
    },
  );

  app.delete(
    '/documents/:ns/:id',
    {
      config: { scope: 'documents:{ns}:write', audit: 'documents.delete' },
      schema: {
        tags,
        security,
        summary: 'Delete one document by _id',
        params: documentParamsSchema,
        response: { 204: { type: 'null', description: 'Deleted.' }, ...writeErrors },
      },
    },
    async (request, reply) => {
      const { ns, id } = request.params as DocParams;
      await documents.deleteById(ns, parseDocumentId(id));
      return reply.code(204).send();
    },
  );
}

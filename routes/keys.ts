import type { FastifyInstance } from 'fastify';
import {
  addAltNameBodySchema,
  altNameParamsSchema,
  createKeyBodySchema,
  keyAndAltNameParamsSchema,
  keyIdParamsSchema,
  keyListSchema,
  listKeysQuerySchema,
  rewrapBodySchema,
  rewrapResponseSchema,
} from '../schemas/http/keys.js';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { AppError } from '../src/errors.js';
import { parseMasterKey, type MasterKey } from '../src/kms/master-key.js';
import { keyIdToString, parseKeyId, toKeyView } from '../src/key-vault/key-document.js';

type MasterKeyInput = { provider: string; key?: string; region?: string };
const key = { $ref: 'Key#' };
const security = [{ bearerAuth: [] }];
const tags = ['keys'];

export default async function keyRoutes(app: FastifyInstance) {
  const { keyVault } = app;

  app.post(
    '/keys',
    {
      schema: {
        tags,
        security,
        summary: 'Create a data key wrapped by a master key',
        body: createKeyBodySchema,
        response: { 201: key, ...errorResponses(...commonErrors, 409, 422, 502) },
      },
    },
    async (request, reply) => {
      const body = request.body as { masterKey: MasterKeyInput; keyAltNames?: string[]; keyMaterial?: string };
      const doc = await keyVault.createDataKey({
        masterKey: parseMasterKey(body.masterKey),
        keyAltNames: body.keyAltNames,
        keyMaterial: body.keyMaterial === undefined ? undefined : Buffer.from(body.keyMaterial, 'base64'),
      });
      const view = toKeyView(doc);
      return reply.code(201).header('location', `/keys/${view.id}`).send(view);
    },
  );

  app.get(
    '/keys',
    {
      schema: {
        tags,
        security,
        summary: 'List data keys (metadata only), a page at a time',
        querystring: listKeysQuerySchema,
        response: { 200: keyListSchema, ...errorResponses(...commonErrors) },
      },
    },
    async (request) => {
      const query = request.query as { limit: number; after?: string; provider?: MasterKey['provider']; masterKey?: string };
      const docs = await keyVault.listKeys({
        limit: query.limit + 1,
        after: query.after === undefined ? undefined : parseKeyId(query.after),
        selector: { provider: query.provider, masterKeyArn: query.masterKey },
      });
      const page = docs.slice(0, query.limit);
      const items = page.map((doc) => toKeyView(doc));
      return docs.length > query.limit ? { items, next: keyIdToString(page.at(-1)!._id.buffer) } : { items };
    },
  );

  app.get(
    '/keys/:id',
    {
      schema: {
        tags,
        security,
        summary: 'Get one data key by id',
        params: keyIdParamsSchema,
        response: { 200: key, ...errorResponses(...commonErrors, 404) },
      },
    },
    async (request) => toKeyView(await keyVault.requireById(parseKeyId((request.params as { id: string }).id))),
  );

  app.get(
    '/keys/by-alt-name/:name',
    {
      schema: {
        tags,
        security,
        summary: 'Get one data key by key alt name',
        params: altNameParamsSchema,
        response: { 200: key, ...errorResponses(...commonErrors, 404) },
      },
    },
    async (request) => toKeyView(await keyVault.requireByAltName((request.params as { name: string }).name)),
  );

  app.post(
    '/keys/:id/alt-names',
    {
      schema: {
        tags,
        security,
        summary: 'Add a key alt name to a data key',
        params: keyIdParamsSchema,
        body: addAltNameBodySchema,
        response: { 200: key, ...errorResponses(...commonErrors, 404, 409) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const { keyAltName } = request.body as { keyAltName: string };
      return toKeyView(await keyVault.addAltName(parseKeyId(id), keyAltName));
    },
  );

  app.delete(
    '/keys/:id/alt-names/:name',
    {
      schema: {
        tags,
        security,
        summary: 'Remove a key alt name from a data key',
        params: keyAndAltNameParamsSchema,
        response: { 200: key, ...errorResponses(...commonErrors, 404) },
      },
    },
    async (request) => {
      const { id, name } = request.params as { id: string; name: string };
      return toKeyView(await keyVault.removeAltName(parseKeyId(id), name));
    },
  );

  app.delete(
    '/keys/:id',
    {
      schema: {
        tags,
        security,
        summary: 'Delete a data key: everything encrypted with it becomes unreadable, permanently',
        params: keyIdParamsSchema,
        response: { 204: { type: 'null', description: 'Deleted.' }, ...errorResponses(...commonErrors, 404) },
      },
    },
    async (request, reply) => {
      const deleted = await keyVault.deleteKey(parseKeyId((request.params as { id: string }).id));
      if (!deleted) throw new AppError('KEY_NOT_FOUND');
      return reply.code(204).send();
    },
  );

  app.post(
    '/keys/rewrap',
    {
      schema: {
        tags,
        security,
        summary: 'Re-encrypt data keys under a new master key (CMK rotation, local → AWS migration)',
        description: 'Data keys and every ciphertext stay the same; only their wrapping changes. A KMS failure writes nothing.',
        body: rewrapBodySchema,
        response: { 200: rewrapResponseSchema, ...errorResponses(...commonErrors, 422, 502) },
      },
    },
    async (request) => {
      const { filter, masterKey } = request.body as {
        filter: { keyIds?: string[]; keyAltNames?: string[]; provider?: MasterKey['provider']; masterKey?: string };
        masterKey: MasterKeyInput;
      };
      return keyVault.rewrap(
        {
          keyIds: filter.keyIds?.map(parseKeyId),
          keyAltNames: filter.keyAltNames,
          provider: filter.provider,
          masterKeyArn: filter.masterKey,
        },
        parseMasterKey(masterKey),
      );
    },
  );
}

import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import {
  clientIdParamsSchema,
  clientPageSchema,
  createClientBodySchema,
  createClientResponseSchema,
  issueTokenBodySchema,
  issueTokenResponseSchema,
  listClientsQuerySchema,
  tokenParamsSchema,
  updateClientBodySchema,
} from '../schemas/http/clients.js';
import type { ClientGuard } from '../src/clients/client-store.js';
import { assertGrantsCovered, checkGrants, type Principal } from '../src/clients/scopes.js';
import { AppError } from '../src/errors.js';

const tags = ['clients'];
const security = [{ bearerAuth: [] }];
const config = (audit: string) => ({ scope: 'clients:admin', audit });
const errors = errorResponses(...commonErrors, 403, 404, 409, 429);
const bounded =
  'Grants are bounded by the granter: the caller must hold every grant it hands out, with key limits no wider than its own (403 FORBIDDEN names the first grant that is not covered).';
const withinYours =
  "The client's current grants must be covered by the caller's (403 FORBIDDEN otherwise): acting on a client is acting with its power.";

/** Refuses a change to a client that holds more than the caller (see ClientGuard). */
const within = (principal: Principal): ClientGuard => (current) => assertGrantsCovered(principal, current.grants, 'target');

export default async function clientRoutes(app: FastifyInstance) {
  const { clients } = app;

  app.post(
    '/clients',
    {
      config: config('clients.create'),
      schema: {
        tags,
        security,
        summary: 'Create a client with grants; its first API token is returned once',
        description: bounded,
        body: createClientBodySchema,
        response: { 201: createClientResponseSchema, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; grants: unknown; jwtSubject?: string; certSubject?: string };
      const grants = checkGrants(body.grants);
      assertGrantsCovered(request.principal!, grants, 'requested');
      const created = await clients.createClient({ ...body, grants });
      return reply.code(201).header('location', `/clients/${created.client.id}`).send(created);
    },
  );

  app.get(
    '/clients',
    {
      config: config('clients.list'),
      schema: { tags, security, summary: 'List clients', querystring: listClientsQuerySchema, response: { 200: clientPageSchema, ...errors } },
    },
    async (request) => clients.listClients(request.query as { limit: number; after?: string }),
  );

  app.get(
    '/clients/:id',
    {
      config: config('clients.get'),
      schema: { tags, security, summary: 'Get one client', params: clientIdParamsSchema, response: { 200: { $ref: 'Client#' }, ...errors } },
    },
    async (request) => clients.getClient((request.params as { id: string }).id),
  );

  app.patch(
    '/clients/:id',
    {
      config: config('clients.update'),
      schema: {
        tags,
        security,
        summary: 'Change a client: name, grants, or disabled (in force at once in this instance, within 1 s in every other)',
        description: `${withinYours} ${bounded}`,
        params: clientIdParamsSchema,
        body: updateClientBodySchema,
        response: { 200: { $ref: 'Client#' }, ...errors },
      },
    },
    async (request) => {
      const body = request.body as { name?: string; grants?: unknown; disabled?: boolean };
      const patch = { ...body, ...(body.grants !== undefined ? { grants: checkGrants(body.grants) } : {}) } as {
        name?: string;
        grants?: ReturnType<typeof checkGrants>;
        disabled?: boolean;
      };
      if (patch.grants !== undefined) assertGrantsCovered(request.principal!, patch.grants, 'requested');
      return clients.updateClient((request.params as { id: string }).id, patch, within(request.principal!));
    },
  );

  app.delete(
    '/clients/:id',
    {
      config: config('clients.delete'),
      schema: {
        tags,
        security,
        summary: 'Delete a client and all its tokens',
        description: withinYours,
        params: clientIdParamsSchema,
        response: { 204: { type: 'null', description: 'Deleted.' }, ...errors },
      },
    },
    async (request, reply) => {
      await clients.deleteClient((request.params as { id: string }).id, within(request.principal!));
      return reply.code(204).send();
    },
  );

  app.post(
    '/clients/:id/tokens',
    {
      config: config('clients.issueToken'),
      schema: {
        tags,
        security,
        summary: 'Issue another API token for a client (for rotation); returned once',
        description: withinYours,
        params: clientIdParamsSchema,
        body: issueTokenBodySchema,
        response: { 201: issueTokenResponseSchema, ...errors },
      },
    },
    async (request, reply) => {
      const { expiresAt } = (request.body ?? {}) as { expiresAt?: string };
      if (expiresAt !== undefined && new Date(expiresAt).getTime() <= Date.now()) throw new AppError('VALIDATION_FAILED', 'expiresAt must be in the future.');
      const issued = await clients.issueToken((request.params as { id: string }).id, {
        ...(expiresAt ? { expiresAt: new Date(expiresAt) } : {}),
        guard: within(request.principal!),
      });
      return reply.code(201).send(issued);
    },
  );

  app.delete(
    '/clients/:id/tokens/:tokenId',
    {
      config: config('clients.revokeToken'),
      schema: {
        tags,
        security,
        summary: 'Revoke one API token',
        description: withinYours,
        params: tokenParamsSchema,
        response: { 204: { type: 'null', description: 'Revoked.' }, ...errors },
      },
    },
    async (request, reply) => {
      const { id, tokenId } = request.params as { id: string; tokenId: string };
      await clients.revokeToken(id, tokenId, within(request.principal!));
      return reply.code(204).send();
    },
  );
}

/** Request and response schemas of the /clients routes. */
import { uuidSchema } from './common.js';

const grantSchema = {
  $id: 'Grant',
  type: 'object',
  description:
    'A scope (encrypt, decrypt, keys:read, keys:write, keys:delete, keys:rewrap, clients:admin, audit:read, metrics:read, jobs:read, jobs:admin, documents:<db.coll|*>:read|write), optionally limited to data keys by id or by alt-name pattern (* matches any run of characters).',
  additionalProperties: false,
  required: ['scope'],
  properties: {
    scope: { type: 'string', minLength: 1, maxLength: 300 },
    keyAltNames: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 255 }, maxItems: 100 },
    keyIds: { type: 'array', items: uuidSchema, maxItems: 100 },
  },
} as const;

const clientSchema = {
  $id: 'Client',
  type: 'object',
  description: 'A client identity and its grants. Tokens are listed by id only; they are stored as hashes.',
  required: ['id', 'name', 'grants', 'disabled', 'createdAt', 'updatedAt', 'tokens'],
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    grants: { type: 'array', items: { $ref: 'Grant#' } },
    jwtSubject: { type: 'string' },
    certSubject: { type: 'string' },
    disabled: { type: 'boolean' },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    tokens: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'createdAt'],
        properties: {
          id: { type: 'string' },
          createdAt: { type: 'string', format: 'date-time' },
          expiresAt: { type: 'string', format: 'date-time' },
          lastUsedAt: { type: 'string', format: 'date-time' },
        },
      },
    },
  },
} as const;

export const clientSchemas = [grantSchema, clientSchema];

const subject = { type: 'string', minLength: 1, maxLength: 255 } as const;

export const createClientBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'grants'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    grants: { type: 'array', items: { $ref: 'Grant#' }, maxItems: 100 },
    jwtSubject: { ...subject, description: 'The `sub` of JWTs from the configured issuer that act as this client.' },
    certSubject: { ...subject, description: 'The CN of client certificates (mTLS) that act as this client.' },
  },
} as const;

export const createClientResponseSchema = {
  type: 'object',
  required: ['client', 'token'],
  properties: {
    client: { $ref: 'Client#' },
    token: { type: 'string', description: 'The API token: shown once, stored only as a hash.' },
  },
} as const;

export const updateClientBodySchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    grants: { type: 'array', items: { $ref: 'Grant#' }, maxItems: 100 },
    disabled: { type: 'boolean' },
  },
} as const;

export const clientIdParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^cl_[0-9a-f]{24}$' } },
} as const;

export const tokenParamsSchema = {
  type: 'object',
  required: ['id', 'tokenId'],
  properties: { id: clientIdParamsSchema.properties.id, tokenId: { type: 'string', pattern: '^[0-9a-f]{32}$' } },
} as const;

export const issueTokenBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { expiresAt: { type: 'string', format: 'date-time' } },
} as const;

export const issueTokenResponseSchema = {
  type: 'object',
  required: ['tokenId', 'token'],
  properties: { tokenId: { type: 'string' }, token: { type: 'string', description: 'Shown once.' } },
} as const;

export const listClientsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    after: { type: 'string', maxLength: 100 },
  },
} as const;

export const clientPageSchema = {
  type: 'object',
  required: ['items'],
  properties: { items: { type: 'array', items: { $ref: 'Client#' } }, next: { type: 'string' } },
} as const;

/** Request and response schemas of the /keys routes. */
import { base64Schema, keyAltNameSchema, uuidSchema } from './common.js';

const arnSchema = {
  type: 'string',
  pattern: '^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_+=.@-]+$',
  description: 'A KMS key or alias ARN.',
} as const;

export const masterKeyInputSchema = {
  $id: 'MasterKeyInput',
  type: 'object',
  description: 'The master key that wraps a data key. Endpoints come from server configuration only.',
  additionalProperties: false,
  required: ['provider'],
  properties: {
    provider: { type: 'string', enum: ['local', 'aws'] },
    key: arnSchema,
    region: { type: 'string', pattern: '^[a-z0-9-]+$' },
  },
} as const;

export const keySchema = {
  $id: 'Key',
  type: 'object',
  description: 'Data-key metadata. Key material is never returned.',
  required: ['id', 'keyAltNames', 'status', 'creationDate', 'updateDate', 'ageDays', 'wrapAgeDays', 'masterKey', 'state'],
  properties: {
    id: uuidSchema,
    keyAltNames: { type: 'array', items: { type: 'string' } },
    status: { type: 'integer' },
    creationDate: { type: 'string', format: 'date-time' },
    updateDate: { type: 'string', format: 'date-time', description: 'When the key was last wrapped (creation or rewrap), as drivers keep it.' },
    ageDays: { type: 'integer', description: 'Days since the data key was created.' },
    wrapAgeDays: { type: 'integer', description: 'Days since the data key was last wrapped under a master key.' },
    lastRewrapDate: { type: 'string', format: 'date-time', description: 'The latest rewrap; absent if never rewrapped.' },
    masterKey: {
      type: 'object',
      description: 'The stored master-key description, also of providers this server does not use (gcp, azure, kmip).',
      required: ['provider'],
      properties: {
        provider: { type: 'string' },
        key: { type: 'string' },
        region: { type: 'string' },
        endpoint: { type: 'string' },
      },
      additionalProperties: { type: 'string' },
    },
    state: {
      type: 'string',
      enum: ['active', 'deleted'],
      description: '`deleted`: in the trash, unusable (as if it did not exist) and its alt names still reserved; restorable until `purgeAfter`.',
    },
    deletedAt: { type: 'string', format: 'date-time', description: 'Deleted keys: when.' },
    deletedBy: { type: 'string', description: 'Deleted keys: the client id of whoever deleted it (`admin`: the operator).' },
    purgeAfter: { type: 'string', format: 'date-time', description: 'Deleted keys: when the sweep purges it for good (KEY_TRASH_RETENTION_MS after the delete).' },
  },
} as const;

export const keySchemas = [masterKeyInputSchema, keySchema];

export const keyIdParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: uuidSchema },
} as const;

export const altNameParamsSchema = {
  type: 'object',
  required: ['name'],
  properties: { name: keyAltNameSchema },
} as const;

export const keyAndAltNameParamsSchema = {
  type: 'object',
  required: ['id', 'name'],
  properties: { id: uuidSchema, name: keyAltNameSchema },
} as const;

export const createKeyBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['masterKey'],
  properties: {
    masterKey: { $ref: 'MasterKeyInput#' },
    keyAltNames: { type: 'array', items: keyAltNameSchema, maxItems: 100, uniqueItems: true },
    keyMaterial: { ...base64Schema, description: 'Import these 96 bytes (base64) instead of generating a key.' },
  },
} as const;

export const listKeysQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    after: { ...uuidSchema, description: 'The `next` value of the previous page.' },
    provider: { type: 'string', enum: ['local', 'aws'] },
    masterKey: arnSchema,
    state: {
      type: 'string',
      enum: ['active', 'deleted', 'all'],
      default: 'active',
      description: '`active`: keys in the vault; `deleted`: keys in the trash (restorable); `all`: both.',
    },
  },
} as const;

export const removeAltNameQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    force: {
      type: 'boolean',
      default: false,
      description: 'Remove the name even while a collection schema names the key by it (otherwise 409 KEY_IN_USE); that collection then answers 503 SCHEMA_NOT_READY until the name is back.',
    },
  },
} as const;

export const deleteKeyQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    force: {
      type: 'boolean',
      default: false,
      description: 'Delete even while a collection schema names the key (otherwise 409 KEY_IN_USE). The key stays restorable until it is purged.',
    },
  },
} as const;

export const keyListSchema = {
  type: 'object',
  required: ['items'],
  properties: {
    items: { type: 'array', items: { $ref: 'Key#' } },
    next: { ...uuidSchema, description: 'Pass as `after` for the next page; absent on the last page.' },
  },
} as const;

export const addAltNameBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['keyAltName'],
  properties: { keyAltName: keyAltNameSchema },
} as const;

/** Which data keys an operation applies to; all conditions must hold, an empty filter selects every key. */
export const keySelectionSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'Which data keys; all conditions must hold. An empty filter selects every key.',
  properties: {
    keyIds: { type: 'array', items: uuidSchema, minItems: 1, maxItems: 10000 },
    keyAltNames: { type: 'array', items: keyAltNameSchema, minItems: 1, maxItems: 10000 },
    provider: { type: 'string', enum: ['local', 'aws'] },
    masterKey: { ...arnSchema, description: 'Only keys now wrapped by this AWS master key.' },
  },
} as const;

/** The explicit consent to move keys from a KMS down to the local master key (operator only). */
export const allowDowngradeSchema = {
  type: 'boolean',
  default: false,
  description:
    'Allow rewrapping data keys now under a KMS (aws) with the local master key, a weaker protection. Counts only from the operator (ADMIN_TOKEN); without it such a selection is refused with 403 FORBIDDEN.',
} as const;

export const rewrapBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'masterKey'],
  properties: {
    filter: keySelectionSchema,
    masterKey: { $ref: 'MasterKeyInput#' },
    allowDowngrade: allowDowngradeSchema,
  },
} as const;

export const rewrapResponseSchema = {
  type: 'object',
  required: ['matched', 'rewrapped', 'keyIds'],
  properties: {
    matched: { type: 'integer' },
    rewrapped: { type: 'integer' },
    keyIds: { type: 'array', items: uuidSchema },
  },
} as const;

export const rotationReportQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    olderThanDays: {
      type: 'integer',
      minimum: 0,
      maximum: 36500,
      description: 'Rotation period: wrappings older than this are due. Default: KEY_ROTATION_PERIOD_DAYS (365 when that is 0).',
    },
  },
} as const;

export const rotationReportSchema = {
  type: 'object',
  required: ['generatedAt', 'olderThanDays', 'dataKeys', 'due', 'masterKeys'],
  properties: {
    generatedAt: { type: 'string', format: 'date-time' },
    olderThanDays: { type: 'integer' },
    dataKeys: { type: 'integer', description: 'Data keys visible to the caller.' },
    due: { type: 'integer', description: 'Data keys whose wrapping is older than the period.' },
    masterKeys: {
      type: 'array',
      items: {
        type: 'object',
        required: ['masterKey', 'dataKeys', 'due', 'oldestWrapDate', 'newestWrapDate'],
        properties: {
          masterKey: { type: 'object', additionalProperties: { type: 'string' } },
          dataKeys: { type: 'integer' },
          due: { type: 'integer' },
          oldestWrapDate: { type: 'string', format: 'date-time' },
          newestWrapDate: { type: 'string', format: 'date-time' },
          dueKeyIds: { type: 'array', items: uuidSchema },
        },
      },
    },
  },
} as const;

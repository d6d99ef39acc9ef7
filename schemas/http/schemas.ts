/** Request and response schemas of the /schemas routes (collection schemas changed at run time). */
import { MAX_SCHEMA_BYTES } from '../../src/documents/schema-admin.js';
import { uuidSchema } from './common.js';

export const schemaNamespaceParamsSchema = {
  type: 'object',
  required: ['ns'],
  properties: {
    ns: {
      type: 'string',
      maxLength: 255,
      pattern: '^[^.$/\\\\ "\\x00-\\x1f]+\\.[^$\\x00-\\x1f]+$',
      description:
        "The namespace, `<db>.<collection>`. Not the key vault, not one of the service's own collections (`__*`, the clients and audit collections), not `system.*`.",
    },
  },
} as const;

const missingKeysSchema = {
  type: 'array',
  description: 'Data keys the schema names that do not exist (by alt name or by id): until they do, /documents answers 503 SCHEMA_NOT_READY.',
  items: {
    type: 'object',
    properties: { keyAltName: { type: 'string' }, keyId: uuidSchema },
  },
} as const;

const statusSchema = {
  type: 'string',
  enum: ['ready', 'notReady'],
  description: "ready: this instance serves the collection. notReady: some data keys it names do not exist (see missingKeys); it becomes ready within seconds of their creation.",
} as const;

const sourceSchema = {
  type: 'string',
  enum: ['api', 'file'],
  description: 'file: imported at boot from SCHEMAS_DIR (re-imported only when the file changes); api: PUT /schemas/{ns}.',
} as const;

const summaryProperties = {
  ns: { type: 'string' },
  version: { type: 'integer', minimum: 1 },
  updatedAt: { type: 'string', format: 'date-time' },
  updatedBy: { type: 'string', description: 'The client id that wrote this version (`admin` for the operator), or `file:<name>`.' },
  source: sourceSchema,
  file: { type: 'string' },
  fileHash: { type: 'string', description: '`sha256:<hex>` of the file this version was imported from.' },
  comment: { type: 'string' },
  status: statusSchema,
  missingKeys: missingKeysSchema,
} as const;

const summaryRequired = ['ns', 'version', 'updatedAt', 'updatedBy', 'source', 'status', 'missingKeys'] as const;

export const schemaSummarySchema = {
  $id: 'SchemaSummary',
  type: 'object',
  description: "A collection schema's current version, as this instance serves it.",
  required: [...summaryRequired],
  properties: summaryProperties,
} as const;

const csfleSchema = {
  type: 'object',
  additionalProperties: true,
  description:
    "The collection's CSFLE JSON schema (MongoDB's automatic-encryption syntax: `encrypt`, `encryptMetadata`, `properties`, `patternProperties`; keyId as `[{\"$uuid\": \"…\"}]`, a `/pointer`, or the extension `keyAltName`).",
} as const;

export const schemaDetailSchema = {
  type: 'object',
  required: [...summaryRequired, 'schema'],
  properties: { ...summaryProperties, schema: csfleSchema },
} as const;

export const schemaListSchema = {
  type: 'object',
  required: ['items'],
  properties: { items: { type: 'array', items: { $ref: 'SchemaSummary#' } } },
} as const;

const fieldRuleSchema = {
  type: 'object',
  required: ['path', 'algorithm'],
  properties: {
    path: { type: 'string', description: 'The field path; a patternProperties rule shows as /regex/.' },
    algorithm: { type: 'string', enum: ['deterministic', 'random'] },
    bsonType: { type: 'array', items: { type: 'string' } },
    keyId: uuidSchema,
    keyAltName: { type: 'string' },
    keyAltNameFrom: { type: 'string', description: 'A JSON pointer into each document naming its key by alt name.' },
  },
} as const;

const changesSchema = {
  type: 'object',
  description: 'Encrypted paths the new version adds, removes, or encrypts differently (algorithm, type or key) than the live one.',
  required: ['added', 'removed', 'changed'],
  properties: {
    added: { type: 'array', items: fieldRuleSchema },
    removed: { type: 'array', items: fieldRuleSchema },
    changed: {
      type: 'array',
      items: { type: 'object', required: ['path', 'before', 'after'], properties: { path: { type: 'string' }, before: fieldRuleSchema, after: fieldRuleSchema } },
    },
  },
} as const;

export const putSchemaBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['schema'],
  properties: {
    schema: { ...csfleSchema, description: `${csfleSchema.description} At most ${MAX_SCHEMA_BYTES} bytes as JSON.` },
    comment: { type: 'string', maxLength: 1000, description: 'Why: kept in the history.' },
    ifVersion: {
      type: 'integer',
      minimum: 0,
      description: 'Store only if the live version is this one (0: only if the namespace has no schema); 409 SCHEMA_VERSION_CONFLICT otherwise.',
    },
  },
} as const;

export const putSchemaQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { dryRun: { type: 'boolean', default: false, description: 'Check the schema and report what would change; store nothing.' } },
} as const;

export const putSchemaResponseSchema = {
  type: 'object',
  required: [...summaryRequired, 'changes'],
  properties: { ...summaryProperties, changes: changesSchema },
} as const;

const dryRunResponseSchema = {
  type: 'object',
  required: ['dryRun', 'ns', 'currentVersion', 'changes', 'status', 'missingKeys'],
  properties: {
    dryRun: { type: 'boolean', enum: [true] },
    ns: { type: 'string' },
    currentVersion: { type: 'integer', minimum: 0, description: 'The live version (0: none).' },
    changes: changesSchema,
    status: statusSchema,
    missingKeys: missingKeysSchema,
  },
} as const;

/** PUT's 200: a replaced schema, or with dryRun what would change (one schema, so the serializer needs no guessing). */
export const putOkResponseSchema = {
  type: 'object',
  description: 'Replaced: the new current version and what changed. With dryRun: `dryRun: true`, the live version, and what would change.',
  required: ['ns', 'changes', 'status', 'missingKeys'],
  properties: { ...putSchemaResponseSchema.properties, ...dryRunResponseSchema.properties },
} as const;

export const deleteSchemaQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ifVersion: { type: 'integer', minimum: 1, description: 'Delete only if the live version is this one; 409 SCHEMA_VERSION_CONFLICT otherwise.' },
  },
} as const;

export const versionsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    before: { type: 'integer', minimum: 1, description: 'Versions older than this one (the `next` of the previous page).' },
  },
} as const;

export const versionsResponseSchema = {
  type: 'object',
  required: ['items'],
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['version', 'change', 'updatedAt', 'updatedBy', 'source'],
        properties: {
          version: { type: 'integer' },
          change: { type: 'string', enum: ['put', 'delete'] },
          updatedAt: { type: 'string', format: 'date-time' },
          updatedBy: { type: 'string' },
          source: sourceSchema,
          file: { type: 'string' },
          fileHash: { type: 'string' },
          comment: { type: 'string' },
          schema: { ...csfleSchema, description: 'The schema of this version (absent for a deletion).' },
        },
      },
    },
    next: { type: 'integer', description: 'Pass as `before` for the next (older) page.' },
  },
} as const;

export const schemaSchemas = [schemaSummarySchema];

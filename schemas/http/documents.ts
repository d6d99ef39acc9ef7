/** Request and response schemas of the /documents routes. Documents and filters are Extended JSON. */
import { bulkOperationSchema, updateSpecSchema } from './document-writes.js';

const ejsonObject = { type: 'object', additionalProperties: true, description: 'An Extended JSON v2 document (relaxed or canonical).' } as const;
const ejsonValue = { description: 'An Extended JSON v2 value.' } as const;

export const namespaceParamsSchema = {
  type: 'object',
  required: ['ns'],
  properties: {
    ns: { type: 'string', pattern: '^[^.$/\\\\ "]+\\.[^$]+$', description: 'The namespace, `<db>.<collection>`, of a configured collection schema.' },
  },
} as const;

export const documentParamsSchema = {
  type: 'object',
  required: ['ns', 'id'],
  properties: {
    ...namespaceParamsSchema.properties,
    id: {
      type: 'string',
      minLength: 1,
      description: 'The _id: 24 hex digits for an ObjectId, a JSON string or Extended JSON ({"$numberInt": "7"}) when it starts with `"` or `{`, else the string itself.',
    },
  },
} as const;

export const formatQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { format: { type: 'string', enum: ['relaxed', 'canonical'], default: 'relaxed' } },
} as const;

export function insertBodySchema(maxItems: number) {
  return {
    oneOf: [
      { type: 'object', title: 'InsertOne', additionalProperties: false, required: ['document'], properties: { document: ejsonObject } },
      {
        type: 'object',
        title: 'InsertMany',
        additionalProperties: false,
        required: ['documents'],
        properties: { documents: { type: 'array', minItems: 1, maxItems, items: ejsonObject } },
      },
    ],
  };
}

export const insertResponseSchema = {
  type: 'object',
  properties: {
    insertedId: ejsonValue,
    inserted: { type: 'integer' },
    failed: { type: 'integer' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['index'],
        properties: { index: { type: 'integer' }, insertedId: ejsonValue, error: { $ref: 'ItemError#' } },
      },
    },
  },
} as const;

const unreadableSchema = {
  type: 'array',
  description: 'With onUnreadable=report only: fields that could not be decrypted (malformed ciphertext, a deleted or unusable data key); their value is null.',
  items: {
    type: 'object',
    required: ['index', 'paths'],
    properties: { index: { type: 'integer' }, _id: ejsonValue, paths: { type: 'array', items: { type: 'string' } } },
  },
} as const;

export const findBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    filter: ejsonObject,
    projection: { type: 'object', additionalProperties: { enum: [0, 1, true, false] } },
    sort: { type: 'object', additionalProperties: { enum: [1, -1] } },
    skip: { type: 'integer', minimum: 0, maximum: 1000000 },
    limit: { type: 'integer', minimum: 1, maximum: 10000 },
    cursor: { type: 'string', maxLength: 100, description: 'The `next` of the previous page; send the same query with it.' },
  },
} as const;

export const findQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    filter: { type: 'string', description: 'URL-encoded Extended JSON filter.' },
    projection: { type: 'string', description: 'URL-encoded JSON projection.' },
    sort: { type: 'string', description: 'URL-encoded JSON sort.' },
    skip: { type: 'integer', minimum: 0, maximum: 1000000 },
    limit: { type: 'integer', minimum: 1, maximum: 10000 },
    cursor: { type: 'string', maxLength: 100 },
    format: formatQuerySchema.properties.format,
    onUnreadable: {
      type: 'string',
      enum: ['fail', 'report'],
      default: 'fail',
      description: '`fail`: a value that cannot be decrypted fails the read (422 UNREADABLE_VALUE); `report`: it is null and listed under `unreadable`.',
    },
  },
} as const;

export const findResponseSchema = {
  type: 'object',
  required: ['items'],
  properties: {
    items: { type: 'array', items: ejsonObject },
    unreadable: unreadableSchema,
    masked: { ...unreadableSchema, description: 'Fields under data keys the caller may not decrypt (no decrypt grant for the key); their value is null.' },
    next: { type: 'string', description: 'Absent on the last page.' },
  },
} as const;

export const getResponseSchema = {
  type: 'object',
  required: ['document'],
  properties: {
    document: ejsonObject,
    unreadable: { type: 'array', items: { type: 'string' }, description: 'With onUnreadable=report only: paths that could not be decrypted (set to null).' },
    masked: { type: 'array', items: { type: 'string' }, description: 'Paths the caller may not decrypt (set to null).' },
  },
} as const;

export const countBodySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { filter: ejsonObject },
} as const;

export const countResponseSchema = { type: 'object', required: ['count'], properties: { count: { type: 'integer' } } } as const;

const updateDocumentSchema = updateSpecSchema;

export const updateByIdBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['update'],
  properties: { update: updateDocumentSchema },
} as const;

export const updateWhereBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'update'],
  properties: {
    filter: ejsonObject,
    update: updateDocumentSchema,
    many: { type: 'boolean', default: false },
    upsert: { type: 'boolean', default: false, description: 'Insert a document when none matches: the filter\'s equalities, $set and $setOnInsert, encrypted and validated like an insert.' },
    arrayFilters: { type: 'array', maxItems: 50, items: ejsonObject },
  },
  examples: [{ filter: { ssn: '123-45-6789' }, update: { $set: { salary: 5000 }, $setOnInsert: { name: 'Ada', tenantKey: 'tenant-a' } }, upsert: true }],
} as const;

export const writeResultSchema = {
  type: 'object',
  required: ['matched', 'modified'],
  properties: { matched: { type: 'integer' }, modified: { type: 'integer' }, upsertedId: { ...ejsonValue, description: 'The _id of the document an upsert inserted.' } },
} as const;

export const replaceBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['document'],
  properties: { document: ejsonObject },
} as const;

export const deleteWhereBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter'],
  properties: { filter: ejsonObject, many: { type: 'boolean', default: false } },
} as const;

export const deleteResultSchema = { type: 'object', required: ['deleted'], properties: { deleted: { type: 'integer' } } } as const;

export const explainBodySchema = {
  oneOf: [
    { type: 'object', title: 'ExplainDocument', additionalProperties: false, required: ['document'], properties: { document: ejsonObject } },
    { type: 'object', title: 'ExplainFilter', additionalProperties: false, required: ['filter'], properties: { filter: ejsonObject } },
    {
      type: 'object',
      title: 'ExplainUpdate',
      description: 'Dry run of an update (also of findOneAndUpdate and bulk updateOne/updateMany): which values would be encrypted, which filter values rewritten, or why it would be refused.',
      additionalProperties: false,
      required: ['update'],
      properties: { filter: ejsonObject, update: updateSpecSchema, arrayFilters: { type: 'array', maxItems: 50, items: ejsonObject }, upsert: { type: 'boolean' } },
    },
    {
      type: 'object',
      title: 'ExplainReplacement',
      description: 'Dry run of a replacement (replace, findOneAndReplace, bulk replaceOne).',
      additionalProperties: false,
      required: ['replacement'],
      properties: { filter: ejsonObject, replacement: ejsonObject },
    },
    {
      type: 'object',
      title: 'ExplainBulk',
      description: 'Dry run of a bulk write, operation by operation.',
      additionalProperties: false,
      required: ['operations'],
      properties: { operations: { type: 'array', minItems: 1, maxItems: 1000, items: bulkOperationSchema } },
    },
  ],
  examples: [{ filter: { ssn: '123-45-6789' }, update: { $set: { salary: 5000 }, $inc: { level: 1 } } }],
} as const;

export const explainResponseSchema = {
  type: 'object',
  required: ['valid', 'fields'],
  properties: {
    valid: { type: 'boolean' },
    validation: { type: 'string', description: 'Why the document would be refused.' },
    refused: {
      type: 'object',
      required: ['code'],
      description: 'For an update or replacement: the error the write would be refused with.',
      properties: { code: { type: 'string' }, detail: { type: 'string' } },
    },
    operations: {
      type: 'array',
      description: 'For a bulk write: each operation\'s dry run.',
      items: {
        type: 'object',
        required: ['index', 'op', 'valid', 'fields'],
        properties: {
          index: { type: 'integer' },
          op: { type: 'string' },
          valid: { type: 'boolean' },
          validation: { type: 'string' },
          refused: { type: 'object', properties: { code: { type: 'string' }, detail: { type: 'string' } } },
          fields: { type: 'array', items: { type: 'object', additionalProperties: true } },
        },
      },
    },
    fields: {
      type: 'array',
      items: {
        type: 'object',
        required: ['path', 'algorithm', 'rule', 'reason'],
        properties: {
          path: { type: 'string' },
          algorithm: { type: 'string', enum: ['deterministic', 'random'] },
          bsonType: { type: 'array', items: { type: 'string' } },
          keyId: { type: 'string' },
          keyAltNameFrom: { type: 'string', description: 'The JSON pointer whose value names the key.' },
          rule: { type: 'string', description: 'The schema path of the rule.' },
          reason: { type: 'string' },
        },
      },
    },
  },
} as const;

const keyRefSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'A data key by id or by alt name.',
  oneOf: [{ required: ['keyId'] }, { required: ['keyAltName'] }],
  properties: {
    keyId: { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' },
    keyAltName: { type: 'string', minLength: 1, maxLength: 255 },
  },
} as const;

export const rotationBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: {
    from: keyRefSchema,
    to: keyRefSchema,
    batchSize: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    maxDocsPerSecond: { type: 'integer', minimum: 0, maximum: 100000, default: 0, description: 'Throttle; 0 means as fast as it goes.' },
  },
} as const;

/** Request and response schemas of the /documents write operations: updates, upserts, replace by filter, findOneAnd*, bulk writes. */
const ejsonObject = { type: 'object', additionalProperties: true, description: 'An Extended JSON v2 document (relaxed or canonical).' } as const;
const ejsonValue = { description: 'An Extended JSON v2 value.' } as const;

/** An update: operators (checked against the collection schema), or a pipeline of stages. */
export const updateSpecSchema = {
  description:
    'Update operators: $set and $setOnInsert (values written into encrypted fields are encrypted), $unset, $rename (between unencrypted fields, or encrypted fields with the same key, algorithm and type), and on unencrypted fields only $inc, $mul, $min, $max, $currentDate, $push ($each, $position, $slice, $sort), $addToSet ($each), $pull, $pullAll, $pop. Positional paths ($, $[], $[id]) reach unencrypted arrays only. Or a pipeline of $set/$addFields/$unset/excluding $project stages that neither reads nor writes encrypted fields.',
  oneOf: [
    {
      type: 'object',
      title: 'UpdateOperators',
      additionalProperties: false,
      minProperties: 1,
      properties: Object.fromEntries(
        ['$set', '$setOnInsert', '$unset', '$inc', '$mul', '$min', '$max', '$currentDate', '$push', '$addToSet', '$pull', '$pullAll', '$pop', '$rename'].map((op) => [op, { type: 'object' }]),
      ),
    },
    { type: 'array', title: 'UpdatePipeline', minItems: 1, maxItems: 50, items: { type: 'object', minProperties: 1, maxProperties: 1 } },
  ],
} as const;

const arrayFiltersSchema = { type: 'array', maxItems: 50, items: ejsonObject, description: 'Filters for the $[identifier] positional paths (on unencrypted arrays).' } as const;
const sortSchema = { type: 'object', additionalProperties: { enum: [1, -1] } } as const;
const projectionSchema = { type: 'object', additionalProperties: { enum: [0, 1, true, false] } } as const;

export const writeCountsSchema = {
  type: 'object',
  required: ['matched', 'modified'],
  properties: { matched: { type: 'integer' }, modified: { type: 'integer' }, upsertedId: { ...ejsonValue, description: 'The _id of the document an upsert inserted.' } },
} as const;

export const replaceWhereBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'replacement'],
  properties: { filter: ejsonObject, replacement: ejsonObject, upsert: { type: 'boolean', default: false } },
  examples: [{ filter: { ssn: '123-45-6789' }, replacement: { name: 'Ada', tenantKey: 'tenant-a', ssn: '123-45-6789', level: 3 }, upsert: true }],
} as const;

const findAndModifyCommon = {
  filter: ejsonObject,
  sort: sortSchema,
  projection: projectionSchema,
} as const;

const returnDocumentSchema = { type: 'string', enum: ['before', 'after'], default: 'before', description: 'Return the document as it was before the write, or after it.' } as const;

export const findOneAndUpdateBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'update'],
  properties: {
    ...findAndModifyCommon,
    update: updateSpecSchema,
    upsert: { type: 'boolean', default: false },
    arrayFilters: arrayFiltersSchema,
    returnDocument: returnDocumentSchema,
  },
  examples: [{ filter: { ssn: '123-45-6789' }, update: { $set: { salary: 5000 }, $inc: { level: 1 } }, returnDocument: 'after' }],
} as const;

export const findOneAndReplaceBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'replacement'],
  properties: { ...findAndModifyCommon, replacement: ejsonObject, upsert: { type: 'boolean', default: false }, returnDocument: returnDocumentSchema },
  examples: [{ filter: { ssn: '123-45-6789' }, replacement: { name: 'Ada', tenantKey: 'tenant-a', ssn: '123-45-6789' }, returnDocument: 'before' }],
} as const;

export const findOneAndDeleteBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter'],
  properties: findAndModifyCommon,
  examples: [{ filter: { ssn: '123-45-6789' } }],
} as const;

export const findAndModifyResponseSchema = {
  type: 'object',
  required: ['document', 'matched'],
  properties: {
    document: { anyOf: [ejsonObject, { type: 'null' }], description: 'The document before or after the write, decrypted as find returns it; null when none matched (or, before an upsert, none existed).' },
    matched: { type: 'integer' },
    upsertedId: ejsonValue,
    masked: { type: 'array', items: { type: 'string' }, description: 'Paths the caller may not decrypt (set to null).' },
    unreadable: { type: 'array', items: { type: 'string' }, description: 'Paths that could not be decrypted (set to null).' },
  },
} as const;

const filterOnly = { type: 'object', additionalProperties: false, required: ['filter'], properties: { filter: ejsonObject } } as const;
const updateArgs = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'update'],
  properties: { filter: ejsonObject, update: updateSpecSchema, upsert: { type: 'boolean' }, arrayFilters: arrayFiltersSchema },
} as const;

const one = (name: string, args: unknown) => ({ type: 'object', title: name, additionalProperties: false, required: [name], properties: { [name]: args } });

/** One operation of a bulk write, in the drivers' shape. */
export const bulkOperationSchema = {
  oneOf: [
    one('insertOne', { type: 'object', additionalProperties: false, required: ['document'], properties: { document: ejsonObject } }),
    one('updateOne', updateArgs),
    one('updateMany', updateArgs),
    one('replaceOne', { type: 'object', additionalProperties: false, required: ['filter', 'replacement'], properties: { filter: ejsonObject, replacement: ejsonObject, upsert: { type: 'boolean' } } }),
    one('deleteOne', filterOnly),
    one('deleteMany', filterOnly),
  ],
};

export function bulkBodySchema(maxItems: number) {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['operations'],
    properties: {
      ordered: { type: 'boolean', default: true, description: 'Ordered: if any operation is refused nothing is sent, and the first that the database refuses stops the rest. Unordered: every operation that passes the checks is sent.' },
      operations: {
        type: 'array',
        minItems: 1,
        maxItems,
        items: bulkOperationSchema,
      },
    },
    examples: [
      {
        ordered: true,
        operations: [
          { insertOne: { document: { name: 'Ada', tenantKey: 'tenant-a', ssn: '123-45-6789' } } },
          { updateOne: { filter: { ssn: '123-45-6789' }, update: { $set: { salary: 5000 } } } },
          { deleteMany: { filter: { tenantKey: 'tenant-z' } } },
        ],
      },
    ],
  };
}

export const bulkResponseSchema = {
  type: 'object',
  required: ['ok', 'inserted', 'matched', 'modified', 'deleted', 'upserted', 'failed', 'skipped', 'items'],
  properties: {
    ok: { type: 'boolean', description: 'Every operation succeeded.' },
    inserted: { type: 'integer' },
    matched: { type: 'integer' },
    modified: { type: 'integer' },
    deleted: { type: 'integer' },
    upserted: { type: 'integer' },
    failed: { type: 'integer' },
    skipped: { type: 'integer', description: 'Operations not sent: after a failure in an ordered bulk write.' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['index', 'op', 'status'],
        properties: {
          index: { type: 'integer' },
          op: { type: 'string' },
          status: { type: 'string', enum: ['ok', 'failed', 'skipped'] },
          insertedId: ejsonValue,
          matched: { type: 'integer' },
          modified: { type: 'integer' },
          deleted: { type: 'integer' },
          upsertedId: ejsonValue,
          error: { $ref: 'ItemError#' },
        },
      },
    },
  },
} as const;

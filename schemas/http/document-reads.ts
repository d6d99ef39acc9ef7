/** Request and response schemas of the read routes beyond find: aggregate and distinct. */
import { findResponseSchema } from './documents.js';

const ejsonObject = { type: 'object', additionalProperties: true, description: 'An Extended JSON v2 document (relaxed or canonical).' } as const;

export const onUnreadableSchema = {
  type: 'string',
  enum: ['fail', 'report'],
  default: 'fail',
  description:
    'A stored value that cannot be decrypted (malformed or tampered ciphertext, a deleted data key): `fail` answers 422 UNREADABLE_VALUE naming the document and field, and nothing of the read; `report` answers such values as null and lists them under `unreadable` (for exports that must go on).',
} as const;

/** The query string of a read: the output format, and what an unreadable value does. */
export const readQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    format: { type: 'string', enum: ['relaxed', 'canonical'], default: 'relaxed' },
    onUnreadable: onUnreadableSchema,
  },
} as const;

const pipelineExample = [
  { $match: { ssn: '123-45-6789', level: { $gte: 2 } } },
  { $group: { _id: '$level', people: { $sum: 1 } } },
  { $sort: { people: -1 } },
];

export const aggregateBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['pipeline'],
  properties: {
    pipeline: {
      type: 'array',
      maxItems: 100,
      items: { type: 'object', minProperties: 1, maxProperties: 1, additionalProperties: true, description: 'One stage, in Extended JSON.' },
      description:
        'Stages: $match (equality on deterministic fields is sent as ciphertext), $sort, $skip, $limit, $sample, $project, $addFields/$set, $unset, $unwind, $redact, $group, $count, $sortByCount, $bucket, $bucketAuto, $replaceRoot/$replaceWith, $geoNear (first), $facet (last). Expressions may not read encrypted fields; $out, $merge, $lookup, $graphLookup, $unionWith and server-side JavaScript are refused.',
    },
    explain: { type: 'boolean', default: false, description: 'Dry run: answer what would be sent as ciphertext, or why the pipeline is refused; nothing runs.' },
  },
  examples: [{ pipeline: pipelineExample }],
} as const;

const stagePlanSchema = {
  type: 'object',
  required: ['index', 'stage', 'encrypted', 'encryptedAfter'],
  properties: {
    index: { type: 'integer' },
    stage: { type: 'string' },
    encrypted: { type: 'array', items: { type: 'string' }, description: 'Encrypted paths whose equality values this stage sends as ciphertext.' },
    encryptedAfter: { type: 'boolean', description: 'Whether documents after this stage can still hold encrypted values.' },
  },
} as const;

export const aggregateResponseSchema = {
  type: 'object',
  properties: {
    ...findResponseSchema.properties,
    truncated: { type: 'boolean', description: 'The pipeline produced more documents than the answer holds (MAX_FIND_LIMIT); add $limit/$skip stages to page.' },
    valid: { type: 'boolean', description: 'Explain only: whether the pipeline would run.' },
    stages: { type: 'array', items: stagePlanSchema, description: 'Explain only.' },
    refused: {
      type: 'object',
      properties: { code: { type: 'string' }, detail: { type: 'string' } },
      description: 'Explain only: the error the pipeline would be answered with.',
    },
  },
  examples: [{ items: [{ _id: 3, people: 1 }], truncated: false }],
} as const;

export const distinctBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['key'],
  properties: {
    key: { type: 'string', minLength: 1, maxLength: 1024, description: 'A field path: plaintext, or deterministic-encrypted (the values are decrypted; needs decrypt on its key).' },
    filter: ejsonObject,
  },
  examples: [{ key: 'ssn', filter: { level: { $gte: 2 } } }],
} as const;

export const distinctResponseSchema = {
  type: 'object',
  required: ['values'],
  properties: {
    values: { type: 'array', items: {}, description: 'Extended JSON values, each once.' },
    unreadable: { type: 'integer', description: 'With onUnreadable=report: how many values could not be decrypted (answered as one null).' },
  },
  examples: [{ values: ['123-45-6789', '987-65-4321'] }],
} as const;

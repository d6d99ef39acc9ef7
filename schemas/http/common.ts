/** Schemas shared by several routes, registered once with `addSchema` and referenced by `$id`. */
import { errorCodes } from '../../src/errors.js';

export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'An RFC 9457 problem document with a stable `code`.',
  required: ['type', 'title', 'status', 'code'],
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    code: { type: 'string', enum: Object.keys(errorCodes) },
    detail: { type: 'string' },
    instance: { type: 'string' },
  },
} as const;

export const itemErrorSchema = {
  $id: 'ItemError',
  type: 'object',
  description: 'Why one item of a batch failed; the other items are unaffected.',
  required: ['code', 'title', 'status'],
  properties: {
    code: { type: 'string', enum: Object.keys(errorCodes) },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
  },
} as const;

export const uuidSchema = {
  type: 'string',
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'A data key id (UUID).',
} as const;

export const keyAltNameSchema = { type: 'string', minLength: 1, maxLength: 255 } as const;

export const base64Schema = {
  type: 'string',
  minLength: 1,
  pattern: '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$',
} as const;

export const referenceSchema = {
  type: 'string',
  maxLength: 256,
  description: "The caller's own label for a batch item, echoed in its result.",
} as const;

export const sharedSchemas = [problemSchema, itemErrorSchema];

/** Response entries for the given error statuses, all problem documents. */
export function errorResponses(...statuses: number[]): Record<number, unknown> {
  const responses: Record<number, unknown> = {};
  for (const status of statuses) {
    const codes = Object.entries(errorCodes)
      .filter(([, e]) => e.status === status)
      .map(([code]) => code);
    responses[status] = {
      description: `Error: ${codes.join(', ')}`,
      content: { 'application/problem+json': { schema: { $ref: 'Problem#' } } },
    };
  }
  return responses;
}

/** Errors any authenticated route can give. */
export const commonErrors = [400, 401, 413, 415, 500, 503];

/** The Idempotency-Key header, as every idempotent route declares it. */
export const idempotencyHeaders = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      pattern: '^[\\x21-\\x7e]+$',
      description: 'Retry-safe: a repeated request with the same key and body gets the first answer again.',
    },
  },
} as const;

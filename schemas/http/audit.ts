/** Request and response schemas of the /audit routes. */

export const auditEventSchema = {
  $id: 'AuditEvent',
  type: 'object',
  description: 'One audit event: who did what, to which keys and fields, and how it ended. Never values.',
  required: ['id', 'chainId', 'seq', 'time', 'clientId', 'action', 'outcome', 'requestId'],
  properties: {
    id: { type: 'string' },
    chainId: { type: 'string' },
    seq: { type: 'integer' },
    time: { type: 'string', format: 'date-time' },
    clientId: { type: 'string' },
    action: { type: 'string' },
    outcome: { type: 'string', enum: ['started', 'succeeded', 'failed', 'denied'] },
    requestId: { type: 'string' },
    status: { type: 'integer' },
    code: { type: 'string' },
    collection: { type: 'string' },
    paths: { type: 'array', items: { type: 'string' } },
    keyIds: { type: 'array', items: { type: 'string' } },
  },
} as const;

export const listAuditQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    after: { type: 'string', maxLength: 200, description: 'The `next` of the previous page.' },
    action: { type: 'string', maxLength: 100 },
    clientId: { type: 'string', maxLength: 100 },
  },
} as const;

export const auditPageSchema = {
  type: 'object',
  required: ['items'],
  properties: {
    items: { type: 'array', items: { $ref: 'AuditEvent#' } },
    next: { type: 'string' },
  },
} as const;

export const verifyQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    full: { type: 'boolean', default: false, description: 'Check every chain from its first record, not from its last checkpoint.' },
  },
} as const;

export const verifyResponseSchema = {
  type: 'object',
  required: ['valid', 'checked', 'chains', 'fromCheckpoint', 'problems', 'truncated'],
  properties: {
    valid: { type: 'boolean' },
    truncated: { type: 'boolean', description: 'More problems exist than are listed (at most 1000).' },
    checked: { type: 'integer', description: 'Events whose HMAC and link were checked.' },
    chains: { type: 'integer', description: 'Chains checked: one per instance (or process, in database mode).' },
    fromCheckpoint: { type: 'integer', description: 'Chains checked from their last signed checkpoint rather than from their first record.' },
    problems: {
      type: 'array',
      items: {
        type: 'object',
        required: ['chainId', 'seq', 'problem'],
        properties: {
          chainId: { type: 'string' },
          seq: { type: 'integer' },
          problem: {
            type: 'string',
            enum: ['tampered', 'missing', 'broken-link', 'truncated', 'head-tampered', 'checkpoint-mismatch'],
            description: 'truncated: the chain ends before the head its instance published (its newest events were removed).',
          },
        },
      },
    },
  },
} as const;

/** Schemas of background jobs (GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel) and of the master-key migration that starts one. */
import { uuidSchema } from './common.js';
import { allowDowngradeSchema, keySelectionSchema } from './keys.js';

export const jobSchema = {
  $id: 'Job',
  type: 'object',
  description: 'A background operation: its state, progress and outcome.',
  required: ['id', 'type', 'state', 'createdBy', 'params', 'progress', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'string' },
    type: { type: 'string' },
    state: {
      type: 'string',
      enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'],
      description:
        'queued: recorded, no instance has taken it yet. running: an instance holds its lease (when that instance dies, another takes the job over once the lease lapses, JOB_LEASE_MS). interrupted: no instance has run it for a minute; the first instance back takes it over. succeeded, failed, cancelled: ended, for good.',
    },
    createdBy: { type: 'string' },
    params: { type: 'object', additionalProperties: true },
    runs: { type: 'integer', minimum: 1, description: 'How many times an instance started running it: more than 1 when another instance took it over.' },
    progress: {
      type: 'object',
      required: ['total', 'done', 'failed', 'phase'],
      properties: { total: { type: 'integer' }, done: { type: 'integer' }, failed: { type: 'integer' }, phase: { type: 'string' } },
    },
    result: { type: 'object', additionalProperties: true },
    error: { type: 'object', required: ['code'], properties: { code: { type: 'string' }, detail: { type: 'string' } } },
    cancel: {
      type: 'object',
      description: 'Present once someone asked the job to stop (POST /jobs/{id}/cancel): pending while the job is still queued or running, then on the cancelled job.',
      required: ['requestedBy', 'requestedAt'],
      properties: { requestedBy: { type: 'string' }, requestedAt: { type: 'string', format: 'date-time' } },
    },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const jobParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^job_[0-9a-f]{24}$' } },
} as const;

export const listJobsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'] },
    type: { type: 'string', pattern: '^[a-z][a-zA-Z]*(\\.[a-z][a-zA-Z]*)*$', maxLength: 64, description: 'A job type, e.g. keys.migration or documents.rotation.' },
    limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
    after: { type: 'string', pattern: '^[0-9]{1,15}-job_[0-9a-f]{24}$', description: 'The `next` value of the previous page.' },
  },
} as const;

export const jobPageSchema = {
  type: 'object',
  required: ['items'],
  properties: {
    items: { type: 'array', items: { $ref: 'Job#' } },
    next: { type: 'string', description: 'Pass as `after` for the next page; absent on the last page.' },
  },
} as const;

export const migrationBodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['filter', 'masterKey'],
  properties: {
    filter: keySelectionSchema,
    masterKey: { $ref: 'MasterKeyInput#' },
    dryRun: { type: 'boolean', default: false, description: 'Only list the data keys it would migrate.' },
    allowDowngrade: allowDowngradeSchema,
  },
} as const;

export const migrationDryRunSchema = {
  type: 'object',
  required: ['dryRun', 'matched', 'keyIds', 'masterKey'],
  properties: {
    dryRun: { type: 'boolean', enum: [true] },
    matched: { type: 'integer' },
    keyIds: { type: 'array', items: uuidSchema },
    masterKey: { type: 'object', additionalProperties: { type: 'string' } },
    downgrade: {
      type: 'object',
      description: 'Present when some of the keys would move from a KMS to the local master key: which, and whether this request may do it.',
      required: ['keyIds', 'allowed', 'detail'],
      properties: {
        keyIds: { type: 'array', items: uuidSchema },
        allowed: { type: 'boolean', description: 'Whether the migration would run: "allowDowngrade": true, from the operator.' },
        detail: { type: 'string' },
      },
    },
  },
} as const;

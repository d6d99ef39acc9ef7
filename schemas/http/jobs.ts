/** Schemas of background jobs (GET /jobs/{id}) and of the master-key migration that starts one. */
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
      enum: ['running', 'succeeded', 'failed', 'interrupted'],
      description:
        'running: an instance holds its lease (when that instance dies, another takes the job over once the lease lapses, JOB_LEASE_MS). interrupted: no instance has run it for a minute; the first instance back takes it over.',
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

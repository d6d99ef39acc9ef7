/**
 * The one error registry. Every error the service answers with has a stable code declared here,
 * an HTTP status and a safe title. Layers below the routes throw `AppError`s with these codes;
 * anything else that escapes is an internal error whose details only reach the log.
 */

export const errorCodes = {
  VALIDATION_FAILED: { status: 400, title: 'The request does not match the schema.' },
  INVALID_EXTENDED_JSON: { status: 400, title: 'The value is not valid Extended JSON.' },
  INVALID_KEY_ID: { status: 400, title: 'A key id must be a UUID.' },
  UNSUPPORTED_BSON_TYPE: { status: 400, title: 'This BSON type cannot be encrypted with this algorithm.' },
  DECRYPTION_FAILED: { status: 400, title: 'The ciphertext could not be decrypted.' },
  INVALID_MASTER_KEY: { status: 400, title: 'The master key description is not valid.' },
  INVALID_KEY_MATERIAL: { status: 400, title: 'Custom key material must be exactly 96 bytes.' },
  INVALID_JSON: { status: 400, title: 'The request body is not valid JSON.' },
  DOCUMENT_VALIDATION_FAILED: { status: 400, title: 'The document does not match the collection schema.' },
  DOCUMENT_TOO_LARGE: { status: 400, title: "Once encrypted, the document exceeds MongoDB's 16 MiB document size limit." },
  INVALID_QUERY: { status: 400, title: 'The filter, projection, sort, update or cursor is malformed.' },
  QUERY_OPERATOR_NOT_ALLOWED: { status: 400, title: 'That query or update operator is not allowed.' },
  PIPELINE_STAGE_NOT_ALLOWED: { status: 400, title: 'That aggregation stage is not allowed through the proxy.' },
  QUERY_ON_RANDOM_FIELD: { status: 400, title: 'A random-encrypted field cannot be queried, sorted or projected into.' },
  UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD: { status: 400, title: 'Encrypted fields support equality ($eq, $ne, $in, $nin) on deterministic fields only.' },
  INVALID_DOCUMENT_SHAPE: { status: 400, title: 'A field with encrypted fields below it must hold a plain document (no array, DBRef, scalar or $-prefixed names).' },
  ENCRYPTED_FIELD_NOT_WRITABLE: { status: 400, title: 'That update cannot be applied to an encrypted field.' },
  RENAME_ENCRYPTION_MISMATCH: { status: 400, title: '$rename between fields must keep encryption: both unencrypted, or both encrypted with the same key, algorithm and type.' },
  KEY_POINTER_NOT_WRITABLE: { status: 400, title: 'A field whose data key is named by the document (a keyId JSON pointer) cannot be written by an update: replace the whole document.' },
  PIPELINE_UPDATE_NOT_SUPPORTED: { status: 400, title: 'A pipeline update may only read and write unencrypted fields, with $set, $addFields, $unset or an excluding $project.' },
  INVALID_SCOPE: { status: 400, title: 'A scope or grant is not valid.' },
  INVALID_SCHEMA: { status: 400, title: 'The collection schema is not valid.' },
  INVALID_NAMESPACE: { status: 400, title: 'That namespace cannot hold a document collection.' },
  NAMESPACE_IS_VIEW: { status: 400, title: 'That namespace is a view: views cannot be encrypted or decrypted through, use the collection.' },
  UNAUTHORIZED: { status: 401, title: 'Missing or invalid credentials.' },
  FORBIDDEN: { status: 403, title: 'The credentials do not allow this operation.' },
  NOT_FOUND: { status: 404, title: 'No such route.' },
  KEY_NOT_FOUND: { status: 404, title: 'No data key matches.' },
  CLIENT_NOT_FOUND: { status: 404, title: 'No such client or token.' },
  COLLECTION_NOT_FOUND: { status: 404, title: 'No collection schema is configured for that namespace.' },
  JOB_NOT_FOUND: { status: 404, title: 'No such job.' },
  DOCUMENT_NOT_FOUND: { status: 404, title: 'No document matches.' },
  KEY_ALT_NAME_CONFLICT: { status: 409, title: 'The key alt name is already used by another data key.' },
  KEY_IN_USE: { status: 409, title: 'A collection schema still names this data key: deleting it would make its fields unreadable.' },
  KEY_NOT_DELETED: { status: 409, title: 'The data key is active, not deleted.' },
  KEY_ALREADY_DELETED: { status: 409, title: 'The data key is already deleted (in the trash): restore it, or purge it.' },
  IDEMPOTENCY_IN_PROGRESS: { status: 409, title: 'A request with this Idempotency-Key is still being processed.' },
  CLIENT_CONFLICT: { status: 409, title: 'Another client already has that JWT or certificate subject.' },
  DUPLICATE_DOCUMENT: { status: 409, title: 'A document with that _id (or unique key) already exists.' },
  JOB_FINISHED: { status: 409, title: 'The job has already ended: there is nothing to cancel.' },
  SCHEMA_VERSION_CONFLICT: { status: 409, title: 'The collection schema changed since the version given in ifVersion.' },
  BODY_TOO_LARGE: { status: 413, title: 'The request body is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The content type is not supported.' },
  RATE_LIMITED: { status: 429, title: 'Too many requests: slow down.' },
  PROVIDER_NOT_CONFIGURED: { status: 422, title: 'That master-key provider is not configured on this server.' },
  MASTER_KEY_NOT_ALLOWED: { status: 422, title: 'That master key is not allowed by the server configuration.' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'This Idempotency-Key was used for a different request.' },
  UNKNOWN_KEY_ALT_NAME: { status: 422, title: 'The document names a key alt name (through a keyId pointer) that no data key has.' },
  SCHEMA_RULE_CONFLICT: { status: 422, title: 'Two patternProperties rules of the collection schema claim this field.' },
  UNREADABLE_VALUE: { status: 422, title: 'A stored encrypted value could not be decrypted: the read fails rather than answer it as null.' },
  DATABASE_UNSUPPORTED_OPERATION: { status: 422, title: 'The database does not support that operator or pipeline stage.' },
  MASTER_KEY_UNUSABLE: { status: 422, title: 'The key management service cannot use that master key (missing, disabled or wrong kind).' },
  INTERNAL_ERROR: { status: 500, title: 'Internal server error.' },
  MIGRATION_VERIFICATION_FAILED: { status: 500, title: 'A migrated data key did not unwrap to the same key; it was restored.' },
  KMS_ACCESS_DENIED: { status: 502, title: 'The key management service refused the service identity.' },
  KMS_ERROR: { status: 502, title: 'The key management service failed.' },
  KMS_UNAVAILABLE: { status: 503, title: 'The key management service is unavailable.' },
  DATABASE_UNAVAILABLE: { status: 503, title: 'The database is unavailable.' },
  SHUTTING_DOWN: { status: 503, title: 'This instance is shutting down: retry (another instance will answer).' },
  OVERLOADED: { status: 503, title: 'The service is overloaded: retry shortly.' },
  AUDIT_UNAVAILABLE: { status: 503, title: 'The audit trail cannot be written, so nothing was done.' },
  SCHEMA_NOT_READY: { status: 503, title: 'The collection schema names data keys that do not exist yet.' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCodes;

/** Seconds a client should wait before retrying, for the codes that mean "try again later". */
const retryAfterSeconds: Partial<Record<ErrorCode, number>> = {
  KMS_UNAVAILABLE: 5,
  DATABASE_UNAVAILABLE: 5,
  AUDIT_UNAVAILABLE: 5,
  OVERLOADED: 2,
  SHUTTING_DOWN: 1,
  IDEMPOTENCY_IN_PROGRESS: 1,
  SCHEMA_NOT_READY: 2,
};

/**
 * 5xx codes whose detail is safe and needed by the client: not a failure of this server but a
 * state it waits on (which keys a collection schema still lacks: names the operator chose).
 */
const detailedServerErrors: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['SCHEMA_NOT_READY']);

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Safe, client-visible detail. Never put a value, a key or a token in it. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? errorCodes[code].title, options);
    this.name = 'AppError';
    this.code = code;
    this.status = errorCodes[code].status;
    this.detail = detail;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  instance?: string;
}

/**
 * The application/problem+json body for an error. Errors of status 500 and up carry no detail
 * (their cause stays in the log), except the few whose detail is a state to wait on.
 */
export function toProblem(err: AppError, requestId?: string): Problem {
  const problem: Problem = {
    type: `urn:encryption-proxy:error:${err.code}`,
    title: errorCodes[err.code].title,
    status: err.status,
    code: err.code,
  };
  if (err.detail !== undefined && (err.status < 500 || detailedServerErrors.has(err.code))) problem.detail = err.detail;
  if (requestId !== undefined) problem.instance = `urn:request:${requestId}`;
  return problem;
}

export function retryAfterFor(code: ErrorCode): number | undefined {
  return retryAfterSeconds[code];
}

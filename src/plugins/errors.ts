import fp from 'fastify-plugin';
import type { FastifyError } from 'fastify';
import { MongoNetworkError, MongoNotConnectedError, MongoServerSelectionError, MongoTopologyClosedError } from 'mongodb';
import { AppError, isAppError, retryAfterFor, toProblem, type ErrorCode } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The registry code of the error this request ended with, for the audit trail. */
    errorCode: string | undefined;
  }
}

const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
};

/** Socket errors Node raises directly when a connection dies mid-command. */
const networkCodes = new Set(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);

function isDatabaseOutage(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    (typeof code === 'string' && networkCodes.has(code)) ||
    /socket has been ended by the other party/.test((err as Error)?.message ?? '') ||
    err instanceof MongoNetworkError ||
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoTopologyClosedError
  );
}

/** Turn anything thrown into a registry error; unknown errors become INTERNAL_ERROR. */
export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (isDatabaseOutage(err)) return new AppError('DATABASE_UNAVAILABLE', undefined, { cause: err });
  const e = err as FastifyError;
  if (e?.validation) {
    // ajv's messages name the path and the rule, never the value.
    return new AppError('VALIDATION_FAILED', `${e.validationContext ?? 'request'}${e.message.replace(/^[a-z]+/, '')}`);
  }
  const mapped = e?.code && Object.hasOwn(fastifyCodes, e.code) ? fastifyCodes[e.code] : undefined;
  if (mapped) return new AppError(mapped);
  if (err instanceof SyntaxError || (e?.statusCode === 400 && /JSON|prototype|constructor/i.test(e.message))) {
    return new AppError('INVALID_JSON');
  }
  if (e?.statusCode === 404) return new AppError('NOT_FOUND');
  if (e?.statusCode === 413) return new AppError('BODY_TOO_LARGE');
  if (e?.statusCode === 415) return new AppError('UNSUPPORTED_MEDIA_TYPE');
  if (e?.statusCode === 429) return new AppError('RATE_LIMITED');
  if (e?.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) return new AppError('VALIDATION_FAILED');
  return new AppError('INTERNAL_ERROR', undefined, { cause: err });
}

/** Refusals by design (load shedding, shutdown): nothing failed, so no stack in the error log. */
const SHED: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['OVERLOADED', 'SHUTTING_DOWN']);

/**
 * Every error leaves as application/problem+json with a stable code. Details of server-side
 * failures go to the log only; client errors are logged by code, without their input.
 */
export default fp(
  async (app) => {
    app.decorateRequest('errorCode', undefined);
    app.setErrorHandler(async (err, request, reply) => {
      const error = toAppError(err);
      request.errorCode = error.code;
      if (SHED.has(error.code)) request.log.warn({ code: error.code }, 'request shed');
      // The operator's schema names keys not created yet: a state to fix, not a failure here.
      else if (error.code === 'SCHEMA_NOT_READY') request.log.warn({ code: error.code }, 'request refused: collection schema not ready');
      else if (error.status >= 500) request.log.error({ err: error.cause ?? err, code: error.code }, 'request failed');
      else request.log.info({ code: error.code }, 'request rejected');
      const retryAfter = retryAfterFor(error.code);
      if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
      return reply.code(error.status).type('application/problem+json').send(toProblem(error, request.id));
    });
    app.setNotFoundHandler(async (request, reply) => {
      const error = new AppError('NOT_FOUND');
      return reply.code(404).type('application/problem+json').send(toProblem(error, request.id));
    });
  },
  { name: 'errors' },
);

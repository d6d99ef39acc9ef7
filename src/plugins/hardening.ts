import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet from 'helmet';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import { createFailedAuthLimiter } from '../clients/failed-auth-limiter.js';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Called by the auth hook, in this order, so that nothing runs for a request over a limit. */
    limits: {
      /** Refuse (429) a source that failed authentication too often, before its credentials are checked. */
      checkFailedAuth(request: FastifyRequest, reply: FastifyReply): void;
      recordFailedAuth(request: FastifyRequest): void;
      /** Spend one request of the client's budget (of the source's, when no client is known); 429 when none is left. */
      spend(request: FastifyRequest, reply: FastifyReply): Promise<void>;
    };
  }
}

const WINDOW_MS = 60_000;

/**
 * helmet's security headers, computed once: for an API they do not depend on the request, and
 * running helmet's middleware chain on every request cost more than the rest of a single-value
 * encryption.
 */
function securityHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  const response = {
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  let failed: unknown;
  helmet()({} as IncomingMessage, response as unknown as ServerResponse, (err?: unknown) => {
    failed = err;
  });
  if (failed !== undefined) throw failed;
  return headers;
}

/**
 * Security headers on every answer, load shedding, and request budgets. Registered before auth, so
 * that headers and shedding also cover refused requests. Under pressure (event-loop delay or heap
 * over its limit) requests are answered 503 OVERLOADED with Retry-After at once instead of
 * queueing into timeouts; probes still answer.
 *
 * The budgets are not route hooks: a route-level hook runs after every app-level hook of its
 * phase, so the audit `started` event and the idempotency claim were written before a client over
 * its budget was refused. The auth hook calls them instead: failed-authentication check, then
 * credentials, then the client's budget (so one noisy client cannot starve the others), then the
 * scope check. Both are per instance.
 */
export default fp(
  async (app) => {
    const { pressure } = app.config;
    await app.register(underPressure, {
      maxEventLoopDelay: pressure.maxEventLoopDelayMs,
      maxHeapUsedBytes: pressure.maxHeapUsedBytes,
      pressureHandler: (request) =>
        request.routeOptions.config.public === true ? undefined : Promise.reject(new AppError('OVERLOADED')),
    });
    const headers = securityHeaders();
    app.addHook('onRequest', (_request, reply, done) => {
      reply.headers(headers);
      done();
    });
    await app.register(rateLimit, {
      global: false,
      max: app.config.rateLimitPerMinute,
      timeWindow: WINDOW_MS,
      keyGenerator: (request) => request.principal?.clientId ?? `ip:${request.ip}`,
      errorResponseBuilder: (_request, context) => {
        const error = new AppError('RATE_LIMITED', `Retry in ${Math.ceil(context.ttl / 1000)} s.`);
        return error as unknown as object;
      },
    });
    const spend = app.rateLimit();
    const failures = createFailedAuthLimiter({ maxFailures: app.config.authFailuresPerMinute, windowMs: WINDOW_MS });

    app.decorate('limits', {
      checkFailedAuth(request, reply) {
        const waitMs = failures.retryAfterMs(request.ip);
        if (waitMs <= 0) return;
        const seconds = Math.max(1, Math.ceil(waitMs / 1000));
        reply.header('retry-after', String(seconds));
        throw new AppError('RATE_LIMITED', `Too many failed authentications from this address: retry in ${seconds} s.`);
      },
      recordFailedAuth(request) {
        failures.recordFailure(request.ip);
      },
      async spend(request, reply) {
        await spend.call(app, request, reply);
      },
    });
  },
  { name: 'hardening', dependencies: ['config'] },
);

import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import { AppError } from '../errors.js';

/**
 * Security headers on every answer, load shedding, and a request budget per client (per address
 * before a client is known). The limit runs after authentication so one noisy client cannot starve
 * the others. Under pressure (event-loop delay or heap over its limit) requests are answered 503
 * OVERLOADED with Retry-After at once instead of queueing into timeouts; probes still answer.
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
    await app.register(helmet, { global: true });
    await app.register(rateLimit, {
      global: true,
      hook: 'preHandler',
      max: app.config.rateLimitPerMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => request.principal?.clientId ?? `ip:${request.ip}`,
      errorResponseBuilder: (_request, context) => {
        const error = new AppError('RATE_LIMITED', `Retry in ${Math.ceil(context.ttl / 1000)} s.`);
        return error as unknown as object;
      },
    });
  },
  { name: 'hardening', dependencies: ['config', 'auth'] },
);

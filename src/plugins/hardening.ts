import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import { AppError } from '../errors.js';

/**
 * Security headers on every answer, and a request budget per client (per address before a client
 * is known). The limit runs after authentication so one noisy client cannot starve the others.
 */
export default fp(
  async (app) => {
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

import fp from 'fastify-plugin';
import type { Registry } from 'prom-client';
import { createMetrics, type Metrics } from '../metrics/metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics & { registry: Registry };
  }
}

/** The metrics registry every layer reports to, and the HTTP request counters. */
export default fp(
  async (app) => {
    const metrics = createMetrics();
    app.decorate('metrics', metrics);
    app.addHook('onResponse', async (request, reply) => {
      // The route pattern, never the raw URL: paths can hold alt names and ids.
      metrics.httpRequest(request.routeOptions.url ?? 'unknown', request.method, reply.statusCode, reply.elapsedTime / 1000);
    });
  },
  { name: 'metrics', dependencies: ['config'] },
);

import type { FastifyInstance } from 'fastify';

export default async function metricsRoutes(app: FastifyInstance) {
  app.get(
    '/metrics',
    {
      config: { scope: 'metrics:read' },
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics (text exposition format)',
        security: [{ bearerAuth: [] }],
        produces: ['text/plain'],
        response: {
          200: { description: 'Prometheus text format.', content: { 'text/plain': { schema: { type: 'string' } } } },
          401: { description: 'Error: UNAUTHORIZED', content: { 'application/problem+json': { schema: { $ref: 'Problem#' } } } },
          403: { description: 'Error: FORBIDDEN', content: { 'application/problem+json': { schema: { $ref: 'Problem#' } } } },
          500: { description: 'Error: INTERNAL_ERROR', content: { 'application/problem+json': { schema: { $ref: 'Problem#' } } } },
        },
      },
    },
    async (_request, reply) => reply.type(app.metrics.registry.contentType).send(await app.metrics.registry.metrics()),
  );
}

import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { jobParamsSchema } from '../schemas/http/jobs.js';

export default async function jobRoutes(app: FastifyInstance) {
  app.get(
    '/jobs/:id',
    {
      config: { scope: 'jobs:read', audit: 'jobs.get' },
      schema: {
        tags: ['jobs'],
        security: [{ bearerAuth: [] }],
        summary: 'State and progress of a background job (e.g. a master-key migration)',
        params: jobParamsSchema,
        response: { 200: { $ref: 'Job#' }, ...errorResponses(...commonErrors, 403, 404, 429) },
      },
    },
    async (request) => app.jobs.get((request.params as { id: string }).id),
  );
}

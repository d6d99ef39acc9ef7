import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { jobParamsSchema } from '../schemas/http/jobs.js';
import { allows } from '../src/clients/scopes.js';

export default async function jobRoutes(app: FastifyInstance) {
  app.get(
    '/jobs/:id',
    {
      // jobs:admin alone is enough: seeing every job includes reading one.
      config: { scope: ['jobs:read', 'jobs:admin'], audit: 'jobs.get' },
      schema: {
        tags: ['jobs'],
        security: [{ bearerAuth: [] }],
        summary: 'State and progress of a background job (e.g. a master-key migration)',
        description:
          'Needs jobs:read or jobs:admin. With jobs:read a client sees the jobs it started; with jobs:admin (and the operator), every job. Another client\'s job answers 404 JOB_NOT_FOUND, as a missing one does.',
        params: jobParamsSchema,
        response: { 200: { $ref: 'Job#' }, ...errorResponses(...commonErrors, 403, 404, 429) },
      },
    },
    async (request) => {
      const principal = request.principal!;
      return app.jobs.get((request.params as { id: string }).id, allows(principal, 'jobs:admin') ? {} : { createdBy: principal.clientId });
    },
  );
}

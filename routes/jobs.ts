import type { FastifyInstance } from 'fastify';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { jobPageSchema, jobParamsSchema, listJobsQuerySchema } from '../schemas/http/jobs.js';
import type { JobListQuery } from '../src/jobs/job-store.js';

const tags = ['jobs'];
const security = [{ bearerAuth: [] }];
// jobs:admin alone is enough: seeing every job includes reading one.
const scope = ['jobs:read', 'jobs:admin'];
const sees = 'With jobs:read a client sees the jobs it started; with jobs:admin (and the operator), every job.';
const hidden = "Another client's job answers 404 JOB_NOT_FOUND, as a missing one does.";

export default async function jobRoutes(app: FastifyInstance) {
  app.get(
    '/jobs',
    {
      config: { scope, audit: 'jobs.list' },
      schema: {
        tags,
        security,
        summary: 'List background jobs, newest first, a page at a time',
        description: `Needs jobs:read or jobs:admin. ${sees} Other clients' jobs are left out. Filter by state (interrupted: running, but no instance has renewed it for a minute) and by type.`,
        querystring: listJobsQuerySchema,
        response: { 200: jobPageSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => app.jobs.list(request.query as JobListQuery, request.principal!),
  );

  app.get(
    '/jobs/:id',
    {
      config: { scope, audit: 'jobs.get' },
      schema: {
        tags,
        security,
        summary: 'State and progress of a background job (e.g. a master-key migration)',
        description: `Needs jobs:read or jobs:admin. ${sees} ${hidden}`,
        params: jobParamsSchema,
        response: { 200: { $ref: 'Job#' }, ...errorResponses(...commonErrors, 403, 404, 429) },
      },
    },
    async (request) => app.jobs.get((request.params as { id: string }).id, request.principal!),
  );

  app.post(
    '/jobs/:id/cancel',
    {
      config: { scope, audit: 'jobs.cancel' },
      schema: {
        tags,
        security,
        summary: 'Ask a queued or running job to stop: it ends cancelled at its next checkpoint, whichever instance runs it',
        description:
          `Needs jobs:read or jobs:admin to see the job (${sees} ${hidden}). jobs:admin (and the operator) may cancel any job; any other client only a job it started, and only while it holds the scope that starts such a job (keys:rewrap for keys.migration, documents:{ns}:write for documents.rotation of that collection): 403 FORBIDDEN otherwise. A job that has ended is 409 JOB_FINISHED. Answers 202 with the job as it is now, with \`cancel\` set: the instance running it stops within about a second, between two units of work (a data key rewrapped, a document re-encrypted), so what was done stays valid (each key under one master key or the other, each document under one data key or the other); run the same migration or rotation again to go on. A job no instance runs is cancelled at once. A job past its last checkpoint may still succeed.`,
        params: jobParamsSchema,
        response: { 202: { $ref: 'Job#' }, ...errorResponses(...commonErrors, 403, 404, 409, 429) },
      },
    },
    async (request, reply) => reply.code(202).send(await app.jobs.cancel((request.params as { id: string }).id, request.principal!, request.id)),
  );
}

import fp from 'fastify-plugin';
import { createJobRunner, type JobRunner } from '../jobs/job-runner.js';
import { createJobStore, type JobRecord } from '../jobs/job-store.js';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobRunner;
  }
}

export default fp(
  async (app) => {
    const store = createJobStore(
      app.mongo.keyVaultClient.db(app.config.keyVault.db).collection<JobRecord>('__jobs', { writeConcern: { w: 'majority', journal: true } }),
    );
    const jobs = createJobRunner({
      store,
      logError: (err, id) => app.log.error({ err, jobId: id }, 'job failed'),
      // The outcome of background work goes to the audit trail too (best effort: the request that
      // started it was audited before it ran).
      onFinished: async (job) => {
        await app.audit
          .append({
            clientId: job.createdBy,
            action: `${job.type}.finished`,
            outcome: job.ok ? 'succeeded' : 'failed',
            requestId: job.id,
            ...(job.code ? { code: job.code } : {}),
            ...(Array.isArray(job.result?.keyIds) ? { keyIds: job.result.keyIds as string[] } : {}),
          })
          .catch((err: unknown) => {
            app.metrics.auditWriteFailure();
            app.log.error({ err, jobId: job.id }, 'audit event of a job not written');
          });
      },
    });
    app.decorate('jobs', jobs);
    app.addHook('onClose', async () => jobs.stop());
  },
  { name: 'jobs', dependencies: ['config', 'mongodb', 'audit', 'metrics'] },
);

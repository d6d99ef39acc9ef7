import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import fp from 'fastify-plugin';
import { OPERATOR } from '../clients/scopes.js';
import { createJobLeases, type LeaseDocument } from '../jobs/job-leases.js';
import { createJobRunner, type JobRunner } from '../jobs/job-runner.js';
import { createJobStore, type CancelRequest, type JobRecord } from '../jobs/job-store.js';
import { defineJobTypes } from '../jobs/job-types.js';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobRunner;
  }
}

/**
 * Background jobs, run by whichever instance holds their lease: the one that started a job, or
 * another once that one died (src/jobs/job-runner.ts). Scanning for jobs to take over starts when
 * the app is ready.
 */
export default fp(
  async (app) => {
    const db = app.mongo.keyVaultClient.db(app.config.keyVault.db);
    const concerns = { readConcern: { level: 'majority' }, writeConcern: { w: 'majority', journal: true } } as const;
    const store = createJobStore(db.collection<JobRecord>('__jobs', concerns), db.collection<CancelRequest>('__jobCancels', concerns));
    const leaseMs = app.config.jobs.leaseMs;
    // The lease names its holder for operators: host, process and a random part (pids repeat in containers).
    const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    const leases = createJobLeases({ collection: db.collection<LeaseDocument>('__jobLeases', concerns), leaseMs, owner });
    const jobs = createJobRunner({
      store,
      leases,
      leaseMs,
      logError: (err, id) => app.log.error({ err, jobId: id }, 'job failed'),
      onTakeover: (job) => app.log.warn({ jobId: job.id, type: job.type, runs: job.runs, owner }, 'job taken over: its lease lapsed'),
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
    defineJobTypes(jobs, {
      keyVault: app.keyVault,
      checkUsable: (masterKey) => app.kms.checkUsable(masterKey),
      documents: app.documents,
      principalOf: async (clientId) => (clientId === OPERATOR.clientId ? OPERATOR : app.clients.currentPrincipal(clientId)),
    });
    app.decorate('jobs', jobs);
    app.addHook('onReady', async () => jobs.startScanning());
    app.addHook('onClose', async () => jobs.stop());
  },
  { name: 'jobs', dependencies: ['config', 'mongodb', 'audit', 'metrics', 'kms', 'key-vault', 'documents', 'clients'] },
);

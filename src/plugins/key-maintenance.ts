import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import fp from 'fastify-plugin';
import { createJobLeases, type LeaseDocument } from '../jobs/job-leases.js';
import { createKeyMaintenance, type KeyMaintenance } from '../jobs/key-maintenance.js';

declare module 'fastify' {
  interface FastifyInstance {
    keyMaintenance: KeyMaintenance;
  }
}

/**
 * The key-trash sweep and the rotation reminder (src/jobs/key-maintenance.ts), on the job leases'
 * collection so that one instance of the fleet does each per period. Started when the app is ready.
 */
export default fp(
  async (app) => {
    const { config } = app;
    const concerns = { readConcern: { level: 'majority' }, writeConcern: { w: 'majority', journal: true } } as const;
    const leases = createJobLeases({
      collection: app.mongo.keyVaultClient.db(config.keyVault.db).collection<LeaseDocument>('__jobLeases', concerns),
      leaseMs: config.jobs.leaseMs,
      owner: `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    });
    const maintenance = createKeyMaintenance({
      leases,
      keyVault: app.keyVault,
      trashRetentionMs: config.keyTrash.retentionMs,
      rotationPeriodDays: config.keyRotation.periodDays,
      metrics: app.metrics,
      log: app.log,
    });
    app.decorate('keyMaintenance', maintenance);
    app.addHook('onReady', async () => maintenance.start());
    app.addHook('onClose', async () => maintenance.stop());
  },
  { name: 'key-maintenance', dependencies: ['config', 'mongodb', 'metrics', 'key-vault'] },
);

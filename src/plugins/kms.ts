import fp from 'fastify-plugin';
import { createKms, type Kms } from '../kms/kms.js';

declare module 'fastify' {
  interface FastifyInstance {
    kms: Kms;
  }
}

export default fp(
  async (app) => {
    const { kms: settings } = app.config;
    const kms = createKms({
      localMasterKey: settings.localMasterKey,
      aws: settings.aws && {
        endpoint: settings.aws.endpoint,
        credentials: settings.aws.credentials,
        timeoutMs: settings.timeoutMs,
        maxAttempts: settings.maxAttempts,
        breakerResetMs: settings.breakerResetMs,
        replicaRegions: settings.aws.replicaRegions,
        regionEndpoints: settings.aws.regionEndpoints,
      },
      allowedAwsKeys: settings.aws?.allowedKeys,
    }, app.metrics);
    app.decorate('kms', kms);
    app.addHook('onClose', async () => kms.close());
  },
  { name: 'kms', dependencies: ['config', 'metrics'] },
);

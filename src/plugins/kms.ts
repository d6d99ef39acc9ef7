import fp from 'fastify-plugin';
import { ANY_KEY } from '../kms/allowed-keys.js';
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
        caCerts: settings.aws.caCerts,
        credentials: settings.aws.credentials,
        timeoutMs: settings.timeoutMs,
        maxAttempts: settings.maxAttempts,
        breakerResetMs: settings.breakerResetMs,
        replicaRegions: settings.aws.replicaRegions,
        regionEndpoints: settings.aws.regionEndpoints,
      },
      allowedAwsKeys: settings.aws?.allowedKeys,
    }, app.metrics);
    if (settings.aws?.allowedKeys.includes(ANY_KEY)) {
      app.log.warn('AWS_KMS_ALLOWED_KEYS is *: clients may name any KMS key in any region this identity can use; list the key ARNs instead');
    }
    app.decorate('kms', kms);
    app.addHook('onClose', async () => kms.close());
  },
  { name: 'kms', dependencies: ['config', 'metrics'] },
);

import fp from 'fastify-plugin';
import { createDataKeyCache } from '../key-vault/data-key-cache.js';
import type { KeyDocument } from '../key-vault/key-document.js';
import { createKeyVault, type KeyVault } from '../key-vault/key-vault.js';

declare module 'fastify' {
  interface FastifyInstance {
    keyVault: KeyVault;
    dataKeyCache: ReturnType<typeof createDataKeyCache>;
  }
}

export default fp(
  async (app) => {
    const { config } = app;
    // Key documents must never be read stale or lost on failover: majority on both sides.
    const collection = app.mongo.keyVaultClient
      .db(config.keyVault.db)
      .collection<KeyDocument>(config.keyVault.collection, {
        readConcern: { level: 'majority' },
        writeConcern: { w: 'majority', journal: true },
      });
    const cache = createDataKeyCache(config.dataKeyCache, app.metrics);
    const keyVault = createKeyVault({ collection, kms: app.kms, cache, altNameTtlMs: config.dataKeyCache.ttlMs });
    app.addHook('onReady', async () => {
      keyVault.ensureIndexes().catch((err: unknown) => app.log.warn({ err }, 'key vault indexes not created yet; retrying on first write'));
    });
    app.decorate('keyVault', keyVault);
    app.decorate('dataKeyCache', cache);
    app.addHook('onClose', async () => cache.clear());
  },
  { name: 'key-vault', dependencies: ['config', 'metrics', 'mongodb', 'kms'] },
);

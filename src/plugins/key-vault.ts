import fp from 'fastify-plugin';
import { createDataKeyCache } from '../key-vault/data-key-cache.js';
import type { KeyDocument, TrashedKeyDocument } from '../key-vault/key-document.js';
import { createKeyVault, type KeyVault } from '../key-vault/key-vault.js';
import type { AltNameClaim } from '../key-vault/alt-name-claims.js';

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
    const concerns = { readConcern: { level: 'majority' }, writeConcern: { w: 'majority', journal: true } } as const;
    const db = app.mongo.keyVaultClient.db(config.keyVault.db);
    const collection = db.collection<KeyDocument>(config.keyVault.collection, concerns);
    const { fleet } = app;
    const cache = createDataKeyCache({ ...config.dataKeyCache, trusted: fleet.trusted }, app.metrics);
    const keyVault = createKeyVault({
      collection,
      kms: app.kms,
      cache,
      altNameTtlMs: config.dataKeyCache.ttlMs,
      recordChanges: (keyIds) => fleet.record('key', ...keyIds),
      trusted: fleet.trusted,
      // Beside the key vault: alt names stay unique when instances create keys at once.
      altNameClaims: { collection: db.collection<AltNameClaim>('__keyAltNames', concerns) },
      // And changes of one key through two instances at once are both kept.
      lock: (name, fn) => app.fleetLock(name, fn),
      // Deleted keys wait here, restorable, until the sweep (src/jobs/key-maintenance.ts) purges them.
      trash: { collection: db.collection<TrashedKeyDocument>(config.keyVault.trashCollection, concerns), retentionMs: config.keyTrash.retentionMs },
    });
    // Keys deleted, rewrapped or renamed through another instance: dropped here within the feed's bound.
    fleet.on('key', (keyId) => keyVault.forgetKey(keyId));
    fleet.onReset(() => keyVault.forgetAll());
    app.addHook('onReady', async () => {
      keyVault.ensureIndexes().catch((err: unknown) => app.log.warn({ err }, 'key vault indexes not created yet; retrying on first write'));
    });
    app.decorate('keyVault', keyVault);
    app.decorate('dataKeyCache', cache);
    app.addHook('onClose', async () => cache.clear());
  },
  { name: 'key-vault', dependencies: ['config', 'metrics', 'mongodb', 'fleet', 'kms'] },
);

import fp from 'fastify-plugin';
import { createClientStore } from '../clients/client-store.js';
import { createJwtVerifier } from '../clients/jwt-verifier.js';

declare module 'fastify' {
  interface FastifyInstance {
    clients: ReturnType<typeof createClientStore>;
    jwtVerifier: ReturnType<typeof createJwtVerifier> | undefined;
  }
}

export default fp(
  async (app) => {
    const { config } = app;
    const concerns = { readConcern: { level: 'majority' }, writeConcern: { w: 'majority', journal: true } } as const;
    const db = app.mongo.keyVaultClient.db(config.clients.db);
    const clients = createClientStore({
      collection: db.collection(config.clients.collection, concerns),
      lock: (name, fn) => app.fleetLock(name, fn),
      cacheTtlMs: config.clients.cacheTtlMs,
      recordChange: (clientId) => app.fleet.record('client', clientId),
      trusted: app.fleet.trusted,
    });
    // Clients revoked, disabled or regranted through another instance: dropped here within the feed's bound.
    app.fleet.on('client', (clientId) => clients.forgetClient(clientId));
    app.fleet.onReset(() => clients.forgetAll());
    app.addHook('onReady', async () => {
      clients.ensureIndexes().catch((err: unknown) => app.log.warn({ err }, 'client indexes not created yet'));
    });
    app.decorate('clients', clients);
    app.decorate('jwtVerifier', config.jwt ? createJwtVerifier(config.jwt) : undefined);
  },
  { name: 'clients', dependencies: ['config', 'mongodb', 'fleet'] },
);

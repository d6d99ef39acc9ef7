import fp from 'fastify-plugin';
import { MongoClient } from 'mongodb';

declare module 'fastify' {
  interface FastifyInstance {
    mongo: { client: MongoClient; keyVaultClient: MongoClient; auditClient: MongoClient };
  }
}

// A dead server is noticed in seconds, not the driver's default 30 s.
const CONNECT_TIMEOUT_MS = 5_000;

/** The only place MongoClients are constructed: the data cluster, and the key vault's and the audit trail's if separate. */
export default fp(
  async (app) => {
    const { config } = app;
    const options = {
      serverSelectionTimeoutMS: config.serverSelectionTimeoutMs,
      connectTimeoutMS: CONNECT_TIMEOUT_MS,
      appName: 'encryption-proxy',
    };
    const client = new MongoClient(config.mongodbUri, options);
    const keyVaultClient = config.keyVault.uri === config.mongodbUri ? client : new MongoClient(config.keyVault.uri, options);
    const auditClient = config.audit.uri === config.mongodbUri ? client : new MongoClient(config.audit.uri, options);
    app.decorate('mongo', { client, keyVaultClient, auditClient });
    app.addHook('onClose', async () => {
      await Promise.all([...new Set([client, keyVaultClient, auditClient])].map((c) => c.close()));
    });
  },
  { name: 'mongodb', dependencies: ['config'] },
);

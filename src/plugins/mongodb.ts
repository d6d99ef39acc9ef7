import fp from 'fastify-plugin';
import { MongoClient } from 'mongodb';

declare module 'fastify' {
  interface FastifyInstance {
    mongo: { client: MongoClient; keyVaultClient: MongoClient };
  }
}

/** The only place a MongoClient is constructed: the data cluster, and the key vault's if separate. */
export default fp(
  async (app) => {
    const { config } = app;
    const options = { serverSelectionTimeoutMS: config.serverSelectionTimeoutMs, appName: 'encryption-proxy' };
    const client = new MongoClient(config.mongodbUri, options);
    const keyVaultClient = config.keyVault.uri === config.mongodbUri ? client : new MongoClient(config.keyVault.uri, options);
    app.decorate('mongo', { client, keyVaultClient });
    app.addHook('onClose', async () => {
      await client.close();
      if (keyVaultClient !== client) await keyVaultClient.close();
    });
  },
  { name: 'mongodb', dependencies: ['config'] },
);

import fp from 'fastify-plugin';
import { MongoClient } from 'mongodb';

declare module 'fastify' {
  interface FastifyInstance {
    mongo: { client: MongoClient; keyVaultClient: MongoClient; auditClient: MongoClient };
  }
}

// A dead server is noticed in seconds, not the driver's default 30 s.
const CONNECT_TIMEOUT_MS = 5_000;
const RECONNECT_DELAY_MS = 500;

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
    const clients = [...new Set([client, keyVaultClient, auditClient])];

    // The driver closes a topology whose first connect failed, yet keeps handing it to every later
    // operation ("Topology is closed"): an instance started while the database was unreachable would
    // never serve. A topology closed by anything but our own close() is replaced by a new connect; a
    // failed attempt closes its topology again, which schedules the next one.
    let closing = false;
    let failedAttempts = 0;
    const timers = new Set<NodeJS.Timeout>();
    for (const c of clients) {
      c.on('topologyClosed', () => {
        if (closing) return;
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (closing) return;
          c.connect().then(
            () => {
              failedAttempts = 0;
              app.log.info('reconnected to MongoDB after a failed connect');
            },
            (err: Error) => {
              // One warning per outage, not one every half second.
              if (failedAttempts++ === 0) app.log.warn({ err: { name: err.name, message: err.message } }, 'MongoDB is unreachable; reconnecting until it answers');
            },
          );
        }, RECONNECT_DELAY_MS);
        timer.unref();
        timers.add(timer);
      });
    }

    app.decorate('mongo', { client, keyVaultClient, auditClient });
    app.addHook('onClose', async () => {
      closing = true;
      for (const timer of timers) clearTimeout(timer);
      await Promise.all(clients.map((c) => c.close()));
    });
  },
  { name: 'mongodb', dependencies: ['config'] },
);

import fp from 'fastify-plugin';
import { createChangeFeed, type ChangeEntry, type ChangeFeed } from '../fleet/change-feed.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The fleet's change feed: record security-relevant changes, follow other instances' (src/fleet/change-feed.ts). */
    fleet: ChangeFeed;
  }
}

/**
 * The change feed, beside the key vault (same database, same majority concerns: an entry must not
 * be read before the change it announces). The caches' plugins subscribe to it; it starts polling
 * when the app is ready and stops when it closes.
 */
export default fp(
  async (app) => {
    const { config } = app;
    const collection = app.mongo.keyVaultClient.db(config.keyVault.db).collection<ChangeEntry>('__changes', {
      readConcern: { level: 'majority' },
      writeConcern: { w: 'majority', journal: true },
    });
    const feed = createChangeFeed({
      collection,
      pollMs: config.fleet.pollMs,
      maxLagMs: config.fleet.maxLagMs,
      onPollError: (err) => app.log.warn({ err }, `change feed not readable: caches are not trusted after ${config.fleet.maxLagMs} ms`),
      onPollRecovered: () => app.log.info('change feed readable again'),
      onApplied: (kind, count) => app.metrics.fleetChange(kind, count),
    });
    app.metrics.watchFleetLag(() => Math.max(0, feed.status().lagMs) / 1000);
    app.decorate('fleet', feed);
    // Not awaited: the service may start while the database is briefly away (caches are simply
    // not trusted until the feed has been read).
    app.addHook('onReady', async () => void feed.start());
    app.addHook('onClose', async () => feed.stop());
  },
  { name: 'fleet', dependencies: ['config', 'mongodb', 'metrics'] },
);

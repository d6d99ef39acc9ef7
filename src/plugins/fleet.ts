import fp from 'fastify-plugin';
import { AppError } from '../errors.js';
import { createChangeFeed, type ChangeEntry, type ChangeFeed } from '../fleet/change-feed.js';
import { createFleetLocks, LockTimeoutError, type LockDocument } from '../fleet/fleet-lock.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The fleet's change feed: record security-relevant changes, follow other instances' (src/fleet/change-feed.ts). */
    fleet: ChangeFeed;
    /**
     * Run a read-modify-write of one document holding a lock every instance respects
     * (src/fleet/fleet-lock.ts); 503 DATABASE_UNAVAILABLE when it cannot be had.
     */
    fleetLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
  }
}

/**
 * The change feed, beside the key vault (same database, same majority concerns: an entry must not
 * be read before the change it announces). The caches' plugins subscribe to it; it starts polling
 * when the app is ready and stops when it closes. And the fleet's locks, in the same database.
 */
export default fp(
  async (app) => {
    const { config } = app;
    const concerns = { readConcern: { level: 'majority' }, writeConcern: { w: 'majority', journal: true } } as const;
    const collection = app.mongo.keyVaultClient.db(config.keyVault.db).collection<ChangeEntry>('__changes', concerns);
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
    const locks = createFleetLocks({ collection: app.mongo.keyVaultClient.db(config.keyVault.db).collection<LockDocument>('__locks', concerns) });
    app.decorate('fleetLock', <T>(name: string, fn: () => Promise<T>) =>
      locks.withLock(name, fn).catch((err: unknown) => {
        throw err instanceof LockTimeoutError ? new AppError('DATABASE_UNAVAILABLE', undefined, { cause: err }) : err;
      }),
    );
    // Not awaited: the service may start while the database is briefly away (caches are simply
    // not trusted until the feed has been read).
    app.addHook('onReady', async () => void feed.start());
    app.addHook('onClose', async () => feed.stop());
  },
  { name: 'fleet', dependencies: ['config', 'mongodb', 'metrics'] },
);

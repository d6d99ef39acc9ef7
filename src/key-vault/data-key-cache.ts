import { LRUCache } from 'lru-cache';
import { noMetrics, type Metrics } from '../metrics/metrics.js';

export interface DataKeyCacheOptions {
  ttlMs: number;
  maxEntries: number;
  /**
   * Whether cached keys may be served now: false while this instance cannot follow the fleet's
   * changes (src/fleet/change-feed.ts), and every lookup then loads as if the key had expired.
   */
  trusted?: () => boolean;
}

export interface DataKeyCacheStats {
  hits: number;
  misses: number;
  size: number;
}

export type KeyOrError = Buffer | Error;

/**
 * What a load gives: the unwrapped key, or (to spare a KMS call) a tag naming the key document's
 * wrapping and a way to unwrap it. A held key whose tag matches is still the key the vault
 * holds: while the cache is not trusted, that check (a key-vault read) stands in for the unwrap.
 */
export type Loaded = Buffer | { tag: string; unwrap(): Promise<Buffer> };

interface Entry {
  key: Buffer;
  tag: string | undefined;
  /** When the vault last confirmed this key (its load, or a matching tag). */
  checkedAt: number;
}

/**
 * While the cache is not trusted, a key confirmed against the vault this recently is served: a
 * burst of requests costs one key-vault read per key per interval, and a key deleted after the
 * read is refused at the next one.
 */
const RECHECKED_FOR_MS = 200;

/**
 * The only place unwrapped data keys live: bounded, expiring, and zeroised when an entry leaves.
 *
 * Keys are used under a lease: `withKeys` takes the lease before it loads anything and gives it
 * back after `use` returns, and a key that leaves the cache (evicted, expired, deleted) while
 * leased is zeroised only when its last lease ends. So a request never encrypts with a wiped key.
 * Concurrent misses for one key share a single load: a burst of requests for a cold key costs one
 * load. A key deleted while it loads is not put back in the cache. While `trusted()` says no,
 * a key is served only if the vault confirmed it in the last RECHECKED_FOR_MS (concurrent loads
 * are still shared, and a confirmation costs a key-vault read, not a KMS call).
 */
export function createDataKeyCache(options: DataKeyCacheOptions, metrics: Metrics = noMetrics) {
  const leases = new Map<string, number>();
  const graveyard = new Map<string, Buffer[]>();
  // Loads under way, shared by concurrent misses. One dropped meanwhile (the key changed) leaves
  // the map, so later requests load afresh, and caches nothing when it ends.
  const loading = new Map<string, { promise: Promise<Buffer>; dropped: boolean }>();
  const stats = { hits: 0, misses: 0 };

  function bury(id: string, key: Buffer): void {
    if ((leases.get(id) ?? 0) > 0) {
      const buried = graveyard.get(id) ?? [];
      buried.push(key);
      graveyard.set(id, buried);
    } else {
      key.fill(0);
    }
  }

  const cache = new LRUCache<string, Entry>({
    max: options.maxEntries,
    ttl: options.ttlMs,
    dispose: (entry, id) => bury(id, entry.key),
  });

  function acquire(id: string): void {
    leases.set(id, (leases.get(id) ?? 0) + 1);
  }

  function release(id: string): void {
    const left = (leases.get(id) ?? 1) - 1;
    if (left > 0) {
      leases.set(id, left);
      return;
    }
    leases.delete(id);
    for (const key of graveyard.get(id) ?? []) key.fill(0);
    graveyard.delete(id);
  }

  const trusted = options.trusted ?? (() => true);

  function get(id: string, load: () => Promise<Loaded>): Promise<Buffer> {
    const cached = cache.get(id);
    if (cached !== undefined && (trusted() || Date.now() - cached.checkedAt < RECHECKED_FOR_MS)) {
      stats.hits += 1;
      metrics.dataKeyCache('hit');
      return Promise.resolve(cached.key);
    }
    stats.misses += 1;
    metrics.dataKeyCache('miss');
    let pending = loading.get(id);
    if (pending === undefined) {
      const attempt = { dropped: false } as { promise: Promise<Buffer>; dropped: boolean };
      const keep = (key: Buffer, tag: string | undefined): Buffer => {
        if (!attempt.dropped) cache.set(id, { key, tag, checkedAt: Date.now() });
        else bury(id, key); // dropped while loading: serve the requests that waited, keep nothing
        return key;
      };
      attempt.promise = load()
        .then(async (loaded) => {
          if (Buffer.isBuffer(loaded)) return keep(loaded, undefined);
          const held = cache.peek(id);
          if (held !== undefined && held.tag === loaded.tag && !attempt.dropped) {
            // The vault still holds the key we hold: no unwrap (no KMS call) needed.
            held.checkedAt = Date.now();
            return held.key;
          }
          return keep(await loaded.unwrap(), loaded.tag);
        })
        .finally(() => {
          if (loading.get(id) === attempt) loading.delete(id);
        });
      loading.set(id, attempt);
      pending = attempt;
    }
    return pending.promise;
  }

  return {
    /**
     * Lease the keys for `ids` (loading the missing ones with `load`), run `use` with each id's
     * key or the error that made it unavailable, then end the lease. Never keep a key beyond `use`.
     */
    async withKeys<T>(ids: string[], load: (id: string) => Promise<Loaded>, use: (keys: Map<string, KeyOrError>) => T | Promise<T>): Promise<T> {
      const unique = [...new Set(ids)];
      unique.forEach(acquire);
      try {
        const settled = await Promise.allSettled(unique.map((id) => get(id, () => load(id))));
        const keys = new Map<string, KeyOrError>();
        settled.forEach((result, i) => keys.set(unique[i]!, result.status === 'fulfilled' ? result.value : (result.reason as Error)));
        return await use(keys);
      } finally {
        unique.forEach(release);
      }
    },
    /** Drop a key (deleted, rewrapped, renamed): zeroised now, or when its last lease ends. */
    delete(id: string): void {
      const pending = loading.get(id);
      if (pending !== undefined) {
        pending.dropped = true;
        loading.delete(id);
      }
      cache.delete(id);
    },
    /** Drop every key; a load under way is not put in the cache either. */
    clear(): void {
      for (const pending of loading.values()) pending.dropped = true;
      loading.clear();
      cache.clear();
    },
    stats(): DataKeyCacheStats {
      return { ...stats, size: cache.size };
    },
  };
}

export type DataKeyCache = ReturnType<typeof createDataKeyCache>;

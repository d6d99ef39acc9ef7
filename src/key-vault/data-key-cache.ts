import { LRUCache } from 'lru-cache';

export interface DataKeyCacheOptions {
  ttlMs: number;
  maxEntries: number;
}

export interface DataKeyCacheStats {
  hits: number;
  misses: number;
  size: number;
}

/**
 * The only place unwrapped data keys live: bounded, expiring, and zeroised when an entry leaves.
 * Concurrent misses for one key share a single load, so a burst of requests for a cold key costs
 * one key-vault read and one KMS call.
 */
export function createDataKeyCache(options: DataKeyCacheOptions) {
  const cache = new LRUCache<string, Buffer>({
    max: options.maxEntries,
    ttl: options.ttlMs,
    // A key evicted while a synchronous encrypt runs is still intact: zeroising happens here,
    // between event-loop turns, and callers never keep a key across an await.
    dispose: (key) => key.fill(0),
  });
  const loading = new Map<string, Promise<Buffer>>();
  const stats = { hits: 0, misses: 0 };

  return {
    async get(id: string, load: () => Promise<Buffer>): Promise<Buffer> {
      const cached = cache.get(id);
      if (cached !== undefined) {
        stats.hits += 1;
        return cached;
      }
      stats.misses += 1;
      let pending = loading.get(id);
      if (pending === undefined) {
        pending = load()
          .then((key) => {
            cache.set(id, key);
            return key;
          })
          .finally(() => loading.delete(id));
        loading.set(id, pending);
      }
      return pending;
    },
    delete(id: string): void {
      cache.delete(id);
    },
    clear(): void {
      cache.clear();
    },
    stats(): DataKeyCacheStats {
      return { ...stats, size: cache.size };
    },
  };
}

export type DataKeyCache = ReturnType<typeof createDataKeyCache>;

/**
 * Alt names to key ids and key ids to alt names, read from the key vault in one query per batch
 * and cached briefly. Neither is secret; caching them spares a vault read per request. Kept short
 * (another instance may move a name to another key), dropped per key by the change feed, and not
 * served while the fleet's changes cannot be followed.
 */
import { LRUCache } from 'lru-cache';
import { UUID, type Collection } from 'mongodb';
import { keyIdToString, type KeyDocument } from './key-document.js';

export interface AltNameLookupsOptions {
  collection: Collection<KeyDocument>;
  /** How long a lookup is trusted (the data-key cache TTL), at most 10 s. */
  ttlMs: number;
  /** Whether cached lookups may be served now. */
  trusted: () => boolean;
}

export function createAltNameLookups({ collection, ttlMs, trusted }: AltNameLookupsOptions) {
  const idsByName = new LRUCache<string, UUID>({ max: 10_000, ttl: Math.min(ttlMs, 10_000) });
  // For authorisation by alt-name pattern.
  const namesById = new LRUCache<string, string[]>({ max: 10_000, ttl: Math.min(ttlMs, 10_000) });

  return {
    /** Drop what is cached of a key: its names, and every name cached as naming it. */
    forgetKey(id: string): void {
      namesById.delete(id);
      const stale: string[] = [];
      for (const [name, keyId] of idsByName.entries()) if (keyIdToString(keyId.buffer) === id) stale.push(name);
      for (const name of stale) idsByName.delete(name);
    },

    /** A name no longer names the key it was cached for. */
    forgetName(name: string): void {
      idsByName.delete(name);
    },

    clear(): void {
      idsByName.clear();
      namesById.clear();
    },

    /**
     * The key ids of many alt names in one query (a batch naming a thousand keys is one round
     * trip, not a thousand); names that name no key are left out.
     */
    async resolveAltNames(names: string[]): Promise<Map<string, UUID>> {
      const found = new Map<string, UUID>();
      const missing = new Set<string>();
      const useCache = trusted();
      for (const name of names) {
        const cached = useCache ? idsByName.get(name) : undefined;
        if (cached !== undefined) found.set(name, cached);
        else missing.add(name);
      }
      if (missing.size === 0) return found;
      const docs = await collection.find({ keyAltNames: { $in: [...missing] } }, { projection: { _id: 1, keyAltNames: 1 } }).toArray();
      for (const doc of docs) {
        const id = new UUID(doc._id.buffer);
        for (const name of doc.keyAltNames ?? []) {
          if (!missing.has(name)) continue;
          idsByName.set(name, id);
          found.set(name, id);
        }
      }
      return found;
    },

    /** The alt names of each key id (one query for what is not cached); unknown ids map to []. */
    async altNamesOf(ids: string[]): Promise<Map<string, string[]>> {
      const out = new Map<string, string[]>();
      const missing: string[] = [];
      const useCache = trusted();
      for (const id of new Set(ids)) {
        const cached = useCache ? namesById.get(id) : undefined;
        if (cached !== undefined) out.set(id, cached);
        else missing.push(id);
      }
      if (missing.length > 0) {
        const docs = await collection.find({ _id: { $in: missing.map((id) => new UUID(id)) } }, { projection: { keyAltNames: 1 } }).toArray();
        const found = new Map(docs.map((doc) => [keyIdToString(doc._id.buffer), doc.keyAltNames ?? []]));
        for (const id of missing) {
          const names = found.get(id) ?? [];
          namesById.set(id, names);
          out.set(id, names);
        }
      }
      return out;
    },
  };
}

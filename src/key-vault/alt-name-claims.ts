/**
 * Key alt names are unique across the fleet: a name is claimed in its own collection before a key
 * takes it, and released when the key lets it go. The key documents keep the drivers' shape.
 *
 * Why not the unique index on `keyAltNames` alone: FerretDB's compares whole arrays, not their
 * elements, so two keys created at once with the same name both get in (MongoDB's partial unique
 * index does compare elements, and stays in place). Why a log and not one document per name:
 * FerretDB has no atomic compare-and-set (concurrent conditional updates all "win", and a
 * conditional delete can remove a document re-inserted under the same `_id` meanwhile), so a stale
 * claim could not be taken over safely. Only an insert of a new `_id` is arbitrated: every claim or
 * release is a new document `<generation>:<name>`, one generation above the newest, and the newest
 * generation says who holds the name.
 *
 * A claim whose key does not hold the name (its creator died between the claim and the key) is
 * stale once older than `graceMs`, and may then be claimed over.
 */
import { MongoServerError, type Binary, type Collection } from 'mongodb';
import { AppError } from '../errors.js';

export interface AltNameClaim {
  /** `<generation>:<name>`. */
  _id: string;
  name: string;
  generation: number;
  /** The key holding the name from this generation on; null: released. */
  keyId: Binary | null;
  at: Date;
}

export interface AltNameClaimsOptions {
  collection: Collection<AltNameClaim>;
  /** Whether a key document holds the name now (read from the key vault). */
  keyHasName(keyId: Binary, name: string): Promise<boolean>;
  /** How long a claim counts as live without its key holding the name (default 30 s). */
  graceMs?: number;
}

const DUPLICATE_KEY = 11000;
const ATTEMPTS = 10;
const DEFAULT_GRACE_MS = 30_000;

function sameKey(a: Binary | null, b: Binary): boolean {
  return a !== null && Buffer.from(a.buffer).equals(Buffer.from(b.buffer));
}

export function createAltNameClaims({ collection, keyHasName, graceMs = DEFAULT_GRACE_MS }: AltNameClaimsOptions) {
  async function newest(name: string): Promise<AltNameClaim | null> {
    const [doc] = await collection.find({ name }).sort({ generation: -1 }).limit(1).toArray();
    return doc ?? null;
  }

  /** Insert the next generation; false when another instance took it first (read again). */
  async function append(name: string, after: AltNameClaim | null, keyId: Binary | null): Promise<boolean> {
    const generation = (after?.generation ?? -1) + 1;
    try {
      await collection.insertOne({ _id: `${generation}:${name}`, name, generation, keyId, at: new Date() });
      return true;
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return false;
      throw err;
    }
  }

  let indexes: Promise<void> | undefined;

  return {
    ensureIndexes(): Promise<void> {
      indexes ??= collection
        .createIndex({ name: 1, generation: -1 }, { name: 'name_1_generation_-1' })
        .then(() => undefined)
        .catch((err: unknown) => {
          indexes = undefined;
          throw err;
        });
      return indexes;
    },

    /** Claim `name` for `keyId` (409 KEY_ALT_NAME_CONFLICT when a live claim of another key holds it). */
    async claim(name: string, keyId: Binary): Promise<void> {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const head = await newest(name);
        if (head !== null && head.keyId !== null) {
          if (sameKey(head.keyId, keyId)) return;
          const young = Date.now() - head.at.getTime() < graceMs;
          if (young || (await keyHasName(head.keyId, name))) throw new AppError('KEY_ALT_NAME_CONFLICT');
        }
        if (await append(name, head, keyId)) return;
      }
      // Others kept claiming it meanwhile: someone holds it.
      throw new AppError('KEY_ALT_NAME_CONFLICT');
    },

    /** Release `name` if `keyId` holds it (nothing to do otherwise). */
    async release(name: string, keyId: Binary): Promise<void> {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const head = await newest(name);
        if (head === null || !sameKey(head.keyId, keyId)) return;
        if (await append(name, head, null)) return;
      }
    },

    /** Who holds a name, by the newest claim (tests and diagnostics). */
    async holder(name: string): Promise<Binary | null> {
      return (await newest(name))?.keyId ?? null;
    },
  };
}

export type AltNameClaims = ReturnType<typeof createAltNameClaims>;

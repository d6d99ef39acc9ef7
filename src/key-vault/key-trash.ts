/**
 * The key trash: deleted data keys, kept in their own collection beside the key vault until they
 * are restored or purged. Not a flag in the vault: a MongoDB driver reading the vault would still
 * find, and use, a flagged key.
 *
 * A key moves between the two collections in two writes, never one (MongoDB has no atomic move
 * across collections, FerretDB no transactions), so every move writes its destination first and
 * removes its source second: a crash between the two leaves the key in both, never in neither.
 * `reconcile` settles such a key the way the move that was cut short meant it to go. A restore
 * marks the trash copy (`restoringAt`) before it writes the vault copy, so the vault copy wins;
 * otherwise the move was a delete, and the trash copy wins.
 *
 * The caller holds the key's fleet lock around each move, and drops caches and tells the fleet.
 */
import { MongoServerError, type Binary, type Collection, type Filter, type UUID } from 'mongodb';
import { AppError } from '../errors.js';
import type { KeyDocument, TrashedKeyDocument } from './key-document.js';
import { selectorFilter, type KeySelector } from './key-selector.js';

export interface DeletionRecord {
  deletedAt: Date;
  /** The client id of whoever deleted it. */
  deletedBy: string;
  purgeAfter: Date;
}

export interface KeyTrashOptions {
  vault: Collection<KeyDocument>;
  trash: Collection<TrashedKeyDocument>;
}

/** How a key found in both collections was settled. */
export type Reconciled = 'none' | 'kept-in-vault' | 'kept-in-trash';

const DUPLICATE_KEY = 11000;
/** Trash and vault copies a sweep settles or purges per pass. */
const SWEEP_BATCH = 1000;

/** The driver-shaped key document of a trashed key (its deletion record left behind). */
export function keyFieldsOf(doc: KeyDocument | TrashedKeyDocument): KeyDocument {
  const { deletedAt: _at, deletedBy: _by, purgeAfter: _after, restoringAt: _restoring, ...key } = doc as TrashedKeyDocument;
  return key;
}

export function createKeyTrash({ vault, trash }: KeyTrashOptions) {
  let indexes: Promise<void> | undefined;

  const steps = {
    /** Delete, step 1: the trash copy, durable (the collection's majority, journaled concern) before the vault copy goes. */
    async writeTrashCopy(doc: KeyDocument, record: DeletionRecord): Promise<void> {
      await trash.replaceOne({ _id: doc._id }, { ...keyFieldsOf(doc), ...record }, { upsert: true });
    },
    /** Delete, step 2: the vault copy (what it held, or null if it was gone). */
    async removeVaultCopy(id: Binary): Promise<KeyDocument | null> {
      // No projection: FerretDB does not support one on findAndModify.
      return vault.findOneAndDelete({ _id: id });
    },
    /** Restore, step 1: say a restore is under way, so a crash after step 2 keeps the vault copy. */
    async markRestoring(id: Binary): Promise<void> {
      await trash.updateOne({ _id: id }, { $set: { restoringAt: new Date() } });
    },
    /** A restore that could not write the vault copy: the key is simply deleted again. */
    async clearRestoring(id: Binary): Promise<void> {
      await trash.updateOne({ _id: id }, { $unset: { restoringAt: '' } });
    },
    /** Restore, step 2: the vault copy (409 KEY_ALT_NAME_CONFLICT if a name was taken meanwhile). */
    async writeVaultCopy(doc: TrashedKeyDocument): Promise<void> {
      try {
        await vault.insertOne(keyFieldsOf(doc));
      } catch (err) {
        if (!(err instanceof MongoServerError) || err.code !== DUPLICATE_KEY) throw err;
        // The same id in the vault: an earlier run of this restore got that far. Anything else
        // unique there is an alt name.
        if ((await vault.findOne({ _id: doc._id }, { projection: { _id: 1 } })) !== null) return;
        throw new AppError('KEY_ALT_NAME_CONFLICT', 'Another data key took one of its alt names meanwhile: remove it there first.');
      }
    },
    /** Restore, step 3 (or purge): the trash copy. */
    async removeTrashCopy(id: Binary): Promise<TrashedKeyDocument | null> {
      return trash.findOneAndDelete({ _id: id });
    },
  };

  async function reconcile(id: Binary): Promise<Reconciled> {
    const [inVault, inTrash] = await Promise.all([vault.findOne({ _id: id }), trash.findOne({ _id: id })]);
    if (inVault === null || inTrash === null) return 'none';
    if (inTrash.restoringAt !== undefined) {
      await steps.removeTrashCopy(id);
      return 'kept-in-vault';
    }
    // The delete again, with its own record: the trash copy takes the vault copy's wrapping in case
    // a rewrap reached the vault copy after the trash copy was written.
    const { deletedAt, deletedBy, purgeAfter } = inTrash;
    await steps.writeTrashCopy(inVault, { deletedAt, deletedBy, purgeAfter });
    await steps.removeVaultCopy(id);
    return 'kept-in-trash';
  }

  return {
    ...steps,

    async ensureIndexes(): Promise<void> {
      indexes ??= Promise.all([
        trash.createIndex({ purgeAfter: 1 }, { name: 'purgeAfter_1' }),
        trash.createIndex({ keyAltNames: 1 }, { name: 'keyAltNames_1' }),
      ])
        .then(() => undefined)
        .catch((err: unknown) => {
          indexes = undefined;
          throw err;
        });
      return indexes;
    },

    async findById(id: UUID | Binary): Promise<TrashedKeyDocument | null> {
      return trash.findOne({ _id: id });
    },

    async findByAltName(name: string): Promise<TrashedKeyDocument | null> {
      return trash.findOne({ keyAltNames: name });
    },

    /** Whether a trashed key holds the name (its name stays reserved until it is purged). */
    async holdsName(id: Binary, name: string): Promise<boolean> {
      return (await trash.findOne({ _id: id, keyAltNames: name }, { projection: { _id: 1 } })) !== null;
    },

    /** Whether any trashed key other than `exceptId` holds one of the names. */
    async anyHoldsName(names: string[], exceptId?: Binary): Promise<boolean> {
      const filter: Filter<TrashedKeyDocument> = { keyAltNames: { $in: names } };
      if (exceptId !== undefined) filter._id = { $ne: exceptId };
      return (await trash.findOne(filter, { projection: { _id: 1 } })) !== null;
    },

    /** A page of trashed keys in `_id` order, after the given id. */
    async list(options: { limit: number; after?: UUID; selector?: KeySelector }): Promise<TrashedKeyDocument[]> {
      const filter = selectorFilter(options.selector ?? {}) as unknown as Filter<TrashedKeyDocument>;
      const page: Filter<TrashedKeyDocument> = options.after ? { $and: [filter, { _id: { $gt: options.after } }] } : filter;
      return trash.find(page).sort({ _id: 1 }).limit(options.limit).toArray();
    },

    /**
     * Settle a key found in both collections (a move cut short): the vault copy stays if a restore
     * was under way, the trash copy otherwise. The caller holds the key's lock.
     */
    reconcile,

    /** Ids of trashed keys that are also in the vault (moves cut short), a batch at a time. */
    async inBoth(): Promise<Binary[]> {
      const ids: Binary[] = [];
      let after: Binary | undefined;
      for (;;) {
        const page = await trash
          .find(after === undefined ? {} : { _id: { $gt: after } }, { projection: { _id: 1 } })
          .sort({ _id: 1 })
          .limit(SWEEP_BATCH)
          .toArray();
        if (page.length === 0) return ids;
        const found = await vault.find({ _id: { $in: page.map((doc) => doc._id) } }, { projection: { _id: 1 } }).toArray();
        ids.push(...found.map((doc) => doc._id));
        after = page.at(-1)!._id;
      }
    },

    /** Trashed keys whose retention ended by `now`. */
    async due(now: Date): Promise<Binary[]> {
      const docs = await trash.find({ purgeAfter: { $lte: now } }, { projection: { _id: 1 } }).limit(SWEEP_BATCH).toArray();
      return docs.map((doc) => doc._id);
    },
  };
}

export type KeyTrash = ReturnType<typeof createKeyTrash>;

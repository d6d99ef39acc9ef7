/**
 * Where collection schemas live: `__schemas` holds each namespace's current version (or the
 * tombstone of its deletion), `__schemaVersions` every version ever written, in the key vault's
 * database with majority concerns. A schema is stored as its JSON text: its Extended JSON key ids
 * (`$uuid`) and pattern names (dots, `$`) are not field names a server has to accept.
 *
 * Concurrent writers of one namespace cannot lose an update: a write holds the namespace's fleet
 * lock, and a version exists once only, since its history entry is inserted with a unique `_id`
 * (`<ns>@<version>`) before the current document is replaced. FerretDB applies concurrent
 * conditional updates without isolation, so the insert is the arbiter, not an update's filter.
 */
import { MongoServerError, type Collection } from 'mongodb';
import { AppError } from '../errors.js';

export type SchemaSource = 'api' | 'file';

/** A namespace's current state in `__schemas`. */
export interface CurrentSchemaDocument {
  _id: string;
  version: number;
  deleted?: boolean;
  schemaJson?: string;
  source: SchemaSource;
  /** With source `file`: the file name and the SHA-256 of its content. */
  file?: string;
  fileHash?: string;
  /**
   * The hash of the last file imported for this namespace, kept across API changes: a file is
   * imported again only when its content differs from that one (API changes win until then).
   */
  lastFileHash?: string;
  updatedAt: Date;
  updatedBy: string;
  comment?: string;
}

/** One entry of a namespace's history in `__schemaVersions`. */
export interface SchemaVersionDocument {
  _id: string;
  ns: string;
  version: number;
  change: 'put' | 'delete';
  schemaJson?: string;
  source: SchemaSource;
  file?: string;
  fileHash?: string;
  updatedAt: Date;
  updatedBy: string;
  comment?: string;
}

export interface SchemaWrite {
  schemaJson: string;
  source: SchemaSource;
  file?: string;
  fileHash?: string;
  updatedBy: string;
  comment?: string;
  /** Refuse (409 SCHEMA_VERSION_CONFLICT) unless the live version is this one (0: no live schema). */
  ifVersion?: number;
}

export interface WriteResult {
  /** The namespace's current document after the write (or as it was, when nothing was written). */
  doc: CurrentSchemaDocument;
  written: boolean;
  /** The current document the write replaced, read under the lock. */
  previous: CurrentSchemaDocument | null;
}

export interface SchemaStoreOptions {
  current: Collection<CurrentSchemaDocument>;
  versions: Collection<SchemaVersionDocument>;
  /** Run a read-modify-write of one namespace holding a fleet-wide lock. */
  lock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

const DUPLICATE_KEY = 11000;
/** A lost lock (a holder stalled past its lease) can make an insert lose its number: read again. */
const MAX_ATTEMPTS = 5;

const isDuplicate = (err: unknown) => err instanceof MongoServerError && err.code === DUPLICATE_KEY;

/** The live version of a current document: 0 when the namespace has none (never had, or deleted). */
export function liveVersion(doc: CurrentSchemaDocument | null): number {
  return doc === null || doc.deleted === true ? 0 : doc.version;
}

export function createSchemaStore({ current, versions, lock }: SchemaStoreOptions) {
  let indexes: Promise<void> | undefined;

  function ensureIndexes(): Promise<void> {
    indexes ??= versions
      .createIndex({ ns: 1, version: -1 }, { name: 'ns_1_version_-1' })
      .then(() => undefined)
      .catch((err: unknown) => {
        indexes = undefined;
        throw err;
      });
    return indexes;
  }

  /** The newest version number of a namespace, from both collections (a current document is written last). */
  async function newestVersion(ns: string, doc: CurrentSchemaDocument | null): Promise<number> {
    const [head] = await versions.find({ ns }, { projection: { version: 1 } }).sort({ version: -1 }).limit(1).toArray();
    return Math.max(doc?.version ?? 0, head?.version ?? 0);
  }

  /**
   * Write the next version of `ns` from `make(current)`, under the namespace's lock; undefined from
   * `make` writes nothing.
   */
  async function writeNext(
    ns: string,
    make: (doc: CurrentSchemaDocument | null) => Omit<SchemaVersionDocument, '_id' | 'ns' | 'version'> | undefined,
    ifVersion: number | undefined,
  ): Promise<WriteResult> {
    await ensureIndexes().catch(() => undefined);
    return lock(`schema:${ns}`, async () => {
      for (let attempt = 1; ; attempt++) {
        const doc = await current.findOne({ _id: ns });
        const change = make(doc);
        if (change === undefined) return { doc: doc!, written: false, previous: doc };
        if (ifVersion !== undefined && ifVersion !== liveVersion(doc)) {
          throw new AppError('SCHEMA_VERSION_CONFLICT', `The live version of ${ns} is ${liveVersion(doc)}, not ${ifVersion}.`);
        }
        const version = (await newestVersion(ns, doc)) + 1;
        try {
          await versions.insertOne({ _id: `${ns}@${version}`, ns, version, ...change });
        } catch (err) {
          if (!isDuplicate(err) || attempt >= MAX_ATTEMPTS) throw err;
          continue;
        }
        const lastFileHash = change.source === 'file' ? change.fileHash : doc?.lastFileHash;
        const next: CurrentSchemaDocument = {
          _id: ns,
          version,
          ...(change.change === 'delete' ? { deleted: true } : {}),
          ...(change.schemaJson !== undefined ? { schemaJson: change.schemaJson } : {}),
          source: change.source,
          ...(change.file !== undefined ? { file: change.file, fileHash: change.fileHash } : {}),
          ...(lastFileHash !== undefined ? { lastFileHash } : {}),
          updatedAt: change.updatedAt,
          updatedBy: change.updatedBy,
          ...(change.comment !== undefined ? { comment: change.comment } : {}),
        };
        // Never back: a newer version written by a writer whose lock lapsed under this one stays.
        // (The upsert then meets that document's _id: a duplicate, which is that case.)
        await current.replaceOne({ _id: ns, version: { $lt: version } }, next, { upsert: true }).catch((err: unknown) => {
          if (!isDuplicate(err)) throw err;
        });
        return { doc: next, written: true, previous: doc };
      }
    });
  }

  return {
    ensureIndexes,

    /** Every namespace's current document, deletions included (the registry skips those). */
    async listCurrent(): Promise<CurrentSchemaDocument[]> {
      return current.find({}).sort({ _id: 1 }).toArray();
    },

    async getCurrent(ns: string): Promise<CurrentSchemaDocument | null> {
      return current.findOne({ _id: ns });
    },

    /**
     * Store a new version of `ns`. The same schema as the live one writes nothing (a retried PUT is
     * not a new version); `written` says which it was.
     */
    async put(ns: string, write: SchemaWrite): Promise<WriteResult> {
      return writeNext(
        ns,
        (doc) => {
          if (liveVersion(doc) > 0 && doc!.schemaJson === write.schemaJson && doc!.source === write.source) return undefined;
          return {
            change: 'put',
            schemaJson: write.schemaJson,
            source: write.source,
            ...(write.file !== undefined ? { file: write.file, fileHash: write.fileHash } : {}),
            updatedAt: new Date(),
            updatedBy: write.updatedBy,
            ...(write.comment !== undefined ? { comment: write.comment } : {}),
          };
        },
        write.ifVersion,
      );
    },

    /**
     * Import a schema file: a new version unless the last file imported for `ns` had this very
     * content (then the stored schema, perhaps changed through the API since, stays).
     */
    async importFile(ns: string, write: SchemaWrite & { file: string; fileHash: string }): Promise<WriteResult> {
      return writeNext(
        ns,
        (doc) => {
          if (doc?.lastFileHash === write.fileHash) return undefined;
          return { change: 'put', schemaJson: write.schemaJson, source: 'file', file: write.file, fileHash: write.fileHash, updatedAt: new Date(), updatedBy: write.updatedBy };
        },
        undefined,
      );
    },

    /** Delete the live schema of `ns` (404 COLLECTION_NOT_FOUND when it has none); the history keeps it. */
    async remove(ns: string, change: { updatedBy: string; comment?: string; ifVersion?: number }): Promise<CurrentSchemaDocument> {
      const { doc } = await writeNext(
        ns,
        (doc) => {
          if (liveVersion(doc) === 0) throw new AppError('COLLECTION_NOT_FOUND');
          return { change: 'delete', source: 'api', updatedAt: new Date(), updatedBy: change.updatedBy, ...(change.comment !== undefined ? { comment: change.comment } : {}) };
        },
        change.ifVersion,
      );
      return doc;
    },

    /** A page of a namespace's history, newest first, below version `before` when given. */
    async history(ns: string, options: { limit: number; before?: number }): Promise<SchemaVersionDocument[]> {
      const filter = options.before === undefined ? { ns } : { ns, version: { $lt: options.before } };
      return versions.find(filter).sort({ version: -1 }).limit(options.limit).toArray();
    },
  };
}

export type SchemaStore = ReturnType<typeof createSchemaStore>;

/**
 * The live view of every collection schema this instance serves: the schemas stored in MongoDB
 * (schema-store.ts), each version compiled once, its keys resolved against the key vault.
 *
 * A schema naming a key that does not exist is `notReady`: /documents answers 503 SCHEMA_NOT_READY
 * for it rather than the boot stopping. Its keys are looked up again every `retryMs` (key creation
 * is announced nowhere), and every schema's keys whenever the fleet's change feed reports a key
 * change (deleted, renamed) and every `refreshMs` (a driver may delete a key behind the feed), so a
 * key created or deleted through any instance moves the namespace within seconds.
 *
 * Changes reach it from the change feed (`changed(ns)`, `reset()`), and from a check of every
 * namespace's version every `refreshMs`, a bound should an announcement be missed. Each change
 * installs a new schema object: a request keeps the one it started with.
 */
import { AppError } from '../errors.js';
import {
  compileCollectionSchema,
  resolvePlan,
  type CollectionSchema,
  type CompiledSchema,
  type KeysFound,
  type MissingKey,
} from './collection-schema.js';
import type { CurrentSchemaDocument, SchemaSource, SchemaStore } from './schema-store.js';

export type { CollectionSchema } from './collection-schema.js';

/** One namespace as the registry holds it; `list()` gives these, ready or not. */
export interface RegisteredSchema {
  namespace: string;
  version: number;
  source: SchemaSource;
  file?: string;
  fileHash?: string;
  updatedAt: Date;
  updatedBy: string;
  comment?: string;
  /** Data keys the schema names by id (UUID strings) and by alt name. */
  keyIds: string[];
  keyAltNames: string[];
  status: 'ready' | 'notReady';
  missingKeys: MissingKey[];
  schemaJson: string;
  compiled: CompiledSchema;
  /** What /documents uses; only when ready. */
  schema?: CollectionSchema;
}

export interface SchemaRegistryOptions {
  store: Pick<SchemaStore, 'listCurrent' | 'getCurrent'>;
  /** The key vault's answer for these alt names and ids (read from the database, not a cache). */
  findKeys(keyAltNames: string[], keyIds: string[]): Promise<KeysFound>;
  /** Work to do once before the first load (importing schema files); retried until it succeeds. */
  beforeFirstLoad?: () => Promise<void>;
  /** How often keys of not-ready schemas are looked up again. */
  retryMs?: number;
  /** How often every namespace's version is compared with the store's. */
  refreshMs?: number;
  /** A background load failed (retried); a namespace changed status. For the log. */
  onError?(err: unknown, what: string): void;
  onStatus?(entry: RegisteredSchema): void;
}

const DEFAULT_RETRY_MS = 1000;
const DEFAULT_REFRESH_MS = 30_000;

function describeMissing(missing: MissingKey[]): string {
  return missing.map((key) => ('keyAltName' in key ? `key alt name "${key.keyAltName}"` : `key id ${key.keyId}`)).join(', ');
}

export function createSchemaRegistry(options: SchemaRegistryOptions) {
  const { store, findKeys } = options;
  const retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  const refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
  const entries = new Map<string, RegisteredSchema>();
  /** The newest version seen per namespace, deletions included: an older read never wins. */
  const seen = new Map<string, number>();
  /** Namespaces whose announced change could not be read yet. */
  const dirty = new Set<string>();
  let loaded = false;
  let prepared = options.beforeFirstLoad === undefined;
  let keysDirty = false;
  let lastRefresh = performance.now();
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;
  let firstLoad: Promise<void> | undefined;
  let resolveQueued: Promise<void> | undefined;

  // One change at a time: a slower read must not overwrite a newer one.
  let chain: Promise<unknown> = Promise.resolve();
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = chain.then(fn);
    chain = run.catch(() => undefined);
    return run;
  }

  /** Compile a stored version, or reuse the compiled one of the same version. */
  function compile(doc: CurrentSchemaDocument): CompiledSchema {
    const existing = entries.get(doc._id);
    if (existing !== undefined && existing.version === doc.version) return existing.compiled;
    return compileCollectionSchema(doc._id, JSON.parse(doc.schemaJson!));
  }

  /** Resolve the keys of `list` (one query for all) and install the results. */
  async function install(list: { doc: CurrentSchemaDocument; compiled: CompiledSchema }[]): Promise<void> {
    const altNames = [...new Set(list.flatMap(({ compiled }) => compiled.keyAltNames))];
    const ids = [...new Set(list.flatMap(({ compiled }) => compiled.keyIds))];
    const found = altNames.length + ids.length === 0 ? { idsByAltName: new Map(), existingIds: new Set<string>() } : await findKeys(altNames, ids);
    for (const { doc, compiled } of list) {
      if ((seen.get(doc._id) ?? 0) > doc.version) continue;
      const { plan, missingKeys } = resolvePlan(compiled, found);
      const ready = missingKeys.length === 0;
      const entry: RegisteredSchema = {
        namespace: doc._id,
        version: doc.version,
        source: doc.source,
        ...(doc.file !== undefined ? { file: doc.file, fileHash: doc.fileHash } : {}),
        updatedAt: doc.updatedAt,
        updatedBy: doc.updatedBy,
        ...(doc.comment !== undefined ? { comment: doc.comment } : {}),
        keyIds: compiled.keyIds,
        keyAltNames: compiled.keyAltNames,
        status: ready ? 'ready' : 'notReady',
        missingKeys,
        schemaJson: doc.schemaJson!,
        compiled,
        ...(ready
          ? { schema: { namespace: doc._id, db: compiled.db, collection: compiled.collection, version: doc.version, plan, validator: compiled.validator } }
          : {}),
      };
      const before = entries.get(doc._id);
      seen.set(doc._id, doc.version);
      entries.set(doc._id, entry);
      if (before === undefined || before.status !== entry.status || before.version !== entry.version) options.onStatus?.(entry);
    }
  }

  /** Apply stored documents: live ones installed, deleted or absent ones dropped. */
  async function apply(docs: CurrentSchemaDocument[], dropOthers: boolean): Promise<void> {
    const live: { doc: CurrentSchemaDocument; compiled: CompiledSchema }[] = [];
    for (const doc of docs) {
      if ((seen.get(doc._id) ?? 0) > doc.version) continue;
      // Installed already (this instance's own change, announced back by the feed): keys are
      // looked up again on key changes, not here.
      if (entries.get(doc._id)?.version === doc.version && doc.deleted !== true) continue;
      if (doc.deleted === true || doc.schemaJson === undefined) {
        seen.set(doc._id, doc.version);
        entries.delete(doc._id);
        continue;
      }
      try {
        live.push({ doc, compiled: compile(doc) });
      } catch (err) {
        // Checked when it was written; a stored schema this version cannot compile is not served.
        options.onError?.(err, `the stored schema of ${doc._id} (version ${doc.version}) does not compile`);
        entries.delete(doc._id);
      }
    }
    if (dropOthers) {
      const present = new Set(docs.map((doc) => doc._id));
      for (const ns of entries.keys()) if (!present.has(ns)) entries.delete(ns);
    }
    await install(live);
  }

  async function loadAll(): Promise<void> {
    if (!prepared) {
      await options.beforeFirstLoad!();
      prepared = true;
    }
    await apply(await store.listCurrent(), true);
    loaded = true;
    lastRefresh = performance.now();
  }

  async function reload(ns: string): Promise<void> {
    const doc = await store.getCurrent(ns);
    if (doc === null) entries.delete(ns);
    else await apply([doc], false);
  }

  /** Look the keys up again for these entries (all when none given). */
  async function resolveAgain(namespaces?: string[]): Promise<void> {
    const targets = (namespaces ?? [...entries.keys()]).flatMap((ns) => {
      const entry = entries.get(ns);
      return entry === undefined ? [] : [{ doc: docOf(entry), compiled: entry.compiled }];
    });
    if (targets.length > 0) await install(targets);
  }

  /** An installed entry as the stored document it came from (to install it again, resolved anew). */
  function docOf(entry: RegisteredSchema): CurrentSchemaDocument {
    return {
      _id: entry.namespace,
      version: entry.version,
      schemaJson: entry.schemaJson,
      source: entry.source,
      ...(entry.file !== undefined ? { file: entry.file, fileHash: entry.fileHash } : {}),
      updatedAt: entry.updatedAt,
      updatedBy: entry.updatedBy,
      ...(entry.comment !== undefined ? { comment: entry.comment } : {}),
    };
  }

  /** The first load, shared by every request that waits for it. */
  function ensureLoaded(): Promise<void> {
    if (loaded) return Promise.resolve();
    firstLoad ??= serial(loadAll).finally(() => {
      firstLoad = undefined;
    });
    return firstLoad.catch((err: unknown) => {
      throw err instanceof AppError ? err : new AppError('DATABASE_UNAVAILABLE', 'The collection schemas could not be read yet.', { cause: err });
    });
  }

  async function tick(): Promise<void> {
    if (!loaded) {
      await ensureLoaded().catch((err: unknown) => options.onError?.(err, 'collection schemas not loaded yet; retrying'));
      return;
    }
    const work: Promise<unknown>[] = [];
    for (const ns of [...dirty]) {
      dirty.delete(ns);
      work.push(serial(() => reload(ns)).catch(() => dirty.add(ns)));
    }
    if (performance.now() - lastRefresh >= refreshMs) {
      lastRefresh = performance.now();
      // Keys too: one a driver deleted straight from the vault is announced by no feed entry.
      keysDirty = true;
      work.push(serial(refresh).catch((err: unknown) => options.onError?.(err, 'collection schema versions not checked')));
    }
    const waiting = [...entries.values()].filter((entry) => entry.status === 'notReady').map((entry) => entry.namespace);
    if (keysDirty || waiting.length > 0) {
      const all = keysDirty;
      keysDirty = false;
      work.push(
        serial(() => resolveAgain(all ? undefined : waiting)).catch((err: unknown) => {
          keysDirty ||= all;
          options.onError?.(err, 'keys of collection schemas not looked up');
        }),
      );
    }
    await Promise.all(work);
  }

  /** Compare every namespace's version with the store's; read again the ones that differ. */
  async function refresh(): Promise<void> {
    const docs = await store.listCurrent();
    const changed = docs.filter((doc) => (doc.deleted === true ? entries.has(doc._id) : entries.get(doc._id)?.version !== doc.version));
    const gone = [...entries.keys()].filter((ns) => !docs.some((doc) => doc._id === ns));
    for (const ns of gone) entries.delete(ns);
    if (changed.length > 0) await apply(changed, false);
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      void tick().finally(schedule);
    }, retryMs);
    timer.unref();
  }

  function list(): RegisteredSchema[] {
    return [...entries.values()].sort((a, b) => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0));
  }

  return {
    /** Every current schema, ready or not, by namespace (API- and file-sourced alike). */
    list,

    /** One namespace's entry, ready or not. */
    get(namespace: string): RegisteredSchema | undefined {
      return entries.get(namespace);
    },

    /**
     * The schema /documents serves `namespace` with: 404 COLLECTION_NOT_FOUND without one, 503
     * SCHEMA_NOT_READY naming the missing keys while some do not exist.
     */
    async require(namespace: string): Promise<CollectionSchema> {
      await ensureLoaded();
      const entry = entries.get(namespace);
      if (entry === undefined) throw new AppError('COLLECTION_NOT_FOUND');
      if (entry.schema === undefined) {
        throw new AppError('SCHEMA_NOT_READY', `${namespace} names data keys that do not exist: ${describeMissing(entry.missingKeys)}. Create them; the collection is served within seconds.`);
      }
      return entry.schema;
    },

    /** Whether this instance serves `namespace` now (jobs on it may run here). */
    isReady(namespace: string): boolean {
      return entries.get(namespace)?.schema !== undefined;
    },

    /** Namespaces whose schema names keys that do not exist. */
    notReady(): string[] {
      return list().filter((entry) => entry.status === 'notReady').map((entry) => entry.namespace);
    },

    /** Read a namespace again now (this instance changed it, or the change feed says another did). */
    async changed(namespace: string): Promise<void> {
      if (!loaded) return;
      try {
        await serial(() => reload(namespace));
      } catch (err) {
        dirty.add(namespace);
        throw err;
      }
    },

    /**
     * A data key was deleted, renamed or rewrapped (the change feed says so): look every schema's
     * keys up again. Changes arriving together share one lookup; a failed one is retried by the timer.
     */
    keysChanged(): Promise<void> {
      if (!loaded) return Promise.resolve();
      resolveQueued ??= serial(async () => {
        // From here on a new change needs a new lookup: this one may read before it.
        resolveQueued = undefined;
        await resolveAgain();
      }).catch((err: unknown) => {
        keysDirty = true;
        options.onError?.(err, 'keys of collection schemas not looked up; retrying');
      });
      return resolveQueued;
    },

    /** This process cannot know what changed (the change feed was reset): read everything again. */
    reset(): void {
      if (!loaded) return;
      keysDirty = true;
      void serial(loadAll).catch((err: unknown) => {
        loaded = false;
        options.onError?.(err, 'collection schemas not reloaded; retrying');
      });
    },

    /** Load (retried in the background until it works) and follow changes. */
    start(): void {
      if (!stopped) return;
      stopped = false;
      void tick().finally(schedule);
    },

    /** Stop following changes (a load under way ends on its own). */
    stop(): void {
      stopped = true;
      clearTimeout(timer);
    },

    /** Resolves once the schemas were read (503 DATABASE_UNAVAILABLE when they cannot be yet). */
    whenLoaded: ensureLoaded,

    /** Whether the schemas were read once (until then /documents waits for them). */
    isLoaded: (): boolean => loaded,

    /** Load everything now (the first load, or again); throws what the store threw. */
    load: () => serial(loadAll),
  };
}

export type SchemaRegistry = ReturnType<typeof createSchemaRegistry>;

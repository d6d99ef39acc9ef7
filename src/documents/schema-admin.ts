/**
 * Collection schemas changed at run time (`/schemas`): checked exactly as schema files are at boot,
 * stored as a new version (schema-store.ts), announced to the fleet, and applied by this instance
 * before the answer leaves. Knows no HTTP.
 */
import { AppError } from '../errors.js';
import {
  compileCollectionSchema,
  diffSchemas,
  namespaceProblem,
  resolvePlan,
  type CompiledSchema,
  type KeysFound,
  type MissingKey,
  type NamespaceRules,
  type SchemaChanges,
} from './collection-schema.js';
import { compilePlan, SchemaError, type ObjectNode } from './encryption-plan.js';
import type { RegisteredSchema, SchemaRegistry } from './schema-registry.js';
import { liveVersion, type CurrentSchemaDocument, type SchemaStore, type SchemaVersionDocument } from './schema-store.js';

/** The largest schema accepted, as JSON text: far above any real collection's, far below a document's 16 MB. */
export const MAX_SCHEMA_BYTES = 262_144;

export interface SchemaAdminOptions {
  store: SchemaStore;
  registry: SchemaRegistry;
  rules: NamespaceRules;
  findKeys(keyAltNames: string[], keyIds: string[]): Promise<KeysFound>;
  /** Announce a namespace's new version to the fleet (before the answer). */
  recordChange(ns: string): Promise<void>;
}

export interface SchemaSummary {
  ns: string;
  version: number;
  updatedAt: string;
  updatedBy: string;
  source: RegisteredSchema['source'];
  file?: string;
  fileHash?: string;
  comment?: string;
  status: RegisteredSchema['status'];
  missingKeys: MissingKey[];
}

export interface PutInput {
  schema: unknown;
  comment?: string;
  ifVersion?: number;
}

export function summaryOf(entry: RegisteredSchema): SchemaSummary {
  return {
    ns: entry.namespace,
    version: entry.version,
    updatedAt: entry.updatedAt.toISOString(),
    updatedBy: entry.updatedBy,
    source: entry.source,
    ...(entry.file !== undefined ? { file: entry.file, fileHash: entry.fileHash } : {}),
    ...(entry.comment !== undefined ? { comment: entry.comment } : {}),
    status: entry.status,
    missingKeys: entry.missingKeys,
  };
}

function versionView(doc: SchemaVersionDocument) {
  return {
    version: doc.version,
    change: doc.change,
    updatedAt: doc.updatedAt.toISOString(),
    updatedBy: doc.updatedBy,
    source: doc.source,
    ...(doc.file !== undefined ? { file: doc.file, fileHash: doc.fileHash } : {}),
    ...(doc.comment !== undefined ? { comment: doc.comment } : {}),
    ...(doc.schemaJson !== undefined ? { schema: JSON.parse(doc.schemaJson) as unknown } : {}),
  };
}

export function createSchemaAdmin({ store, registry, rules, findKeys, recordChange }: SchemaAdminOptions) {
  function checkNamespace(ns: string): void {
    const problem = namespaceProblem(ns, rules);
    if (problem !== undefined) throw new AppError('INVALID_NAMESPACE', `${problem}.`);
  }

  /** The schema checked as a file is at boot; 400 INVALID_SCHEMA naming the schema path. */
  function compile(ns: string, schema: unknown): { compiled: CompiledSchema; schemaJson: string } {
    const schemaJson = JSON.stringify(schema);
    const bytes = Buffer.byteLength(schemaJson, 'utf8');
    if (bytes > MAX_SCHEMA_BYTES) throw new AppError('INVALID_SCHEMA', `$: the schema is ${bytes} bytes as JSON; at most ${MAX_SCHEMA_BYTES}.`);
    try {
      return { compiled: compileCollectionSchema(ns, schema), schemaJson };
    } catch (err) {
      if (err instanceof SchemaError) throw new AppError('INVALID_SCHEMA', err.message);
      throw err;
    }
  }

  /**
   * The summary of the version a write stored: the registry's, unless a newer version (another
   * writer's) is installed already; then this one's status is worked out on its own.
   */
  async function summaryOfVersion(doc: CurrentSchemaDocument, compiled: CompiledSchema): Promise<SchemaSummary> {
    const entry = registry.get(doc._id);
    if (entry?.version === doc.version) return summaryOf(entry);
    const { missingKeys } = resolvePlan(compiled, await findKeys(compiled.keyAltNames, compiled.keyIds));
    return {
      ns: doc._id,
      version: doc.version,
      updatedAt: doc.updatedAt.toISOString(),
      updatedBy: doc.updatedBy,
      source: doc.source,
      ...(doc.file !== undefined ? { file: doc.file, fileHash: doc.fileHash } : {}),
      ...(doc.comment !== undefined ? { comment: doc.comment } : {}),
      status: missingKeys.length === 0 ? 'ready' : 'notReady',
      missingKeys,
    };
  }

  /** The encryption plan of a stored version, to compare a new one with (none when it has no live schema). */
  function planOf(doc: CurrentSchemaDocument | null): ObjectNode | undefined {
    if (doc === null || liveVersion(doc) === 0) return undefined;
    const entry = registry.get(doc._id);
    if (entry?.version === doc.version) return entry.compiled.plan;
    try {
      return compilePlan(JSON.parse(doc.schemaJson!));
    } catch {
      // Stored by a version of the service with other rules: everything reads as added.
      return undefined;
    }
  }

  async function entryOf(ns: string): Promise<RegisteredSchema> {
    await registry.whenLoaded();
    const entry = registry.get(ns);
    if (entry === undefined) throw new AppError('COLLECTION_NOT_FOUND');
    return entry;
  }

  return {
    async list(): Promise<SchemaSummary[]> {
      await registry.whenLoaded();
      return registry.list().map(summaryOf);
    },

    async get(ns: string) {
      const entry = await entryOf(ns);
      return { ...summaryOf(entry), schema: JSON.parse(entry.schemaJson) as unknown };
    },

    /**
     * What storing `input` would change (encrypted paths added, removed or encrypted differently,
     * and whether its keys exist), without storing it.
     */
    async dryRun(ns: string, input: PutInput) {
      checkNamespace(ns);
      const { compiled } = compile(ns, input.schema);
      const current = await store.getCurrent(ns);
      const live = liveVersion(current);
      if (input.ifVersion !== undefined && input.ifVersion !== live) {
        throw new AppError('SCHEMA_VERSION_CONFLICT', `The live version of ${ns} is ${live}, not ${input.ifVersion}.`);
      }
      const before = planOf(current);
      const { missingKeys } = resolvePlan(compiled, await findKeys(compiled.keyAltNames, compiled.keyIds));
      return {
        dryRun: true as const,
        ns,
        currentVersion: live,
        changes: diffSchemas(before, compiled.plan),
        status: missingKeys.length === 0 ? ('ready' as const) : ('notReady' as const),
        missingKeys,
      };
    },

    /**
     * Store `input` as the next version of `ns`, announce it and apply it here. `created` when the
     * namespace had no live schema before.
     */
    async put(ns: string, input: PutInput, updatedBy: string): Promise<{ created: boolean; summary: SchemaSummary & { changes: SchemaChanges } }> {
      checkNamespace(ns);
      const { compiled, schemaJson } = compile(ns, input.schema);
      await registry.whenLoaded();
      const { doc, written, previous } = await store.put(ns, {
        schemaJson,
        source: 'api',
        updatedBy,
        ...(input.comment !== undefined ? { comment: input.comment } : {}),
        ...(input.ifVersion !== undefined ? { ifVersion: input.ifVersion } : {}),
      });
      const before = written ? planOf(previous) : undefined;
      if (written) await recordChange(ns);
      await registry.changed(ns);
      return {
        created: written && liveVersion(previous) === 0,
        summary: { ...(await summaryOfVersion(doc, compiled)), changes: written ? diffSchemas(before, compiled.plan) : { added: [], removed: [], changed: [] } },
      };
    },

    /** Stop serving `ns` through /documents (its data stays as stored); the history keeps the deletion. */
    async remove(ns: string, updatedBy: string, ifVersion?: number): Promise<void> {
      await store.remove(ns, { updatedBy, ...(ifVersion !== undefined ? { ifVersion } : {}) });
      await recordChange(ns);
      await registry.changed(ns);
    },

    /** A page of the namespace's history, newest first; 404 when it never had a schema. */
    async versions(ns: string, options: { limit: number; before?: number }) {
      const docs = await store.history(ns, { limit: options.limit + 1, ...(options.before !== undefined ? { before: options.before } : {}) });
      if (docs.length === 0 && options.before === undefined) throw new AppError('COLLECTION_NOT_FOUND');
      const page = docs.slice(0, options.limit);
      return { items: page.map(versionView), ...(docs.length > options.limit ? { next: page.at(-1)!.version } : {}) };
    },
  };
}

export type SchemaAdmin = ReturnType<typeof createSchemaAdmin>;

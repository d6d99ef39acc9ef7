/**
 * Loads the per-collection CSFLE schemas (`<db>.<coll>.json` in MongoDB's automatic-encryption
 * syntax) at start-up and checks them, so a mistake stops the boot with a message naming the file
 * and the schema path. Only namespaces with a schema are reachable through /documents.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compilePlan, listEncryptedPaths, SchemaError, type ObjectNode } from './encryption-plan.js';
import { createPlaintextValidator, type PlaintextValidator } from './plaintext-validator.js';

export interface CollectionSchema {
  namespace: string;
  db: string;
  collection: string;
  file: string;
  plan: ObjectNode | undefined;
  validator: PlaintextValidator;
  /** The data keys the schema names by id (canonical UUID text), alt names it named included once resolved. */
  keyIds: string[];
  /** The data keys the schema names by alt name. (Keys named by a document's `keyId` pointer are not known here.) */
  keyAltNames: string[];
}

export interface KeyLookup {
  /** Key ids by alt name, for the names given; absent names have no key. */
  idsByAltName(names: string[]): Promise<Map<string, string>>;
  /** Which of these key ids exist. */
  existingIds(ids: string[]): Promise<Set<string>>;
}

const namespacePattern = /^([^.$/\\ "]+)\.([^$]+)$/;

export class SchemaLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaLoadError';
  }
}

/** The keys a compiled schema names, by id and by alt name, each once. */
function namedKeys(plan: ObjectNode | undefined): { keyIds: string[]; keyAltNames: string[] } {
  const keyIds = new Set<string>();
  const keyAltNames = new Set<string>();
  for (const { node } of listEncryptedPaths(plan)) {
    if (node.key.kind === 'id') keyIds.add(node.key.id);
    if (node.key.kind === 'altName') keyAltNames.add(node.key.name);
  }
  return { keyIds: [...keyIds].sort(), keyAltNames: [...keyAltNames].sort() };
}

/** Read and compile every schema file in a directory (no database access). */
export function readSchemaDirectory(dir: string, options: { required: boolean; keyVaultNamespace: string; internalNamespaces?: string[] }): CollectionSchema[] {
  if (!existsSync(dir)) {
    if (options.required) throw new SchemaLoadError(`SCHEMAS_DIR ${dir} does not exist`);
    return [];
  }
  const schemas: CollectionSchema[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const namespace = file.slice(0, -'.json'.length);
    const match = namespacePattern.exec(namespace);
    if (match === null) throw new SchemaLoadError(`${file}: the file name must be <db>.<collection>.json`);
    if (namespace === options.keyVaultNamespace) throw new SchemaLoadError(`${file}: the key vault cannot be a document collection`);
    // The service's own collections (clients, audit, jobs, idempotency …; by convention named
    // __*) and MongoDB's system.* must never be opened to document clients.
    if (options.internalNamespaces?.includes(namespace) || match[2]!.startsWith('__') || match[2]!.startsWith('system.')) {
      throw new SchemaLoadError(`${file}: ${namespace} is one of the service's own collections (or MongoDB's), not a document collection`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    } catch (err) {
      throw new SchemaLoadError(`${file}: not valid JSON (${(err as Error).message})`);
    }
    try {
      const plan = compilePlan(raw);
      const validator = createPlaintextValidator(raw as Record<string, unknown>, '$');
      schemas.push({ namespace, db: match[1]!, collection: match[2]!, file, plan, validator, ...namedKeys(plan) });
    } catch (err) {
      if (err instanceof SchemaError) throw new SchemaLoadError(`${file}: ${err.message}`);
      throw err;
    }
  }
  return schemas;
}

/**
 * Resolve key alt names named in schemas to key ids and check every static key id exists; an
 * unknown name or id stops the boot.
 */
export async function resolveSchemaKeys(schemas: CollectionSchema[], keys: KeyLookup): Promise<void> {
  const fields = schemas.flatMap((schema) => listEncryptedPaths(schema.plan).map((f) => ({ ...f, file: schema.file })));
  const altNames = [...new Set(fields.flatMap(({ node }) => (node.key.kind === 'altName' ? [node.key.name] : [])))];
  const byName = altNames.length > 0 ? await keys.idsByAltName(altNames) : new Map<string, string>();
  for (const { node, file } of fields) {
    if (node.key.kind !== 'altName') continue;
    const id = byName.get(node.key.name);
    if (id === undefined) throw new SchemaLoadError(`${file}: ${node.schemaPath}: key alt name "${node.key.name}" names no data key`);
    node.key = { kind: 'id', id };
  }
  // The schema now uses those keys by id: a key keeps counting as used by it even if the name
  // that led to it moves away.
  for (const schema of schemas) {
    const resolved = schema.keyAltNames.flatMap((name) => byName.get(name) ?? []);
    schema.keyIds = [...new Set([...schema.keyIds, ...resolved])].sort();
  }
  const ids = [...new Set(fields.flatMap(({ node }) => (node.key.kind === 'id' ? [node.key.id] : [])))];
  const existing = ids.length > 0 ? await keys.existingIds(ids) : new Set<string>();
  for (const { node, file } of fields) {
    if (node.key.kind === 'id' && !existing.has(node.key.id)) {
      throw new SchemaLoadError(`${file}: ${node.schemaPath}: key id ${node.key.id} names no data key`);
    }
  }
}

/** The current collection schemas, as the services above the documents layer see them. */
export function createSchemaRegistry(schemas: CollectionSchema[]) {
  return {
    /** Every current collection schema, with the data keys it names (`keyIds`, `keyAltNames`). */
    list(): readonly CollectionSchema[] {
      return schemas;
    },
  };
}

export type SchemaRegistry = ReturnType<typeof createSchemaRegistry>;

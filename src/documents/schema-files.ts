/**
 * The per-collection CSFLE schema files (`<db>.<coll>.json` in SCHEMAS_DIR), read and checked at
 * start-up so a mistake stops the boot with a message naming the file and the schema path. Keys
 * are not looked up here: a schema naming a key that does not exist yet is served once it does.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileCollectionSchema, isNamespace, namespaceProblem, type NamespaceRules } from './collection-schema.js';
import { SchemaError } from './encryption-plan.js';

export interface SchemaFile {
  namespace: string;
  file: string;
  /** The schema as stored: its JSON, normalised (whitespace does not make a new version). */
  schemaJson: string;
  /** `sha256:<hex>` of the file's bytes: the file is imported again when this changes. */
  fileHash: string;
}

export class SchemaLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaLoadError';
  }
}

/** Read and check every schema file of a directory (no database access). */
export function readSchemaDirectory(dir: string, options: NamespaceRules & { required: boolean }): SchemaFile[] {
  if (!existsSync(dir)) {
    if (options.required) throw new SchemaLoadError(`SCHEMAS_DIR ${dir} does not exist`);
    return [];
  }
  const files: SchemaFile[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const namespace = file.slice(0, -'.json'.length);
    if (!isNamespace(namespace)) throw new SchemaLoadError(`${file}: the file name must be <db>.<collection>.json`);
    const problem = namespaceProblem(namespace, options);
    if (problem !== undefined) throw new SchemaLoadError(`${file}: ${problem}`);
    const bytes = readFileSync(join(dir, file));
    let raw: unknown;
    try {
      raw = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new SchemaLoadError(`${file}: not valid JSON (${(err as Error).message})`);
    }
    try {
      compileCollectionSchema(namespace, raw);
    } catch (err) {
      if (err instanceof SchemaError) throw new SchemaLoadError(`${file}: ${err.message}`);
      throw err;
    }
    files.push({ namespace, file, schemaJson: JSON.stringify(raw), fileHash: `sha256:${createHash('sha256').update(bytes).digest('hex')}` });
  }
  return files;
}

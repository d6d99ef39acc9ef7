/**
 * One collection's CSFLE schema, compiled: the encryption plan and the plaintext validator, and
 * the data keys it names. The same checks whether the schema comes from a file at boot or from
 * `PUT /schemas/{ns}`, so both give the same messages. Pure: no I/O. Key alt names and ids are
 * resolved against the key vault afterwards (`resolvePlan`), as often as keys change, without
 * compiling again.
 */
import { compilePlan, listEncryptedPaths, SchemaError, type EncryptNode, type ObjectNode, type PlanNode } from './encryption-plan.js';
import { createPlaintextValidator, type PlaintextValidator } from './plaintext-validator.js';

/** A compiled schema: what a version of a namespace's schema becomes, once. */
export interface CompiledSchema {
  namespace: string;
  db: string;
  collection: string;
  /** The plan as written: keys by alt name, by id or by pointer (see `resolvePlan`). */
  plan: ObjectNode | undefined;
  validator: PlaintextValidator;
  /** Data keys the schema names by id (canonical UUID strings). */
  keyIds: string[];
  /** Data keys the schema names by alt name. */
  keyAltNames: string[];
}

/** What /documents serves a namespace with: a plan whose every static key is a key id that exists. */
export interface CollectionSchema {
  namespace: string;
  db: string;
  collection: string;
  version: number;
  plan: ObjectNode | undefined;
  validator: PlaintextValidator;
}

export type MissingKey = { keyAltName: string } | { keyId: string };

export interface NamespaceRules {
  keyVaultNamespace: string;
  /** The service's own collections whose names do not start with `__` (configurable ones). */
  internalNamespaces?: string[];
}

const namespacePattern = /^([^.$/\\ "]+)\.([^$]+)$/;

/**
 * JSON nesting a schema may have. A CSFLE schema nests two levels per document level, and MongoDB
 * documents nest at most 100 deep; deeper input would only exhaust the compilers' stacks.
 */
export const MAX_SCHEMA_DEPTH = 200;

/** Whether `namespace` reads as `<db>.<collection>`. */
export function isNamespace(namespace: string): boolean {
  return namespacePattern.test(namespace);
}

/** Why `namespace` cannot hold a document collection, or undefined when it can. */
export function namespaceProblem(namespace: string, rules: NamespaceRules): string | undefined {
  const match = namespacePattern.exec(namespace);
  if (match === null) return 'the namespace must be <db>.<collection>';
  if (namespace === rules.keyVaultNamespace) return 'the key vault cannot be a document collection';
  // The service's own collections (clients, audit, jobs, schemas …; by convention named __*) and
  // MongoDB's system.* must never be opened to document clients.
  if (rules.internalNamespaces?.includes(namespace) || match[2]!.startsWith('__') || match[2]!.startsWith('system.')) {
    return `${namespace} is one of the service's own collections (or MongoDB's), not a document collection`;
  }
  return undefined;
}

/** The deepest nesting of arrays and objects in a JSON value, counted without recursion. */
function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > MAX_SCHEMA_DEPTH) return deepest;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/** Compile a schema for `namespace`; throws `SchemaError` naming the schema path. */
export function compileCollectionSchema(namespace: string, raw: unknown): CompiledSchema {
  const [db, ...rest] = namespace.split('.');
  if (depthOf(raw) > MAX_SCHEMA_DEPTH) throw new SchemaError('$', `nested deeper than ${MAX_SCHEMA_DEPTH} levels`);
  // compilePlan refuses anything but an object first.
  const plan = compilePlan(raw);
  const validator = createPlaintextValidator(raw as Record<string, unknown>, '$');
  const keyIds = new Set<string>();
  const keyAltNames = new Set<string>();
  for (const { node } of listEncryptedPaths(plan)) {
    if (node.key.kind === 'id') keyIds.add(node.key.id);
    if (node.key.kind === 'altName') keyAltNames.add(node.key.name);
  }
  return { namespace, db: db!, collection: rest.join('.'), plan, validator, keyIds: [...keyIds], keyAltNames: [...keyAltNames] };
}

/** What the key vault holds of the keys schemas name. */
export interface KeysFound {
  /** Key ids by alt name, for the names that name a key. */
  idsByAltName: Map<string, string>;
  /** The key ids that exist. */
  existingIds: Set<string>;
}

function resolveNode(node: PlanNode, found: KeysFound, missing: Map<string, MissingKey>): PlanNode {
  if (node.kind === 'encrypt') {
    const { key } = node;
    if (key.kind === 'altName') {
      const id = found.idsByAltName.get(key.name);
      if (id === undefined) missing.set(`name:${key.name}`, { keyAltName: key.name });
      return { ...node, key: id === undefined ? key : { kind: 'id', id } };
    }
    if (key.kind === 'id' && !found.existingIds.has(key.id)) missing.set(`id:${key.id}`, { keyId: key.id });
    return { ...node };
  }
  return {
    kind: 'object',
    properties: new Map([...node.properties].map(([name, child]) => [name, resolveNode(child, found, missing)])),
    patterns: node.patterns.map((pattern) => ({ ...pattern, node: resolveNode(pattern.node, found, missing) })),
  };
}

/**
 * A copy of the compiled plan with every key alt name replaced by its key id, and the keys that do
 * not exist. The compiled plan is left as it is: it is resolved again whenever keys change, and
 * requests in flight keep the copy they started with.
 */
export function resolvePlan(compiled: CompiledSchema, found: KeysFound): { plan: ObjectNode | undefined; missingKeys: MissingKey[] } {
  const missing = new Map<string, MissingKey>();
  const plan = compiled.plan === undefined ? undefined : (resolveNode(compiled.plan, found, missing) as ObjectNode);
  return { plan, missingKeys: [...missing.values()] };
}

/** One encrypted field rule, as the API describes it. */
export interface FieldRule {
  path: string;
  algorithm: EncryptNode['algorithm'];
  bsonType?: string[];
  keyId?: string;
  keyAltName?: string;
  /** A JSON pointer into each document naming the key's alt name. */
  keyAltNameFrom?: string;
}

export interface SchemaChanges {
  added: FieldRule[];
  removed: FieldRule[];
  changed: { path: string; before: FieldRule; after: FieldRule }[];
}

function ruleOf(path: string, node: EncryptNode): FieldRule {
  const rule: FieldRule = { path, algorithm: node.algorithm };
  if (node.bsonTypes !== undefined) rule.bsonType = node.bsonTypes;
  if (node.key.kind === 'id') rule.keyId = node.key.id;
  else if (node.key.kind === 'altName') rule.keyAltName = node.key.name;
  else rule.keyAltNameFrom = node.key.pointer;
  return rule;
}

/** The encrypted field rules of a plan, by path (patterns shown as /regex/). */
export function fieldRules(plan: ObjectNode | undefined): FieldRule[] {
  return listEncryptedPaths(plan).map(({ path, node }) => ruleOf(path, node));
}

/** Which encrypted paths a new version adds, removes, or encrypts differently (algorithm, type or key). */
export function diffSchemas(before: ObjectNode | undefined, after: ObjectNode | undefined): SchemaChanges {
  const old = new Map(fieldRules(before).map((rule) => [rule.path, rule]));
  const now = new Map(fieldRules(after).map((rule) => [rule.path, rule]));
  const changes: SchemaChanges = { added: [], removed: [], changed: [] };
  for (const [path, rule] of now) {
    const previous = old.get(path);
    if (previous === undefined) changes.added.push(rule);
    else if (JSON.stringify(previous) !== JSON.stringify(rule)) changes.changed.push({ path, before: previous, after: rule });
  }
  for (const [path, rule] of old) if (!now.has(path)) changes.removed.push(rule);
  return changes;
}

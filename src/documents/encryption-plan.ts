/**
 * Compiles a collection's automatic-encryption JSON schema (MongoDB's syntax: `encrypt`,
 * `encryptMetadata` inherited down the tree, `properties`, `patternProperties`) into a plan the
 * document walkers follow. Pure: key alt names are resolved to ids afterwards, at boot.
 */
import { BSON, Binary } from 'mongodb';
import { algorithmAllowsType, type AlgorithmName } from '../crypto/fle-payload.js';
import type { BsonTypeName } from '../crypto/bson-value.js';
import { keyIdToString } from '../key-vault/key-document.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

/** Where a field's data key comes from. */
export type KeySource =
  | { kind: 'id'; id: string }
  /** Extension: a key alt name in the schema, resolved to its id when the service starts. */
  | { kind: 'altName'; name: string }
  /** A JSON pointer into the document naming a key alt name (random algorithm only). */
  | { kind: 'pointer'; pointer: string; segments: string[] };

export interface EncryptNode {
  kind: 'encrypt';
  algorithm: AlgorithmName;
  bsonTypes: BsonTypeName[] | undefined;
  key: KeySource;
  /** Schema path, for messages and explain. */
  schemaPath: string;
}

export interface ObjectNode {
  kind: 'object';
  properties: Map<string, PlanNode>;
  patterns: { source: string; regex: RegExp; node: PlanNode }[];
}

export type PlanNode = EncryptNode | ObjectNode;

export class SchemaError extends Error {
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'SchemaError';
  }
}

const algorithmNames: Record<string, AlgorithmName> = {
  'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic': 'deterministic',
  'AEAD_AES_256_CBC_HMAC_SHA_512-Random': 'random',
};

/** MongoDB's bsonType aliases for the types CSFLE can carry. */
const bsonTypeAliases: Record<string, BsonTypeName> = {
  double: 'double',
  string: 'string',
  object: 'document',
  array: 'array',
  binData: 'binary',
  objectId: 'objectId',
  bool: 'bool',
  date: 'date',
  regex: 'regex',
  dbPointer: 'dbPointer',
  javascript: 'javascript',
  symbol: 'symbol',
  javascriptWithScope: 'javascriptWithScope',
  int: 'int',
  timestamp: 'timestamp',
  long: 'long',
  decimal: 'decimal',
};

interface Metadata {
  algorithm?: unknown;
  keyId?: unknown;
  keyAltName?: unknown;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !('_bsontype' in value);
}

function parsePointer(pointer: string, path: string): string[] {
  if (!pointer.startsWith('/') || pointer.length < 2) throw new SchemaError(path, 'a keyId pointer must look like "/field"');
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function keySource(metadata: Metadata, path: string): KeySource {
  const { keyId, keyAltName } = metadata;
  if (keyId !== undefined && keyAltName !== undefined) throw new SchemaError(path, 'give keyId or keyAltName, not both');
  if (typeof keyAltName === 'string' && keyAltName.length > 0) return { kind: 'altName', name: keyAltName };
  if (typeof keyId === 'string') return { kind: 'pointer', pointer: keyId, segments: parsePointer(keyId, path) };
  if (Array.isArray(keyId)) {
    if (keyId.length !== 1) throw new SchemaError(path, 'keyId must list exactly one key UUID');
    // Key ids are Extended JSON in the schema file: {"$uuid": "..."} or {"$binary": {..., "subType": "04"}}.
    let id: unknown = keyId[0];
    try {
      if (isObject(id)) id = EJSON.deserialize(id, { relaxed: false });
    } catch {
      id = undefined;
    }
    if (!(id instanceof Binary) || id.sub_type !== 4 || id.length() !== 16) {
      throw new SchemaError(path, 'keyId must hold a UUID ({"$uuid": "..."} or $binary subtype 04)');
    }
    return { kind: 'id', id: keyIdToString(id.buffer) };
  }
  throw new SchemaError(path, 'no key: set keyId (or keyAltName) in encrypt or in an encryptMetadata above');
}

function compileEncrypt(encrypt: unknown, inherited: Metadata, path: string): EncryptNode {
  if (!isObject(encrypt)) throw new SchemaError(path, 'encrypt must be an object');
  for (const field of Object.keys(encrypt)) {
    if (!['bsonType', 'algorithm', 'keyId', 'keyAltName'].includes(field)) throw new SchemaError(path, `unknown encrypt option "${field}"`);
  }
  const algorithmName = encrypt.algorithm ?? inherited.algorithm;
  const algorithm = typeof algorithmName === 'string' && Object.hasOwn(algorithmNames, algorithmName) ? algorithmNames[algorithmName] : undefined;
  if (algorithm === undefined) {
    throw new SchemaError(path, `algorithm must be one of ${Object.keys(algorithmNames).join(', ')} (in encrypt or an encryptMetadata above)`);
  }
  const ownKey = encrypt.keyId !== undefined || encrypt.keyAltName !== undefined;
  const key = keySource(ownKey ? { keyId: encrypt.keyId, keyAltName: encrypt.keyAltName } : inherited, path);

  let bsonTypes: BsonTypeName[] | undefined;
  if (encrypt.bsonType !== undefined) {
    const names = Array.isArray(encrypt.bsonType) ? encrypt.bsonType : [encrypt.bsonType];
    bsonTypes = names.map((name) => {
      const type = typeof name === 'string' && Object.hasOwn(bsonTypeAliases, name) ? bsonTypeAliases[name] : undefined;
      if (type === undefined) throw new SchemaError(path, `bsonType "${String(name)}" cannot be encrypted`);
      if (!algorithmAllowsType(algorithm, type)) throw new SchemaError(path, `${algorithm} encryption does not support bsonType "${String(name)}"`);
      return type;
    });
  }
  if (algorithm === 'deterministic') {
    // As in MongoDB: deterministic needs exactly one type, so equal values have equal ciphertexts.
    if (bsonTypes?.length !== 1) throw new SchemaError(path, 'deterministic encryption needs exactly one bsonType');
    if (key.kind === 'pointer') throw new SchemaError(path, 'a keyId pointer works only with the random algorithm');
  }
  return { kind: 'encrypt', algorithm, bsonTypes, key, schemaPath: path };
}

function containsEncrypt(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.some(containsEncrypt);
  if (!isObject(schema)) return false;
  return 'encrypt' in schema || Object.values(schema).some(containsEncrypt);
}

function compileNode(schema: unknown, inherited: Metadata, path: string, root = false): PlanNode | undefined {
  if (!isObject(schema)) return undefined;
  const metadata: Metadata = { ...inherited };
  if (schema.encryptMetadata !== undefined) {
    if (!isObject(schema.encryptMetadata)) throw new SchemaError(path, 'encryptMetadata must be an object');
    const own = schema.encryptMetadata;
    if (own.algorithm !== undefined) metadata.algorithm = own.algorithm;
    if (own.keyId !== undefined || own.keyAltName !== undefined) {
      metadata.keyId = own.keyId;
      metadata.keyAltName = own.keyAltName;
    }
  }
  if (schema.encrypt !== undefined) {
    const others = Object.keys(schema).filter((k) => !['encrypt', 'description', 'title'].includes(k));
    if (others.length > 0) throw new SchemaError(path, `an encrypted field takes no other keywords (found ${others.join(', ')})`);
    return compileEncrypt(schema.encrypt, metadata, path);
  }
  for (const keyword of ['items', 'additionalItems', 'additionalProperties', 'anyOf', 'allOf', 'oneOf', 'not', 'dependencies']) {
    if (containsEncrypt(schema[keyword])) throw new SchemaError(`${path}.${keyword}`, 'encrypt is supported only under properties and patternProperties');
  }

  const properties = new Map<string, PlanNode>();
  if (schema.properties !== undefined) {
    if (!isObject(schema.properties)) throw new SchemaError(`${path}.properties`, 'must be an object');
    for (const [name, sub] of Object.entries(schema.properties)) {
      const node = compileNode(sub, metadata, `${path}.properties.${name}`);
      if (node !== undefined) properties.set(name, node);
    }
  }
  const patterns: ObjectNode['patterns'] = [];
  if (schema.patternProperties !== undefined) {
    if (!isObject(schema.patternProperties)) throw new SchemaError(`${path}.patternProperties`, 'must be an object');
    for (const [source, sub] of Object.entries(schema.patternProperties)) {
      let regex: RegExp;
      try {
        regex = new RegExp(source, 'u');
      } catch {
        throw new SchemaError(`${path}.patternProperties`, `invalid pattern ${JSON.stringify(source)}`);
      }
      const node = compileNode(sub, metadata, `${path}.patternProperties.${source}`);
      if (node !== undefined) patterns.push({ source, regex, node });
    }
  }
  // A field reached by two rules (a property and an encrypting pattern) is ambiguous: refuse it.
  for (const name of Object.keys(isObject(schema.properties) ? schema.properties : {})) {
    for (const pattern of patterns) {
      if (pattern.regex.test(name)) {
        throw new SchemaError(`${path}.properties.${name}`, `conflicts with patternProperties ${JSON.stringify(pattern.source)}`);
      }
    }
  }
  if (properties.size === 0 && patterns.length === 0) return undefined;
  // As mongocryptd: below the root, a schema holding encrypted fields must say it is a document;
  // otherwise the field may hold anything (an array, a scalar) and the encrypted paths mean nothing.
  if (!root && !saysObject(schema)) throw new SchemaError(path, 'a field with encrypted fields below it must say "bsonType": "object"');
  return { kind: 'object', properties, patterns };
}

function saysObject(schema: Record<string, unknown>): boolean {
  const only = (value: unknown) => value === 'object' || (Array.isArray(value) && value.length === 1 && value[0] === 'object');
  return only(schema.bsonType) || only(schema.type);
}

/** Compile a whole collection schema; undefined when nothing in it is encrypted. */
export function compilePlan(schema: unknown, path = '$'): ObjectNode | undefined {
  if (!isObject(schema)) throw new SchemaError(path, 'the schema must be an object');
  const plan = compileNode(schema, {}, path, true);
  if (plan?.kind === 'encrypt') throw new SchemaError(path, 'the document itself cannot be encrypted');
  if (plan?.properties.has('_id')) {
    // A plan node below _id exists only where something in it is encrypted.
    throw new SchemaError(`${path}.properties._id`, plan.properties.get('_id')!.kind === 'encrypt' ? '_id cannot be encrypted' : '_id cannot hold encrypted fields');
  }
  // Nor by a pattern: _id is how documents are found, by equality on its plaintext.
  const byPattern = plan?.patterns.find((pattern) => pattern.regex.test('_id'));
  if (byPattern !== undefined) throw new SchemaError(`${path}.patternProperties`, `${JSON.stringify(byPattern.source)} matches _id, which cannot be encrypted or hold encrypted fields`);
  return plan;
}

/** Every encrypt node of a plan with its field path (patterns shown as /regex/). */
export function listEncryptedPaths(plan: ObjectNode | undefined, prefix = ''): { path: string; node: EncryptNode }[] {
  if (plan === undefined) return [];
  const out: { path: string; node: EncryptNode }[] = [];
  const visit = (node: PlanNode, path: string) => {
    if (node.kind === 'encrypt') out.push({ path, node });
    else out.push(...listEncryptedPaths(node, `${path}.`));
  };
  for (const [name, node] of plan.properties) visit(node, `${prefix}${name}`);
  for (const { source, node } of plan.patterns) visit(node, `${prefix}/${source}/`);
  return out;
}

/** The rule for one field name of an object node, or an error when two patterns claim it. */
export function ruleFor(node: ObjectNode, name: string): PlanNode | undefined | 'conflict' {
  const direct = node.properties.get(name);
  if (direct !== undefined) return direct;
  let found: PlanNode | undefined;
  for (const pattern of node.patterns) {
    if (pattern.regex.test(name)) {
      if (found !== undefined) return 'conflict';
      found = pattern.node;
    }
  }
  return found;
}

/** An encrypted field as a dry run (explain) reports it: which rule encrypts it, how, and why here. */
export function describeEncryptedField(path: string, node: EncryptNode, reason: string) {
  return {
    path,
    algorithm: node.algorithm,
    bsonType: node.bsonTypes?.[0] === undefined ? undefined : node.bsonTypes,
    ...(node.key.kind === 'id' ? { keyId: node.key.id } : { keyAltNameFrom: (node.key as { pointer: string }).pointer }),
    rule: node.schemaPath,
    reason,
  };
}

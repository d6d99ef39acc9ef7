/**
 * The document walker: finds the fields a collection plan encrypts in a plaintext document (the
 * jobs the encryption engine then runs), and the ciphertexts in documents read back. It uses no
 * key; it only says where values go.
 */
import { parsePayload, type ParsedPayload } from '../crypto/fle-payload.js';
import { AppError } from '../errors.js';
import { bsonTypeAlias, isCiphertext, isPlainObject } from './bson-types.js';
import { ruleFor, type EncryptNode, type ObjectNode, type PlanNode } from './encryption-plan.js';

/** One field to encrypt: where it is, its plaintext, and the rule that applies. */
export interface FieldJob {
  parent: Record<string, unknown>;
  name: string;
  path: string;
  node: EncryptNode;
  /** The document a keyId pointer is read from. */
  root: Record<string, unknown>;
}

function joinPath(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

function describeShape(value: unknown): string {
  const type = bsonTypeAlias(value);
  if (type === 'object' && (value as { _bsontype?: string })._bsontype === 'DBRef') return 'a DBRef';
  return type === 'array' ? 'an array' : `a value of type ${type}`;
}

/**
 * Find the fields of `value` (at `path`) that `node` encrypts. Refuses, naming the path, any shape
 * that could hide a field the plan encrypts.
 */
export function collectJobs(
  value: unknown,
  node: PlanNode,
  path: string,
  root: Record<string, unknown>,
  jobs: FieldJob[] = [],
  parent?: { object: Record<string, unknown>; name: string },
): FieldJob[] {
  if (node.kind === 'encrypt') {
    if (parent === undefined) throw new Error('an encrypt rule needs a parent object');
    if (isCiphertext(value)) throw new AppError('UNSUPPORTED_BSON_TYPE', `${path}: the value is already ciphertext.`);
    jobs.push({ parent: parent.object, name: parent.name, path, node, root });
    return jobs;
  }
  // A node with encrypted fields below it holds a plain document, nothing else: an array, a DBRef,
  // a scalar or an operator-shaped object would carry its encrypted fields past the walker in
  // plaintext (CSFLE refuses an encrypted field inside an array for the same reason).
  if (!isPlainObject(value)) {
    throw new AppError('INVALID_DOCUMENT_SHAPE', `${path || 'The document'} must be a plain document: it has encrypted fields (found ${describeShape(value)}).`);
  }
  for (const name of Object.keys(value)) {
    if (name.startsWith('$') || name.includes('.')) {
      throw new AppError('INVALID_DOCUMENT_SHAPE', `${path || 'The document'}: field names starting with $ or holding a dot are not allowed where fields are encrypted.`);
    }
    const rule = ruleFor(node, name);
    const fieldPath = joinPath(path, name);
    if (rule === 'conflict') throw new AppError('SCHEMA_RULE_CONFLICT', `${fieldPath} matches two patternProperties rules.`);
    if (rule !== undefined) collectJobs(value[name], rule, fieldPath, root, jobs, { object: value, name });
  }
  return jobs;
}

export interface FoundCiphertext {
  parent: Record<string, unknown> | unknown[];
  name: string | number;
  path: string;
  document: number;
  parsed: ParsedPayload | undefined;
}

export function findCiphertexts(value: unknown, path: string, document: number, out: FoundCiphertext[], parent?: FoundCiphertext['parent'], name?: string | number): void {
  if (isCiphertext(value)) {
    let parsed: ParsedPayload | undefined;
    try {
      parsed = parsePayload(value.buffer);
    } catch {
      parsed = undefined;
    }
    out.push({ parent: parent!, name: name!, path, document, parsed });
    return;
  }
  if (Array.isArray(value)) value.forEach((item, i) => findCiphertexts(item, joinPath(path, String(i)), document, out, value, i));
  else if (isPlainObject(value)) for (const [k, v] of Object.entries(value)) findCiphertexts(v, joinPath(path, k), document, out, value, k);
}

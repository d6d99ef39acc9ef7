/**
 * Encrypts the fields a plan names in plaintext documents, and decrypts every ciphertext found in
 * documents read back. Data keys for a whole request are fetched in one go (one key-vault query for
 * what is not cached), then used synchronously.
 */
import { UUID, type Binary } from 'mongodb';
import { AeadError } from '../crypto/aead.js';
import { decryptAll, encryptValue, parsePayload, UnsupportedTypeError, type ParsedPayload } from '../crypto/fle-payload.js';
import { AppError, isAppError } from '../errors.js';
import { keyIdToString } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';
import { noMetrics, type Metrics } from '../metrics/metrics.js';
import { isCiphertext, isPlainObject } from './bson-types.js';
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

/** Find the fields of `value` (at `path`) that `node` encrypts. */
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
  if (!isPlainObject(value)) return jobs;
  for (const name of Object.keys(value)) {
    const rule = ruleFor(node, name);
    const fieldPath = joinPath(path, name);
    if (rule === 'conflict') throw new AppError('SCHEMA_RULE_CONFLICT', `${fieldPath} matches two patternProperties rules.`);
    if (rule !== undefined) collectJobs(value[name], rule, fieldPath, root, jobs, { object: value, name });
  }
  return jobs;
}

function readPointer(root: Record<string, unknown>, segments: string[]): unknown {
  let value: unknown = root;
  for (const segment of segments) {
    if (!isPlainObject(value)) return undefined;
    value = value[segment];
  }
  return value;
}

/**
 * Encrypt the given jobs in place. Every job's key is resolved and fetched before any field is
 * touched, so a missing key fails the whole document before it is half encrypted.
 */
export async function encryptJobs(
  jobs: FieldJob[],
  keyVault: KeyVault,
  metrics: Metrics = noMetrics,
  successor: (keyId: string) => string = (keyId) => keyId,
): Promise<void> {
  const keyIds: string[] = [];
  for (const job of jobs) {
    const { key } = job.node;
    if (key.kind === 'id') keyIds.push(key.id);
    else if (key.kind === 'pointer') {
      const name = readPointer(job.root, key.segments);
      if (typeof name !== 'string' || name.length === 0) {
        throw new AppError('DOCUMENT_VALIDATION_FAILED', `${job.path}: its key is named by ${key.pointer}, which must be a non-empty string.`);
      }
      try {
        keyIds.push(keyIdToString((await keyVault.resolveAltName(name)).buffer));
      } catch (err) {
        if (isAppError(err) && err.code === 'KEY_NOT_FOUND') {
          throw new AppError('UNKNOWN_KEY_ALT_NAME', `${job.path}: ${key.pointer} names no data key.`);
        }
        throw err;
      }
    } else {
      throw new Error(`unresolved key alt name at ${job.node.schemaPath}`);
    }
  }
  // A key under rotation in this collection is replaced by its successor for every new write.
  for (let i = 0; i < keyIds.length; i++) keyIds[i] = successor(keyIds[i]!);
  const ciphertexts: Binary[] = await keyVault.withDataKeys(keyIds, (keys) =>
    jobs.map((job, index) => {
      const id = keyIds[index]!;
      const key = keys.get(id);
      if (!(key instanceof Buffer)) throw key ?? new AppError('KEY_NOT_FOUND');
      try {
        return encryptValue(job.parent[job.name], new UUID(id).buffer, key, job.node.algorithm);
      } catch (err) {
        if (err instanceof UnsupportedTypeError) {
          throw new AppError('UNSUPPORTED_BSON_TYPE', `${job.path}: ${err.algorithm} encryption does not support BSON type ${err.bsonType}.`);
        }
        throw err;
      }
    }),
  );
  jobs.forEach((job, index) => {
    job.parent[job.name] = ciphertexts[index];
    metrics.cryptoOperation('encrypt', job.node.algorithm, 'ok');
  });
}

/** Encrypt a whole document in place according to a collection plan. */
export async function encryptDocument(
  document: Record<string, unknown>,
  plan: ObjectNode | undefined,
  keyVault: KeyVault,
  metrics: Metrics = noMetrics,
  successor?: (keyId: string) => string,
): Promise<void> {
  if (plan === undefined) return;
  await encryptJobs(collectJobs(document, plan, '', document), keyVault, metrics, successor);
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

/**
 * Decrypt every ciphertext in the documents, in place. A field that cannot be decrypted (its key
 * deleted, unreadable or tampered with) becomes null and its path is listed for that document:
 * never an error for the whole response, never ciphertext passed off as data.
 */
export async function decryptDocuments(
  documents: Record<string, unknown>[],
  keyVault: KeyVault,
  authorize?: (keyIds: string[]) => Promise<Set<string>>,
  metrics: Metrics = noMetrics,
): Promise<{ unreadable: Map<number, string[]>; masked: Map<number, string[]> }> {
  const found: FoundCiphertext[] = [];
  documents.forEach((doc, index) => findCiphertexts(doc, '', index, found));
  const unreadable = new Map<number, string[]>();
  const masked = new Map<number, string[]>();
  if (found.length === 0) return { unreadable, masked };
  let ids = [...new Set(found.flatMap((f) => (f.parsed ? [keyIdToString(f.parsed.keyId)] : [])))];
  if (authorize) {
    // Fields under keys the caller may not decrypt are masked: null, and listed as masked.
    const allowed = await authorize(ids);
    ids = ids.filter((id) => allowed.has(id));
    for (let i = found.length - 1; i >= 0; i--) {
      const field = found[i]!;
      if (field.parsed && !allowed.has(keyIdToString(field.parsed.keyId))) {
        (field.parent as Record<string | number, unknown>)[field.name] = null;
        masked.set(field.document, [...(masked.get(field.document) ?? []), field.path]);
        found.splice(i, 1);
      }
    }
  }
  await keyVault.withDataKeys(ids, (keys) => {
    for (const key of keys.values()) if (key instanceof AppError && key.code === 'KMS_UNAVAILABLE') throw key;
    const parsed = found.flatMap((field) => (field.parsed ? [field.parsed] : []));
    const values = decryptAll(parsed, (keyId) => {
      const key = keys.get(keyIdToString(keyId));
      return key instanceof Buffer ? key : undefined;
    });
    let next = 0;
    for (const field of found) {
      const decrypted = field.parsed ? values[next++] : undefined;
      const ok = decrypted !== undefined && !(decrypted instanceof AeadError);
      const value = ok ? decrypted : null;
      metrics.cryptoOperation('decrypt', field.parsed?.algorithm ?? 'unknown', ok ? 'ok' : 'error');
      if (!ok) {
        const paths = unreadable.get(field.document) ?? [];
        paths.push(field.path);
        unreadable.set(field.document, paths);
      }
      (field.parent as Record<string | number, unknown>)[field.name] = ok ? value : null;
    }
  });
  for (const paths of masked.values()) paths.reverse();
  return { unreadable, masked };
}

/**
 * Where the documents layer meets the encryption engine: the fields the walker found are encrypted
 * (purpose `write`), equality values of filters are encrypted (purpose `query`, a read of the
 * field), and ciphertexts read back are decrypted (purpose `decrypt`). Keys are never touched
 * here: the engine authorizes and uses them.
 */
import type { Binary, UUID } from 'mongodb';
import type { Caller } from '../encryption/access.js';
import type { EncryptionEngine, EncryptItem } from '../encryption/encryption-engine.js';
import { AppError } from '../errors.js';
import { keyIdToString } from '../key-vault/key-document.js';
import { isPlainObject } from './bson-types.js';
import { findCiphertexts, type FieldJob, type FoundCiphertext } from './document-crypto.js';
import type { EqualitySlot } from './query-rewriter.js';

/**
 * What a write encrypted. `blind`: a deterministic value under a key the writer may not decrypt.
 * Its ciphertext equals the stored one exactly when the plaintexts are equal, so the database's
 * "modified" count would confirm a guess: such a writer is told every matched document was modified.
 */
export interface WrittenValues {
  blind: boolean;
}

/** Old key id → the ids a value must be written under, or matched against, during a rotation. */
export type Successor = (keyId: string) => string;

export interface FieldEncryptionOptions {
  engine: EncryptionEngine;
  /** Key alt names to ids (keyId pointers name keys by alt name). Metadata only, no key material. */
  resolveAltNames(names: string[]): Promise<Map<string, UUID>>;
}

function readPointer(root: Record<string, unknown>, segments: string[]): unknown {
  let value: unknown = root;
  for (const segment of segments) {
    if (!isPlainObject(value)) return undefined;
    value = value[segment];
  }
  return value;
}

/** An engine error for one field, with the field's path where the path helps the caller. */
function fieldError(error: AppError, path: string): AppError {
  if (error.code === 'UNSUPPORTED_BSON_TYPE' || error.code === 'INVALID_EXTENDED_JSON') {
    return new AppError(error.code, `${path}: ${error.detail ?? error.message}`);
  }
  return error;
}

export function createFieldEncryption({ engine, resolveAltNames }: FieldEncryptionOptions) {
  /** Each job's data key id: the schema's, or the alt name its keyId pointer reads from the document. */
  async function keyIdsOf(jobs: FieldJob[]): Promise<string[]> {
    const names: (string | undefined)[] = jobs.map((job) => {
      const { key } = job.node;
      if (key.kind === 'id') return undefined;
      if (key.kind !== 'pointer') throw new Error(`unresolved key alt name at ${job.node.schemaPath}`);
      const name = readPointer(job.root, key.segments);
      if (typeof name !== 'string' || name.length === 0) {
        throw new AppError('DOCUMENT_VALIDATION_FAILED', `${job.path}: its key is named by ${key.pointer}, which must be a non-empty string.`);
      }
      return name;
    });
    const wanted = [...new Set(names.filter((n): n is string => n !== undefined))];
    const byName = wanted.length > 0 ? await resolveAltNames(wanted) : new Map<string, UUID>();
    return jobs.map((job, index) => {
      const { key } = job.node;
      if (key.kind === 'id') return key.id;
      const id = byName.get(names[index]!);
      if (id === undefined) throw new AppError('UNKNOWN_KEY_ALT_NAME', `${job.path}: ${(key as { pointer: string }).pointer} names no data key you may encrypt with.`);
      return keyIdToString(id.buffer);
    });
  }

  return {
    /**
     * Encrypt the jobs' fields in place, for a write to `collection`. Every field is encrypted
     * before any is replaced, so a failure leaves the document untouched.
     */
    async encryptJobs(jobs: FieldJob[], caller: Caller, collection: string, successor: Successor): Promise<WrittenValues> {
      if (jobs.length === 0) return { blind: false };
      // A key under rotation in this collection is replaced by its successor for every new write.
      const keyIds = (await keyIdsOf(jobs)).map(successor);
      // Keys the schema names, and keys the document names (a keyId pointer): the writer chose the
      // latter, so they are authorized as its own use of those keys.
      const fromDocument = jobs.map((job) => job.node.key.kind === 'pointer');
      const ciphertexts: Binary[] = new Array(jobs.length);
      for (const chosen of [false, true]) {
        const indexes = jobs.flatMap((_, i) => (fromDocument[i] === chosen ? [i] : []));
        if (indexes.length === 0) continue;
        const items: EncryptItem[] = indexes.map((i) => ({ value: jobs[i]!.parent[jobs[i]!.name], algorithm: jobs[i]!.node.algorithm, keyId: keyIds[i]! }));
        const { results } = await engine.encrypt(items, { ...caller, purpose: { kind: 'write', collection, keyFromDocument: chosen } });
        results.forEach((result, j) => {
          const job = jobs[indexes[j]!]!;
          if (!result.ok) {
            if (result.error.code === 'FORBIDDEN' && chosen) {
              // As for a name no key has: a writer cannot learn which keys exist beyond its grants.
              throw new AppError('UNKNOWN_KEY_ALT_NAME', `${job.path}: ${(job.node.key as { pointer: string }).pointer} names no data key you may encrypt with.`);
            }
            throw fieldError(result.error, job.path);
          }
          ciphertexts[indexes[j]!] = result.value;
        });
      }
      jobs.forEach((job, i) => (job.parent[job.name] = ciphertexts[i]));
      const deterministic = [...new Set(keyIds.filter((_, i) => jobs[i]!.node.algorithm === 'deterministic'))];
      return { blind: deterministic.length > 0 && !(await engine.mayUse(deterministic, { ...caller, purpose: { kind: 'decrypt' } })) };
    },

    /**
     * Replace each equality slot's value by its deterministic ciphertext. A query on an encrypted
     * field is a read of it: without the right to decrypt under its key, the query is refused
     * (403 naming the path), so counts and matches are no oracle around masking. `variants`
     * gives the key ids a value must match under (two while a rotation runs).
     */
    async encryptSlots(allSlots: EqualitySlot[], caller: Caller, variants: (keyId: string) => string[]): Promise<void> {
      const keysOf = (slot: EqualitySlot) => {
        if (slot.node.key.kind !== 'id') throw new Error(`deterministic field ${slot.path} without a static key`);
        return variants(slot.node.key.id);
      };
      const access = { ...caller, purpose: { kind: 'query' } as const };
      for (const probe of allSlots.filter((slot) => slot.probe)) {
        if (!(await engine.mayUse(keysOf(probe), access))) throw new AppError('FORBIDDEN', `A query on ${probe.path} needs the decrypt right on its data key.`);
      }
      const slots = allSlots.filter((slot) => !slot.probe);
      if (slots.length === 0) return;
      const perSlot = slots.map(keysOf);
      const items: EncryptItem[] = [];
      const owner: number[] = [];
      perSlot.forEach((ids, i) => {
        const value = (slots[i]!.container as Record<string | number, unknown>)[slots[i]!.key];
        for (const keyId of ids) {
          items.push({ value, algorithm: 'deterministic', keyId });
          owner.push(i);
        }
      });
      const { results } = await engine.encrypt(items, access);
      const bySlot: Binary[][] = slots.map(() => []);
      results.forEach((result, j) => {
        const path = slots[owner[j]!]!.path;
        if (!result.ok) {
          if (result.error.code === 'FORBIDDEN') throw new AppError('FORBIDDEN', `A query on ${path} needs the decrypt right on its data key.`);
          throw fieldError(result.error, path);
        }
        bySlot[owner[j]!]!.push(result.value);
      });
      slots.forEach((slot, i) => matchAny(slot, bySlot[i]!));
    },

    /**
     * Decrypt every ciphertext in the documents, in place. A field under a key the caller may not
     * decrypt with becomes null and is listed as masked; one that cannot be decrypted (its key
     * deleted, unreadable or tampered with) becomes null and is listed as unreadable: never
     * ciphertext passed off as data. A KMS outage fails the whole read.
     */
    async decryptDocuments(documents: Record<string, unknown>[], caller: Caller): Promise<{ unreadable: Map<number, string[]>; masked: Map<number, string[]> }> {
      const found: FoundCiphertext[] = [];
      documents.forEach((doc, index) => findCiphertexts(doc, '', index, found));
      const unreadable = new Map<number, string[]>();
      const masked = new Map<number, string[]>();
      if (found.length === 0) return { unreadable, masked };
      const payloads = found.map((field) => ((field.parent as Record<string | number, unknown>)[field.name] as Binary).buffer);
      const { results } = await engine.decrypt(payloads, { ...caller, purpose: { kind: 'decrypt' } });
      for (const result of results) if (!result.ok && result.error.code === 'KMS_UNAVAILABLE') throw result.error;
      const note = (map: Map<number, string[]>, field: FoundCiphertext) => {
        const paths = map.get(field.document) ?? [];
        paths.push(field.path);
        map.set(field.document, paths);
      };
      found.forEach((field, i) => {
        const result = results[i]!;
        if (!result.ok) note(result.error.code === 'FORBIDDEN' ? masked : unreadable, field);
        (field.parent as Record<string | number, unknown>)[field.name] = result.ok ? result.value : null;
      });
      return { unreadable, masked };
    },
  };
}

export type FieldEncryption = ReturnType<typeof createFieldEncryption>;

/**
 * Make an equality slot match any of several ciphertexts (a value under an old and a new key). The
 * rewriter leaves one operator per condition on an encrypted field, so `$eq`/`$ne` become
 * `$in`/`$nin` without meeting another operator of that name.
 */
function matchAny(slot: EqualitySlot, ciphertexts: unknown[]): void {
  const { container, key } = slot;
  if (ciphertexts.length === 1 || Array.isArray(container)) {
    (container as Record<string | number, unknown>)[key] = ciphertexts[0];
    if (Array.isArray(container)) container.push(...ciphertexts.slice(1));
    return;
  }
  const record = container as Record<string, unknown>;
  if (key === '$eq' || key === '$ne') {
    if (Object.keys(record).length !== 1) throw new Error(`equality slot ${slot.path} shares its condition with another operator`);
    delete record[key];
    record[key === '$eq' ? '$in' : '$nin'] = ciphertexts;
    return;
  }
  record[key] = { $in: ciphertexts };
}

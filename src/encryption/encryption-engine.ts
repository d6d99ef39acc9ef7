/**
 * The encryption engine: the only place data keys are used. Explicit encryption (the /encrypt and
 * /decrypt API), automatic encryption of documents, query values and data-key rotation all call
 * it, as a MongoDB driver's ClientEncryption and AutoEncrypter share one core. Every call carries
 * an access context (who, and for what); the engine authorizes each key against it before the key
 * is leased, answers item by item, and reports the key ids it used for the audit trail.
 */
import { UUID, type Binary } from 'mongodb';
import { AeadError } from '../crypto/aead.js';
import { decryptAll, encryptValues, parsePayload, UnsupportedTypeError, type AlgorithmName, type ParsedPayload } from '../crypto/fle-payload.js';
import { AppError, isAppError, type ErrorCode } from '../errors.js';
import { keyIdToString } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';
import { noMetrics, type Metrics } from '../metrics/metrics.js';
import { authorizeKeys, type Access, type KeyRole } from './access.js';

/** A data key named by id (a UUID, or its canonical text) or by alt name. */
export interface KeyRef {
  keyId?: UUID | string;
  keyAltName?: string;
}

export interface EncryptItem extends KeyRef {
  value: unknown;
  algorithm: AlgorithmName;
}

export type ItemResult<T> = { ok: true; value: T } | { ok: false; error: AppError };

/** Per-item results, in the order asked, and the data keys the call used (for the audit trail). */
export interface Outcome<T> {
  results: ItemResult<T>[];
  keyIds: string[];
}

/** Errors that say "try later" rather than anything about the ciphertext; they keep their code. */
const availabilityCodes = new Set<ErrorCode>(['KMS_UNAVAILABLE']);

function asEncryptError(err: unknown): AppError {
  if (err instanceof UnsupportedTypeError) {
    return new AppError('UNSUPPORTED_BSON_TYPE', `${err.algorithm} encryption does not support BSON type ${err.bsonType}.`);
  }
  if (isAppError(err)) return err;
  // The BSON serializer refusing a value the parser let through: the value is at fault.
  if (err instanceof TypeError || err instanceof RangeError || (err as Error)?.name === 'BSONError') {
    return new AppError('INVALID_EXTENDED_JSON', undefined, { cause: err });
  }
  throw err;
}

/**
 * Every decryption failure (malformed payload, unknown or deleted key, failed tag, a key that
 * cannot be unwrapped) becomes the same DECRYPTION_FAILED, so the answer is no oracle.
 */
function asDecryptError(err: unknown): AppError {
  if (isAppError(err) && availabilityCodes.has(err.code)) return err;
  if (err instanceof AeadError || isAppError(err)) return new AppError('DECRYPTION_FAILED', undefined, { cause: err });
  throw err;
}

const forbiddenKey = () => new AppError('FORBIDDEN', 'Your grants do not cover that data key.');

/** Count finished items by algorithm and outcome (an item without a result counts as an error). */
function count(metrics: Metrics, operation: 'encrypt' | 'decrypt', algorithms: (string | undefined)[], results: ItemResult<unknown>[]): void {
  const tally = new Map<string, { ok: number; error: number }>();
  for (let i = 0; i < results.length; i++) {
    const algorithm = algorithms[i] ?? 'unknown';
    let counts = tally.get(algorithm);
    if (counts === undefined) tally.set(algorithm, (counts = { ok: 0, error: 0 }));
    if (results[i]?.ok === true) counts.ok++;
    else counts.error++;
  }
  for (const [algorithm, { ok, error }] of tally) {
    if (ok > 0) metrics.cryptoOperation(operation, algorithm, 'ok', ok);
    if (error > 0) metrics.cryptoOperation(operation, algorithm, 'error', error);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * keyIdToString that remembers the last id it saw: a batch mostly names one key, and comparing 16
 * bytes is much cheaper than formatting them.
 */
function keyIdText(): (id: Uint8Array) => string {
  let last: Uint8Array | undefined;
  let lastText = '';
  return (id) => {
    if (last !== undefined && sameBytes(last, id)) return lastText;
    lastText = keyIdToString(id);
    last = Uint8Array.from(id);
    return lastText;
  };
}

/** Item indexes grouped by key id, in first-seen order (one crypto batch per key). */
function groupByKey(idTexts: (string | undefined)[]): Map<string, number[]> {
  const byKey = new Map<string, number[]>();
  idTexts.forEach((id, index) => {
    if (id === undefined) return;
    let group = byKey.get(id);
    if (group === undefined) byKey.set(id, (group = []));
    group.push(index);
  });
  return byKey;
}

export function createEncryptionEngine({ keyVault, metrics = noMetrics }: { keyVault: KeyVault; metrics?: Metrics }) {
  const altNamesOf = (ids: string[]) => keyVault.altNamesOf(ids);

  /** The subset of `ids` this access may use in `role`; the others are refused item by item. */
  function authorize(access: Access, ids: string[], role: KeyRole): Promise<Set<string>> {
    return authorizeKeys(access, ids, role, altNamesOf);
  }

  /** Note the keys a call named (used or refused) for the audit; return those it used. */
  function record(access: Access, named: Iterable<string>, used: Iterable<string>): string[] {
    if (access.keysNamed) for (const id of named) access.keysNamed.add(id);
    return [...new Set(used)];
  }

  /** Every item's key id as text, or its error: alt names are resolved in one key-vault query. */
  async function resolveKeyIds(refs: KeyRef[], idText: (id: Uint8Array) => string): Promise<(string | AppError)[]> {
    // A Set: a batch of 1000 values usually names one key 1000 times.
    const names = new Set<string>();
    for (const ref of refs) if (ref.keyId === undefined && ref.keyAltName !== undefined) names.add(ref.keyAltName);
    const byName = names.size > 0 ? await keyVault.resolveAltNames([...names]) : new Map<string, UUID>();
    return refs.map((ref) => {
      if (typeof ref.keyId === 'string') return ref.keyId;
      if (ref.keyId !== undefined) return idText(ref.keyId.buffer);
      if (ref.keyAltName === undefined) return new AppError('VALIDATION_FAILED', 'Name a data key with keyId or keyAltName.');
      const id = byName.get(ref.keyAltName);
      return id === undefined ? new AppError('KEY_NOT_FOUND') : idText(id.buffer);
    });
  }

  /** Parse payloads; an unparseable one gets the generic decryption error. */
  function parseAll(payloads: Uint8Array[], results: ItemResult<unknown>[]): (ParsedPayload | undefined)[] {
    return payloads.map((payload, index) => {
      try {
        return parsePayload(payload);
      } catch (err) {
        results[index] = { ok: false, error: asDecryptError(err) };
        return undefined;
      }
    });
  }

  /**
   * Decrypt parsed payloads whose key ids were authorized, within one lease of their keys. Items
   * already answered (unparseable, refused) are skipped.
   */
  function decryptLeased(parsed: (ParsedPayload | undefined)[], idTexts: (string | undefined)[], keys: Map<string, unknown>, results: ItemResult<unknown>[]): void {
    const present: number[] = [];
    const toDecrypt: ParsedPayload[] = [];
    parsed.forEach((p, index) => {
      if (p === undefined || results[index] !== undefined) return;
      present.push(index);
      toDecrypt.push(p);
    });
    const values = decryptAll(toDecrypt, (keyId) => {
      const key = keys.get(keyIdToString(keyId));
      return key instanceof Buffer ? key : undefined;
    });
    present.forEach((index, j) => {
      const key = keys.get(idTexts[index]!);
      const value = values[j];
      if (!(key instanceof Buffer)) results[index] = { ok: false, error: asDecryptError(key) };
      else if (value instanceof AeadError) results[index] = { ok: false, error: asDecryptError(value) };
      else results[index] = { ok: true, value };
    });
  }

  const engine = {
    /** Whether this access may use every one of the keys (no key is loaded: a question of grants). */
    async mayUse(keyIds: string[], access: Access): Promise<boolean> {
      const allowed = await authorize(access, keyIds, 'source');
      return keyIds.every((id) => allowed.has(id));
    },

    /**
     * Encrypt values under the keys they name, item by item: one bad item does not fail the others.
     * Purposes: `encrypt` (explicit), `write` (a document field, by schema) and `query` (an
     * equality value; deterministic only).
     */
    async encrypt(items: EncryptItem[], access: Access): Promise<Outcome<Binary>> {
      const { kind } = access.purpose;
      if (kind !== 'encrypt' && kind !== 'write' && kind !== 'query') throw new Error(`encrypt called for ${kind}`);
      const results: ItemResult<Binary>[] = new Array(items.length);
      const idText = keyIdText();
      // Each item's key id as text (undefined once the item has its answer).
      const idTexts = (await resolveKeyIds(items, idText)).map((id, index) => {
        if (id instanceof AppError) {
          results[index] = { ok: false, error: id };
          return undefined;
        }
        if (kind === 'query' && items[index]!.algorithm !== 'deterministic') {
          results[index] = { ok: false, error: new AppError('QUERY_ON_RANDOM_FIELD') };
          return undefined;
        }
        return id;
      });
      const wanted = [...new Set(idTexts.filter((id): id is string => id !== undefined))];
      const allowed = await authorize(access, wanted, 'target');
      // A key the caller names but may not use is, to it, a key that does not exist: a limited
      // client cannot learn which alt names (tenants) exist beyond its grants.
      const refused = () => (kind === 'encrypt' ? new AppError('KEY_NOT_FOUND') : forbiddenKey());
      idTexts.forEach((id, index) => {
        if (id !== undefined && !allowed.has(id)) {
          results[index] = { ok: false, error: refused() };
          idTexts[index] = undefined;
        }
      });
      const byKey = groupByKey(idTexts);
      await keyVault.withDataKeys(byKey.keys(), (keys) => {
        for (const [id, indexes] of byKey) {
          const key = keys.get(id);
          if (!(key instanceof Buffer)) {
            for (const index of indexes) results[index] = { ok: false, error: asEncryptError(key) };
            continue;
          }
          const encrypted = encryptValues(
            indexes.map((index) => items[index]!),
            new UUID(id).buffer,
            key,
          );
          indexes.forEach((index, j) => {
            const value = encrypted[j]!;
            results[index] = value instanceof Error ? { ok: false, error: asEncryptError(value) } : { ok: true, value };
          });
        }
      });
      count(metrics, 'encrypt', items.map((r) => r.algorithm), results);
      return { results, keyIds: record(access, wanted, byKey.keys()) };
    },

    /**
     * Decrypt payloads, item by item. Failures give the one generic DECRYPTION_FAILED; a key the
     * caller may not decrypt with gives FORBIDDEN (documents show it as masked); KMS_UNAVAILABLE
     * keeps its code. Purpose: `decrypt`.
     */
    async decrypt(payloads: Uint8Array[], access: Access): Promise<Outcome<unknown>> {
      if (access.purpose.kind !== 'decrypt') throw new Error(`decrypt called for ${access.purpose.kind}`);
      const results: ItemResult<unknown>[] = new Array(payloads.length);
      const parsed = parseAll(payloads, results);
      const idText = keyIdText();
      const idTexts = parsed.map((p) => (p === undefined ? undefined : idText(p.keyId)));
      const wanted = [...new Set(idTexts.filter((id): id is string => id !== undefined))];
      // The right to the data key named inside the ciphertext, not just a login, decides: a valid
      // token must not make the service a decryption oracle for every key.
      const allowed = await authorize(access, wanted, 'source');
      parsed.forEach((p, index) => {
        if (p !== undefined && !allowed.has(idTexts[index]!)) results[index] = { ok: false, error: forbiddenKey() };
      });
      const usable = wanted.filter((id) => allowed.has(id));
      await keyVault.withDataKeys(usable, (keys) => decryptLeased(parsed, idTexts, keys, results));
      count(metrics, 'decrypt', parsed.map((p) => p?.algorithm), results);
      return { results, keyIds: record(access, wanted, usable) };
    },

    /**
     * Re-encrypt payloads from a rotation's old key to its new one, keeping each payload's
     * algorithm (deterministic stays deterministic, so equality keeps working). A payload under
     * another key is refused. Purpose: `rotate`.
     */
    async reencrypt(payloads: Uint8Array[], access: Access): Promise<Outcome<Binary>> {
      const { purpose } = access;
      if (purpose.kind !== 'rotate') throw new Error(`reencrypt called for ${purpose.kind}`);
      const results: ItemResult<unknown>[] = new Array(payloads.length);
      const parsed = parseAll(payloads, results);
      const idText = keyIdText();
      const idTexts = parsed.map((p) => (p === undefined ? undefined : idText(p.keyId)));
      const [canRead, canWrite] = await Promise.all([
        authorize(access, [purpose.fromKeyId], 'source'),
        authorize(access, [purpose.toKeyId], 'target'),
      ]);
      const permitted = canRead.has(purpose.fromKeyId) && canWrite.has(purpose.toKeyId);
      parsed.forEach((p, index) => {
        if (p !== undefined && (!permitted || idTexts[index] !== purpose.fromKeyId)) results[index] = { ok: false, error: forbiddenKey() };
      });
      const out: ItemResult<Binary>[] = new Array(payloads.length);
      if (!permitted) return { results: results as ItemResult<Binary>[], keyIds: record(access, [purpose.fromKeyId, purpose.toKeyId], []) };
      await keyVault.withDataKeys([purpose.fromKeyId, purpose.toKeyId], (keys) => {
        decryptLeased(parsed, idTexts, keys, results);
        const newKey = keys.get(purpose.toKeyId);
        const toEncrypt: number[] = [];
        results.forEach((result, index) => {
          if (!result.ok) out[index] = result;
          else if (!(newKey instanceof Buffer)) out[index] = { ok: false, error: asEncryptError(newKey) };
          else toEncrypt.push(index);
        });
        if (!(newKey instanceof Buffer) || toEncrypt.length === 0) return;
        const encrypted = encryptValues(
          toEncrypt.map((index) => ({ value: (results[index] as { value: unknown }).value, algorithm: parsed[index]!.algorithm })),
          new UUID(purpose.toKeyId).buffer,
          newKey,
        );
        toEncrypt.forEach((index, j) => {
          const value = encrypted[j]!;
          out[index] = value instanceof Error ? { ok: false, error: asEncryptError(value) } : { ok: true, value };
        });
      });
      count(metrics, 'encrypt', parsed.map((p) => p?.algorithm), out);
      const both = [purpose.fromKeyId, purpose.toKeyId];
      return { results: out, keyIds: record(access, both, both) };
    },

    /**
     * Check that payloads written by a rotation decrypt under its new key, without returning any
     * plaintext. Purpose: `rotate`.
     */
    async verify(payloads: Uint8Array[], access: Access): Promise<Outcome<true>> {
      const { purpose } = access;
      if (purpose.kind !== 'rotate') throw new Error(`verify called for ${purpose.kind}`);
      const results: ItemResult<unknown>[] = new Array(payloads.length);
      const parsed = parseAll(payloads, results);
      const idText = keyIdText();
      const idTexts = parsed.map((p) => (p === undefined ? undefined : idText(p.keyId)));
      const allowed = await authorize(access, [purpose.toKeyId], 'target');
      parsed.forEach((p, index) => {
        if (p !== undefined && !allowed.has(idTexts[index]!)) results[index] = { ok: false, error: forbiddenKey() };
      });
      const usable = [...allowed];
      await keyVault.withDataKeys(usable, (keys) => decryptLeased(parsed, idTexts, keys, results));
      return { results: results.map((r) => (r.ok ? { ok: true, value: true } : r)), keyIds: record(access, [purpose.toKeyId], usable) };
    },
  };
  return engine;
}

export type EncryptionEngine = ReturnType<typeof createEncryptionEngine>;

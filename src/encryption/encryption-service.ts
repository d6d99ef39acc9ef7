/**
 * Explicit encryption, as a driver's ClientEncryption offers it: one value (or a batch) under a
 * named data key, and decryption of any CSFLE ciphertext whose key is in the vault.
 */
import type { Binary, UUID } from 'mongodb';
import { AeadError } from '../crypto/aead.js';
import { decryptAll, encryptValues, parsePayload, UnsupportedTypeError, type AlgorithmName, type ParsedPayload } from '../crypto/fle-payload.js';
import { AppError, isAppError, type ErrorCode } from '../errors.js';
import { keyIdToString } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';
import { noMetrics, type Metrics } from '../metrics/metrics.js';

export interface KeyRef {
  keyId?: UUID;
  keyAltName?: string;
}

export interface EncryptRequest extends KeyRef {
  value: unknown;
  algorithm: AlgorithmName;
}

/**
 * Which of these key ids the caller may use: the authorisation the routes derive from a client's
 * grants. Absent means no key-level limit.
 */
export type KeyAuthorizer = (keyIds: string[]) => Promise<Set<string>>;

export type ItemResult<T> = { ok: true; value: T } | { ok: false; error: AppError };

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

export function createEncryptionService({ keyVault, metrics = noMetrics }: { keyVault: KeyVault; metrics?: Metrics }) {
  /** Every request's key id, or its error: alt names are resolved in one key-vault query. */
  async function resolveKeyIds(refs: KeyRef[]): Promise<(UUID | AppError)[]> {
    // A Set: a batch of 1000 values usually names one key 1000 times.
    const names = new Set<string>();
    for (const ref of refs) if (ref.keyId === undefined && ref.keyAltName !== undefined) names.add(ref.keyAltName);
    const byName = names.size > 0 ? await keyVault.resolveAltNames([...names]) : new Map<string, UUID>();
    return refs.map((ref) => {
      if (ref.keyId !== undefined) return ref.keyId;
      if (ref.keyAltName === undefined) return new AppError('VALIDATION_FAILED', 'Name a data key with keyId or keyAltName.');
      return byName.get(ref.keyAltName) ?? new AppError('KEY_NOT_FOUND');
    });
  }

  const service = {
    async encrypt(request: EncryptRequest, authorize?: KeyAuthorizer): Promise<Binary> {
      const [result] = await service.encryptMany([request], authorize);
      if (!result!.ok) throw result!.error;
      return result!.value;
    },

    /** Encrypt many values, answering item by item: one bad item does not fail the others. */
    async encryptMany(requests: EncryptRequest[], authorize?: KeyAuthorizer): Promise<ItemResult<Binary>[]> {
      const results: ItemResult<Binary>[] = new Array(requests.length);
      const idText = keyIdText();
      // Each request's key id as text (undefined once the item has its error), computed once.
      const idTexts: (string | undefined)[] = new Array(requests.length);
      const ids = (await resolveKeyIds(requests)).map((id, index) => {
        if (!(id instanceof AppError)) {
          idTexts[index] = idText(id.buffer);
          return id;
        }
        results[index] = { ok: false, error: asEncryptError(id) };
        return undefined;
      });
      const wanted = idTexts.filter((id): id is string => id !== undefined);
      const allowed = authorize ? await authorize(wanted) : undefined;
      idTexts.forEach((id, index) => {
        if (id !== undefined && allowed !== undefined && !allowed.has(id)) {
          results[index] = { ok: false, error: new AppError('FORBIDDEN', 'Your grants do not cover that data key.') };
          idTexts[index] = undefined;
        }
      });
      // One batch per data key: the crypto's per-call setup is paid per key, not per value.
      const byKey = new Map<string, number[]>();
      idTexts.forEach((id, index) => {
        if (id === undefined) return;
        let group = byKey.get(id);
        if (group === undefined) byKey.set(id, (group = []));
        group.push(index);
      });
      await keyVault.withDataKeys(byKey.keys(), (keys) => {
        for (const [id, indexes] of byKey) {
          const key = keys.get(id);
          if (!(key instanceof Buffer)) {
            for (const index of indexes) results[index] = { ok: false, error: asEncryptError(key) };
            continue;
          }
          const encrypted = encryptValues(
            indexes.map((index) => requests[index]!),
            ids[indexes[0]!]!.buffer,
            key,
          );
          indexes.forEach((index, j) => {
            const value = encrypted[j]!;
            results[index] = value instanceof Error ? { ok: false, error: asEncryptError(value) } : { ok: true, value };
          });
        }
      });
      count(metrics, 'encrypt', requests.map((r) => r.algorithm), results);
      return results;
    },

    async decrypt(payload: Uint8Array, authorize?: KeyAuthorizer): Promise<unknown> {
      const [result] = await service.decryptMany([payload], authorize);
      if (!result!.ok) throw result!.error;
      return result!.value;
    },

    /** Decrypt many payloads, answering item by item with the one generic error for failures. */
    async decryptMany(payloads: Uint8Array[], authorize?: KeyAuthorizer): Promise<ItemResult<unknown>[]> {
      const results: ItemResult<unknown>[] = new Array(payloads.length);
      const parsed: (ParsedPayload | undefined)[] = payloads.map((payload, index) => {
        try {
          return parsePayload(payload);
        } catch (err) {
          results[index] = { ok: false, error: asDecryptError(err) };
          return undefined;
        }
      });
      const algorithms = parsed.map((p) => p?.algorithm);
      const idText = keyIdText();
      const idTexts = parsed.map((p) => (p === undefined ? undefined : idText(p.keyId)));
      const wanted = idTexts.filter((id): id is string => id !== undefined);
      // The right to the data key named inside the ciphertext, not just a login, decides: a valid
      // token must not make the service a decryption oracle for every key.
      const allowed = authorize ? await authorize(wanted) : undefined;
      parsed.forEach((p, index) => {
        if (p !== undefined && allowed !== undefined && !allowed.has(idTexts[index]!)) {
          results[index] = { ok: false, error: new AppError('FORBIDDEN', 'Your grants do not cover the data key of this ciphertext.') };
          parsed[index] = undefined;
        }
      });
      await keyVault.withDataKeys(wanted.filter((id) => allowed === undefined || allowed.has(id)), (keys) => {
        const present: number[] = [];
        const toDecrypt: ParsedPayload[] = [];
        parsed.forEach((p, index) => {
          if (p === undefined) return;
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
      });
      count(metrics, 'decrypt', algorithms, results);
      return results;
    },
  };
  return service;
}

export type EncryptionService = ReturnType<typeof createEncryptionService>;

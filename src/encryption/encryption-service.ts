/**
 * Explicit encryption, as a driver's ClientEncryption offers it: one value (or a batch) under a
 * named data key, and decryption of any CSFLE ciphertext whose key is in the vault.
 */
import type { Binary, UUID } from 'bson';
import { AeadError } from '../crypto/aead.js';
import { decryptPayload, encryptValue, parsePayload, UnsupportedTypeError, type AlgorithmName, type ParsedPayload } from '../crypto/fle-payload.js';
import { AppError, isAppError, type ErrorCode } from '../errors.js';
import { keyIdToString } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';

export interface KeyRef {
  keyId?: UUID;
  keyAltName?: string;
}

export interface EncryptRequest extends KeyRef {
  value: unknown;
  algorithm: AlgorithmName;
}

export type ItemResult<T> = { ok: true; value: T } | { ok: false; error: AppError };

/** Errors that say "try later" rather than anything about the ciphertext; they keep their code. */
const availabilityCodes = new Set<ErrorCode>(['KMS_UNAVAILABLE', 'DATABASE_UNAVAILABLE']);

function asEncryptError(err: unknown): AppError {
  if (err instanceof UnsupportedTypeError) {
    return new AppError('UNSUPPORTED_BSON_TYPE', `${err.algorithm} encryption does not support BSON type ${err.bsonType}.`);
  }
  if (isAppError(err)) return err;
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

/** Group item indexes by key id, so each data key is fetched once and used without an await. */
function groupByKey<T>(items: T[], idOf: (item: T) => string | undefined): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  items.forEach((item, index) => {
    const id = idOf(item);
    if (id === undefined) return;
    const group = groups.get(id);
    if (group === undefined) groups.set(id, [index]);
    else group.push(index);
  });
  return groups;
}

export function createEncryptionService({ keyVault }: { keyVault: KeyVault }) {
  async function resolveKeyId(ref: KeyRef): Promise<UUID> {
    if (ref.keyId !== undefined) return ref.keyId;
    if (ref.keyAltName !== undefined) return keyVault.resolveAltName(ref.keyAltName);
    throw new AppError('VALIDATION_FAILED', 'Name a data key with keyId or keyAltName.');
  }

  const service = {
    async encrypt(request: EncryptRequest): Promise<Binary> {
      const [result] = await service.encryptMany([request]);
      if (!result!.ok) throw result!.error;
      return result!.value;
    },

    /** Encrypt many values, answering item by item: one bad item does not fail the others. */
    async encryptMany(requests: EncryptRequest[]): Promise<ItemResult<Binary>[]> {
      const results: ItemResult<Binary>[] = new Array(requests.length);
      const ids = await Promise.all(
        requests.map(async (request, index) => {
          try {
            return await resolveKeyId(request);
          } catch (err) {
            results[index] = { ok: false, error: asEncryptError(err) };
            return undefined;
          }
        }),
      );
      const groups = groupByKey(ids, (id) => (id === undefined ? undefined : id.toHexString()));
      for (const indexes of groups.values()) {
        const id = ids[indexes[0]!]!;
        let key: Buffer;
        try {
          key = await keyVault.getDataKey(id.buffer);
        } catch (err) {
          const error = asEncryptError(err);
          for (const index of indexes) results[index] = { ok: false, error };
          continue;
        }
        for (const index of indexes) {
          const request = requests[index]!;
          try {
            results[index] = { ok: true, value: encryptValue(request.value, id.buffer, key, request.algorithm) };
          } catch (err) {
            results[index] = { ok: false, error: asEncryptError(err) };
          }
        }
      }
      return results;
    },

    async decrypt(payload: Uint8Array): Promise<unknown> {
      const [result] = await service.decryptMany([payload]);
      if (!result!.ok) throw result!.error;
      return result!.value;
    },

    /** Decrypt many payloads, answering item by item with the one generic error for failures. */
    async decryptMany(payloads: Uint8Array[]): Promise<ItemResult<unknown>[]> {
      const results: ItemResult<unknown>[] = new Array(payloads.length);
      const parsed: (ParsedPayload | undefined)[] = payloads.map((payload, index) => {
        try {
          return parsePayload(payload);
        } catch (err) {
          results[index] = { ok: false, error: asDecryptError(err) };
          return undefined;
        }
      });
      const groups = groupByKey(parsed, (p) => (p === undefined ? undefined : keyIdToString(p.keyId)));
      for (const indexes of groups.values()) {
        let key: Buffer;
        try {
          key = await keyVault.getDataKey(parsed[indexes[0]!]!.keyId);
        } catch (err) {
          const error = asDecryptError(err);
          for (const index of indexes) results[index] = { ok: false, error };
          continue;
        }
        for (const index of indexes) {
          try {
            results[index] = { ok: true, value: decryptPayload(parsed[index]!, key) };
          } catch (err) {
            results[index] = { ok: false, error: asDecryptError(err) };
          }
        }
      }
      return results;
    },
  };
  return service;
}

export type EncryptionService = ReturnType<typeof createEncryptionService>;

import { KEY_LENGTH } from '../crypto/aead.js';
import { AppError, isAppError } from '../errors.js';
import type { Kms } from '../kms/kms.js';
import { readStoredMasterKey } from '../kms/master-key.js';
import type { KeyDocument } from './key-document.js';

/**
 * Unwrap a key document's data key through the KMS. The caller owns the returned buffer and must
 * zero it when done (only the DEK cache keeps unwrapped keys).
 */
export async function unwrapDataKey(kms: Kms, doc: KeyDocument): Promise<Buffer> {
  const masterKey = readStoredMasterKey(doc.masterKey);
  let key: Buffer;
  try {
    key = await kms.unwrap(masterKey, Buffer.from(doc.keyMaterial.buffer));
  } catch (err) {
    if (isAppError(err)) throw err;
    // A local key that fails its tag: wrong master key, or a damaged document.
    throw new AppError('MASTER_KEY_UNUSABLE', 'The data key cannot be unwrapped with the configured master key.', { cause: err });
  }
  if (key.length !== KEY_LENGTH) {
    key.fill(0);
    throw new AppError('KMS_ERROR');
  }
  return key;
}

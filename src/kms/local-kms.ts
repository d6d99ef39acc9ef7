import { aeadDecrypt, aeadEncrypt, KEY_LENGTH } from '../crypto/aead.js';
import type { KmsProvider } from './kms-provider.js';
import type { LocalMasterKey } from './master-key.js';

const noAssociatedData = Buffer.alloc(0);

/**
 * The `local` provider: data keys wrapped with AEAD_AES_256_CBC_HMAC_SHA_512 under a 96-byte
 * master key held in memory, as libmongocrypt does. For development and migration only: the master
 * key lives in this process, with no access control or audit of its own.
 */
export function createLocalKms(masterKey: Buffer): KmsProvider<LocalMasterKey> {
  if (masterKey.length !== KEY_LENGTH) throw new RangeError(`the local master key must be ${KEY_LENGTH} bytes`);
  const key = Buffer.from(masterKey);
  return {
    async wrap(_mk, dataKey) {
      return aeadEncrypt(key, dataKey, noAssociatedData, false);
    },
    async unwrap(_mk, keyMaterial) {
      return aeadDecrypt(key, keyMaterial, noAssociatedData);
    },
  };
}

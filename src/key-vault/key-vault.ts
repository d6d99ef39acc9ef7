/**
 * The key vault as the layers above see it: the key store (key documents, alt names, the DEK
 * cache) and master-key migration over the same collection, composed so that a rewrap drops what
 * the store cached of the keys it changed.
 */
import { createKeyStore, type KeyStoreOptions } from './key-store.js';
import { createMasterKeyMigration } from './master-key-migration.js';

export type KeyVaultOptions = KeyStoreOptions;
export type { CreateKeyInput } from './key-store.js';
export type { KeySelector } from './key-selector.js';
export type { RewrapOptions, RewrapResult } from './master-key-migration.js';

export function createKeyVault(options: KeyVaultOptions) {
  const store = createKeyStore(options);
  const migration = createMasterKeyMigration({
    collection: options.collection,
    kms: options.kms,
    forgetKey: store.forgetKey,
    recordChanges: options.recordChanges,
    lock: options.lock,
  });
  return { ...store, ...migration };
}

export type KeyVault = ReturnType<typeof createKeyVault>;

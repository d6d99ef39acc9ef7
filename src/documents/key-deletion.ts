/**
 * Deleting a data key, or one of its alt names, with a look at what still needs it: a key that a
 * current collection schema names (by id, or by any of its alt names) is refused with 409 KEY_IN_USE
 * naming the collections, unless forced; so is removing an alt name a schema names the key by. The key vault below knows keys, not schemas; this check lives a layer above it.
 *
 * A key named only through documents (a `keyId` pointer, per-tenant keys) cannot be seen from the
 * schemas: deleting a tenant's key is exactly how its data is erased, and the trash keeps it
 * restorable for the retention period.
 */
import type { UUID } from 'mongodb';
import { AppError } from '../errors.js';
import { keyIdToString, type KeyDocument } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';

/** What the check needs of the schema registry (src/documents/schema-registry.ts). */
export interface SchemaKeysSource {
  list(): readonly { namespace: string; keyIds: string[]; keyAltNames: string[] }[];
}

export interface KeyDeletionOptions {
  registry: SchemaKeysSource;
  keyVault: Pick<KeyVault, 'deleteKey' | 'removeAltName'>;
}

export function createKeyDeletion({ registry, keyVault }: KeyDeletionOptions) {
  /** The namespaces whose current schema names the key by its id or one of its alt names. */
  function namespacesUsing(doc: KeyDocument): string[] {
    const id = keyIdToString(doc._id.buffer);
    const names = new Set(doc.keyAltNames ?? []);
    return registry
      .list()
      .filter((schema) => schema.keyIds.includes(id) || schema.keyAltNames.some((name) => names.has(name)))
      .map((schema) => schema.namespace)
      .sort();
  }

  function refuseIfUsed(using: string[], what: string): void {
    if (using.length === 0) return;
    throw new AppError('KEY_IN_USE', `The schemas of ${using.join(', ')} name ${what}: change them first, or repeat with ?force=true.`);
  }

  return {
    namespacesUsing,

    /**
     * Move the key to the trash (see KeyVault.deleteKey), unless a schema still names it and the
     * caller did not `force` it (409 KEY_IN_USE, nothing written).
     */
    async deleteKey(doc: KeyDocument, options: { force: boolean; deletedBy: string }): Promise<boolean> {
      if (!options.force) refuseIfUsed(namespacesUsing(doc), 'this data key (deleted, it stays restorable until it is purged)');
      return keyVault.deleteKey(doc._id, options.deletedBy);
    },

    /**
     * Remove an alt name, unless a schema names the key by it and the caller did not `force` it: the
     * collection would stop resolving its key (503 SCHEMA_NOT_READY) the moment the name is gone.
     */
    async removeAltName(id: UUID, name: string, options: { force: boolean }) {
      if (!options.force) {
        const using = registry
          .list()
          .filter((schema) => schema.keyAltNames.includes(name))
          .map((schema) => schema.namespace)
          .sort();
        refuseIfUsed(using, `this data key by the alt name "${name}"`);
      }
      return keyVault.removeAltName(id, name);
    },
  };
}

export type KeyDeletion = ReturnType<typeof createKeyDeletion>;

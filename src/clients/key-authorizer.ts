import type { KeyVault } from '../key-vault/key-vault.js';
import { allows, type Principal } from './scopes.js';

/**
 * Which of these key ids the caller may manage under a scope (key views, alt names, rewrap): the
 * authorisation key-management routes derive from a client's grants.
 */
export type KeyAuthorizer = (keyIds: string[]) => Promise<Set<string>>;

function unlimited(principal: Principal, scope: string): boolean {
  return principal.grants.some((g) => (g.scope === '*' || g.scope === scope) && !g.keyIds?.length && !g.keyAltNames?.length);
}

/** Whether a principal may use one key, known by its id and alt names, under a scope. */
export function coversKey(principal: Principal, scope: string, keyId: string, keyAltNames: string[]): boolean {
  return unlimited(principal, scope) || allows(principal, scope, { keyId, keyAltNames });
}

/**
 * The data keys a principal may use under a scope. Grants without key limits need no lookup;
 * limited ones are checked against each key's id and its alt names.
 */
export function keyAuthorizer(principal: Principal, scope: string, keyVault: Pick<KeyVault, 'altNamesOf'>): KeyAuthorizer {
  return async (keyIds) => {
    if (unlimited(principal, scope)) return new Set(keyIds);
    const names = await keyVault.altNamesOf(keyIds);
    return new Set(keyIds.filter((keyId) => coversKey(principal, scope, keyId, names.get(keyId) ?? [])));
  };
}

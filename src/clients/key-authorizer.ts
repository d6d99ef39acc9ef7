import type { KeyVault } from '../key-vault/key-vault.js';
import { allows, type Principal } from './scopes.js';

/**
 * Which of these key ids the caller may manage under a scope (key views, alt names, rewrap): the
 * authorisation key-management routes derive from a client's grants.
 */
export type KeyAuthorizer = (keyIds: string[]) => Promise<Set<string>>;

/**
 * The data keys a principal may use under a scope. Grants without key limits need no lookup;
 * limited ones are checked against each key's id and its alt names.
 */
export function keyAuthorizer(principal: Principal, scope: string, keyVault: KeyVault): KeyAuthorizer {
  return async (keyIds) => {
    const unlimited = principal.grants.some((g) => (g.scope === '*' || g.scope === scope) && !g.keyIds?.length && !g.keyAltNames?.length);
    if (unlimited) return new Set(keyIds);
    const names = await keyVault.altNamesOf(keyIds);
    return new Set(keyIds.filter((keyId) => allows(principal, scope, { keyId, keyAltNames: names.get(keyId) ?? [] })));
  };
}

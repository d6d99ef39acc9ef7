/**
 * The access context every use of a data key carries: who asks, and for what. The engine decides
 * from it which keys a call may use; nothing else does, so a new caller cannot forget the check.
 */
import { allows, type Principal } from '../clients/scopes.js';

/** Who is calling, and where the key ids its calls named are recorded for the audit trail. */
export interface Caller {
  principal: Principal;
  /** Filled in by the engine: every data key id a call used or was refused (never values). */
  keysNamed?: Set<string>;
}

/**
 * What a key is used for:
 * - `encrypt`: explicit encryption of a value under a named key (scope `encrypt` on the key);
 * - `decrypt`: explicit decryption, and decryption of documents read back (`decrypt` on the key);
 * - `query`: an equality value on an encrypted field, encrypted to match stored ciphertext. A
 *   query is a read of that field (its answer says whether the value is there), so it needs
 *   `decrypt` on the key;
 * - `write`: a document field encrypted because the collection's schema says so. Where the schema,
 *   set by the operator, chose the key, the right is the collection's `documents:<ns>:write`; where
 *   the document chose it (a keyId pointer naming a key alt name), the writer is choosing a key,
 *   so it needs `encrypt` on that key as well;
 * - `rotate`: re-encryption of a collection's fields from one key to another (`decrypt` on the old
 *   key, `encrypt` on the new one; checking what was written needs `encrypt` on the new one).
 */
export type Purpose =
  | { kind: 'encrypt' }
  | { kind: 'decrypt' }
  | { kind: 'query' }
  | { kind: 'write'; collection: string; keyFromDocument?: boolean }
  | { kind: 'rotate'; fromKeyId: string; toKeyId: string };

export interface Access extends Caller {
  purpose: Purpose;
}

/** The part a key plays in a call: its plaintext is read (source) or produced (target). */
export type KeyRole = 'source' | 'target';

/** The alt names of key ids, for grants limited by alt-name patterns. */
export type AltNamesOf = (keyIds: string[]) => Promise<Map<string, string[]>>;

function scopeFor(purpose: Purpose, role: KeyRole): string {
  switch (purpose.kind) {
    case 'encrypt':
      return 'encrypt';
    case 'decrypt':
    case 'query':
      return 'decrypt';
    case 'write':
      return `documents:${purpose.collection}:write`;
    case 'rotate':
      return role === 'source' ? 'decrypt' : 'encrypt';
  }
}

function hasUnlimited(principal: Principal, scope: string): boolean {
  return principal.grants.some((g) => (g.scope === '*' || g.scope === scope) && g.keyIds === undefined && g.keyAltNames === undefined);
}

/**
 * Which of `keyIds` the access context may use in `role`. Grants without key limits need no
 * lookup; limited ones are checked against each key's id and its alt names.
 */
export async function authorizeKeys(access: Access, keyIds: string[], role: KeyRole, altNamesOf: AltNamesOf): Promise<Set<string>> {
  const { principal, purpose } = access;
  let candidates = keyIds;
  if (purpose.kind === 'rotate') {
    // A rotation reads only its old key and writes (and checks) only its new one.
    const only = role === 'source' ? purpose.fromKeyId : purpose.toKeyId;
    candidates = keyIds.filter((id) => id === only);
  }
  if (candidates.length === 0) return new Set();
  const scope = scopeFor(purpose, role);
  if (purpose.kind === 'write') {
    if (!allows(principal, scope)) return new Set();
    // The collection's schema chose these keys; the grant is the collection's.
    if (!purpose.keyFromDocument) return new Set(candidates);
    return keysAllowed(principal, 'encrypt', candidates, altNamesOf);
  }
  return keysAllowed(principal, scope, candidates, altNamesOf);
}

async function keysAllowed(principal: Principal, scope: string, keyIds: string[], altNamesOf: AltNamesOf): Promise<Set<string>> {
  if (hasUnlimited(principal, scope)) return new Set(keyIds);
  const names = await altNamesOf(keyIds);
  return new Set(keyIds.filter((keyId) => allows(principal, scope, { keyId, keyAltNames: names.get(keyId) ?? [] })));
}

/**
 * Scopes and grants: what a client may do, and on which keys. Pure functions, no I/O.
 *
 * A grant names one scope and, for the key-bound scopes, optionally limits it to some keys (by id
 * or by alt-name pattern). A principal may hold several grants of one scope: they add up.
 */
import { AppError } from '../errors.js';

/** Scopes that take no namespace. */
export const SCOPES = [
  'encrypt',
  'decrypt',
  'keys:read',
  'keys:write',
  'keys:delete',
  'keys:rewrap',
  'clients:admin',
  'audit:read',
  'metrics:read',
  'jobs:read',
  'jobs:admin',
  'schemas:read',
  'schemas:admin',
] as const;

/**
 * The operator's scope: every scope, on every key, including scopes added later. Only the operator
 * principal (ADMIN_TOKEN) holds it; `checkGrants` refuses it, so no stored client can.
 */
export const ALL_SCOPES = '*';

/** Scopes whose grants may carry key limits: the ones that act on data keys. */
const KEY_SCOPES = new Set<string>(['encrypt', 'decrypt', 'keys:read', 'keys:write', 'keys:delete', 'keys:rewrap']);
const STATIC_SCOPES = new Set<string>(SCOPES);

export const MAX_GRANTS = 100;
/** Ids or patterns in one limit list. */
export const MAX_LIMITS = 100;
export const MAX_PATTERN_LENGTH = 255;
const MAX_NAMESPACE_LENGTH = 255;

export interface Grant {
  scope: string;
  /** Alt-name patterns; `*` matches any run of characters (also none). Nothing else is special. */
  keyAltNames?: string[];
  /** Canonical (lower-case) UUID strings. */
  keyIds?: string[];
}

export interface Principal {
  clientId: string;
  name: string;
  grants: Grant[];
}

/** What a key-level check is about: the key (its id and its alt names), or a collection. */
export interface ScopeTarget {
  keyId?: string;
  keyAltNames?: string[];
  /** A namespace `<db>.<collection>`, for `documents:read` / `documents:write` (see `allows`). */
  collection?: string;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// As KEY_VAULT_NAMESPACE and the schema registry read a namespace: a db name, a dot, a collection.
const namespacePattern = /^[^.$/\\ "\x00-\x1f]+\.[^$\x00-\x1f]+$/;

interface DocumentsScope {
  ns: string;
  access: 'read' | 'write';
}

/** `documents:<ns>:read|write`, where <ns> is a namespace or `*`; the bare `documents:read|write` gives ns ''. */
function parseDocumentsScope(scope: string): DocumentsScope | undefined {
  if (!scope.startsWith('documents:')) return undefined;
  const access = scope.endsWith(':read') ? 'read' : scope.endsWith(':write') ? 'write' : undefined;
  if (access === undefined) return undefined;
  return { ns: scope.slice('documents:'.length, Math.max('documents:'.length, scope.length - access.length - 1)), access };
}

function isValidGrantScope(scope: string): boolean {
  if (STATIC_SCOPES.has(scope)) return true;
  const documents = parseDocumentsScope(scope);
  if (documents === undefined || documents.ns === '') return false;
  return documents.ns === '*' || (documents.ns.length <= MAX_NAMESPACE_LENGTH && namespacePattern.test(documents.ns));
}

/**
 * Whether `text` matches the glob `pattern`, where `*` matches any run of characters. A linear
 * scan with one backtrack point (the last star), so at most O(pattern × text) steps whatever the
 * input: no regular expression, hence no characters to escape and no catastrophic backtracking.
 */
export function globMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let resume = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (star !== -1) {
      // Let the last star swallow one more character and retry the rest of the pattern.
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** `pattern` with each run of stars made one star: the same language, a shorter input to match. */
function collapseStars(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === '*' && out.endsWith('*')) continue;
    out += pattern[i];
  }
  return out;
}

/**
 * Whether every name the glob `inner` matches is also matched by the glob `outer`
 * (L(inner) ⊆ L(outer)), for handing out a key limit no wider than one held.
 *
 * Sound, not complete: `inner` is matched by `outer` as a plain text in which each `*` is a
 * character that only a star of `outer` can absorb (a literal of `outer` never matches it). Then
 * any name `inner` matches is matched by `outer` too: the star of `outer` that absorbed a star of
 * `inner` absorbs whatever that star stood for. Some true inclusions are refused (the safe side);
 * none is wrongly accepted. Costs one `globMatches`, so O(|outer| × |inner|) at worst.
 */
export function patternIncludes(outer: string, inner: string): boolean {
  return globMatches(outer, collapseStars(inner));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function checkList(value: unknown, where: string, item: (entry: unknown, at: string) => string): string[] {
  if (!Array.isArray(value)) throw new AppError('INVALID_SCOPE', `${where} must be an array of strings.`);
  // An empty list would read as "no key" to some and "any key" to others: omit the field instead.
  if (value.length === 0) throw new AppError('INVALID_SCOPE', `${where} must not be empty; omit it for no limit.`);
  if (value.length > MAX_LIMITS) throw new AppError('INVALID_SCOPE', `${where} may hold at most ${MAX_LIMITS} entries.`);
  return [...new Set(value.map((entry, i) => item(entry, `${where}[${i}]`)))];
}

function checkPattern(entry: unknown, at: string): string {
  if (typeof entry !== 'string' || entry.length === 0 || entry.length > MAX_PATTERN_LENGTH) {
    throw new AppError('INVALID_SCOPE', `${at} must be a pattern of 1 to ${MAX_PATTERN_LENGTH} characters.`);
  }
  return entry;
}

function checkKeyId(entry: unknown, at: string): string {
  if (typeof entry !== 'string' || !uuidPattern.test(entry)) throw new AppError('INVALID_SCOPE', `${at} must be a UUID.`);
  return entry.toLowerCase();
}

/**
 * Validate grants given through the API and return normalised copies (key ids lower-case,
 * duplicates dropped, no other fields). Throws `INVALID_SCOPE` with a detail naming the entry;
 * the detail never echoes the offending value.
 */
export function checkGrants(grants: unknown): Grant[] {
  if (!Array.isArray(grants)) throw new AppError('INVALID_SCOPE', 'grants must be an array.');
  if (grants.length > MAX_GRANTS) throw new AppError('INVALID_SCOPE', `grants may hold at most ${MAX_GRANTS} entries.`);
  return grants.map((grant: unknown, i) => {
    const at = `grants[${i}]`;
    if (!isPlainObject(grant)) throw new AppError('INVALID_SCOPE', `${at} must be an object.`);
    for (const field of Object.keys(grant)) {
      if (field !== 'scope' && field !== 'keyAltNames' && field !== 'keyIds') throw new AppError('INVALID_SCOPE', `${at} has an unknown field.`);
    }
    const { scope } = grant;
    if (scope === ALL_SCOPES) throw new AppError('INVALID_SCOPE', `${at}.scope: "*" belongs to the operator only.`);
    if (typeof scope !== 'string' || !isValidGrantScope(scope)) throw new AppError('INVALID_SCOPE', `${at}.scope is not a known scope.`);
    const checked: Grant = { scope };
    const limited = grant.keyAltNames !== undefined || grant.keyIds !== undefined;
    if (limited && !KEY_SCOPES.has(scope)) {
      throw new AppError('INVALID_SCOPE', `${at}: key limits apply only to encrypt, decrypt and keys:* scopes.`);
    }
    if (grant.keyAltNames !== undefined) checked.keyAltNames = checkList(grant.keyAltNames, `${at}.keyAltNames`, checkPattern);
    if (grant.keyIds !== undefined) checked.keyIds = checkList(grant.keyIds, `${at}.keyIds`, checkKeyId);
    return checked;
  });
}

function scopeMatches(granted: string, requested: string): boolean {
  if (granted === requested) return true;
  // `documents:*:<access>` covers every namespace for that access; a namespace grant only itself.
  const grant = parseDocumentsScope(granted);
  if (grant === undefined || grant.ns !== '*') return false;
  const want = parseDocumentsScope(requested);
  return want !== undefined && want.ns !== '' && want.access === grant.access;
}

/** A held grant without key limits. An empty list (which `checkGrants` never stores) counts as a limit: the narrow reading. */
function heldUnlimited(grant: Grant): boolean {
  return grant.keyIds === undefined && grant.keyAltNames === undefined;
}

/** A requested grant without key limits. Empty lists count as none here: the wide reading. */
function requestedUnlimited(grant: Grant): boolean {
  return !grant.keyIds?.length && !grant.keyAltNames?.length;
}

/** Why `held` does not cover the one grant `want`, or undefined when it does. */
function whyNotCovered(held: readonly Grant[], want: Grant): string | undefined {
  if (held.some((grant) => grant.scope === ALL_SCOPES)) return undefined;
  const same = held.filter((grant) => scopeMatches(grant.scope, want.scope));
  if (same.length === 0) return 'is a scope you do not hold';
  if (same.some(heldUnlimited)) return undefined;
  if (requestedUnlimited(want)) return 'has no key limits, and your grants of that scope do';
  // Grants of one scope add up: a limit is covered when any of them lists the id or holds a
  // pattern including the requested one.
  const ids = new Set(same.flatMap((grant) => grant.keyIds ?? []).map((id) => id.toLowerCase()));
  const patterns = same.flatMap((grant) => grant.keyAltNames ?? []);
  const id = (want.keyIds ?? []).findIndex((keyId) => !ids.has(keyId.toLowerCase()));
  if (id !== -1) return `has keyIds[${id}], which none of your grants of that scope lists`;
  const name = (want.keyAltNames ?? []).findIndex((pattern) => !patterns.some((mine) => patternIncludes(mine, pattern)));
  if (name !== -1) return `has keyAltNames[${name}], which is wider than your patterns for that scope`;
  return undefined;
}

/**
 * Grants are bounded by the granter: the first of `requested` that `held` does not cover,
 * described for an error detail ("grants[2] (decrypt) is a scope you do not hold": an index, a
 * scope, a reason, never an id or a pattern), or undefined when `held` covers them all.
 *
 * A requested grant is covered by the held grants of a matching scope (`*` matches every scope;
 * `documents:*:read` matches `documents:<ns>:read`), taken together: an unlimited one covers
 * anything; otherwise the requested grant must be limited too, each of its key ids listed in one
 * of them and each of its alt-name patterns included in one of theirs (`patternIncludes`). Key
 * ids are not resolved to names (this does no I/O): a key id is covered only by that key id.
 */
export function uncoveredGrant(held: readonly Grant[], requested: readonly Grant[]): string | undefined {
  for (const [i, want] of requested.entries()) {
    const why = whyNotCovered(held, want);
    if (why !== undefined) return `grants[${i}] (${want.scope}) ${why}`;
  }
  return undefined;
}

/**
 * Refuse (403 FORBIDDEN) unless `principal` holds every grant of `grants`, with key limits no
 * wider than its own. `whose` names the grants in the detail: what the caller hands out, or the
 * target client's (acting on a client is acting with its power: a token for it, its name or its
 * subject, which could be pointed at the caller).
 */
export function assertGrantsCovered(principal: Principal, grants: readonly Grant[], whose: 'requested' | 'target'): void {
  const why = uncoveredGrant(principal.grants, grants);
  if (why === undefined) return;
  throw new AppError(
    'FORBIDDEN',
    whose === 'requested' ? `You may hand out only grants you hold: ${why}.` : `That client holds more than you do: its ${why}.`,
  );
}

/** Whether `principal` is the operator: only it holds `*` (`checkGrants` refuses it to clients). */
/** The operator behind ADMIN_TOKEN: every scope, no key limits. */
export const OPERATOR: Principal = Object.freeze({ clientId: 'admin', name: 'operator', grants: Object.freeze([Object.freeze({ scope: ALL_SCOPES })]) as Grant[] });

export function isOperator(principal: Principal): boolean {
  return principal.grants.some((grant) => grant.scope === ALL_SCOPES);
}

/**
 * The index of the first of `names` that `principal`'s grants of `scope` do not cover, or -1.
 * For names being claimed (a new key, an added alt name), removed, or selected: each must be
 * covered on its own. Using an existing key is different (`allows` with the key's names: any
 * one of them will do), and must stay so; here "any" would let `["billing-x", "hr-2027"]` claim
 * another team's name through one of one's own.
 */
export function uncoveredAltName(principal: Principal, scope: string, names: readonly string[]): number {
  return names.findIndex((name) => !allows(principal, scope, { keyAltNames: [name] }));
}

function limitsSatisfied(grant: Grant, target: ScopeTarget): boolean {
  if (grant.keyIds !== undefined && target.keyId !== undefined) {
    const id = target.keyId.toLowerCase();
    if (grant.keyIds.some((allowed) => allowed.toLowerCase() === id)) return true;
  }
  if (grant.keyAltNames !== undefined && target.keyAltNames !== undefined) {
    for (const name of target.keyAltNames) {
      if (grant.keyAltNames.some((pattern) => globMatches(pattern, name))) return true;
    }
  }
  return false;
}

/** The scope to check: the bare `documents:<access>` takes its namespace from the target. */
function resolveScope(scope: string, target: ScopeTarget | undefined): string | undefined {
  const documents = parseDocumentsScope(scope);
  if (documents === undefined || target?.collection === undefined) return documents?.ns === '' ? undefined : scope;
  if (documents.ns === '') return `documents:${target.collection}:${documents.access}`;
  // A scope naming one namespace and a target naming another is a caller bug: refuse.
  return documents.ns === target.collection ? scope : undefined;
}

/**
 * Whether `principal` may use `scope`, on `target` when given.
 *
 * Two kinds of check use this, and they differ on purpose:
 * - Route-level, without a target: "may this client call /decrypt at all?". A grant limited to
 *   some keys answers yes here, since the client may decrypt with those keys.
 * - Key-level, with a target: "may it decrypt with this key?". A limited grant answers yes only
 *   if the target's `keyId` is one of its `keyIds` or one of the target's `keyAltNames` matches
 *   one of its patterns. Pass the key's id AND its alt names (from the key document): a grant
 *   limited by alt-name patterns cannot match a target given by id alone. A target without key
 *   fields satisfies no limit.
 * So every operation on a key must ask again with the key as target once the key is known; asking
 * only without a target lets a limited client use any key.
 *
 * Documents scopes carry their namespace (`documents:hr.employees:read`); alternatively ask for
 * `documents:read` with `{ collection: 'hr.employees' }`. A `documents:*:read` grant covers every
 * namespace. The operator's `*` grant allows everything.
 */
export function allows(principal: Principal, scope: string, target?: ScopeTarget): boolean {
  const requested = resolveScope(scope, target);
  if (requested === undefined) return false;
  return principal.grants.some((grant) => {
    if (grant.scope === ALL_SCOPES) return true;
    if (!scopeMatches(grant.scope, requested)) return false;
    if (grant.keyIds === undefined && grant.keyAltNames === undefined) return true;
    return target === undefined || limitsSatisfied(grant, target);
  });
}

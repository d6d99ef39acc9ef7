/**
 * Checks filters, sorts and projections against a collection plan and marks where
 * values must be encrypted. Equality on deterministic fields ($eq, $ne, $in, $nin, also under
 * $and, $or, $nor and $not) is rewritten to ciphertext; everything else that would compute on an
 * encrypted field is refused with a code naming the path. Operators are allow-listed. Updates: update-rewriter.ts.
 */
import { AppError } from '../errors.js';
import { bsonTypeAlias, isPlainObject, matchesBsonType } from './bson-types.js';
import { ruleFor, type EncryptNode, type ObjectNode, type PlanNode } from './encryption-plan.js';
import { refuseServerSideJavaScript, walkExpression } from './expression-walker.js';

/** A value inside a filter or update that must be replaced by its deterministic ciphertext. */
export interface EqualitySlot {
  container: Record<string, unknown> | unknown[];
  key: string | number;
  node: EncryptNode;
  path: string;
  /** No value to encrypt (an empty $in or $nin): the field is still tested, so only authorized. */
  probe?: true;
}

/** Where a dotted path lands in a plan. */
export type PathTarget =
  | { kind: 'plain' }
  | { kind: 'encrypted'; node: EncryptNode }
  /** An object whose subtree has encrypted fields. */
  | { kind: 'subtree'; node: ObjectNode }
  /** A path that goes inside an encrypted value. */
  | { kind: 'inside'; node: EncryptNode; encryptedPath: string };

/** A field path: dot-separated non-empty names, none starting with $ (operators are not paths). */
export function checkPath(path: string, what: string): void {
  const segments = path.split('.');
  if (path.length > 1024 || segments.some((s) => s === '' || s.startsWith('$'))) {
    throw new AppError('INVALID_QUERY', `${what}: "${path.slice(0, 100)}" is not a valid field path.`);
  }
}

export function resolvePath(plan: ObjectNode | undefined, path: string): PathTarget {
  let node: PlanNode | undefined = plan;
  const segments = path.split('.');
  for (let i = 0; i < segments.length; i++) {
    if (node === undefined) return { kind: 'plain' };
    if (node.kind === 'encrypt') return { kind: 'inside', node, encryptedPath: segments.slice(0, i).join('.') };
    const rule = ruleFor(node, segments[i]!);
    if (rule === 'conflict') throw new AppError('SCHEMA_RULE_CONFLICT', `${segments.slice(0, i + 1).join('.')} matches two patternProperties rules.`);
    node = rule;
  }
  if (node === undefined) return { kind: 'plain' };
  return node.kind === 'encrypt' ? { kind: 'encrypted', node } : { kind: 'subtree', node };
}

// What MongoDB's query analysis lets through on an unencrypted field: the allow-list governs
// encrypted fields, not plaintext ones (libmongocrypt's badQueries tests).
const plainOperators = new Set([
  '$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$type', '$regex', '$options',
  '$size', '$all', '$elemMatch', '$not', '$mod',
  '$bitsAllClear', '$bitsAllSet', '$bitsAnyClear', '$bitsAnySet',
  '$geoWithin', '$geoIntersects', '$near', '$nearSphere', '$geometry', '$maxDistance', '$minDistance',
  '$box', '$polygon', '$center', '$centerSphere', '$uniqueDocs',
]);
const equalityOperators = new Set(['$eq', '$ne', '$in', '$nin', '$not']);
const logicalOperators = new Set(['$and', '$or', '$nor']);

function refuseOnEncrypted(path: string, node: EncryptNode, what: string): never {
  if (node.algorithm === 'random') throw new AppError('QUERY_ON_RANDOM_FIELD', `${path} is random-encrypted: ${what} is not possible.`);
  throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${path} is encrypted: ${what} is not possible.`);
}

/**
 * Check an aggregation expression ($expr, a pipeline stage's expression): it may read plaintext
 * fields only. A computation on a ciphertext (a comparison, a grouping, a length) would answer
 * about the encrypted value without the key, so it is refused as query analysis refuses it.
 */
export function checkExpression(expression: unknown, plan: ObjectNode | undefined, what: string): void {
  walkExpression(expression, {
    field(path) {
      const target = resolvePath(plan, path);
      if (target.kind === 'encrypted') refuseOnEncrypted(path, target.node, what);
      if (target.kind === 'inside') refuseOnEncrypted(target.encryptedPath, target.node, what);
      if (target.kind === 'subtree') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${path} contains encrypted fields: ${what} is not possible.`);
    },
    root() {
      if (plan !== undefined) throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `The whole document has encrypted fields: ${what} on it is not possible.`);
    },
  });
}

function isOperatorObject(value: unknown): value is Record<string, unknown> {
  return isPlainObject(value) && Object.keys(value).length > 0 && Object.keys(value).every((k) => k.startsWith('$'));
}

/** Refuse any operator outside the allow-list anywhere in a plaintext condition ($elemMatch bodies included). */
export function checkPlainOperators(value: unknown, path: string): void {
  if (Array.isArray(value)) {
    for (const item of value) checkPlainOperators(item, path);
    return;
  }
  if (!isPlainObject(value)) return;
  for (const [key, inner] of Object.entries(value)) {
    if (key.startsWith('$') && !plainOperators.has(key) && !logicalOperators.has(key)) {
      throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${key} is not allowed (at ${path}).`);
    }
    checkPlainOperators(inner, path);
  }
}

function checkValueType(path: string, node: EncryptNode, value: unknown): void {
  if (node.bsonTypes !== undefined && !matchesBsonType(value, node.bsonTypes.map(aliasOf))) {
    throw new AppError('INVALID_QUERY', `${path} holds ${node.bsonTypes.join(' or ')}: compare it with a value of that type.`);
  }
}

/** The $jsonSchema alias of an internal type name (the plan stores internal names). */
function aliasOf(type: string): string {
  return ({ document: 'object', binary: 'binData' } as Record<string, string>)[type] ?? type;
}

function rewriteEncryptedCondition(path: string, node: EncryptNode, container: Record<string, unknown>, key: string, slots: EqualitySlot[]): void {
  if (node.algorithm === 'random') refuseOnEncrypted(path, node, 'a query');
  const condition = container[key];
  // {"$regex": ...} in Extended JSON arrives as a regex value: a pattern match, not equality.
  if (bsonTypeAlias(condition) === 'regex') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `A regex cannot match ${path}: it is encrypted.`);
  if (!isOperatorObject(condition)) {
    checkValueType(path, node, condition);
    slots.push({ container, key, node, path });
    return;
  }
  for (const [op, arg] of Object.entries(condition)) {
    if (op === '$exists') continue; // presence needs no value
    if (!equalityOperators.has(op)) {
      if (plainOperators.has(op)) throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${op} cannot be used on ${path}: it is encrypted.`);
      throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${op} is not allowed (at ${path}).`);
    }
    if (op === '$not') {
      if (!isOperatorObject(arg)) throw new AppError('INVALID_QUERY', `$not on ${path} takes an operator object.`);
      // One operator: a value matched under two keys during a rotation becomes $in/$nin, which
      // must not merge with a sibling operator (NOT (a AND b) is not NOT (a OR b)).
      if (Object.keys(arg).length > 1) throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `$not on the encrypted ${path} takes a single operator.`);
      rewriteEncryptedCondition(path, node, condition, op, slots);
    } else if (op === '$in' || op === '$nin') {
      if (!Array.isArray(arg)) throw new AppError('INVALID_QUERY', `${op} on ${path} takes an array.`);
      // An empty list still tests the field: authorized like any equality on it.
      if (arg.length === 0) slots.push({ container: arg, key: 0, node, path, probe: true });
      arg.forEach((item, i) => {
        checkValueType(path, node, item);
        slots.push({ container: arg, key: i, node, path });
      });
    } else {
      checkValueType(path, node, arg);
      slots.push({ container: condition, key: op, node, path });
    }
  }
}

/** Check a filter and collect the equality values to encrypt. The filter is rewritten in place later. */
export function planFilter(filter: unknown, plan: ObjectNode | undefined, slots: EqualitySlot[] = []): EqualitySlot[] {
  if (!isPlainObject(filter)) throw new AppError('INVALID_QUERY', 'A filter must be an object.');
  // Conditions on encrypted fields split into one operator each (ANDed): each equality value can
  // then be rewritten on its own, e.g. to $in of its ciphertexts under two keys, without changing
  // what the filter means.
  const split: Record<string, unknown>[] = [];
  // Server-side JavaScript is refused wherever it hides, before anything else is looked at.
  refuseServerSideJavaScript(filter);
  for (const [key, condition] of Object.entries(filter)) {
    if (logicalOperators.has(key)) {
      if (!Array.isArray(condition) || condition.length === 0) throw new AppError('INVALID_QUERY', `${key} takes a non-empty array of filters.`);
      for (const sub of condition) planFilter(sub, plan, slots);
      continue;
    }
    if (key === '$expr') {
      checkExpression(condition, plan, 'an $expr');
      continue;
    }
    if (key === '$comment') {
      if (typeof condition !== 'string') throw new AppError('INVALID_QUERY', '$comment takes a string.');
      continue;
    }
    if (key.startsWith('$')) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${key} is not allowed.`);
    checkPath(key, 'filter');
    // It could only match an array where encrypted fields are, and would send its value as is.
    checkNoIndexUnderEncrypted(plan, key, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD');
    const target = resolvePath(plan, key);
    switch (target.kind) {
      case 'plain':
        checkPlainOperators(condition, key);
        break;
      case 'encrypted':
        // Whether the field is there needs no value: as for any field.
        if (isOperatorObject(condition) && Object.keys(condition).every((op) => op === '$exists')) break;
        if (isOperatorObject(condition) && Object.keys(condition).length > 1) {
          delete filter[key];
          for (const [op, arg] of Object.entries(condition)) {
            const part: Record<string, unknown> = { [key]: { [op]: arg } };
            rewriteEncryptedCondition(key, target.node, part, key, slots);
            split.push(part);
          }
        } else {
          rewriteEncryptedCondition(key, target.node, filter, key, slots);
        }
        break;
      case 'inside':
        refuseOnEncrypted(target.encryptedPath, target.node, `a query on ${key} inside it`);
        break;
      case 'subtree':
        // Comparing a whole sub-document would compare plaintext with ciphertext; existence is fine.
        if (!(isOperatorObject(condition) && Object.keys(condition).every((op) => op === '$exists'))) {
          throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${key} contains encrypted fields: query them one by one.`);
        }
    }
  }
  if (split.length > 0) filter.$and = [...((filter.$and as unknown[] | undefined) ?? []), ...split];
  return slots;
}

export function checkSort(sort: unknown, plan: ObjectNode | undefined): void {
  if (!isPlainObject(sort)) throw new AppError('INVALID_QUERY', 'A sort must be an object.');
  for (const [path, direction] of Object.entries(sort)) {
    if (direction !== 1 && direction !== -1) throw new AppError('INVALID_QUERY', `Sort direction of ${path} must be 1 or -1.`);
    if (path.startsWith('$')) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${path} is not allowed in a sort.`);
    checkPath(path, 'sort');
    const target = resolvePath(plan, path);
    if (target.kind === 'encrypted') refuseOnEncrypted(path, target.node, 'sorting');
    if (target.kind === 'inside') refuseOnEncrypted(target.encryptedPath, target.node, `sorting on ${path}`);
    if (target.kind === 'subtree') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${path} contains encrypted fields: it cannot be sorted on.`);
  }
}

export function checkProjection(projection: unknown, plan: ObjectNode | undefined): void {
  if (!isPlainObject(projection)) throw new AppError('INVALID_QUERY', 'A projection must be an object.');
  const modes = new Set<boolean>();
  for (const [path, include] of Object.entries(projection)) {
    if (![0, 1, true, false].includes(include as number | boolean)) {
      throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `Projection of ${path} must be 0, 1, true or false.`);
    }
    if (path.startsWith('$')) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${path} is not allowed in a projection.`);
    // The positional projection (`tags.$`): the first array element the filter matched, for a
    // plaintext array; encrypted fields hold no arrays to pick from.
    if (path.endsWith('.$')) {
      const base = path.slice(0, -2);
      checkPath(base, 'projection');
      const target = resolvePath(plan, base);
      if (target.kind === 'encrypted') refuseOnEncrypted(base, target.node, 'a positional projection');
      if (target.kind === 'inside') refuseOnEncrypted(target.encryptedPath, target.node, `projecting ${path} inside it`);
      if (target.kind === 'subtree') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${base} contains encrypted fields and holds no array: a positional projection is not possible.`);
      modes.add(true);
      continue;
    }
    checkPath(path, 'projection');
    if (path !== '_id') modes.add(include === 1 || include === true);
    const target = resolvePath(plan, path);
    if (target.kind === 'inside') refuseOnEncrypted(target.encryptedPath, target.node, `projecting ${path} inside it`);
  }
  if (modes.size > 1) throw new AppError('INVALID_QUERY', 'A projection either includes or excludes fields, not both.');
}

/**
 * Below a field with encrypted fields, a numeric path segment no rule names could address an
 * array element (`medical.0` of a stored array), writing its encrypted fields in plaintext. Such
 * fields hold plain documents only, so the segment is refused rather than guessed at.
 */
function checkNoIndexUnderEncrypted(plan: ObjectNode | undefined, path: string, code: 'INVALID_DOCUMENT_SHAPE' | 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD' = 'INVALID_DOCUMENT_SHAPE'): void {
  let node: PlanNode | undefined = plan;
  const segments = path.split('.');
  for (let i = 0; i < segments.length && node?.kind === 'object'; i++) {
    const rule = ruleFor(node, segments[i]!);
    if (rule === undefined && /^\d+$/.test(segments[i]!) && i > 0) {
      throw new AppError(code, `${path}: ${segments.slice(0, i).join('.')} has encrypted fields and holds a plain document, not an array.`);
    }
    node = rule === 'conflict' ? undefined : rule;
  }
}

/**
 * The rules of mongocryptd's query analysis for updates, against a collection plan: values
 * written into an encrypted field ($set, $setOnInsert) are marked for encryption; operators that
 * compute on an encrypted value or on elements of an encrypted array are refused; $rename moves
 * ciphertext only between fields of identical encryption metadata; positional paths and
 * arrayFilters only reach plaintext arrays; a pipeline update may neither read nor write an
 * encrypted path. Pure: no keys, no I/O.
 */
import { AppError } from '../errors.js';
import { isPlainObject } from './bson-types.js';
import { listEncryptedPaths, type EncryptNode, type ObjectNode, type PlanNode } from './encryption-plan.js';
import { walkExpression } from './expression-walker.js';
import { checkPath, checkPlainOperators, resolvePath, type PathTarget } from './query-rewriter.js';

/** A value of an update to replace by its ciphertext (a whole sub-document when it has encrypted fields). */
export interface EncryptedWrite {
  op: '$set' | '$setOnInsert';
  path: string;
  node: PlanNode;
}

export type UpdateWritePlan =
  | {
      kind: 'operators';
      encrypted: EncryptedWrite[];
      /** Literal values written to plaintext paths, for the collection's validator. */
      plainWrites: { op: string; path: string; value: unknown }[];
      unset: string[];
      /** Every path written, cut before its first positional segment: each must be one the schema allows. */
      written: string[];
      renames: { from: string; to: string }[];
    }
  | { kind: 'pipeline'; plainWrites: { op: string; path: string; value: unknown }[]; unset: string[]; written: string[]; renames: [] };

/** Operators that compute on the stored value: never on an encrypted field (mongocryptd refuses them too). */
const computingOperators = new Set(['$inc', '$mul', '$min', '$max', '$currentDate', '$push', '$addToSet', '$pull', '$pullAll', '$pop']);
const writingOperators = new Set(['$set', '$setOnInsert']);
const allOperators = new Set([...computingOperators, ...writingOperators, '$unset', '$rename']);

const identifierPattern = /^[a-z][a-zA-Z0-9]*$/;

/** A number of the update, as relaxed Extended JSON parses it (Int32, Double, Long) or as a JavaScript number. */
function numberOf(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  const type = (value as { _bsontype?: string } | null)?._bsontype;
  if (type === 'Int32' || type === 'Double') return (value as { value: number }).value;
  if (type === 'Long') return Number(value);
  return undefined;
}

const isInteger = (value: unknown) => Number.isInteger(numberOf(value));

function isNumber(value: unknown): boolean {
  return typeof value === 'number' || ['Int32', 'Long', 'Double', 'Decimal128'].includes((value as { _bsontype?: string } | null)?._bsontype ?? '');
}

function notWritable(detail: string): never {
  throw new AppError('ENCRYPTED_FIELD_NOT_WRITABLE', detail);
}

/** Pointer-keyed fields take their key from the document: an update has no document to read it from. */
function refusePointerKeys(path: string, node: PlanNode): void {
  const encrypted = node.kind === 'encrypt' ? [{ path, node }] : listEncryptedPaths(node, path);
  const pointer = encrypted.find(({ node: n }) => n.key.kind === 'pointer');
  if (pointer !== undefined) {
    throw new AppError('KEY_POINTER_NOT_WRITABLE', `${pointer.path} takes its data key from the document (a keyId JSON pointer): replace the whole document to write it.`);
  }
}

/**
 * A path of an update: dotted names, where array positions may be `$`, `$[]` or `$[ident]`. The
 * part before the first positional segment must hold no encrypted field: CSFLE schemas encrypt
 * no element of an array, so a positional path reaching one could only write plaintext into it.
 */
function checkUpdatePath(path: string, op: string, plan: ObjectNode | undefined, identifiers: Set<string>): { target: PathTarget; positional: boolean } {
  const segments = path.split('.');
  const first = segments.findIndex((s) => s === '$' || s === '$[]' || /^\$\[.*\]$/.test(s));
  const operatorName = segments.find((s, i) => s.startsWith('$') && (first === -1 || i < first));
  if (operatorName !== undefined) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${op}: ${operatorName.slice(0, 50)} is an operator, not a field name.`);
  if (first === -1) {
    checkPath(path, op);
    return { target: resolvePath(plan, path), positional: false };
  }
  if (first === 0) throw new AppError('INVALID_QUERY', `${op}: "${path.slice(0, 100)}" starts with a positional operator.`);
  for (const segment of segments.slice(first)) {
    if (segment === '$' || segment === '$[]') continue;
    const identifier = /^\$\[(.*)\]$/.exec(segment)?.[1];
    if (identifier !== undefined) {
      if (!identifierPattern.test(identifier)) throw new AppError('INVALID_QUERY', `${op}: "${identifier.slice(0, 50)}" is not a valid arrayFilters identifier.`);
      identifiers.add(identifier);
    } else if (segment === '' || segment.startsWith('$')) {
      throw new AppError('INVALID_QUERY', `${op}: "${path.slice(0, 100)}" is not a valid field path.`);
    }
  }
  const prefix = segments.slice(0, first).join('.');
  checkPath(prefix, op);
  const target = resolvePath(plan, prefix);
  if (target.kind !== 'plain') {
    notWritable(`${path}: positional and array updates are not allowed on encrypted values (${prefix} is or holds an encrypted field).`);
  }
  return { target, positional: true };
}

/** The part of a path the schema can name: up to its first positional segment (array elements have no rules). */
function beforePositional(path: string): string {
  const segments = path.split('.');
  const first = segments.findIndex((s) => s.startsWith('$'));
  return (first === -1 ? segments : segments.slice(0, first)).join('.');
}

function checkOperatorValue(op: string, path: string, value: unknown): void {
  switch (op) {
    case '$inc':
    case '$mul':
      if (!isNumber(value)) throw new AppError('INVALID_QUERY', `${op} of ${path} takes a number.`);
      break;
    case '$currentDate':
      if (value !== true && !(isPlainObject(value) && Object.keys(value).length === 1 && ['date', 'timestamp'].includes(value.$type as string))) {
        throw new AppError('INVALID_QUERY', `$currentDate of ${path} takes true or {"$type": "date" | "timestamp"}.`);
      }
      break;
    case '$pop':
      if (numberOf(value) !== 1 && numberOf(value) !== -1) throw new AppError('INVALID_QUERY', `$pop of ${path} takes 1 or -1.`);
      break;
    case '$pullAll':
      if (!Array.isArray(value)) throw new AppError('INVALID_QUERY', `$pullAll of ${path} takes an array.`);
      break;
    case '$pull':
      // A condition on the plaintext array's elements: the same allow-list as filters.
      checkPlainOperators(value, path);
      break;
    case '$push':
    case '$addToSet':
      if (isPlainObject(value) && Object.keys(value).some((k) => k.startsWith('$'))) {
        const allowed = op === '$push' ? ['$each', '$position', '$slice', '$sort'] : ['$each'];
        const extra = Object.keys(value).find((k) => !allowed.includes(k));
        if (extra !== undefined) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${extra} is not allowed in ${op} (use ${allowed.join(', ')}).`);
        if (!Array.isArray(value.$each)) throw new AppError('INVALID_QUERY', `${op} of ${path}: $each takes an array.`);
        if (value.$position !== undefined && !isInteger(value.$position)) throw new AppError('INVALID_QUERY', `$position of ${path} takes an integer.`);
        if (value.$slice !== undefined && !isInteger(value.$slice)) throw new AppError('INVALID_QUERY', `$slice of ${path} takes an integer.`);
        if (value.$sort !== undefined && numberOf(value.$sort) !== 1 && numberOf(value.$sort) !== -1 && !isPlainObject(value.$sort)) {
          throw new AppError('INVALID_QUERY', `$sort of ${path} takes 1, -1 or an object of field directions.`);
        }
      }
      break;
  }
}

/** $rename moves a stored value as it is: ciphertext may only land where the same key and algorithm would have put it. */
function sameMetadata(a: EncryptNode, b: EncryptNode): boolean {
  return (
    a.algorithm === b.algorithm &&
    a.key.kind === 'id' &&
    b.key.kind === 'id' &&
    a.key.id === b.key.id &&
    JSON.stringify(a.bsonTypes ?? null) === JSON.stringify(b.bsonTypes ?? null)
  );
}

function checkRename(from: string, to: unknown, plan: ObjectNode | undefined): void {
  if (typeof to !== 'string') throw new AppError('INVALID_QUERY', `$rename of ${from} takes the new field name as a string.`);
  checkPath(to, '$rename');
  if (to === '_id' || to.startsWith('_id.')) throw new AppError('INVALID_QUERY', '_id cannot be updated.');
  const source = resolvePath(plan, from);
  const target = resolvePath(plan, to);
  if (source.kind === 'plain' && target.kind === 'plain') return;
  if (source.kind === 'encrypted' && target.kind === 'encrypted' && sameMetadata(source.node, target.node)) return;
  throw new AppError('RENAME_ENCRYPTION_MISMATCH', `$rename from ${from} to ${to}: both must be unencrypted, or encrypted fields with the same key, algorithm and type.`);
}

/** Check arrayFilters: conditions on plaintext array elements, one identifier each, all used by the update. */
export function checkArrayFilters(arrayFilters: unknown, identifiers: Set<string>): void {
  if (arrayFilters === undefined) {
    if (identifiers.size > 0) throw new AppError('INVALID_QUERY', `No arrayFilters for $[${[...identifiers][0]}].`);
    return;
  }
  if (!Array.isArray(arrayFilters)) throw new AppError('INVALID_QUERY', 'arrayFilters takes an array of filters.');
  const defined = new Set<string>();
  for (const filter of arrayFilters) {
    if (!isPlainObject(filter) || Object.keys(filter).length === 0) throw new AppError('INVALID_QUERY', 'Each arrayFilters entry is a non-empty filter.');
    const names = new Set<string>();
    const collect = (condition: Record<string, unknown>) => {
      for (const [key, value] of Object.entries(condition)) {
        if (['$and', '$or', '$nor'].includes(key)) {
          if (!Array.isArray(value)) throw new AppError('INVALID_QUERY', `${key} takes an array of filters.`);
          for (const sub of value) if (isPlainObject(sub)) collect(sub);
          continue;
        }
        if (key.startsWith('$')) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${key} is not allowed in arrayFilters.`);
        names.add(key.split('.')[0]!);
      }
    };
    collect(filter);
    checkPlainOperators(filter, 'arrayFilters');
    if (names.size !== 1) throw new AppError('INVALID_QUERY', 'Each arrayFilters entry names exactly one identifier.');
    const [name] = names;
    if (!identifierPattern.test(name!)) throw new AppError('INVALID_QUERY', `"${name!.slice(0, 50)}" is not a valid arrayFilters identifier.`);
    if (defined.has(name!)) throw new AppError('INVALID_QUERY', `arrayFilters names ${name} twice.`);
    defined.add(name!);
  }
  for (const name of defined) if (!identifiers.has(name)) throw new AppError('INVALID_QUERY', `The arrayFilters identifier ${name} is not used by the update.`);
  for (const name of identifiers) if (!defined.has(name)) throw new AppError('INVALID_QUERY', `No arrayFilters for $[${name}].`);
}

function planOperators(update: Record<string, unknown>, plan: ObjectNode | undefined, arrayFilters: unknown): UpdateWritePlan {
  const encrypted: EncryptedWrite[] = [];
  const plainWrites: { op: string; path: string; value: unknown }[] = [];
  const unset: string[] = [];
  const touched = new Set<string>();
  const identifiers = new Set<string>();
  const written: string[] = [];
  const renames: { from: string; to: string }[] = [];
  for (const [op, fields] of Object.entries(update)) {
    if (!allOperators.has(op)) {
      if (!op.startsWith('$')) throw new AppError('INVALID_QUERY', 'An update is an object of update operators, or a pipeline (an array of stages); use replace to write a whole document.');
      throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${op} is not allowed in an update.`);
    }
    if (!isPlainObject(fields) || Object.keys(fields).length === 0) throw new AppError('INVALID_QUERY', `${op} takes a non-empty object.`);
    for (const [path, value] of Object.entries(fields)) {
      if (path === '_id' || path.startsWith('_id.')) {
        if (!(op === '$setOnInsert' && path === '_id')) throw new AppError('INVALID_QUERY', '_id cannot be updated.');
      }
      if (touched.has(path)) throw new AppError('INVALID_QUERY', `${path} is updated twice.`);
      touched.add(path);
      if (op === '$rename') {
        checkPath(path, op);
        if (touched.has(value as string)) throw new AppError('INVALID_QUERY', `${String(value)} is updated twice.`);
        checkRename(path, value, plan);
        touched.add(value as string);
        renames.push({ from: path, to: value as string });
        continue;
      }
      const { target, positional } = checkUpdatePath(path, op, plan, identifiers);
      if (op !== '$unset') written.push(beforePositional(path));
      if (target.kind === 'inside') notWritable(`${path} is inside the encrypted field ${target.encryptedPath}: set the whole field.`);
      checkNoArrayIndexUnderEncrypted(plan, path);
      if (computingOperators.has(op)) {
        if (target.kind !== 'plain') notWritable(`${op} is not allowed on encrypted values (${path} is or holds an encrypted field).`);
        checkOperatorValue(op, path, value);
        plainWrites.push({ op, path, value });
      } else if (op === '$unset') {
        unset.push(path);
      } else if (target.kind === 'plain') {
        if (!positional) plainWrites.push({ op, path, value });
      } else {
        refusePointerKeys(path, target.node);
        encrypted.push({ op: op as EncryptedWrite['op'], path, node: target.node });
      }
    }
  }
  checkArrayFilters(arrayFilters, identifiers);
  return { kind: 'operators', encrypted, plainWrites, unset, written, renames };
}

/** A numeric segment below a field with encrypted fields could address an array element; such fields hold documents only. */
function checkNoArrayIndexUnderEncrypted(plan: ObjectNode | undefined, path: string): void {
  const segments = path.split('.');
  for (let i = 1; i < segments.length; i++) {
    if (!/^\d+$/.test(segments[i]!)) continue;
    const parent = resolvePath(plan, segments.slice(0, i).join('.'));
    if (parent.kind === 'subtree') {
      throw new AppError('INVALID_DOCUMENT_SHAPE', `${path}: ${segments.slice(0, i).join('.')} has encrypted fields and holds a plain document, not an array.`);
    }
  }
}

function pipelineRefused(detail: string): never {
  throw new AppError('PIPELINE_UPDATE_NOT_SUPPORTED', detail);
}

/**
 * An expression of a pipeline update may read plaintext fields only: never an encrypted path, a
 * path holding one, or the whole document ($$ROOT, or a field named at run time by $getField)
 * where the collection has encrypted fields. Server-side JavaScript is refused by the walker.
 */
function checkExpression(expression: unknown, plan: ObjectNode | undefined, at: string): void {
  walkExpression(expression, {
    field(path) {
      if (resolvePath(plan, path).kind !== 'plain') pipelineRefused(`${at} reads ${path}, which is or holds an encrypted field.`);
    },
    root() {
      if (plan !== undefined && listEncryptedPaths(plan).length > 0) pipelineRefused(`${at} reads the whole document, which has encrypted fields.`);
    },
  });
}

function isLiteral(value: unknown): boolean {
  if (typeof value === 'string') return !value.startsWith('$');
  if (Array.isArray(value)) return value.every(isLiteral);
  if (isPlainObject(value)) return Object.entries(value).every(([k, v]) => !k.startsWith('$') && isLiteral(v));
  return true;
}

function planPipeline(stages: unknown[], plan: ObjectNode | undefined, arrayFilters: unknown): UpdateWritePlan {
  if (stages.length === 0) throw new AppError('INVALID_QUERY', 'A pipeline update takes at least one stage.');
  if (arrayFilters !== undefined) throw new AppError('INVALID_QUERY', 'arrayFilters cannot be used with a pipeline update.');
  const plainWrites: { op: string; path: string; value: unknown }[] = [];
  const unset: string[] = [];
  const written: string[] = [];
  const unsetPath = (path: unknown, stage: string) => {
    if (typeof path !== 'string') throw new AppError('INVALID_QUERY', `${stage} takes field paths.`);
    checkPath(path, stage);
    if (path === '_id' || path.startsWith('_id.')) throw new AppError('INVALID_QUERY', '_id cannot be updated.');
    const target = resolvePath(plan, path);
    if (target.kind === 'inside') notWritable(`${path} is inside the encrypted field ${target.encryptedPath}.`);
    unset.push(path);
  };
  for (const stage of stages) {
    if (!isPlainObject(stage) || Object.keys(stage).length !== 1) throw new AppError('INVALID_QUERY', 'Each pipeline stage is an object with one stage name.');
    const [[name, spec]] = Object.entries(stage) as [[string, unknown]];
    switch (name) {
      case '$set':
      case '$addFields':
        if (!isPlainObject(spec) || Object.keys(spec).length === 0) throw new AppError('INVALID_QUERY', `${name} takes a non-empty object.`);
        for (const [path, expression] of Object.entries(spec)) {
          checkPath(path, name);
          if (path === '_id' || path.startsWith('_id.')) throw new AppError('INVALID_QUERY', '_id cannot be updated.');
          if (resolvePath(plan, path).kind !== 'plain') pipelineRefused(`${name} of ${path}: a pipeline cannot write an encrypted field or one holding encrypted fields (use $set as an update operator).`);
          checkExpression(expression, plan, `${name}.${path}`);
          written.push(path);
          if (isLiteral(expression)) plainWrites.push({ op: name, path, value: expression });
        }
        break;
      case '$unset':
        for (const path of Array.isArray(spec) ? spec : [spec]) unsetPath(path, name);
        break;
      case '$project':
        // Exclusion only: an inclusion would drop every other field, encrypted ones included, unseen.
        if (!isPlainObject(spec) || Object.keys(spec).length === 0) throw new AppError('INVALID_QUERY', '$project takes a non-empty object.');
        for (const [path, value] of Object.entries(spec)) {
          if (value !== 0 && value !== false) pipelineRefused('$project in a pipeline update may only exclude fields (0 or false).');
          unsetPath(path, name);
        }
        break;
      default:
        pipelineRefused(`${name.slice(0, 50)} is not allowed in a pipeline update (use $set, $addFields, $unset or an excluding $project).`);
    }
  }
  return { kind: 'pipeline', plainWrites, unset, written, renames: [] };
}

/** Check an update (operators or a pipeline) against the plan; say which values get encrypted. */
export function planUpdateWrite(update: unknown, plan: ObjectNode | undefined, arrayFilters?: unknown): UpdateWritePlan {
  if (Array.isArray(update)) return planPipeline(update, plan, arrayFilters);
  if (!isPlainObject(update) || Object.keys(update).length === 0) throw new AppError('INVALID_QUERY', 'An update must be a non-empty object of operators, or a pipeline.');
  return planOperators(update, plan, arrayFilters);
}

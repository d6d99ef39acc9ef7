/**
 * Query analysis of an aggregation pipeline, as libmongocrypt's does it for automatic encryption:
 * equality $match on deterministic fields is rewritten to ciphertext (through the filter
 * rewriter), and a stage that would compute on an encrypted value is refused, naming the stage
 * and the path. The plan is followed through the stages: after a $group, $count, $bucket or a
 * $replaceRoot the documents are computed values, with nothing encrypted left in them.
 *
 * Refused: grouping, sorting, unwinding, projecting expressions or bucketing on encrypted fields
 * (the answer would compare ciphertexts, which says things about values a caller may not decrypt:
 * a $group by an encrypted field and a $count is an oracle around masking); reading the whole
 * document ($$ROOT, $$CURRENT, $getField) in a collection with encrypted fields; server-side
 * JavaScript anywhere; $out and $merge (a read route must not write, and would copy ciphertext
 * past the write path); $lookup, $graphLookup and $unionWith (another collection, with its own
 * schema and its own grants, read under this collection's scope); $facet other than as the last
 * stage; any stage not listed here.
 */
import { AppError, type ErrorCode } from '../errors.js';
import { isPlainObject } from './bson-types.js';
import type { ObjectNode } from './encryption-plan.js';
import { refuseServerSideJavaScript } from './expression-walker.js';
import { checkExpression, checkPath, checkSort, planFilter, resolvePath, type EqualitySlot } from './query-rewriter.js';

export interface StagePlan {
  index: number;
  stage: string;
  /** Encrypted paths whose equality values this stage sends as ciphertext. */
  encrypted: string[];
  /** Whether the documents after this stage can still hold encrypted values. */
  encryptedAfter: boolean;
}

export interface PipelinePlan {
  slots: EqualitySlot[];
  stages: StagePlan[];
}

const writingStages = new Set(['$out', '$merge']);
const joiningStages = new Set(['$lookup', '$graphLookup', '$unionWith']);

/** A number parsed from Extended JSON (an Int32 or a Double) as a JS number; anything else as is. */
function plainNumber(value: unknown): unknown {
  const type = (value as { _bsontype?: string } | null)?._bsontype;
  return type === 'Int32' || type === 'Double' ? (value as { valueOf(): number }).valueOf() : value;
}

/** Sort directions, 0/1 projections, counts: numbers the checks compare as numbers. */
function plainNumbersIn(value: unknown, depth = 0): unknown {
  if (!isPlainObject(value) || depth > 20) return plainNumber(value);
  for (const [k, v] of Object.entries(value)) if (!k.startsWith('$')) value[k] = plainNumbersIn(v, depth + 1);
  return value;
}

/** The schema's object at every level, the top first: what "$x" can name as $redact descends. */
function objectLevels(plan: ObjectNode | undefined): (ObjectNode | undefined)[] {
  if (plan === undefined) return [undefined];
  const levels: ObjectNode[] = [plan];
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    for (const node of [...level.properties.values(), ...level.patterns.map((p) => p.node)]) if (node.kind === 'object') levels.push(node);
  }
  return levels;
}

function refuse(code: ErrorCode, index: number, stage: string, detail: string): never {
  throw new AppError(code, `Stage ${index} (${stage}): ${detail}`);
}

/** The target of a computed field: a new plaintext value must not take an encrypted field's place. */
function checkComputedTarget(plan: ObjectNode | undefined, path: string): void {
  checkPath(path, 'a computed field');
  const target = resolvePath(plan, path);
  if (target.kind === 'plain') return;
  const where = target.kind === 'inside' ? target.encryptedPath : path;
  throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${where} is encrypted (or holds encrypted fields): a computed value cannot replace it.`);
}

function checkProjectStage(body: unknown, plan: ObjectNode | undefined, prefix = ''): void {
  if (!isPlainObject(body) || (prefix === '' && Object.keys(body).length === 0)) throw new AppError('INVALID_QUERY', '$project takes a non-empty object.');
  for (const [name, spec] of Object.entries(body)) {
    const path = prefix === '' ? name : `${prefix}.${name}`;
    if ([0, 1, true, false].includes(spec as number | boolean)) {
      checkPath(path, '$project');
      const target = resolvePath(plan, path);
      if (target.kind === 'inside') throw new AppError(target.node.algorithm === 'random' ? 'QUERY_ON_RANDOM_FIELD' : 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${target.encryptedPath} is encrypted: projecting ${path} inside it is not possible.`);
      continue;
    }
    // A nested projection ({contact: {city: 1}}) is a projection of each of its paths.
    if (isPlainObject(spec) && Object.keys(spec).length > 0 && Object.keys(spec).every((k) => !k.startsWith('$'))) {
      checkProjectStage(spec, plan, path);
      continue;
    }
    checkComputedTarget(plan, path);
    checkExpression(spec, plan, `computing ${path}`);
  }
}

function checkAddFields(body: unknown, plan: ObjectNode | undefined, stage: string): void {
  if (!isPlainObject(body) || Object.keys(body).length === 0) throw new AppError('INVALID_QUERY', `${stage} takes a non-empty object.`);
  for (const [path, expression] of Object.entries(body)) {
    checkComputedTarget(plan, path);
    checkExpression(expression, plan, `computing ${path}`);
  }
}

function checkUnset(body: unknown, plan: ObjectNode | undefined): void {
  const paths = typeof body === 'string' ? [body] : body;
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((p) => typeof p === 'string')) throw new AppError('INVALID_QUERY', '$unset takes a field path or an array of them.');
  for (const path of paths as string[]) {
    checkPath(path, '$unset');
    const target = resolvePath(plan, path);
    if (target.kind === 'inside') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${target.encryptedPath} is encrypted: ${path} inside it cannot be removed.`);
  }
}

function checkGeoNear(body: unknown, plan: ObjectNode | undefined, slots: EqualitySlot[]): void {
  if (!isPlainObject(body)) throw new AppError('INVALID_QUERY', '$geoNear takes an object.');
  if (body.query !== undefined) planFilter(body.query, plan, slots);
  if (body.key !== undefined) {
    if (typeof body.key !== 'string') throw new AppError('INVALID_QUERY', '$geoNear key takes a field path.');
    checkExpression(`$${body.key}`, plan, 'a geo search');
  }
  for (const output of ['distanceField', 'includeLocs'] as const) if (typeof body[output] === 'string') checkComputedTarget(plan, body[output] as string);
}

/**
 * Check a pipeline against a collection plan; collect the equality values to encrypt. The
 * pipeline is rewritten in place later (its $match filters hold the slots).
 */
export function planPipeline(pipeline: unknown, plan: ObjectNode | undefined, slots: EqualitySlot[] = [], nested = false): PipelinePlan {
  if (!Array.isArray(pipeline)) throw new AppError('INVALID_QUERY', 'A pipeline must be an array of stages.');
  // Server-side JavaScript is refused wherever it hides, before any stage is looked at.
  refuseServerSideJavaScript(pipeline);
  const stages: StagePlan[] = [];
  let current = plan;
  pipeline.forEach((stageDoc, index) => {
    if (!isPlainObject(stageDoc) || Object.keys(stageDoc).length !== 1) throw new AppError('INVALID_QUERY', `Stage ${index} must be an object with exactly one stage operator.`);
    const name = Object.keys(stageDoc)[0]!;
    if (name === '$sort' || name === '$project') stageDoc[name] = plainNumbersIn(stageDoc[name]);
    if (name === '$skip' || name === '$limit') stageDoc[name] = plainNumber(stageDoc[name]);
    if (name === '$sample' && isPlainObject(stageDoc[name])) (stageDoc[name] as Record<string, unknown>).size = plainNumber((stageDoc[name] as Record<string, unknown>).size);
    const body = stageDoc[name];
    const before = slots.length;
    try {
      switch (name) {
        case '$match':
          planFilter(body, current, slots);
          break;
        case '$sort':
          checkSort(body, current);
          break;
        case '$skip':
        case '$limit':
          if (!Number.isInteger(body) || (body as number) < (name === '$limit' ? 1 : 0)) throw new AppError('INVALID_QUERY', `${name} takes an integer${name === '$limit' ? ' of at least 1' : ' of at least 0'}.`);
          break;
        case '$sample':
          if (!isPlainObject(body) || !Number.isInteger(body.size) || (body.size as number) < 1) throw new AppError('INVALID_QUERY', '$sample takes {"size": n}, n at least 1.');
          break;
        case '$project':
          checkProjectStage(body, current);
          break;
        case '$addFields':
        case '$set':
          checkAddFields(body, current, name);
          break;
        case '$unset':
          checkUnset(body, current);
          break;
        case '$unwind': {
          const path = isPlainObject(body) ? body.path : body;
          if (typeof path !== 'string' || !path.startsWith('$') || path.startsWith('$$')) throw new AppError('INVALID_QUERY', '$unwind takes a field path ("$tags").');
          checkExpression(path, current, 'unwinding');
          if (isPlainObject(body) && typeof body.includeArrayIndex === 'string') checkComputedTarget(current, body.includeArrayIndex);
          break;
        }
        case '$redact':
          // Whenever the expression yields "descend" (however it is spelled or computed), it is
          // evaluated again inside every embedded document, where "$x" names that document's own
          // x: checked against every level of the schema, not only the top.
          for (const level of objectLevels(current)) checkExpression(body, level, '$redact');
          break;
        case '$group':
          if (!isPlainObject(body) || !('_id' in body)) throw new AppError('INVALID_QUERY', '$group takes an object with an _id.');
          checkExpression(body, current, 'grouping');
          current = undefined;
          break;
        case '$count':
          if (typeof body !== 'string' || body === '' || body.startsWith('$') || body.includes('.')) throw new AppError('INVALID_QUERY', '$count takes the name of its output field.');
          current = undefined;
          break;
        case '$sortByCount':
        case '$bucket':
        case '$bucketAuto':
          checkExpression(body, current, name === '$sortByCount' ? 'counting by it' : 'bucketing');
          current = undefined;
          break;
        case '$replaceRoot':
        case '$replaceWith':
          checkExpression(name === '$replaceRoot' ? (isPlainObject(body) ? body.newRoot : body) : body, current, 'making it the document');
          current = undefined;
          break;
        case '$geoNear':
          if (index !== 0 || nested) refuse('INVALID_QUERY', index, name, '$geoNear must be the first stage.');
          checkGeoNear(body, current, slots);
          break;
        case '$facet': {
          if (nested) refuse('PIPELINE_STAGE_NOT_ALLOWED', index, name, '$facet cannot be nested.');
          if (index !== pipeline.length - 1) refuse('PIPELINE_STAGE_NOT_ALLOWED', index, name, '$facet must be the last stage: what follows it cannot be checked against the schema.');
          if (!isPlainObject(body) || Object.keys(body).length === 0) throw new AppError('INVALID_QUERY', '$facet takes an object of pipelines.');
          for (const [output, sub] of Object.entries(body)) {
            checkPath(output, '$facet');
            planPipeline(sub, current, slots, true);
          }
          break;
        }
        default:
          if (writingStages.has(name)) refuse('PIPELINE_STAGE_NOT_ALLOWED', index, name, 'a read does not write; write through the documents routes, which encrypt.');
          if (joiningStages.has(name)) refuse('PIPELINE_STAGE_NOT_ALLOWED', index, name, 'another collection has its own schema and grants: query it through its own route.');
          refuse('PIPELINE_STAGE_NOT_ALLOWED', index, name, 'this stage is not supported through the proxy.');
      }
    } catch (err) {
      // Name the stage, unless the message already does.
      if (err instanceof AppError && !(err.detail ?? '').startsWith('Stage ')) throw new AppError(err.code, `Stage ${index} (${name}): ${err.detail ?? err.message}`, { cause: err });
      throw err;
    }
    stages.push({ index, stage: name, encrypted: [...new Set(slots.slice(before).map((s) => s.path))], encryptedAfter: current !== undefined });
  });
  return { slots, stages };
}

/**
 * Validates plaintext documents against the non-encryption keywords of a collection schema
 * (types, required, enums, lengths, additionalProperties ...) before anything is encrypted.
 *
 * ajv sees a projection of the BSON document in which numbers are plain JS numbers, so `minimum`
 * and friends work; `bsonType` is a custom keyword that looks the original BSON value up through a
 * map from each projected container to the one it was made from, so int, long and double stay
 * distinct.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { bsonTypeAlias, isPlainObject, matchesBsonType } from './bson-types.js';
import { SchemaError } from './encryption-plan.js';

type Originals = WeakMap<object, unknown>;

let currentOriginals: Originals = new WeakMap();
let currentRoot: unknown;

function project(value: unknown, originals: Originals): unknown {
  if (Array.isArray(value)) {
    const out = value.map((v) => project(v, originals));
    originals.set(out, value);
    return out;
  }
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: project(v, originals), enumerable: true, writable: true, configurable: true });
    originals.set(out, value);
    return out;
  }
  switch (bsonTypeAlias(value)) {
    case 'int':
    case 'double':
    case 'long':
    case 'decimal':
      return Number(typeof value === 'number' ? value : String(value));
    default:
      return value;
  }
}

/** Turn MongoDB's encryption keywords into what ajv checks on the plaintext. */
function toAjvSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toAjvSchema);
  if (!isPlainObject(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'encryptMetadata' || key === 'encrypt') continue;
    out[key] = toAjvSchema(value);
  }
  const encrypt = schema.encrypt as { bsonType?: unknown } | undefined;
  if (encrypt?.bsonType !== undefined) out.bsonType = encrypt.bsonType;
  return out;
}

function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: false, strict: false, validateFormats: false });
  // The keyword reports its own error: ajv's default one would not say which type was wanted.
  const validateBsonType = (bsonType: string | string[], _data: unknown, _schema?: unknown, cxt?: { parentData?: unknown; parentDataProperty?: string | number }) => {
    const original =
      cxt?.parentData === undefined
        ? currentRoot
        : (currentOriginals.get(cxt.parentData as object) as Record<string | number, unknown> | undefined)?.[cxt.parentDataProperty!];
    const ok = matchesBsonType(original, bsonType);
    validateBsonType.errors = ok ? undefined : [{ keyword: 'bsonType', message: `must be of bsonType ${JSON.stringify(bsonType)}`, params: { bsonType } }];
    return ok;
  };
  validateBsonType.errors = undefined as Partial<ErrorObject>[] | undefined;
  ajv.addKeyword({ keyword: 'bsonType', schemaType: ['string', 'array'], errors: true, validate: validateBsonType });
  return ajv;
}

export interface PlaintextValidator {
  /** The first violation, as a path and a message that never include the value; undefined if valid. */
  validate(document: Record<string, unknown>): { path: string; message: string } | undefined;
  /** Validate one value against the sub-schema at a dotted path (for $set); undefined if valid. */
  validateAt(path: string, value: unknown): { path: string; message: string } | undefined;
  /** Whether a top-level-or-nested path is required by the schema (for $unset). */
  isRequired(path: string): boolean;
  /** Whether the schema lets a document have this path at all (additionalProperties: false may not). */
  isAllowed(path: string): boolean;
}

function describe(error: ErrorObject, prefix = ''): { path: string; message: string } {
  const pointer = error.instancePath.split('/').slice(1).join('.');
  const missing = error.keyword === 'required' ? (error.params as { missingProperty: string }).missingProperty : undefined;
  const extra = error.keyword === 'additionalProperties' ? (error.params as { additionalProperty: string }).additionalProperty : undefined;
  const field = missing ?? extra;
  const path = [prefix, pointer, field].filter(Boolean).join('.');
  const message = error.message ?? 'is invalid';
  return { path: path || '(document)', message };
}

const NOT_ALLOWED = Symbol('not allowed');

/** The sub-schema at a dotted path; NOT_ALLOWED where additionalProperties: false forbids the path. */
function subSchemaAt(schema: Record<string, unknown>, path: string): Record<string, unknown> | typeof NOT_ALLOWED | undefined {
  let node: unknown = schema;
  for (const segment of path.split('.')) {
    if (!isPlainObject(node)) return undefined;
    const properties = node.properties as Record<string, unknown> | undefined;
    let next = properties?.[segment];
    if (next === undefined && isPlainObject(node.patternProperties)) {
      for (const [source, sub] of Object.entries(node.patternProperties)) {
        if (new RegExp(source, 'u').test(segment)) {
          next = sub;
          break;
        }
      }
    }
    if (next === undefined) return node.additionalProperties === false ? NOT_ALLOWED : undefined;
    node = next;
  }
  return isPlainObject(node) ? node : undefined;
}

/** Compile a collection schema's plaintext checks; throws SchemaError naming the place. */
export function createPlaintextValidator(schema: Record<string, unknown>, where: string): PlaintextValidator {
  const ajvSchema = toAjvSchema(schema) as Record<string, unknown>;
  // One ajv per schema: a shared one would keep every schema ever compiled (schemas change at run
  // time now, each version compiled once) and refuse a second schema with the same $id.
  const ajv = createAjv();
  let whole: ValidateFunction;
  try {
    whole = ajv.compile(ajvSchema);
  } catch (err) {
    throw new SchemaError(where, `not a valid JSON schema: ${(err as Error).message}`);
  }
  const atPath = new Map<string, ValidateFunction | 'not allowed' | 'unverifiable' | null>();

  /** A sub-schema compiled on its own; a `$ref` into the rest of the schema cannot be, and is refused rather than skipped. */
  function compileAlone(sub: Record<string, unknown>): ValidateFunction | 'unverifiable' {
    try {
      return ajv.compile(sub);
    } catch {
      return 'unverifiable';
    }
  }

  function run(fn: ValidateFunction, value: unknown, prefix: string) {
    const originals: Originals = new WeakMap();
    const projected = project(value, originals);
    currentOriginals = originals;
    currentRoot = value;
    try {
      return fn(projected) ? undefined : describe(fn.errors![0]!, prefix);
    } finally {
      currentOriginals = new WeakMap();
      currentRoot = undefined;
    }
  }

  return {
    validate(document) {
      return run(whole, document, '');
    },
    validateAt(path, value) {
      if (!atPath.has(path)) {
        const sub = subSchemaAt(ajvSchema, path);
        atPath.set(path, sub === undefined ? null : sub === NOT_ALLOWED ? 'not allowed' : compileAlone(sub));
      }
      const fn = atPath.get(path);
      if (fn === 'not allowed') return { path, message: 'is not allowed by the schema' };
      if (fn === 'unverifiable') return { path, message: 'cannot be checked on its own (its schema refers to another part of the schema): set its parent or replace the document' };
      return fn ? run(fn, value, path) : undefined;
    },
    isRequired(path) {
      const segments = path.split('.');
      const last = segments.pop()!;
      const parent = segments.length === 0 ? ajvSchema : subSchemaAt(ajvSchema, segments.join('.'));
      if (parent === undefined || parent === NOT_ALLOWED) return false;
      return Array.isArray(parent.required) && (parent.required as unknown[]).includes(last);
    },
    isAllowed(path) {
      return subSchemaAt(ajvSchema, path) !== NOT_ALLOWED;
    },
  };
}

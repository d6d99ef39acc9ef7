/**
 * The write operations of automatic encryption beyond insert and by-id writes: updates with every
 * update operator MongoDB's query analysis supports, upserts, replace by filter, findOneAnd*,
 * bulk writes and their dry run. Each operation is checked and encrypted whole before anything is
 * sent to the database; reads back go through the same decryption (and masking) as find.
 */
import { createHash } from 'node:crypto';
import { BSON, MongoBulkWriteError, MongoError, MongoServerError, ObjectId, Timestamp, type Collection, type Document } from 'mongodb';
import type { Caller } from '../encryption/access.js';
import { fromEjson, toEjson } from '../ejson.js';
import { AppError } from '../errors.js';
import { exactTypes, isPlainObject, refuseUnwritableTypes } from './bson-types.js';
import type { CollectionSchema } from './collection-schema.js';
import { collectJobs, type FieldJob } from './document-crypto.js';
import { describeEncryptedField } from './encryption-plan.js';
import type { FieldEncryption, Successor, WrittenValues } from './field-encryption.js';
import { checkProjection, checkSort, planFilter, resolvePath } from './query-rewriter.js';
import { planUpdateWrite, type UpdateWritePlan } from './update-rewriter.js';
import type { UnreadablePolicy } from './unreadable-values.js';
import type { ReadResult } from './documents-service.js';

/** What the documents service lends the write operations: its schema, collection, filter and read paths. */
export interface DocumentWritesDeps {
  schemaFor(namespace: string): Promise<CollectionSchema>;
  collectionOf(schema: CollectionSchema): Collection<Document>;
  prepareFilter(schema: CollectionSchema, filterJson: unknown, caller: Caller): Promise<Record<string, unknown>>;
  encryptDocument(schema: CollectionSchema, document: Record<string, unknown>, caller: Caller): Promise<WrittenValues>;
  successorOf(schema: CollectionSchema): Promise<Successor>;
  fields: FieldEncryption;
  /** The read path of find: decryption with masking, and the unreadable-value policy. */
  read(documents: Record<string, unknown>[], caller: Caller, onUnreadable?: UnreadablePolicy): Promise<ReadResult>;
  mapServerError(err: unknown): never;
  maxTimeMs: number;
}

export interface UpdateRequest {
  filter: unknown;
  update: unknown;
  many?: boolean;
  upsert?: boolean;
  arrayFilters?: unknown[];
}

export interface ReplaceRequest {
  filter: unknown;
  replacement: unknown;
  upsert?: boolean;
}

export interface FindAndModifyRequest {
  filter: unknown;
  update?: unknown;
  replacement?: unknown;
  sort?: unknown;
  projection?: unknown;
  upsert?: boolean;
  arrayFilters?: unknown[];
  returnDocument?: 'before' | 'after';
  onUnreadable?: UnreadablePolicy;
}

export interface ExplainWriteRequest {
  filter?: unknown;
  update?: unknown;
  replacement?: unknown;
  arrayFilters?: unknown;
  upsert?: boolean;
}

export interface WriteCounts {
  matched: number;
  modified: number;
  upsertedId?: unknown;
}

/** What an idempotent findOneAnd* keeps for its retries: never a decrypted value. */
export interface KeptFindAndModify {
  /** JSON: the counts. */
  body: string;
  /** The document as stored (BSON), if one was returned. */
  document?: Uint8Array;
}

export type BulkOperation =
  | { insertOne: { document: unknown } }
  | { updateOne: Omit<UpdateRequest, 'many'> }
  | { updateMany: Omit<UpdateRequest, 'many'> }
  | { replaceOne: ReplaceRequest }
  | { deleteOne: { filter: unknown } }
  | { deleteMany: { filter: unknown } };

export type BulkItemResult =
  | { index: number; op: string; status: 'ok'; insertedId?: unknown; matched?: number; modified?: number; deleted?: number; upsertedId?: unknown }
  | { index: number; op: string; status: 'failed'; error: AppError }
  | { index: number; op: string; status: 'skipped' };

/**
 * Database answers that mean this database does not implement the operation, not that the request
 * is wrong: FerretDB answers NotImplemented (238) for arrayFilters and findAndModify projections,
 * PathNotViable (28) for positional paths, TypeMismatch (14) for a pipeline update, and BadValue
 * (2) for a dotted path in $currentDate.
 */
function isUnsupported(err: MongoServerError): boolean {
  // A findAndModify read with exact types (bson-types.ts) gets its error code as an Int32.
  const code = Number(err.code);
  if (code === 238 || code === 115) return true;
  if (code === 2 && /key must not contain '\.' sign/.test(err.message)) return true;
  if (code === 28 && /Cannot create field '\$/.test(err.message)) return true;
  return code === 14 && /is the wrong type 'array', expected type 'object'/.test(err.message);
}

function asDocument(value: unknown, what: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw new AppError('INVALID_QUERY', `${what} must be an object.`);
  return value;
}

function parseUpdate(json: unknown): unknown {
  if (Array.isArray(json)) return json.map((stage) => fromEjson(stage));
  return asDocument(fromEjson(json), 'An update');
}

function setDotted(root: Record<string, unknown>, path: string, value: unknown): void {
  const segments = path.split('.');
  let node = root;
  for (const segment of segments.slice(0, -1)) {
    if (!isPlainObject(node[segment])) node[segment] = {};
    node = node[segment] as Record<string, unknown>;
  }
  node[segments.at(-1)!] = value;
}

/** The equality conditions of a filter, which MongoDB copies into the document an upsert inserts, as (path, value) pairs. */
function equalityPairs(filter: Record<string, unknown>, out: [string, unknown][] = []): [string, unknown][] {
  for (const [key, condition] of Object.entries(filter)) {
    if (key === '$and' && Array.isArray(condition)) {
      for (const sub of condition) if (isPlainObject(sub)) equalityPairs(sub, out);
    } else if (!key.startsWith('$')) {
      if (!(isPlainObject(condition) && Object.keys(condition).some((k) => k.startsWith('$')))) out.push([key, condition]);
      else if (Object.keys(condition).length === 1 && '$eq' in condition) out.push([key, condition.$eq]);
    }
  }
  return out;
}

/**
 * An upsert inserts the filter's equalities. On an encrypted field MongoDB copies the rewritten
 * value, but while the field's key is rotated that value is an $in of two ciphertexts, which it
 * does not copy: the new document would silently lack the field. So the equality is also written
 * by $setOnInsert, encrypted like any write (under the new key).
 */
function insertFilterEqualities(schema: CollectionSchema, update: unknown, filter: Record<string, unknown>): void {
  if (!isPlainObject(update)) return;
  const written = new Set([...Object.keys((update.$set ?? {}) as object), ...Object.keys((update.$setOnInsert ?? {}) as object)]);
  for (const [path, value] of equalityPairs(filter)) {
    const overlaps = [...written].some((w) => w === path || w.startsWith(`${path}.`) || path.startsWith(`${w}.`));
    if (overlaps || resolvePath(schema.plan, path).kind !== 'encrypted') continue;
    const setOnInsert = (update.$setOnInsert ?? {}) as Record<string, unknown>;
    setOnInsert[path] = value;
    update.$setOnInsert = setOnInsert;
  }
}

/**
 * The document an upsert would insert, in plaintext, as far as the proxy can know it before the
 * database computes it: the filter's equalities and the update's written values. It is validated
 * like an insert, so an upsert cannot create a document an insert would have refused.
 */
function upsertCandidate(filter: Record<string, unknown>, update: unknown, plan: UpdateWritePlan): Record<string, unknown> {
  const document: Record<string, unknown> = {};
  for (const [path, value] of equalityPairs(filter)) setDotted(document, path, value);
  if (plan.kind === 'pipeline') {
    for (const { path, value } of plan.plainWrites) setDotted(document, path, value);
  } else {
    const operators = update as Record<string, Record<string, unknown>>;
    for (const [op, fields] of Object.entries(operators)) {
      for (const [path, value] of Object.entries(fields)) {
        if (path.includes('$')) continue;
        if (op === '$set' || op === '$setOnInsert' || op === '$inc' || op === '$min' || op === '$max' || op === '$mul') setDotted(document, path, value);
        else if (op === '$currentDate') setDotted(document, path, isPlainObject(value) && value.$type === 'timestamp' ? new Timestamp({ t: 0, i: 0 }) : new Date());
        else if (op === '$push' || op === '$addToSet') setDotted(document, path, isPlainObject(value) && Array.isArray(value.$each) ? value.$each : [value]);
      }
    }
  }
  if (document._id === undefined) document._id = new ObjectId();
  return document;
}

export function createDocumentWrites(deps: DocumentWritesDeps) {
  const { schemaFor, collectionOf, prepareFilter, encryptDocument, successorOf, fields } = deps;
  const timeLimit = { maxTimeMS: deps.maxTimeMs };

  function mapError(err: unknown): never {
    if (err instanceof MongoServerError && isUnsupported(err)) {
      throw new AppError('DATABASE_UNSUPPORTED_OPERATION', undefined, { cause: err });
    }
    return deps.mapServerError(err);
  }

  function validate(schema: CollectionSchema, document: Record<string, unknown>): void {
    const problem = schema.validator.validate(document);
    if (problem !== undefined) throw new AppError('DOCUMENT_VALIDATION_FAILED', `${problem.path} ${problem.message}.`);
  }

  /**
   * Check an update against the schema and validate what it writes, with nothing encrypted yet:
   * the jobs say which values (in place in `update`) to encrypt. With `upsertFilter` (the
   * plaintext filter), the document an upsert would insert is validated too.
   */
  function checkUpdate(schema: CollectionSchema, update: unknown, filters: unknown, upsertFilter?: Record<string, unknown>) {
    const plan = planUpdateWrite(update, schema.plan, filters);
    const refuse = (problem: { path: string; message: string } | undefined) => {
      if (problem !== undefined) throw new AppError('DOCUMENT_VALIDATION_FAILED', `${problem.path} ${problem.message}.`);
    };
    for (const path of plan.written) if (!schema.validator.isAllowed(path)) refuse({ path, message: 'is not allowed by the schema' });
    for (const { op, path, value } of plan.plainWrites) {
      if (path.includes('$')) continue;
      // What the operator leaves at the path, where the proxy can know it: a computed number is only known to the database.
      if (['$set', '$setOnInsert', '$addFields'].includes(op)) refuse(schema.validator.validateAt(path, value));
      else if (op === '$currentDate') refuse(schema.validator.validateAt(path, isPlainObject(value) && value.$type === 'timestamp' ? new Timestamp({ t: 1, i: 1 }) : new Date()));
      else if (op === '$push' || op === '$addToSet') refuse(schema.validator.validateAt(path, isPlainObject(value) && Array.isArray(value.$each) ? value.$each : [value]));
    }
    for (const path of [...plan.unset, ...plan.renames.map((r) => r.from)]) {
      if (schema.validator.isRequired(path)) throw new AppError('DOCUMENT_VALIDATION_FAILED', `${path} is required and cannot be unset or renamed.`);
    }
    for (const { to } of plan.renames) if (!schema.validator.isAllowed(to)) refuse({ path: to, message: 'is not allowed by the schema' });
    const jobs: FieldJob[] = [];
    if (plan.kind === 'operators') {
      for (const { op, path, node } of plan.encrypted) {
        const container = (update as Record<string, Record<string, unknown>>)[op]!;
        // The walk first: a shape that would carry an encrypted field in plaintext is refused as such.
        collectJobs(container[path], node, path, {}, jobs, { object: container, name: path });
        refuse(schema.validator.validateAt(path, container[path]));
      }
    }
    if (upsertFilter !== undefined) validate(schema, upsertCandidate(upsertFilter, update, plan));
    return { plan, jobs };
  }

  /** Check an update, then encrypt the values it writes into encrypted fields ($set, $setOnInsert), in place. */
  async function prepareUpdate(schema: CollectionSchema, updateJson: unknown, arrayFilters: unknown, caller: Caller, upsertFilter?: Record<string, unknown>) {
    const update = parseUpdate(updateJson);
    if (upsertFilter !== undefined) insertFilterEqualities(schema, update, upsertFilter);
    const filters = arrayFilters === undefined ? undefined : (fromEjson(arrayFilters) as unknown[]);
    const { plan, jobs } = checkUpdate(schema, update, filters, upsertFilter);
    const { blind } = await fields.encryptJobs(jobs, caller, schema.namespace, await successorOf(schema));
    refuseUnwritableTypes(update);
    refuseUnwritableTypes(filters);
    return { update: update as Document | Document[], arrayFilters: filters as Document[] | undefined, plan, blind };
  }

  /** A filter rewritten for the database, and the plaintext one an upsert copies its equalities from. */
  async function prepareWriteFilter(schema: CollectionSchema, filterJson: unknown, caller: Caller, many: boolean, what: string) {
    const plain = asDocument(fromEjson(filterJson ?? {}), 'A filter');
    const filter = await prepareFilter(schema, filterJson, caller);
    if (many && Object.keys(filter).length === 0) throw new AppError('INVALID_QUERY', `An empty filter would ${what} every document.`);
    return { filter, plain };
  }

  async function prepareReplacement(schema: CollectionSchema, json: unknown, caller: Caller) {
    const document = asDocument(fromEjson(json), 'A replacement');
    if (Object.keys(document).some((k) => k.startsWith('$'))) throw new AppError('INVALID_QUERY', 'A replacement is a document, not update operators.');
    const { blind } = await encryptDocument(schema, document, caller);
    return { replacement: document, blind };
  }

  function checkReadShape(schema: CollectionSchema, request: { sort?: unknown; projection?: unknown }) {
    const projection = request.projection === undefined ? undefined : asDocument(request.projection, 'A projection');
    const sort = request.sort === undefined ? undefined : asDocument(request.sort, 'A sort');
    if (projection) checkProjection(projection, schema.plan);
    if (sort) checkSort(sort, schema.plan);
    return { projection, sort };
  }

  /** One operation of a bulk write, checked and encrypted: what remains is sending it. */
  type PreparedOp =
    | { op: string; insert?: undefined; run(collection: Collection<Document>): Promise<Omit<Extract<BulkItemResult, { status: 'ok' }>, 'index' | 'op' | 'status'>> }
    /** An insert: sent together with the inserts next to it (one insertMany, not a round trip each). */
    | { op: string; insert: { document: Record<string, unknown>; derived: boolean } };
  type PreparedInsert = NonNullable<Extract<PreparedOp, { insert: object }>['insert']>;

  /** The counts of an update or replace, as this writer may be told them (see WrittenValues). */
  function reportedCounts(r: { matchedCount: number; modifiedCount: number; upsertedId?: unknown }, blind: boolean, upsert = true): WriteCounts {
    return { matched: r.matchedCount, modified: blind ? r.matchedCount : r.modifiedCount, ...(upsert && r.upsertedId != null ? { upsertedId: r.upsertedId } : {}) };
  }

  async function answerFindAndModify(document: Record<string, unknown> | null, matched: number, upserted: unknown, caller: Caller, onUnreadable: UnreadablePolicy = 'fail') {
    const counts = { matched, ...(upserted !== undefined ? { upsertedId: upserted } : {}) };
    if (document === null) return { document: null, ...counts, masked: [], unreadable: [] };
    let read: ReadResult;
    try {
      read = await deps.read([document], caller, onUnreadable);
    } catch (err) {
      // The write is done: a failed answer must not read as a write that did not happen.
      if (err instanceof AppError && err.code === 'UNREADABLE_VALUE') throw new AppError('UNREADABLE_VALUE', `The write was applied. ${err.detail ?? ''}`.trim(), { cause: err });
      throw err;
    }
    return { document, ...counts, masked: read.masked.get(0) ?? [], unreadable: read.unreadable.get(0) ?? [] };
  }

  /**
   * What a failed operation is answered with. A failure of the database, not of the operation, is
   * 503: whether it landed is unknown, so nothing more is sent, and the operations already done are
   * still answered as done.
   */
  function operationError(err: unknown): AppError {
    try {
      mapError(err);
    } catch (mapped) {
      if (mapped instanceof AppError && mapped.status < 500) return mapped;
      if (mapped instanceof MongoError) return new AppError('DATABASE_UNAVAILABLE', undefined, { cause: mapped });
      throw mapped;
    }
    throw err;
  }

  /**
   * A run of consecutive inserts of a bulk write, sent as insertMany (ordered like the bulk write)
   * and answered insert by insert. A duplicate derived _id is an earlier attempt of this idempotent
   * request: answered as done, and the inserts after it (which an ordered insertMany left unsent)
   * go on in another insertMany.
   */
  async function insertRun(collection: Collection<Document>, run: { index: number; insert: PreparedInsert }[], ordered: boolean) {
    const results: BulkItemResult[] = [];
    const ok = (item: (typeof run)[number]): BulkItemResult => ({ index: item.index, op: 'insertOne', status: 'ok', insertedId: item.insert.document._id });
    let pending = run;
    while (pending.length > 0) {
      try {
        await collection.insertMany(pending.map((item) => item.insert.document), { ordered });
        results.push(...pending.map(ok));
        return { results, stop: false };
      } catch (err) {
        if (!(err instanceof MongoBulkWriteError)) {
          const error = operationError(err);
          results.push(...pending.map((item) => ({ index: item.index, op: 'insertOne', status: 'failed' as const, error })));
          return { results, stop: ordered || error.status >= 500 };
        }
        const failures = new Map((Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]).map((w) => [w.index, w]));
        let stop = false;
        let resumeAt = pending.length;
        for (const [position, item] of pending.entries()) {
          const failure = failures.get(position);
          if (failure === undefined) {
            // Ordered: nothing after the first failure was sent.
            if (ordered && position > Math.min(...failures.keys())) break;
            results.push(ok(item));
            continue;
          }
          const duplicate = Number(failure.code) === 11000;
          if (duplicate && item.insert.derived && (await collection.countDocuments({ _id: { $eq: item.insert.document._id as never } }, { limit: 1 })) === 1) {
            results.push(ok(item));
            if (ordered) {
              resumeAt = position + 1;
              break;
            }
            continue;
          }
          // The write error as the server's own error, so it maps as any other (too large, unsupported, …).
          const error = operationError(new MongoServerError({ message: failure.errmsg ?? 'write error', errmsg: failure.errmsg, code: failure.code }));
          results.push({ index: item.index, op: 'insertOne', status: 'failed', error });
          if (error.status >= 500) {
            stop = true;
            break;
          }
          if (ordered) {
            stop = true;
            break;
          }
        }
        if (stop) return { results, stop };
        pending = pending.slice(resumeAt);
      }
    }
    return { results, stop: false };
  }

  async function prepareOperation(schema: CollectionSchema, operation: BulkOperation, caller: Caller, insertId: () => ObjectId, seed: string | undefined): Promise<PreparedOp> {
    if (!isPlainObject(operation) || Object.keys(operation).length !== 1) throw new AppError('INVALID_QUERY', 'Each operation names exactly one of insertOne, updateOne, updateMany, replaceOne, deleteOne, deleteMany.');
    const [[op, args]] = Object.entries(operation) as [[string, Record<string, unknown>]];
    switch (op) {
      case 'insertOne': {
        const document = asDocument(fromEjson(args.document), 'A document');
        const derived = document._id === undefined && seed !== undefined;
        if (document._id === undefined) document._id = insertId();
        await encryptDocument(schema, document, caller);
        return {
          op,
          insert: { document, derived },
        };
      }
      case 'updateOne':
      case 'updateMany': {
        const many = op === 'updateMany';
        const { filter, plain } = await prepareWriteFilter(schema, args.filter, caller, many, 'update');
        const { update, arrayFilters, blind } = await prepareUpdate(schema, args.update, args.arrayFilters, caller, args.upsert === true ? plain : undefined);
        const options = { upsert: args.upsert === true, ...(arrayFilters ? { arrayFilters } : {}), ...timeLimit };
        return {
          op,
          run: async (c) => reportedCounts(many ? await c.updateMany(filter, update, options) : await c.updateOne(filter, update, options), blind),
        };
      }
      case 'replaceOne': {
        const { filter } = await prepareWriteFilter(schema, args.filter, caller, false, 'replace');
        const { replacement, blind } = await prepareReplacement(schema, args.replacement, caller);
        return {
          op,
          run: async (c) => reportedCounts(await c.replaceOne(filter, replacement, { upsert: args.upsert === true, ...timeLimit }), blind),
        };
      }
      case 'deleteOne':
      case 'deleteMany': {
        const many = op === 'deleteMany';
        const { filter } = await prepareWriteFilter(schema, args.filter, caller, many, 'delete');
        return { op, run: async (c) => ({ deleted: (many ? await c.deleteMany(filter, timeLimit) : await c.deleteOne(filter, timeLimit)).deletedCount }) };
      }
      default:
        throw new AppError('INVALID_QUERY', `${op.slice(0, 50)} is not a bulk write operation.`);
    }
  }

  const describe = describeEncryptedField;


  return {
    async update(namespace: string, request: UpdateRequest, caller: Caller): Promise<WriteCounts> {
      const schema = await schemaFor(namespace);
      const many = request.many === true;
      const { filter, plain } = await prepareWriteFilter(schema, request.filter, caller, many, 'update');
      const { update, arrayFilters, blind } = await prepareUpdate(schema, request.update, request.arrayFilters, caller, request.upsert ? plain : undefined);
      const options = { upsert: request.upsert === true, ...(arrayFilters ? { arrayFilters } : {}), ...timeLimit };
      const collection = collectionOf(schema);
      return reportedCounts(await (many ? collection.updateMany(filter, update, options) : collection.updateOne(filter, update, options)).catch(mapError), blind);
    },

    /** An update of the one document a (trusted, already built) filter names, such as {_id: {$eq: id}}. */
    async updateById(namespace: string, filter: Record<string, unknown>, updateJson: unknown, caller: Caller): Promise<WriteCounts> {
      const schema = await schemaFor(namespace);
      const { update, blind } = await prepareUpdate(schema, updateJson, undefined, caller);
      return reportedCounts(await collectionOf(schema).updateOne(filter, update, timeLimit).catch(mapError), blind, false);
    },

    async replace(namespace: string, request: ReplaceRequest, caller: Caller): Promise<WriteCounts> {
      const schema = await schemaFor(namespace);
      const { filter } = await prepareWriteFilter(schema, request.filter, caller, false, 'replace');
      const { replacement, blind } = await prepareReplacement(schema, request.replacement, caller);
      return reportedCounts(await collectionOf(schema).replaceOne(filter, replacement, { upsert: request.upsert === true, ...timeLimit }).catch(mapError), blind);
    },

    /**
     * findOneAndUpdate, findOneAndReplace (with `replacement`) or findOneAndDelete (neither): the
     * document before or after, decrypted and masked as find would return it to this caller.
     */
    /**
     * With `keep` (an idempotent request): handed what a retry is answered from (see
     * rereadFindAndModify) as soon as the write is done, before the answer is read, so a read that
     * fails (a KMS outage) cannot make the retry write again.
     */
    async findOneAndModify(namespace: string, request: FindAndModifyRequest, caller: Caller, keep?: (kept: KeptFindAndModify) => void) {
      const schema = await schemaFor(namespace);
      const { projection, sort } = checkReadShape(schema, request);
      const { filter, plain } = await prepareWriteFilter(schema, request.filter, caller, false, 'modify');
      const collection = collectionOf(schema);
      const options = { projection, sort: sort as never, includeResultMetadata: true as const, ...timeLimit, ...exactTypes };
      const after = request.returnDocument === 'after' ? ('after' as const) : ('before' as const);
      let result;
      if (request.update !== undefined) {
        const { update, arrayFilters } = await prepareUpdate(schema, request.update, request.arrayFilters, caller, request.upsert ? plain : undefined);
        result = await collection
          .findOneAndUpdate(filter, update, { ...options, upsert: request.upsert === true, returnDocument: after, ...(arrayFilters ? { arrayFilters } : {}) })
          .catch(mapError);
      } else if (request.replacement !== undefined) {
        const { replacement } = await prepareReplacement(schema, request.replacement, caller);
        result = await collection.findOneAndReplace(filter, replacement, { ...options, upsert: request.upsert === true, returnDocument: after }).catch(mapError);
      } else {
        result = await collection.findOneAndDelete(filter, options).catch(mapError);
      }
      const document = (result.value ?? null) as Record<string, unknown> | null;
      const upserted = (result.lastErrorObject as { upserted?: unknown } | undefined)?.upserted;
      const n = (result.lastErrorObject as { n?: unknown } | undefined)?.n;
      const matched = upserted !== undefined ? 0 : n !== undefined ? Number(n) : document === null ? 0 : 1;
      // What an idempotent retry is answered from: the document as the database returned it (its
      // encrypted fields still ciphertext; BSON, so it is kept at its own size), read again under
      // the retrying caller's grants. Taken before the read decrypts it in place.
      keep?.({ body: JSON.stringify({ matched, upsertedId: upserted === undefined ? undefined : toEjson(upserted, 'canonical') }), ...(document === null ? {} : { document: BSON.serialize(document) }) });
      return answerFindAndModify(document, matched, upserted, caller, request.onUnreadable);
    },

    /** The answer of a findOneAnd* from what `findOneAndModify` kept, under this caller's grants. */
    async rereadFindAndModify(kept: KeptFindAndModify, caller: Caller, onUnreadable?: UnreadablePolicy) {
      const { matched, upsertedId } = JSON.parse(kept.body) as { matched: number; upsertedId?: unknown };
      const document = kept.document === undefined ? null : (BSON.deserialize(kept.document, exactTypes) as Record<string, unknown>);
      return answerFindAndModify(document, matched, upsertedId === undefined ? undefined : fromEjson(upsertedId), caller, onUnreadable);
    },

    /**
     * Every operation is checked and encrypted before any is sent. Ordered: one refused operation
     * means none is sent; the first that the database refuses stops the rest. Unordered: refused
     * operations are answered as such and the others are sent. Consecutive inserts go as one
     * insertMany, other operations one by one, so each answer is exact. A database that fails (not
     * refuses) an operation stops the rest either way: its outcome is unknown.
     */
    async bulkWrite(namespace: string, operations: BulkOperation[], ordered: boolean, caller: Caller, seed?: string): Promise<BulkItemResult[]> {
      const schema = await schemaFor(namespace);
      const prepared: (PreparedOp | AppError)[] = [];
      const opName = (operation: BulkOperation) => (isPlainObject(operation) ? (Object.keys(operation)[0] ?? '') : '');
      for (const [index, operation] of operations.entries()) {
        try {
          prepared.push(await prepareOperation(schema, operation, caller, () => (seed === undefined ? new ObjectId() : bulkInsertId(seed, index)), seed));
        } catch (err) {
          if (!(err instanceof AppError) || err.status >= 500) throw err;
          prepared.push(err);
        }
      }
      const refused = prepared.some((p) => p instanceof AppError);
      const results: BulkItemResult[] = [];
      const collection = collectionOf(schema);
      let stopped = ordered && refused;
      for (const [index, item] of prepared.entries()) {
        if (results.length > index) continue; // answered with the run of inserts it belongs to
        const op = opName(operations[index]!);
        if (item instanceof AppError) {
          results.push({ index, op, status: 'failed', error: item });
          continue;
        }
        if (stopped) {
          results.push({ index, op, status: 'skipped' });
          continue;
        }
        if (item.insert !== undefined) {
          const run: { index: number; insert: PreparedInsert }[] = [];
          for (let next = index; next < prepared.length; next++) {
            const candidate = prepared[next]!;
            if (candidate instanceof AppError || candidate.insert === undefined) break;
            run.push({ index: next, insert: candidate.insert });
          }
          const outcome = await insertRun(collection, run, ordered);
          results.push(...outcome.results);
          if (outcome.stop) stopped = true;
          continue;
        }
        try {
          results.push({ index, op, status: 'ok', ...(await item.run(collection)) });
        } catch (err) {
          const error = operationError(err);
          results.push({ index, op, status: 'failed', error });
          if (ordered || error.status >= 500) stopped = true;
        }
      }
      return results;
    },

    /** Dry run of an update, a replacement or a bulk write: what would be encrypted or rewritten, or why it would be refused; writes nothing. */
    async explain(namespace: string, request: ExplainWriteRequest & { operations?: BulkOperation[] }) {
      const schema = await schemaFor(namespace);
      if (request.operations === undefined) return explainOne(schema, request);
      const operations = request.operations.map((operation, index) => {
        const [[op, args]] = Object.entries(operation) as [[string, Record<string, unknown>]];
        const asRequest: ExplainWriteRequest =
          op === 'insertOne' ? { replacement: args.document } : { filter: args.filter, update: args.update, replacement: args.replacement, arrayFilters: args.arrayFilters, upsert: args.upsert === true };
        return { index, op, ...explainOne(schema, asRequest) };
      });
      return { valid: operations.every((o) => o.valid), fields: [], operations };
    },
  };

  function explainOne(schema: CollectionSchema, request: ExplainWriteRequest) {
    const out: ReturnType<typeof describe>[] = [];
    try {
      const filter = asDocument(fromEjson(request.filter ?? {}), 'A filter');
      const seen = new Set<string>();
      for (const slot of planFilter(filter, schema.plan)) {
        if (!seen.has(slot.path) && seen.add(slot.path)) out.push(describe(slot.path, slot.node, 'equality on a deterministic field: the value is encrypted before the query'));
      }
      if (request.update !== undefined) {
        const filters = request.arrayFilters === undefined ? undefined : fromEjson(request.arrayFilters);
        const { jobs } = checkUpdate(schema, parseUpdate(request.update), filters, request.upsert ? filter : undefined);
        for (const job of jobs) out.push(describe(job.path, job.node, 'the update writes an encrypted field: the value is encrypted'));
      } else if (request.replacement !== undefined) {
        const document = asDocument(fromEjson(request.replacement), 'A replacement');
        const jobs = schema.plan === undefined ? [] : collectJobs(document, schema.plan, '', document);
        validate(schema, document);
        for (const job of jobs) out.push(describe(job.path, job.node, `matches ${job.node.schemaPath}: the value is encrypted`));
      }
    } catch (err) {
      if (!(err instanceof AppError) || err.status >= 500) throw err;
      return { valid: false, validation: err.detail ?? err.message, refused: { code: err.code, ...(err.detail ? { detail: err.detail } : {}) }, fields: out };
    }
    return { valid: true, fields: out };
  }
}

/** The _id of an inserted document of an idempotent bulk write: the same for every attempt. */
function bulkInsertId(seed: string, index: number): ObjectId {
  return new ObjectId(createHash('sha256').update(`${seed}\nbulk\n${index}`).digest().subarray(0, 12));
}

export type DocumentWrites = ReturnType<typeof createDocumentWrites>;

/**
 * Automatic, schema-driven field encryption in front of MongoDB collections: validates plaintext,
 * encrypts what the collection schema says, rewrites equality queries on deterministic fields,
 * and decrypts what it reads. Knows no HTTP.
 */
import { createHash } from 'node:crypto';
import { BSON, MongoBulkWriteError, MongoServerError, type Collection, type Document, type MongoClient, ObjectId, type UUID } from 'mongodb';
import type { Caller } from '../encryption/access.js';
import type { EncryptionEngine } from '../encryption/encryption-engine.js';
import { fromEjson } from '../ejson.js';
import { AppError } from '../errors.js';
import { bsonTypeAlias, exactTypes, isPlainObject, refuseUnwritableTypes } from './bson-types.js';
import { collectJobs, type FieldJob } from './document-crypto.js';
import { describeEncryptedField, listEncryptedPaths } from './encryption-plan.js';
import { createFieldEncryption, type WrittenValues } from './field-encryption.js';
import type { KeyRotations } from './key-rotations.js';
import { checkProjection, checkSort, planFilter } from './query-rewriter.js';
import { createDocumentWrites } from './document-writes.js';
import { rotateDataKey, type RotationOptions } from './rotate-data-key.js';
import type { CollectionSchema } from './collection-schema.js';
import { createDocumentReads } from './document-reads.js';
import { enforceUnreadablePolicy, type UnreadablePolicy } from './unreadable-values.js';
import type { ViewCheck } from './view-check.js';

/** The collection schemas as /documents sees them (schema-registry.ts). */
export interface SchemaLookup {
  /** The schema to serve `namespace` with: 404 COLLECTION_NOT_FOUND, 503 SCHEMA_NOT_READY otherwise. */
  require(namespace: string): Promise<CollectionSchema>;
  /** Whether this instance serves `namespace` now. */
  isReady(namespace: string): boolean;
}

export interface DocumentsServiceOptions {
  client: MongoClient;
  /** Read for every request: a request keeps the schema version it started with. */
  schemas: SchemaLookup;
  /** The encryption engine: every field encrypted or decrypted here goes through it. */
  engine: EncryptionEngine;
  /** Key alt names to ids, for keyId pointers (metadata only). */
  resolveAltNames(names: string[]): Promise<Map<string, UUID>>;
  rotations: KeyRotations;
  maxFindLimit: number;
  /** Server-side time limit of every database operation a request runs (its request timeout). */
  maxTimeMs: number;
  /** Refuses namespaces that are views (view-check.ts). */
  views: ViewCheck;
}

export interface FindRequest {
  filter?: unknown;
  projection?: unknown;
  sort?: unknown;
  skip?: number;
  limit?: number;
  cursor?: string;
  /** What a value that cannot be decrypted does: fail the read (the default), or be reported. */
  onUnreadable?: UnreadablePolicy;
}

export interface ReadResult {
  documents: Record<string, unknown>[];
  /** Per document (by index), the paths whose value could not be decrypted and were set to null. */
  unreadable: Map<number, string[]>;
  /** Per document (by index), the paths the caller may not decrypt, set to null. */
  masked: Map<number, string[]>;
  next?: string;
}

export type InsertResult = { ok: true; insertedId: unknown } | { ok: false; error: AppError };

/** MongoDB's maxBsonObjectSize: fixed by the server, the same on every deployment. */
const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;

/**
 * Encryption grows a document (each encrypted value gains a header, an IV, padding and a tag), so
 * one that fit as plaintext may not once encrypted. Checked here rather than left to the database:
 * the answer is the same clean 400 on every server (not all enforce the limit: FerretDB stores
 * larger documents), and a batch fails only that item.
 */
function checkSize(document: Record<string, unknown>): void {
  if (BSON.calculateObjectSize(document) > MAX_DOCUMENT_BYTES) throw new AppError('DOCUMENT_TOO_LARGE');
}

/** MongoDB's answers that mean the request was wrong, not the server. */
const clientErrorCodes = new Set([2, 9, 14, 16, 28, 40, 52, 53, 55, 56, 57, 66, 121, 10334, 15998, 16837, 17419, 31395, 40352]);

export function mapServerError(err: unknown): never {
  if (err instanceof MongoServerError) {
    // A read with exact types (bson-types.ts) gets the server's reply with them, its code an Int32.
    const code = Number(err.code);
    if (code === 11000) throw new AppError('DUPLICATE_DOCUMENT', undefined, { cause: err });
    // NotImplemented, or an operator the proxy allows that the database does not know: FerretDB
    // implements a subset of MongoDB's operators and stages (its geo operators, most expressions)
    // and of its values (no nested arrays).
    if (code === 238 || (code === 2 && /^unknown (top level )?operator|are not supported/i.test(err.message))) throw new AppError('DATABASE_UNSUPPORTED_OPERATION', 'The database does not implement an operator or stage of this request.', { cause: err });
    // BSONObjectTooLarge: an update made the document outgrow the limit.
    if (code === 10334 || code === 17419) throw new AppError('DOCUMENT_TOO_LARGE', undefined, { cause: err });
    // CommandNotSupportedOnView: the namespace became a view since the view check last looked.
    if (code === 166) throw new AppError('NAMESPACE_IS_VIEW', undefined, { cause: err });
    if (clientErrorCodes.has(code)) throw new AppError('INVALID_QUERY', 'The database refused the operation as malformed.', { cause: err });
  }
  throw err;
}

/**
 * The filter for one document by id. `$eq` makes an id that looks like an operator ({"$ne": 1})
 * a value to compare, never a query: the path names one document.
 */
function byId(id: unknown): Record<string, unknown> {
  return { _id: { $eq: id } };
}

/**
 * MongoDB refuses arrays, regexes and undefined as _id; so do we, with a 400 rather than a 500. A
 * dbPointer too: the driver cannot write one (and an _id is never encrypted).
 */
function checkId(id: unknown): void {
  const type = bsonTypeAlias(id);
  if (type === 'array' || type === 'regex' || type === 'undefined' || type === 'dbPointer') throw new AppError('DOCUMENT_VALIDATION_FAILED', `_id cannot be of type ${type}.`);
}

/**
 * A document id from a URL segment: JSON (a quoted string, or Extended JSON such as
 * {"$oid": ...} or {"$numberInt": "7"}) when it starts with `"` or `{`, an ObjectId when it is 24
 * hex digits, else the string itself.
 */
export function parseDocumentId(text: string): unknown {
  if (text.startsWith('"') || text.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new AppError('INVALID_QUERY', 'The document id is not valid JSON.');
    }
    const id = fromEjson(json);
    checkId(id);
    return id;
  }
  if (/^[0-9a-fA-F]{24}$/.test(text)) return new ObjectId(text);
  return text;
}

function asDocument(value: unknown, what: string): Record<string, unknown> {
  if (!isPlainObject(value)) throw new AppError('INVALID_QUERY', `${what} must be an object.`);
  return value;
}


function cursorHash(request: FindRequest): string {
  return createHash('sha256')
    .update(JSON.stringify([request.filter ?? {}, request.sort ?? {}, request.projection ?? {}]))
    .digest('base64url')
    .slice(0, 16);
}

export function createDocumentsService({ client, schemas, engine, resolveAltNames, rotations, maxFindLimit, maxTimeMs, views }: DocumentsServiceOptions) {
  const fields = createFieldEncryption({ engine, resolveAltNames });
  // A query the database cannot finish within the request's own time is stopped there, not left
  // running after its client has been answered.
  const timeLimit = { maxTimeMS: maxTimeMs };

  async function schemaFor(namespace: string): Promise<CollectionSchema> {
    const schema = await schemas.require(namespace);
    await views.assertNotView(schema.db, schema.collection);
    return schema;
  }

  function collectionOf(schema: CollectionSchema): Collection<Document> {
    // Acknowledged means durable: majority, journaled.
    return client.db(schema.db).collection(schema.collection, { writeConcern: { w: 'majority', journal: true } });
  }

  /** New writes use the successor of a key under rotation in this collection. */
  async function successorOf(schema: CollectionSchema): Promise<(keyId: string) => string> {
    const successions = await rotations.successions(schema.namespace);
    return (keyId) => successions.get(keyId)?.toKeyId ?? keyId;
  }

  /**
   * The key ids an equality value must match under: while a key of the collection is being
   * rotated, a value matches its ciphertext under either key; once done, only the new one.
   */
  async function variantsOf(schema: CollectionSchema): Promise<(keyId: string) => string[]> {
    const successions = await rotations.successions(schema.namespace);
    return (id) => {
      const next = successions.get(id);
      if (next === undefined) return [id];
      return next.state === 'running' ? [id, next.toKeyId] : [next.toKeyId];
    };
  }

  async function prepareFilter(schema: CollectionSchema, filterJson: unknown, caller: Caller): Promise<Record<string, unknown>> {
    const filter = asDocument(fromEjson(filterJson ?? {}), 'A filter');
    await fields.encryptSlots(planFilter(filter, schema.plan), caller, await variantsOf(schema));
    refuseUnwritableTypes(filter);
    return filter;
  }

  function validate(schema: CollectionSchema, document: Record<string, unknown>): void {
    const problem = schema.validator.validate(document);
    if (problem !== undefined) throw new AppError('DOCUMENT_VALIDATION_FAILED', `${problem.path} ${problem.message}.`);
  }

  /** Validate, give an _id, encrypt: the document that will be written. */
  /**
   * Check, then encrypt a whole document in place, as the collection's plan says. The walk comes
   * first: a shape that could carry an encrypted field in plaintext is refused as such, whatever
   * else the schema says of it.
   */
  async function encryptDocument(schema: CollectionSchema, document: Record<string, unknown>, caller: Caller): Promise<WrittenValues> {
    const jobs = schema.plan === undefined ? [] : collectJobs(document, schema.plan, '', document);
    validate(schema, document);
    const written = await fields.encryptJobs(jobs, caller, schema.namespace, await successorOf(schema));
    refuseUnwritableTypes(document);
    checkSize(document);
    return written;
  }

  async function prepareDocument(schema: CollectionSchema, json: unknown, caller: Caller, id?: () => ObjectId): Promise<Record<string, unknown>> {
    const document = asDocument(fromEjson(json), 'A document');
    if (document._id === undefined) document._id = id ? id() : new ObjectId();
    checkId(document._id);
    await encryptDocument(schema, document, caller);
    return document;
  }

  /**
   * Decrypt what a read found, with masking. A value that cannot be decrypted fails the read
   * unless the caller asked for a report (unreadable-values.ts): every read path comes here.
   */
  async function read(documents: Record<string, unknown>[], caller: Caller, onUnreadable: UnreadablePolicy = 'fail'): Promise<ReadResult> {
    const result = { documents, ...(await fields.decryptDocuments(documents, caller)) };
    enforceUnreadablePolicy(documents, result.unreadable, onUnreadable);
    return result;
  }

  const reads = createDocumentReads({
    schemaFor,
    collectionOf,
    prepareFilter,
    encryptSlots: async (schema, slots, caller) => fields.encryptSlots(slots, caller, await variantsOf(schema)),
    read,
    mapServerError,
    maxTimeMs,
    maxFindLimit,
  });

  const writes = createDocumentWrites({ schemaFor, collectionOf, prepareFilter, encryptDocument, successorOf, fields, read, mapServerError, maxTimeMs });

  return {
    ...reads,

    /**
     * Insert one document. With `seed` (an idempotent request), a document without _id gets one
     * derived from it, and finding that _id already taken means the first attempt landed.
     */
    async insertOne(namespace: string, json: unknown, caller: Caller, seed?: string): Promise<{ insertedId: unknown }> {
      const schema = await schemaFor(namespace);
      const derived = seed === undefined ? undefined : derivedId(seed, 0);
      const document = await prepareDocument(schema, json, caller, derived && (() => derived));
      const collection = collectionOf(schema);
      await collection.insertOne(document).catch(async (err: unknown) => {
        if (derived !== undefined && err instanceof MongoServerError && err.code === 11000 && (await collection.countDocuments(byId(derived), { limit: 1 })) === 1) return;
        mapServerError(err);
      });
      return { insertedId: document._id };
    },

    /** Insert many, item by item: a document is written fully encrypted or not at all. */
    async insertMany(namespace: string, jsons: unknown[], caller: Caller, seed?: string): Promise<InsertResult[]> {
      const schema = await schemaFor(namespace);
      const results: InsertResult[] = new Array(jsons.length);
      const ready: { index: number; document: Record<string, unknown>; derived?: ObjectId }[] = [];
      for (const [index, json] of jsons.entries()) {
        try {
          let derived: ObjectId | undefined;
          const document = await prepareDocument(schema, json, caller, seed === undefined ? undefined : () => (derived = derivedId(seed, index)));
          ready.push({ index, document, derived });
        } catch (err) {
          if (!(err instanceof AppError) || err.status >= 500) throw err;
          results[index] = { ok: false, error: err };
        }
      }
      if (ready.length > 0) {
        let failed = new Map<number, AppError>();
        try {
          await collectionOf(schema).insertMany(
            ready.map((r) => r.document),
            { ordered: false },
          );
        } catch (err) {
          // Only per-document errors are per-document answers. A batch failed as a whole (a lost
          // connection, a write concern error) comes as the same error class with no writeErrors:
          // which documents landed is unknown, so the whole request fails and nothing is answered
          // as inserted.
          const writeErrors = (err as { writeErrors?: { index: number; code?: number }[] }).writeErrors;
          const concernError = err instanceof MongoBulkWriteError ? err.result.getWriteConcernError() : undefined;
          if (!Array.isArray(writeErrors)) throw err;
          if (writeErrors.length === 0 || concernError !== undefined) throw new AppError('DATABASE_UNAVAILABLE', undefined, { cause: err });
          failed = new Map(
            writeErrors.map((w) => [w.index, new AppError(w.code === 11000 ? 'DUPLICATE_DOCUMENT' : 'INVALID_QUERY')]),
          );
          // A derived _id already taken: the first attempt of this idempotent request inserted it.
          const retried = writeErrors.filter((w) => w.code === 11000 && ready[w.index]?.derived !== undefined).map((w) => w.index);
          if (retried.length > 0) {
            const there = await collectionOf(schema)
              .find({ _id: { $in: retried.map((i) => ready[i]!.derived!) } }, { projection: { _id: 1 } })
              .toArray();
            const found = new Set(there.map((d) => String(d._id)));
            for (const i of retried) if (found.has(String(ready[i]!.derived))) failed.delete(i);
          }
        }
        ready.forEach(({ index, document }, position) => {
          const error = failed.get(position);
          results[index] = error ? { ok: false, error } : { ok: true, insertedId: document._id };
        });
      }
      return results;
    },

    async findById(namespace: string, id: unknown, caller: Caller, options: { onUnreadable?: UnreadablePolicy } = {}): Promise<ReadResult> {
      const schema = await schemaFor(namespace);
      const document = await collectionOf(schema).findOne(byId(id), { ...timeLimit, ...exactTypes }).catch(mapServerError);
      if (document === null) throw new AppError('DOCUMENT_NOT_FOUND');
      return read([document], caller, options.onUnreadable);
    },

    async find(namespace: string, request: FindRequest, caller: Caller): Promise<ReadResult> {
      const schema = await schemaFor(namespace);
      const filter = await prepareFilter(schema, request.filter, caller);
      // Projections and sorts are plain JSON: 0/1 and 1/-1 must stay numbers.
      const projection = request.projection === undefined ? undefined : asDocument(request.projection, 'A projection');
      const sort = request.sort === undefined ? { _id: 1 } : asDocument(request.sort, 'A sort');
      if (projection) checkProjection(projection, schema.plan);
      checkSort(sort, schema.plan);
      const limit = Math.min(request.limit ?? 100, maxFindLimit);
      let skip = request.skip ?? 0;
      if (request.cursor !== undefined) {
        const [offset, hash] = request.cursor.split('.');
        if (!/^\d+$/.test(offset ?? '') || hash !== cursorHash(request)) {
          throw new AppError('INVALID_QUERY', 'The cursor does not belong to this query.');
        }
        skip = Number(offset);
      }
      const documents = await collectionOf(schema)
        .find(filter, { projection, sort: sort as never, skip, limit: limit + 1, ...timeLimit, ...exactTypes })
        .toArray()
        .catch(mapServerError);
      const page = documents.slice(0, limit);
      const result: ReadResult = await read(page, caller, request.onUnreadable);
      if (documents.length > limit) result.next = `${skip + limit}.${cursorHash(request)}`;
      return result;
    },

    async count(namespace: string, filterJson: unknown, caller: Caller): Promise<number> {
      const schema = await schemaFor(namespace);
      return collectionOf(schema).countDocuments(await prepareFilter(schema, filterJson, caller), timeLimit).catch(mapServerError);
    },

    async updateById(namespace: string, id: unknown, update: unknown, caller: Caller) {
      const result = await writes.updateById(namespace, byId(id), update, caller);
      if (result.matched === 0) throw new AppError('DOCUMENT_NOT_FOUND');
      return result;
    },

    async updateWhere(namespace: string, filterJson: unknown, update: unknown, many: boolean, caller: Caller, options: { upsert?: boolean; arrayFilters?: unknown[] } = {}) {
      return writes.update(namespace, { filter: filterJson, update, many, ...options }, caller);
    },

    async replaceById(namespace: string, id: unknown, json: unknown, caller: Caller) {
      const schema = await schemaFor(namespace);
      const document = asDocument(fromEjson(json), 'A document');
      if (document._id !== undefined && JSON.stringify(document._id) !== JSON.stringify(id)) {
        throw new AppError('INVALID_QUERY', 'The document _id differs from the one in the path.');
      }
      document._id = id;
      const { blind } = await encryptDocument(schema, document, caller);
      const result = await collectionOf(schema).replaceOne(byId(id), document, timeLimit).catch(mapServerError);
      if (result.matchedCount === 0) throw new AppError('DOCUMENT_NOT_FOUND');
      return { matched: result.matchedCount, modified: blind ? result.matchedCount : result.modifiedCount };
    },

    async deleteById(namespace: string, id: unknown): Promise<void> {
      const schema = await schemaFor(namespace);
      const result = await collectionOf(schema).deleteOne(byId(id), timeLimit).catch(mapServerError);
      if (result.deletedCount === 0) throw new AppError('DOCUMENT_NOT_FOUND');
    },

    async deleteWhere(namespace: string, filterJson: unknown, many: boolean, caller: Caller): Promise<number> {
      const schema = await schemaFor(namespace);
      const filter = await prepareFilter(schema, filterJson, caller);
      if (many && Object.keys(filter).length === 0) throw new AppError('INVALID_QUERY', 'An empty filter would delete every document.');
      const collection = collectionOf(schema);
      const result = await (many ? collection.deleteMany(filter, timeLimit) : collection.deleteOne(filter, timeLimit)).catch(mapServerError);
      return result.deletedCount;
    },

    /** What would be encrypted, with which key and algorithm, and why; writes nothing. */
    async explain(namespace: string, request: Parameters<typeof writes.explain>[1] & { document?: unknown }) {
      if (request.update !== undefined || request.replacement !== undefined || request.operations !== undefined) return writes.explain(namespace, request);
      const schema = await schemaFor(namespace);
      const describe = describeEncryptedField;
      if (request.document !== undefined) {
        const document = asDocument(fromEjson(request.document), 'A document');
        const problem = schema.validator.validate(document);
        const jobs = collectJobs(document, schema.plan ?? { kind: 'object', properties: new Map(), patterns: [] }, '', document);
        return {
          valid: problem === undefined,
          ...(problem ? { validation: `${problem.path} ${problem.message}.` } : {}),
          fields: jobs.map((job) => describe(job.path, job.node, `matches ${job.node.schemaPath}`)),
        };
      }
      const filter = asDocument(fromEjson(request.filter ?? {}), 'A filter');
      const slots = planFilter(filter, schema.plan);
      const seen = new Set<string>();
      return {
        valid: true,
        fields: slots
          .filter((slot) => !seen.has(slot.path) && seen.add(slot.path))
          .map((slot) => describe(slot.path, slot.node, 'equality on a deterministic field: the value is encrypted before the query')),
      };
    },

    replaceWhere: writes.replace,
    findOneAndModify: writes.findOneAndModify,
    rereadFindAndModify: writes.rereadFindAndModify,
    bulkWrite: writes.bulkWrite,

    /** Start re-encrypting a collection's fields from one data key to another, as a job. */
    /** Rotate a collection's fields from one data key to another, as `currentCaller()` (read again per batch). */
    async rotateDataKey(
      namespace: string,
      request: { fromKeyId: string; toKeyId: string; batchSize: number; maxDocsPerSecond: number },
      context: { jobId: string; report: RotationOptions['report']; signal: AbortSignal },
      currentCaller: () => Promise<Caller>,
    ) {
      const schema = await schemaFor(namespace);
      return rotateDataKey({ namespace, collection: collectionOf(schema), engine, currentCaller, rotations, ...request, ...context });
    },

    /** Whether this instance has a schema for the collection (a job on it can run here). */
    hasCollection(namespace: string): boolean {
      return schemas.isReady(namespace);
    },

    /** The encrypted fields of a collection, for documentation and explain. */
    async encryptedFields(namespace: string) {
      return listEncryptedPaths((await schemaFor(namespace)).plan).map(({ path, node }) => ({ path, algorithm: node.algorithm }));
    },
  };
}

/**
 * The _id of the `index`th document of an idempotent insert: the same for every attempt of the
 * request, so a retry after a lost answer finds the first attempt's document. Its 12 bytes come
 * from the seed, so its embedded "timestamp" means nothing; give an _id to control it.
 */
function derivedId(seed: string, index: number): ObjectId {
  return new ObjectId(createHash('sha256').update(`${seed}\n${index}`).digest().subarray(0, 12));
}

export type DocumentsService = ReturnType<typeof createDocumentsService>;

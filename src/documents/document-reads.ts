/**
 * The read operations beyond find: aggregate and distinct, through the same filter rewriting,
 * the same encryption engine (a query on an encrypted field needs the decrypt right on its key)
 * and the same decryption with masking as find. Knows no HTTP.
 */
import { MongoServerError, type Collection, type Document } from 'mongodb';
import type { Caller } from '../encryption/access.js';
import { fromEjson, toEjson } from '../ejson.js';
import { AppError } from '../errors.js';
import { planPipeline, type StagePlan } from './aggregate-rewriter.js';
import { exactTypes, refuseUnwritableTypes } from './bson-types.js';
import type { CollectionSchema } from './collection-schema.js';
import { checkPath, resolvePath, type EqualitySlot } from './query-rewriter.js';
import type { UnreadablePolicy } from './unreadable-values.js';

export interface ReadOutcome {
  documents: Record<string, unknown>[];
  unreadable: Map<number, string[]>;
  masked: Map<number, string[]>;
}

export interface DocumentReadsOptions {
  schemaFor(namespace: string): Promise<CollectionSchema>;
  collectionOf(schema: CollectionSchema): Collection<Document>;
  /** A filter checked and its equality values encrypted (documents-service's prepareFilter). */
  prepareFilter(schema: CollectionSchema, filterJson: unknown, caller: Caller): Promise<Record<string, unknown>>;
  /** Encrypt equality slots as a query of the caller (the decrypt right on each key is required). */
  encryptSlots(schema: CollectionSchema, slots: EqualitySlot[], caller: Caller): Promise<void>;
  /** Decrypt with masking, applying the unreadable-value policy. */
  read(documents: Record<string, unknown>[], caller: Caller, onUnreadable?: UnreadablePolicy): Promise<ReadOutcome>;
  mapServerError(err: unknown): never;
  maxTimeMs: number;
  maxFindLimit: number;
}

export interface AggregateRequest {
  pipeline: unknown[];
  onUnreadable?: UnreadablePolicy;
}

export interface AggregateResult extends ReadOutcome {
  /** More documents than the answer holds were produced (cut at the service's find limit). */
  truncated: boolean;
}

export interface DistinctRequest {
  key: string;
  filter?: unknown;
  onUnreadable?: UnreadablePolicy;
}

function asStages(pipeline: unknown): unknown[] {
  const converted = fromEjson(pipeline);
  if (!Array.isArray(converted)) throw new AppError('INVALID_QUERY', 'A pipeline must be an array of stages.');
  return converted;
}

export function createDocumentReads({ schemaFor, collectionOf, prepareFilter, encryptSlots, read, mapServerError, maxTimeMs, maxFindLimit }: DocumentReadsOptions) {
  return {
    /**
     * Run an aggregation pipeline: equality on deterministic fields as ciphertext, stages that
     * would compute on encrypted values refused, results decrypted with masking. The answer holds
     * at most the find limit of documents.
     */
    async aggregate(namespace: string, request: AggregateRequest, caller: Caller): Promise<AggregateResult> {
      const schema = await schemaFor(namespace);
      const pipeline = asStages(request.pipeline);
      const { slots } = planPipeline(pipeline, schema.plan);
      await encryptSlots(schema, slots, caller);
      refuseUnwritableTypes(pipeline);
      // One more than the limit tells a truncated answer from a complete one.
      const documents = await collectionOf(schema)
        .aggregate([...pipeline, { $limit: maxFindLimit + 1 }] as Document[], { maxTimeMS: maxTimeMs, ...exactTypes })
        .toArray()
        .catch(mapServerError);
      const truncated = documents.length > maxFindLimit;
      return { ...(await read(documents.slice(0, maxFindLimit), caller, request.onUnreadable)), truncated };
    },

    /** Dry run of aggregate: what would be sent as ciphertext and what is refused; runs nothing, uses no key. */
    async explainAggregate(namespace: string, pipelineJson: unknown[]): Promise<{ valid: boolean; stages: StagePlan[]; refused?: { code: string; detail: string } }> {
      const schema = await schemaFor(namespace);
      const pipeline = asStages(pipelineJson);
      try {
        return { valid: true, stages: planPipeline(pipeline, schema.plan).stages };
      } catch (err) {
        if (!(err instanceof AppError) || err.status >= 500) throw err;
        return { valid: false, stages: [], refused: { code: err.code, detail: err.detail ?? err.message } };
      }
    },

    /**
     * The distinct values of a field among the documents a filter matches. On a deterministic
     * field they are the decrypted values (each ciphertext is one value; a value stored under two
     * keys during a rotation is answered once); that needs the decrypt right on its key, checked
     * before the database is asked. Random-encrypted fields have no distinct values to give.
     */
    async distinct(namespace: string, request: DistinctRequest, caller: Caller): Promise<{ values: unknown[]; unreadable?: number }> {
      const schema = await schemaFor(namespace);
      const { key } = request;
      checkPath(key, 'distinct');
      const target = resolvePath(schema.plan, key);
      if (target.kind === 'inside' || target.kind === 'encrypted') {
        const { node } = target;
        const where = target.kind === 'inside' ? target.encryptedPath : key;
        if (node.algorithm === 'random') throw new AppError('QUERY_ON_RANDOM_FIELD', `${where} is random-encrypted: its distinct values cannot be listed.`);
        if (target.kind === 'inside') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${where} is encrypted: ${key} inside it cannot be listed.`);
        if (node.key.kind !== 'id') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${key} is encrypted under a key each document names: its distinct values cannot be listed.`);
        // The same authorization as an equality query on the field: a value encrypted for the
        // query, as find does for an equality on it. Without decrypt on the key: 403, before any
        // read, so not even the number of distinct values is answered.
        await encryptSlots(schema, [{ container: { probe: '' }, key: 'probe', node, path: key }], caller);
      }
      if (target.kind === 'subtree') throw new AppError('UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', `${key} contains encrypted fields: list them one by one.`);
      const filter = await prepareFilter(schema, request.filter, caller);
      const collection = collectionOf(schema);
      const raw = await collection
        .distinct(key, filter, { maxTimeMS: maxTimeMs, ...exactTypes })
        .catch((err: unknown) => {
          // FerretDB's distinct knows no maxTimeMS (FailedToParse naming it): the same command
          // without the server-side limit; the request's own timeout still bounds the answer.
          if (err instanceof MongoServerError && Number(err.code) === 9 && /maxTimeMS/.test(err.message)) return collection.distinct(key, filter, exactTypes);
          throw err;
        })
        .catch(mapServerError);
      const holder = { [key]: raw };
      const { masked, unreadable } = await read([holder], caller, request.onUnreadable);
      // A value the caller may not decrypt would still be counted among the distinct ones.
      if (masked.size > 0) throw new AppError('FORBIDDEN', `Distinct values of ${key} need the decrypt right on the data key of each value.`);
      const seen = new Set<string>();
      const values = (holder[key] as unknown[]).filter((value) => {
        const id = JSON.stringify(toEjson(value, 'canonical'));
        if (seen.has(id)) return false;
        seen.add(id);
        return true;
      });
      const bad = unreadable.get(0)?.length ?? 0;
      return { values, ...(bad > 0 ? { unreadable: bad } : {}) };
    },
  };
}

export type DocumentReads = ReturnType<typeof createDocumentReads>;

/**
 * The data-key rotation job of one collection: every field encrypted with the old data key is
 * decrypted and encrypted again with the new one (same algorithm), document by document in _id
 * order, each update conditional on the old ciphertexts so a concurrent write is never lost. The
 * resume point is saved after each batch (with the counts so far, so the same job taken over by
 * another instance goes on counting); a verification pass then checks no field is left under the
 * old key and that rotated fields decrypt under the new one. A document rotated after the last
 * resume point by a run that died is not rotated again (its fields are no longer under the old
 * key): its fields are missing from `rotatedFields`, which is a lower bound after a takeover.
 */
import { BSON, type Binary } from 'mongodb';
import type { Collection, Document } from 'mongodb';
import type { Access, Caller } from '../encryption/access.js';
import type { EncryptionEngine } from '../encryption/encryption-engine.js';
import { AppError } from '../errors.js';
import { keyIdToString } from '../key-vault/key-document.js';
import { findCiphertexts, type FoundCiphertext } from './document-crypto.js';
import type { KeyRotations } from './key-rotations.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

type Progress = { total: number; done: number; failed: number; phase: string };

export interface RotationOptions {
  namespace: string;
  collection: Collection<Document>;
  fromKeyId: string;
  toKeyId: string;
  jobId: string;
  /** Every re-encryption and check goes through the engine, as the job's creator. */
  engine: EncryptionEngine;
  /**
   * The job's creator as it is now: read before each batch, so a creator whose grants were
   * narrowed, or who was disabled or deleted, stops the rotation (FORBIDDEN) at its next batch.
   */
  currentCaller(): Promise<Caller>;
  rotations: KeyRotations;
  batchSize: number;
  /** Throttle: at most this many documents a second (0: no limit). */
  maxDocsPerSecond: number;
  report(progress: Progress): Promise<void>;
  signal: AbortSignal;
}

function underKey(document: Document, keyId: string): FoundCiphertext[] {
  const found: FoundCiphertext[] = [];
  findCiphertexts(document, '', 0, found);
  return found.filter((f) => f.parsed !== undefined && keyIdToString(f.parsed.keyId) === keyId);
}

function accessOf(options: RotationOptions, caller: Caller): Access {
  return { ...caller, purpose: { kind: 'rotate', fromKeyId: options.fromKeyId, toKeyId: options.toKeyId } };
}

function payloadOf(field: FoundCiphertext): Uint8Array {
  return ((field.parent as Record<string | number, unknown>)[field.name] as Binary).buffer;
}

/** Re-encrypt one document's fields under the new key; false if it changed meanwhile. */
async function rotateDocument(options: RotationOptions, caller: Caller, document: Document): Promise<number | false> {
  const fields = underKey(document, options.fromKeyId);
  if (fields.length === 0) return 0;
  const { results } = await options.engine.reencrypt(fields.map(payloadOf), accessOf(options, caller));
  const replaced = results.map((result) => {
    if (!result.ok) throw result.error;
    return result.value;
  });
  const filter: Document = { _id: document._id };
  const set: Document = {};
  fields.forEach((field, i) => {
    filter[field.path] = (field.parent as Record<string | number, unknown>)[field.name] as Binary;
    set[field.path] = replaced[i];
  });
  const result = await options.collection.updateOne(filter, { $set: set });
  return result.matchedCount === 1 ? fields.length : false;
}

export async function rotateDataKey(options: RotationOptions) {
  const { collection, rotations, namespace, fromKeyId } = options;
  let caller = await options.currentCaller();
  // The same job resumed (taken over by another instance) goes on counting from its resume point.
  const previous = await rotations.get(namespace, fromKeyId);
  const sameJob = previous?.jobId === options.jobId && previous.state === 'running';
  const record = await rotations.begin(namespace, fromKeyId, options.toKeyId, options.jobId);
  const progress: Progress = { total: await collection.countDocuments({}), done: sameJob ? (previous.done ?? 0) : 0, failed: 0, phase: 'rotating' };
  let after: unknown = record.resumeAfter ? EJSON.parse(record.resumeAfter, { relaxed: false }) : undefined;
  let rotatedFields = sameJob ? (previous.rotatedFields ?? 0) : 0;
  const started = Date.now();
  const doneAtStart = progress.done;
  for (;;) {
    caller = await options.currentCaller();
    const batch = await collection
      .find(after === undefined ? {} : { _id: { $gt: after as never } })
      .sort({ _id: 1 })
      .limit(options.batchSize)
      .toArray();
    if (batch.length === 0) break;
    for (const document of batch) {
      options.signal.throwIfAborted();
      let outcome = await rotateDocument(options, caller, document);
      for (let retry = 0; outcome === false && retry < 3; retry++) {
        const fresh = await collection.findOne({ _id: document._id });
        outcome = fresh === null ? 0 : await rotateDocument(options, caller, fresh);
      }
      if (outcome === false) progress.failed++;
      else rotatedFields += outcome;
      progress.done++;
      if (options.maxDocsPerSecond > 0) {
        const due = started + ((progress.done - doneAtStart) * 1000) / options.maxDocsPerSecond;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
    }
    after = batch.at(-1)!._id;
    await rotations.saveResumePoint(namespace, fromKeyId, EJSON.stringify(after, { relaxed: false }), { done: progress.done, rotatedFields });
    await options.report({ ...progress });
  }

  // Verification: nothing left under the old key (a writer that had not yet seen the rotation
  // gets a second pass), and a sample of fields decrypts under the new one.
  progress.phase = 'verifying';
  await options.report({ ...progress });
  caller = await options.currentCaller();
  let remaining = 0;
  let sampled = 0;
  for await (const document of collection.find({}).sort({ _id: 1 })) {
    if (underKey(document, fromKeyId).length > 0 && (await rotateDocument(options, caller, document)) === false) remaining++;
    if (sampled < 100) {
      const fields = underKey(document, options.toKeyId);
      if (fields.length > 0) {
        const { results } = await options.engine.verify(fields.map(payloadOf), accessOf(options, caller));
        for (const result of results) if (!result.ok) throw result.error;
        sampled += fields.length;
      }
    }
  }
  if (remaining > 0 || progress.failed > 0) {
    throw new AppError('DOCUMENT_VALIDATION_FAILED', `${remaining + progress.failed} documents could not be rotated: run the rotation again.`);
  }
  await rotations.finish(namespace, fromKeyId);
  progress.phase = 'done';
  return { progress, result: { documents: progress.done, rotatedFields, verifiedFields: sampled, fromKeyId, toKeyId: options.toKeyId } };
}

/**
 * Starting a data-key rotation of a collection (POST /documents/{ns}/rotations): both keys resolved
 * and authorized, the collection known, then the job that re-encrypts its fields on any instance.
 */
import type { KeyAuthorizer } from '../clients/key-authorizer.js';
import type { DocumentsService } from '../documents/documents-service.js';
import { AppError } from '../errors.js';
import { keyIdToString, parseKeyId } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';
import type { JobRunner } from './job-runner.js';
import type { JobView } from './job-store.js';
import type { RotationSpec } from './job-types.js';

/** A data key named by id or by alt name, as the API takes it. */
export type KeyRef = { keyId?: string; keyAltName?: string };

export interface DataKeyRotationDeps {
  keyVault: KeyVault;
  documents: DocumentsService;
  jobs: JobRunner;
}

export interface DataKeyRotationRequest {
  namespace: string;
  from: KeyRef;
  to: KeyRef;
  batchSize: number;
  maxDocsPerSecond: number;
  createdBy: string;
  /** The caller's cover of keys under a scope (decrypt for the old key, encrypt for the new). */
  authorize(scope: 'decrypt' | 'encrypt'): KeyAuthorizer;
  /** Called with both key ids once they are authorized, before the job is started (for the audit event). */
  onAuthorized?(keyIds: string[]): void;
}

async function resolveKey(keyVault: KeyVault, ref: KeyRef): Promise<string> {
  if (ref.keyId !== undefined) return keyIdToString((await keyVault.requireById(parseKeyId(ref.keyId)))._id.buffer);
  return keyIdToString((await keyVault.resolveAltName(ref.keyAltName!)).buffer);
}

export async function startDataKeyRotation(deps: DataKeyRotationDeps, request: DataKeyRotationRequest): Promise<JobView> {
  const { namespace } = request;
  const [fromKeyId, toKeyId] = await Promise.all([resolveKey(deps.keyVault, request.from), resolveKey(deps.keyVault, request.to)]);
  if (fromKeyId === toKeyId) throw new AppError('INVALID_QUERY', 'from and to name the same data key.');
  const [canDecrypt, canEncrypt] = await Promise.all([request.authorize('decrypt')([fromKeyId]), request.authorize('encrypt')([toKeyId])]);
  // A rotation needs decrypt on the old key and encrypt on the new one; a key beyond those
  // grants is, to the caller, a key that does not exist.
  if (!canDecrypt.has(fromKeyId) || !canEncrypt.has(toKeyId)) throw new AppError('KEY_NOT_FOUND');
  await deps.documents.encryptedFields(namespace); // 404 for an unknown collection (503 for one not ready), before a job is started
  request.onAuthorized?.([fromKeyId, toKeyId]);
  // The job runs on any instance (src/jobs/job-types.ts) as its creator, with the grants it has
  // then; it keeps no record of the keys it used in the starting request's audit.
  const spec: RotationSpec = { namespace, fromKeyId, toKeyId, batchSize: request.batchSize, maxDocsPerSecond: request.maxDocsPerSecond };
  return deps.jobs.start('documents.rotation', request.createdBy, { namespace, fromKeyId, toKeyId }, 0, { ...spec });
}

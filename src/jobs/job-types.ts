/**
 * The work of each job type, from the job record alone, so that any instance can start or resume
 * it. A job runs as its creator as the creator is NOW: the client is read again when a run starts
 * (and, for rotations, before every batch), and a creator that was deleted, disabled or lost the
 * rights stops the job with FORBIDDEN rather than let it run on an old grant.
 */
import { keyAuthorizer } from '../clients/key-authorizer.js';
import { allows, isOperator, type Principal } from '../clients/scopes.js';
import type { DocumentsService } from '../documents/documents-service.js';
import { AppError } from '../errors.js';
import { parseKeyId } from '../key-vault/key-document.js';
import type { KeyVault } from '../key-vault/key-vault.js';
import { readStoredMasterKey, type MasterKey } from '../kms/master-key.js';
import type { JobRecord } from './job-store.js';
import type { JobRunner } from './job-runner.js';

export interface MigrationSpec {
  keyIds: string[];
  /** The new master key, as key documents store it. */
  masterKey: Record<string, unknown>;
  allowDowngrade?: boolean;
}

export interface RotationSpec {
  namespace: string;
  fromKeyId: string;
  toKeyId: string;
  batchSize: number;
  maxDocsPerSecond: number;
}

export interface JobTypeDeps {
  keyVault: KeyVault;
  /** Throws when this instance cannot use the master key (provider off, key not allowed). */
  checkUsable(masterKey: MasterKey): void;
  documents: DocumentsService;
  /** The principal a client id stands for now (never cached); undefined when gone or disabled. */
  principalOf(clientId: string): Promise<Principal | undefined>;
}

export function defineJobTypes(runner: JobRunner, deps: JobTypeDeps): void {
  async function creatorOf(job: JobRecord): Promise<Principal> {
    const principal = await deps.principalOf(job.createdBy);
    if (principal === undefined) throw new AppError('FORBIDDEN', 'The client that started this job was deleted or disabled.');
    return principal;
  }

  runner.define('keys.migration', {
    startScope: () => 'keys:rewrap',
    work: async (job, { report, signal, resumed }) => {
      const spec = job.spec as unknown as MigrationSpec;
      const principal = await creatorOf(job);
      const allowed = await keyAuthorizer(principal, 'keys:rewrap', deps.keyVault)(spec.keyIds);
      if (spec.keyIds.some((id) => !allowed.has(id))) {
        throw new AppError('FORBIDDEN', "The keys:rewrap grants of this job's creator no longer cover every key it migrates.");
      }
      return deps.keyVault.migrateMasterKey({ keyIds: spec.keyIds.map(parseKeyId) }, readStoredMasterKey(spec.masterKey), {
        onProgress: report,
        signal,
        // Allowed by the operator only, as at the start.
        allowDowngrade: spec.allowDowngrade === true && isOperator(principal),
        // Keys the cut-short run rewrapped are not rewrapped again (a minute's margin for clocks).
        ...(resumed ? { resumeSince: new Date(job.createdAt.getTime() - 60_000) } : {}),
      });
    },
    canRun: (job) => {
      try {
        deps.checkUsable(readStoredMasterKey((job.spec as unknown as MigrationSpec).masterKey));
        return true;
      } catch {
        return false;
      }
    },
  });

  runner.define('documents.rotation', {
    startScope: (job) => `documents:${(job.spec as unknown as RotationSpec).namespace}:write`,
    work: async (job, context) => {
      const spec = job.spec as unknown as RotationSpec;
      const scope = `documents:${spec.namespace}:write`;
      // The engine checks decrypt on the old key and encrypt on the new one on every call.
      const currentCaller = async () => {
        const principal = await creatorOf(job);
        if (!allows(principal, scope)) throw new AppError('FORBIDDEN', `The creator of this job no longer has the ${scope} scope.`);
        return { principal };
      };
      return deps.documents.rotateDataKey(spec.namespace, spec, context, currentCaller);
    },
    canRun: (job) => deps.documents.hasCollection((job.spec as unknown as RotationSpec).namespace),
  });
}

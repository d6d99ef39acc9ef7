/**
 * Starting a guided master-key migration (POST /keys/migrations): the plan of the keys it would
 * touch (a dry run), or the job that migrates them on any instance of the fleet.
 */
import type { KeyAuthorizer } from '../clients/key-authorizer.js';
import { AppError } from '../errors.js';
import { parseKeyId, storedMasterKey } from '../key-vault/key-document.js';
import type { KeySelector } from '../key-vault/key-selector.js';
import type { KeyVault } from '../key-vault/key-vault.js';
import { DOWNGRADE_NEEDS } from '../key-vault/master-key-migration.js';
import type { MasterKey } from '../kms/master-key.js';
import type { JobRunner } from './job-runner.js';
import type { JobView } from './job-store.js';
import type { MigrationSpec } from './job-types.js';

/** A key selection as the API takes it (ids as text, an ARN as `masterKey`). */
export interface KeySelection {
  keyIds?: string[];
  keyAltNames?: string[];
  provider?: MasterKey['provider'];
  masterKey?: string;
}

export function selectorOf(filter: KeySelection): KeySelector {
  return { keyIds: filter.keyIds?.map(parseKeyId), keyAltNames: filter.keyAltNames, provider: filter.provider, masterKeyArn: filter.masterKey };
}

export interface KeyMigrationDeps {
  keyVault: KeyVault;
  jobs: JobRunner;
}

export interface KeyMigrationRequest {
  filter: KeySelection;
  /** Checked usable on this instance by the caller (before the selection is authorized). */
  masterKey: MasterKey;
  dryRun: boolean;
  /** Whether a downgrade (KMS → local) was asked for by someone who may (the operator). */
  allowDowngrade: boolean;
  createdBy: string;
  /** The caller's keys:rewrap cover: every key the filter matches must be in it. */
  authorize: KeyAuthorizer;
  /** Called with the keys the plan names, before the job is started (for the audit event). */
  onPlanned?(keyIds: string[]): void;
}

export type KeyMigrationOutcome =
  | { dryRun: Record<string, unknown> }
  | { job: JobView };

export async function startKeyMigration(deps: KeyMigrationDeps, request: KeyMigrationRequest): Promise<KeyMigrationOutcome> {
  const { filter, masterKey, dryRun, allowDowngrade } = request;
  const { keyIds, downgradeKeyIds } = await deps.keyVault.planMigration(selectorOf(filter), masterKey, request.authorize);
  request.onPlanned?.(keyIds);
  const stored = storedMasterKey(masterKey);
  const downgrade = downgradeKeyIds.length === 0 ? {} : { downgrade: { keyIds: downgradeKeyIds, allowed: allowDowngrade, detail: DOWNGRADE_NEEDS } };
  if (dryRun) return { dryRun: { dryRun: true, matched: keyIds.length, keyIds, masterKey: stored, ...downgrade } };
  if (downgradeKeyIds.length > 0 && !allowDowngrade) throw new AppError('FORBIDDEN', DOWNGRADE_NEEDS);
  const params = { filter, masterKey: stored, ...(allowDowngrade ? { allowDowngrade } : {}) };
  // Runs on any instance (src/jobs/job-types.ts), as its creator with the grants it has then.
  const spec: MigrationSpec = { keyIds, masterKey: stored, ...(allowDowngrade ? { allowDowngrade } : {}) };
  return { job: await deps.jobs.start('keys.migration', request.createdBy, params, keyIds.length, { ...spec }) };
}

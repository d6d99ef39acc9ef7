/**
 * Master-key descriptions as they appear in a key document's `masterKey` field, in the shape
 * MongoDB drivers write: { provider: "local" } or { provider: "aws", key: ARN, region, endpoint? }.
 */
import { AppError } from '../errors.js';

export interface LocalMasterKey {
  provider: 'local';
}

export interface AwsMasterKey {
  provider: 'aws';
  key: string;
  region: string;
  endpoint?: string;
}

export type MasterKey = LocalMasterKey | AwsMasterKey;
export type ProviderName = MasterKey['provider'];

const kmsArn = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):(key|alias)\/[A-Za-z0-9/_+=.@-]+$/;

/** The region named inside a KMS key or alias ARN, or undefined when `key` is not such an ARN. */
export function regionOfArn(key: string): string | undefined {
  return kmsArn.exec(key)?.[1];
}

/**
 * Check and complete a master key named by a client (never trusting an endpoint from it).
 * AWS keys must be full ARNs so the key document names one key unambiguously for every reader.
 */
export function parseMasterKey(input: { provider: string; key?: string; region?: string }): MasterKey {
  if (input.provider === 'local') {
    if (input.key !== undefined || input.region !== undefined) {
      throw new AppError('INVALID_MASTER_KEY', 'A local master key takes no key or region.');
    }
    return { provider: 'local' };
  }
  if (input.provider === 'aws') {
    if (typeof input.key !== 'string') throw new AppError('INVALID_MASTER_KEY', 'An AWS master key needs "key": a KMS key ARN.');
    const region = regionOfArn(input.key);
    if (region === undefined) throw new AppError('INVALID_MASTER_KEY', 'An AWS master key must be a KMS key or alias ARN.');
    if (input.region !== undefined && input.region !== region) {
      throw new AppError('INVALID_MASTER_KEY', 'The region does not match the region in the key ARN.');
    }
    return { provider: 'aws', key: input.key, region };
  }
  throw new AppError('INVALID_MASTER_KEY', 'Unknown master-key provider.');
}

/**
 * Whether rewrapping a data key now wrapped under the provider `from` (a stored key document's
 * `masterKey.provider`) under `to` weakens its protection. The local master key is bytes in this
 * service's configuration and memory; a KMS key never leaves the KMS, and each unwrap is an
 * authorised, logged call. So moving from any KMS (aws, and gcp, azure or kmip written by
 * drivers, or anything unknown: the safe side) to `local` is a downgrade; nothing else is.
 */
export function isDowngrade(from: unknown, to: ProviderName): boolean {
  return to === 'local' && from !== 'local';
}

/** Read a stored `masterKey` field, as written by this service or by any driver. */
export function readStoredMasterKey(stored: unknown): MasterKey {
  const mk = stored as { provider?: unknown; key?: unknown; region?: unknown; endpoint?: unknown } | null;
  if (mk?.provider === 'local') return { provider: 'local' };
  if (mk?.provider === 'aws' && typeof mk.key === 'string') {
    const region = typeof mk.region === 'string' ? mk.region : regionOfArn(mk.key);
    if (region !== undefined) {
      const key: AwsMasterKey = { provider: 'aws', key: mk.key, region };
      if (typeof mk.endpoint === 'string') key.endpoint = mk.endpoint;
      return key;
    }
  }
  throw new AppError('PROVIDER_NOT_CONFIGURED', 'The data key is wrapped by a master-key provider this server does not use.');
}

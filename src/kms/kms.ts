import { AppError } from '../errors.js';
import { createAwsKms, type AwsKmsOptions } from './aws-kms.js';
import type { KmsProvider } from './kms-provider.js';
import { createLocalKms } from './local-kms.js';
import type { MasterKey, ProviderName } from './master-key.js';

export interface KmsOptions {
  /** The 96-byte local master key; without it the `local` provider is off. */
  localMasterKey?: Buffer;
  /** AWS settings; without them the `aws` provider is off. */
  aws?: AwsKmsOptions;
  /** ARNs a client may name when creating or rewrapping keys; empty means any ARN. */
  allowedAwsKeys?: string[];
}

export interface Kms {
  readonly providers: ProviderName[];
  /** Refuse master keys the server is not configured for, before anything is generated or written. */
  checkUsable(masterKey: MasterKey): void;
  wrap(masterKey: MasterKey, dataKey: Buffer): Promise<Buffer>;
  unwrap(masterKey: MasterKey, keyMaterial: Buffer): Promise<Buffer>;
  /** False while a remote KMS is known to be failing (its circuit is open). */
  isHealthy(): boolean;
  close(): void;
}

/** Dispatch wrap and unwrap to the provider a master key names. */
export function createKms(options: KmsOptions): Kms {
  const local = options.localMasterKey ? createLocalKms(options.localMasterKey) : undefined;
  const aws = options.aws ? createAwsKms(options.aws) : undefined;
  const allowed = new Set(options.allowedAwsKeys ?? []);
  const providers: ProviderName[] = [];
  if (local) providers.push('local');
  if (aws) providers.push('aws');

  function providerFor(masterKey: MasterKey): KmsProvider {
    const provider = masterKey.provider === 'local' ? local : aws;
    if (provider === undefined) {
      throw new AppError('PROVIDER_NOT_CONFIGURED', `The "${masterKey.provider}" provider is not configured.`);
    }
    return provider as KmsProvider;
  }

  return {
    providers,
    checkUsable(masterKey) {
      providerFor(masterKey);
      if (masterKey.provider === 'aws' && allowed.size > 0 && !allowed.has(masterKey.key)) {
        throw new AppError('MASTER_KEY_NOT_ALLOWED');
      }
    },
    wrap(masterKey, dataKey) {
      this.checkUsable(masterKey);
      return providerFor(masterKey).wrap(masterKey, dataKey);
    },
    unwrap(masterKey, keyMaterial) {
      return providerFor(masterKey).unwrap(masterKey, keyMaterial);
    },
    isHealthy() {
      return aws?.isHealthy() ?? true;
    },
    close() {
      aws?.destroy();
    },
  };
}

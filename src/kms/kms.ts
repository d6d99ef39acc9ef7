import { AppError, isAppError } from '../errors.js';
import { noMetrics, type KmsOutcome, type Metrics } from '../metrics/metrics.js';
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
function outcomeOf(err: unknown): KmsOutcome {
  if (!isAppError(err)) return 'error';
  if (err.code === 'KMS_ACCESS_DENIED') return 'denied';
  if (err.code === 'KMS_UNAVAILABLE') return 'unavailable';
  return 'error';
}

/** Time a wrap or unwrap and count it by provider and outcome. */
async function measured<T>(metrics: Metrics, provider: string, operation: 'wrap' | 'unwrap', call: () => Promise<T>): Promise<T> {
  const started = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
  try {
    const result = await call();
    metrics.kmsCall(provider, operation, 'ok', seconds());
    return result;
  } catch (err) {
    metrics.kmsCall(provider, operation, outcomeOf(err), seconds());
    throw err;
  }
}

export function createKms(options: KmsOptions, metrics: Metrics = noMetrics): Kms {
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
      const provider = providerFor(masterKey);
      return measured(metrics, masterKey.provider, 'wrap', () => provider.wrap(masterKey, dataKey));
    },
    unwrap(masterKey, keyMaterial) {
      const provider = providerFor(masterKey);
      return measured(metrics, masterKey.provider, 'unwrap', () => provider.unwrap(masterKey, keyMaterial));
    },
    isHealthy() {
      return aws?.isHealthy() ?? true;
    },
    close() {
      aws?.destroy();
    },
  };
}

import { AppError, isAppError } from '../errors.js';
import { noMetrics, type KmsOutcome, type Metrics } from '../metrics/metrics.js';
import { createKeyAllowList } from './allowed-keys.js';
import { createAwsKms, type AwsKmsOptions } from './aws-kms.js';
import type { KmsProvider } from './kms-provider.js';
import { createLocalKms } from './local-kms.js';
import type { MasterKey, ProviderName } from './master-key.js';

export interface KmsOptions {
  /** The 96-byte local master key; without it the `local` provider is off. */
  localMasterKey?: Buffer;
  /** AWS settings; without them the `aws` provider is off. The regions come from the allow-list. */
  aws?: Omit<AwsKmsOptions, 'regions'>;
  /**
   * The AWS master keys the server may use (AWS_KMS_ALLOWED_KEYS): ARN patterns, or `*` for any.
   * Empty allows none; a key outside it is refused before KMS is called, for wrap and unwrap alike.
   */
  allowedAwsKeys?: string[];
}

export interface Kms {
  readonly providers: ProviderName[];
  /** Refuse master keys the server is not configured for, before anything is generated or written. */
  checkUsable(masterKey: MasterKey): void;
  wrap(masterKey: MasterKey, dataKey: Buffer): Promise<Buffer>;
  unwrap(masterKey: MasterKey, keyMaterial: Buffer): Promise<Buffer>;
  /** False while a remote KMS is known to be failing (a configured region's circuit is open). */
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
  const allowed = createKeyAllowList(options.allowedAwsKeys ?? []);
  const aws = options.aws ? createAwsKms({ ...options.aws, regions: allowed.regions }) : undefined;
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
      if (masterKey.provider === 'aws' && !allowed.allows(masterKey)) throw new AppError('MASTER_KEY_NOT_ALLOWED');
    },
    async wrap(masterKey, dataKey) {
      this.checkUsable(masterKey);
      const provider = providerFor(masterKey);
      return measured(metrics, masterKey.provider, 'wrap', () => provider.wrap(masterKey, dataKey));
    },
    async unwrap(masterKey, keyMaterial) {
      // Key documents are not only written by this server (drivers share the vault): what a stored
      // master key names is checked like what a client names, so only configured KMS is reached.
      this.checkUsable(masterKey);
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

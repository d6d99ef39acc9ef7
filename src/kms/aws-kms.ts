import { rootCertificates } from 'node:tls';
import { DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { LRUCache } from 'lru-cache';
import CircuitBreaker from 'opossum';
import { AppError, isAppError } from '../errors.js';
import type { KmsProvider } from './kms-provider.js';
import type { AwsMasterKey } from './master-key.js';

export interface AwsKmsOptions {
  /** Server-side endpoint override (an emulator, a VPC endpoint). Never taken from a client. */
  endpoint?: string;
  /** More CAs (PEM) a KMS endpoint's certificate may chain to, besides Node's public roots. */
  caCerts?: string[];
  /** Explicit credentials; when absent the SDK's default chain (the service's IAM role) is used. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Upper bound for one wrap or unwrap, retries included. */
  timeoutMs: number;
  /** Attempts per call; the SDK retries throttling and transient faults with jittered backoff. */
  maxAttempts: number;
  /** How long the circuit stays open after KMS keeps failing, before one call tries again. */
  breakerResetMs: number;
  /** Regions holding replicas of multi-region keys (mrk-…), tried in order when the key's own region is unavailable. */
  replicaRegions?: string[];
  /** Endpoint overrides by region (server configuration only). */
  regionEndpoints?: Record<string, string>;
  /**
   * The regions the configuration names (those of the allowed keys; replica regions are added):
   * their clients are kept, and readiness looks at them only.
   */
  regions: string[];
  /** Most clients kept at once for regions outside `regions` (reachable only with wildcard entries). */
  maxOtherRegions?: number;
}

const DEFAULT_MAX_OTHER_REGIONS = 8;

/** One region's KMS client behind its circuit breaker. */
interface RegionClient {
  readonly breaker: CircuitBreaker<[EncryptCommand | DecryptCommand], unknown>;
  fire(command: EncryptCommand | DecryptCommand): Promise<unknown>;
  /** Close the client once no call is running on it. */
  retire(): void;
}

/** Multi-region keys share their id (mrk-…) across regions: the same key in another region. */
function isMultiRegion(arn: string): boolean {
  return /:key\/mrk-[0-9a-f]{32}$/.test(arn);
}

function inRegion(arn: string, region: string): string {
  return arn.replace(/^(arn:aws[a-z-]*:kms:)[a-z0-9-]+(:)/, `$1${region}$2`);
}

const accessDenied = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignature',
  'ExpiredTokenException',
  'InvalidClientTokenId',
]);
const unusableKey = new Set([
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
  'InvalidKeyUsageException',
  'InvalidArnException',
]);
const transient = new Set(['TimeoutError', 'AbortError', 'RequestTimeout', 'ThrottlingException', 'DependencyTimeoutException', 'KMSInternalException']);
const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Map an SDK failure to a registry error; the SDK's message stays in the cause, for the log only. */
export function classifyAwsError(err: unknown): AppError {
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  const name = e?.name ?? '';
  let code: 'KMS_ACCESS_DENIED' | 'MASTER_KEY_UNUSABLE' | 'KMS_UNAVAILABLE' | 'KMS_ERROR' = 'KMS_ERROR';
  if (status === 403 || accessDenied.has(name) || name === 'CredentialsProviderError') code = 'KMS_ACCESS_DENIED';
  else if (unusableKey.has(name)) code = 'MASTER_KEY_UNUSABLE';
  // Only what may pass by itself is "unavailable" (503 + Retry-After); misconfiguration is not.
  else if (transient.has(name) || networkCodes.has(e?.code ?? '') || (status !== undefined && (status >= 500 || status === 429))) {
    code = 'KMS_UNAVAILABLE';
  }
  return new AppError(code, undefined, { cause: err });
}

/**
 * The `aws` provider: data keys wrapped by AWS KMS Encrypt and unwrapped by Decrypt, with no
 * encryption context, exactly as MongoDB drivers do (adding one would lock drivers out of the keys).
 */
export function createAwsKms(options: AwsKmsOptions): KmsProvider<AwsMasterKey> & { destroy(): void; isHealthy(): boolean; regionsInUse(): string[] } {
  const configured = new Set([...options.regions, ...(options.replicaRegions ?? [])]);
  // Configured regions keep their client and breaker for the life of the process; there are as many
  // as the configuration names. Any other region (reachable only through a wildcard allow-list
  // entry) shares a small LRU, so no sequence of requests can make these grow without bound.
  const pinned = new Map<string, RegionClient>();
  const others = new LRUCache<string, RegionClient>({
    max: options.maxOtherRegions ?? DEFAULT_MAX_OTHER_REGIONS,
    dispose: (entry) => entry.retire(),
  });

  // Node's `ca` replaces its bundled roots: they are kept, so a private CA for one endpoint (a VPC
  // endpoint, an emulator) does not cut the service off from AWS's public ones in other regions.
  const httpsAgent = options.caCerts?.length ? { ca: [...rootCertificates, ...options.caCerts] } : undefined;

  function regionClient(region: string): RegionClient {
    const client = new KMSClient({
      region,
      endpoint: options.regionEndpoints?.[region] ?? options.endpoint,
      credentials: options.credentials,
      maxAttempts: options.maxAttempts,
      requestHandler: {
        connectionTimeout: Math.min(options.timeoutMs, 3000),
        requestTimeout: options.timeoutMs,
        ...(httpsAgent === undefined ? {} : { httpsAgent }),
      },
    });
    /**
     * A circuit breaker per region stops hammering a KMS that keeps failing: once half of the recent
     * calls failed transiently, calls fail fast (503, Retry-After) until one trial call succeeds.
     * Refusals (access denied, unusable key) are answers, not outages, and do not count.
     */
    const breaker = new CircuitBreaker(
      async (command: EncryptCommand | DecryptCommand) => {
        try {
          return await client.send(command as never, { abortSignal: AbortSignal.timeout(options.timeoutMs) });
        } catch (err) {
          throw classifyAwsError(err);
        }
      },
      {
        timeout: false,
        resetTimeout: options.breakerResetMs,
        errorThresholdPercentage: 50,
        volumeThreshold: 3,
        rollingCountTimeout: 10_000,
        errorFilter: (err: unknown) => !(isAppError(err) && err.code === 'KMS_UNAVAILABLE'),
      },
    );
    let inFlight = 0;
    let retired = false;
    const close = () => {
      breaker.shutdown();
      client.destroy();
    };
    return {
      breaker,
      async fire(command) {
        inFlight++;
        try {
          return await breaker.fire(command);
        } finally {
          // An entry evicted while calls were running closes once the last one is done.
          if (--inFlight === 0 && retired) close();
        }
      },
      retire() {
        retired = true;
        if (inFlight === 0) close();
      },
    };
  }

  function clientFor(region: string): RegionClient {
    let entry = pinned.get(region) ?? others.get(region);
    if (entry === undefined) {
      entry = regionClient(region);
      if (configured.has(region)) pinned.set(region, entry);
      else others.set(region, entry);
    }
    return entry;
  }

  async function send<T>(region: string, command: EncryptCommand | DecryptCommand): Promise<T> {
    try {
      return (await clientFor(region).fire(command)) as T;
    } catch (err) {
      if (isAppError(err)) throw err;
      if ((err as { code?: string }).code === 'EOPENBREAKER') {
        throw new AppError('KMS_UNAVAILABLE', 'KMS keeps failing: calls are paused for a few seconds.', { cause: err });
      }
      throw classifyAwsError(err);
    }
  }

  /**
   * Call KMS in the key's region; for a multi-region key, when that region is unavailable, call the
   * same key in each replica region in turn (the regional-outage procedure). Refusals are final.
   */
  async function inAnyRegion<T>(masterKey: AwsMasterKey, command: (keyId: string) => EncryptCommand | DecryptCommand): Promise<T> {
    const regions = isMultiRegion(masterKey.key)
      ? [masterKey.region, ...(options.replicaRegions ?? []).filter((r) => r !== masterKey.region)]
      : [masterKey.region];
    let lastError: unknown;
    for (const region of regions) {
      try {
        return await send<T>(region, command(inRegion(masterKey.key, region)));
      } catch (err) {
        if (!(isAppError(err) && err.code === 'KMS_UNAVAILABLE')) throw err;
        lastError = err;
      }
    }
    throw lastError;
  }

  return {
    async wrap(masterKey, dataKey) {
      const out = await inAnyRegion<{ CiphertextBlob?: Uint8Array }>(masterKey, (KeyId) => new EncryptCommand({ KeyId, Plaintext: dataKey }));
      if (out.CiphertextBlob === undefined) throw new AppError('KMS_ERROR');
      return Buffer.from(out.CiphertextBlob);
    },
    async unwrap(masterKey, keyMaterial) {
      // KeyId makes KMS check the ciphertext belongs to the key the document names.
      const out = await inAnyRegion<{ Plaintext?: Uint8Array }>(masterKey, (KeyId) => new DecryptCommand({ CiphertextBlob: keyMaterial, KeyId }));
      if (out.Plaintext === undefined) throw new AppError('KMS_ERROR');
      const plaintext = Buffer.from(out.Plaintext);
      out.Plaintext.fill(0);
      return plaintext;
    },
    destroy() {
      for (const entry of pinned.values()) entry.retire();
      pinned.clear();
      others.clear();
    },
    /**
     * False while the circuit of a configured region is open: KMS is known to be failing for the
     * keys the server is configured with. Other regions do not count: a key in an unlisted region
     * (under a wildcard entry) failing must not take every instance out of the load balancer.
     */
    isHealthy() {
      return [...pinned.values()].every((entry) => !entry.breaker.opened);
    },
    /** The regions that currently have a KMS client (and a breaker). */
    regionsInUse() {
      return [...pinned.keys(), ...others.keys()];
    },
  };
}

/**
 * The service's configuration: a JSON Schema over environment variables, checked at boot so that a
 * mistake stops the process with a message naming the variable instead of failing a request later.
 * This module never reads `process.env` itself; the config plugin hands it the environment.
 */
import { hkdfSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { envSchema } from 'env-schema';
import { KEY_LENGTH } from './crypto/aead.js';
import { isAllowedKeyPattern } from './kms/allowed-keys.js';

const schema = {
  type: 'object',
  properties: {
    HOST: { type: 'string', default: '127.0.0.1' },
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    MONGODB_URI: { type: 'string', pattern: '^mongodb(\\+srv)?://', default: 'mongodb://127.0.0.1:27017/' },
    MONGODB_SERVER_SELECTION_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 3000 },
    KEY_VAULT_NAMESPACE: { type: 'string', pattern: '^[^.$/\\\\ ]+\\.[^$]+$', default: 'encryption.__keyVault' },
    KEY_VAULT_URI: { type: 'string', pattern: '^mongodb(\\+srv)?://' },
    ADMIN_TOKEN: { type: 'string' },
    ADMIN_TOKEN_FILE: { type: 'string' },
    KMS_PROVIDERS: { type: 'string', pattern: '^(local|aws)(,(local|aws))*$', default: 'local' },
    LOCAL_MASTER_KEY: { type: 'string' },
    LOCAL_MASTER_KEY_FILE: { type: 'string' },
    AWS_KMS_ENDPOINT: { type: 'string', pattern: '^https?://' },
    AWS_KMS_ALLOWED_KEYS: { type: 'string', default: '' },
    AWS_KMS_REPLICA_REGIONS: { type: 'string', pattern: '^([a-z0-9-]+(,[a-z0-9-]+)*)?$', default: '' },
    AWS_KMS_REGION_ENDPOINTS: { type: 'string', pattern: '^([a-z0-9-]+=https?://[^,]+(,[a-z0-9-]+=https?://[^,]+)*)?$', default: '' },
    KMS_CA_FILE: { type: 'string', minLength: 1 },
    AWS_ACCESS_KEY_ID: { type: 'string' },
    AWS_SECRET_ACCESS_KEY: { type: 'string' },
    AWS_SESSION_TOKEN: { type: 'string' },
    KMS_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 5000 },
    KMS_MAX_ATTEMPTS: { type: 'integer', minimum: 1, maximum: 10, default: 3 },
    DATA_KEY_CACHE_TTL_MS: { type: 'integer', minimum: 1000, maximum: 86400000, default: 60000 },
    DATA_KEY_CACHE_MAX: { type: 'integer', minimum: 1, default: 1000 },
    BODY_LIMIT_BYTES: { type: 'integer', minimum: 1024, default: 1048576 },
    MAX_BATCH_ITEMS: { type: 'integer', minimum: 1, maximum: 100000, default: 10000 },
    SCHEMAS_DIR: { type: 'string' },
    CLIENTS_NAMESPACE: { type: 'string', pattern: '^[^.$/\\\\ ]+\\.[^$]+$', default: 'encryption.__clients' },
    AUTH_CACHE_TTL_MS: { type: 'integer', minimum: 0, maximum: 300000, default: 5000 },
    AUDIT_NAMESPACE: { type: 'string', pattern: '^[^.$/\\\\ ]+\\.[^$]+$', default: 'encryption.__audit' },
    AUDIT_URI: { type: 'string', pattern: '^mongodb(\\+srv)?://' },
    AUDIT_HMAC_KEY: { type: 'string' },
    AUDIT_HMAC_KEY_FILE: { type: 'string' },
    AUDIT_CHAIN_ID: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    AUDIT_MODE: { type: 'string', enum: ['spool', 'database'], default: 'spool' },
    AUDIT_SPOOL_DIR: { type: 'string', minLength: 1, default: 'data/audit-spool' },
    AUDIT_SPOOL_SYNC: { type: 'string', enum: ['fdatasync', 'none'], default: 'fdatasync' },
    AUDIT_SPOOL_MAX_BACKLOG: { type: 'integer', minimum: 100, default: 200000 },
    AUDIT_SPOOL_SEGMENT_BYTES: { type: 'integer', minimum: 65536, maximum: 1073741824, default: 16777216 },
    JWT_JWKS_FILE: { type: 'string' },
    JWT_JWKS_URL: { type: 'string', pattern: '^https?://' },
    JWT_ISSUER: { type: 'string' },
    JWT_AUDIENCE: { type: 'string' },
    TLS_CERT_FILE: { type: 'string' },
    TLS_KEY_FILE: { type: 'string' },
    TLS_CA_FILE: { type: 'string' },
    RATE_LIMIT_PER_MINUTE: { type: 'integer', minimum: 1, default: 6000 },
    AUTH_FAILURES_PER_MINUTE: { type: 'integer', minimum: 1, default: 30 },
    TRUST_PROXY: { type: 'string', pattern: '^([0-9a-fA-F.:/]+(,[0-9a-fA-F.:/]+)*)?$', default: '' },
    REQUEST_TIMEOUT_MS: { type: 'integer', minimum: 1000, default: 30000 },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 10000 },
    MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, default: 1000 },
    MAX_HEAP_USED_BYTES: { type: 'integer', minimum: 0, default: 402653184 },
    KMS_BREAKER_RESET_MS: { type: 'integer', minimum: 100, default: 10000 },
    IDEMPOTENCY_TTL_MS: { type: 'integer', minimum: 1000, default: 86400000 },
    MAX_FIND_LIMIT: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 },
    FLEET_POLL_MS: { type: 'integer', minimum: 20, maximum: 1000, default: 200 },
    FLEET_MAX_LAG_MS: { type: 'integer', minimum: 100, maximum: 60000, default: 1000 },
    JOB_LEASE_MS: { type: 'integer', minimum: 1000, maximum: 600000, default: 15000 },
    KEY_TRASH_RETENTION_MS: { type: 'integer', minimum: 1000, default: 604800000 },
    KEY_ROTATION_PERIOD_DAYS: { type: 'integer', minimum: 0, maximum: 36500, default: 365 },
  },
} as const;

interface RawEnv {
  HOST: string;
  PORT: number;
  LOG_LEVEL: string;
  MONGODB_URI: string;
  MONGODB_SERVER_SELECTION_TIMEOUT_MS: number;
  KEY_VAULT_NAMESPACE: string;
  KEY_VAULT_URI?: string;
  ADMIN_TOKEN?: string;
  ADMIN_TOKEN_FILE?: string;
  KMS_PROVIDERS: string;
  LOCAL_MASTER_KEY?: string;
  LOCAL_MASTER_KEY_FILE?: string;
  AWS_KMS_ENDPOINT?: string;
  AWS_KMS_ALLOWED_KEYS: string;
  AWS_KMS_REPLICA_REGIONS: string;
  AWS_KMS_REGION_ENDPOINTS: string;
  KMS_CA_FILE?: string;
  AWS_ACCESS_KEY_ID?: string;
  AWS_SECRET_ACCESS_KEY?: string;
  AWS_SESSION_TOKEN?: string;
  KMS_TIMEOUT_MS: number;
  KMS_MAX_ATTEMPTS: number;
  DATA_KEY_CACHE_TTL_MS: number;
  DATA_KEY_CACHE_MAX: number;
  BODY_LIMIT_BYTES: number;
  MAX_BATCH_ITEMS: number;
  SCHEMAS_DIR?: string;
  CLIENTS_NAMESPACE: string;
  AUTH_CACHE_TTL_MS: number;
  AUDIT_NAMESPACE: string;
  AUDIT_URI?: string;
  AUDIT_HMAC_KEY?: string;
  AUDIT_HMAC_KEY_FILE?: string;
  AUDIT_CHAIN_ID?: string;
  AUDIT_MODE: 'spool' | 'database';
  AUDIT_SPOOL_DIR: string;
  AUDIT_SPOOL_SYNC: 'fdatasync' | 'none';
  AUDIT_SPOOL_MAX_BACKLOG: number;
  AUDIT_SPOOL_SEGMENT_BYTES: number;
  JWT_JWKS_FILE?: string;
  JWT_JWKS_URL?: string;
  JWT_ISSUER?: string;
  JWT_AUDIENCE?: string;
  TLS_CERT_FILE?: string;
  TLS_KEY_FILE?: string;
  TLS_CA_FILE?: string;
  RATE_LIMIT_PER_MINUTE: number;
  AUTH_FAILURES_PER_MINUTE: number;
  TRUST_PROXY: string;
  REQUEST_TIMEOUT_MS: number;
  SHUTDOWN_TIMEOUT_MS: number;
  MAX_EVENT_LOOP_DELAY_MS: number;
  MAX_HEAP_USED_BYTES: number;
  KMS_BREAKER_RESET_MS: number;
  IDEMPOTENCY_TTL_MS: number;
  MAX_FIND_LIMIT: number;
  FLEET_POLL_MS: number;
  FLEET_MAX_LAG_MS: number;
  JOB_LEASE_MS: number;
  KEY_TRASH_RETENTION_MS: number;
  KEY_ROTATION_PERIOD_DAYS: number;
}

export interface Config {
  host: string;
  port: number;
  logLevel: string;
  mongodbUri: string;
  serverSelectionTimeoutMs: number;
  /** The key vault, and beside it (same database) the trash its deleted keys wait in. */
  keyVault: { uri: string; db: string; collection: string; trashCollection: string };
  /** How long a deleted data key stays restorable before the sweep purges it. */
  keyTrash: { retentionMs: number };
  /** Data keys wrapped longer ago than this are due for a rewrap (metric, daily warning, report default); 0: no reminders. */
  keyRotation: { periodDays: number };
  adminToken: string;
  kms: {
    localMasterKey?: Buffer;
    aws?: {
      endpoint?: string;
      credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
      allowedKeys: string[];
      replicaRegions: string[];
      regionEndpoints: Record<string, string>;
      /**
       * PEM certificates of the CAs a KMS endpoint's certificate may also chain to (a private CA in
       * front of a VPC endpoint or an emulator), trusted besides Node's bundled public roots.
       */
      caCerts?: string[];
    };
    timeoutMs: number;
    maxAttempts: number;
    breakerResetMs: number;
  };
  dataKeyCache: { ttlMs: number; maxEntries: number };
  bodyLimitBytes: number;
  maxBatchItems: number;
  /** Where the per-collection CSFLE schemas are; `required` when set explicitly. */
  schemas: { dir: string; required: boolean };
  maxFindLimit: number;
  clients: { db: string; collection: string; cacheTtlMs: number };
  audit: {
    uri: string;
    db: string;
    collection: string;
    hmacKey: Buffer;
    /** Of a new spool, or (database mode) of this process; generated when absent. */
    chainId?: string;
    /** Where events are made durable before a request is answered (see src/audit/audit-trail.ts). */
    mode: 'spool' | 'database';
    spool: { dir: string; sync: 'fdatasync' | 'none'; maxBacklog: number; segmentBytes: number };
  };
  jwt?: { jwksFile?: string; jwksUrl?: string; issuer: string; audience: string };
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer };
  rateLimitPerMinute: number;
  /** Failed authentications a source address may have per minute before it is refused (429). */
  authFailuresPerMinute: number;
  /**
   * Addresses (or CIDR ranges) of the load balancers in front: their X-Forwarded-For names the
   * client, so per-address limits count clients, not the balancer. Empty: trust no one.
   */
  trustProxy: string[];
  requestTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** Load shedding thresholds; 0 turns one off. */
  pressure: { maxEventLoopDelayMs: number; maxHeapUsedBytes: number };
  idempotencyTtlMs: number;
  /**
   * The change feed (src/fleet/change-feed.ts): read every `pollMs`; caches are not trusted when it
   * was last read up to its head more than `maxLagMs` ago.
   */
  fleet: { pollMs: number; maxLagMs: number };
  /** A background job's lease: renewed every third of it; another instance takes the job over once it lapses. */
  jobs: { leaseMs: number };
}

function splitNamespace(namespace: string): { db: string; collection: string } {
  const dot = namespace.indexOf('.');
  return { db: namespace.slice(0, dot), collection: namespace.slice(dot + 1) };
}

/**
 * The key of the audit chain's HMAC: given, or (for development) derived from the local master key
 * so that nothing more needs configuring. Production should set its own: the derived key changes
 * when the local master key does.
 */
function auditKey(raw: RawEnv, localMasterKey: Buffer | undefined): Buffer {
  if (raw.AUDIT_HMAC_KEY !== undefined && raw.AUDIT_HMAC_KEY_FILE !== undefined) throw new ConfigError('set AUDIT_HMAC_KEY or AUDIT_HMAC_KEY_FILE, not both');
  const text = raw.AUDIT_HMAC_KEY ?? (raw.AUDIT_HMAC_KEY_FILE === undefined ? undefined : readSecretFile(raw.AUDIT_HMAC_KEY_FILE, 'AUDIT_HMAC_KEY_FILE').toString('utf8'));
  if (text !== undefined) {
    const key = Buffer.from(text.trim(), 'base64');
    if (key.length < 32) throw new ConfigError(`${raw.AUDIT_HMAC_KEY !== undefined ? 'AUDIT_HMAC_KEY' : 'AUDIT_HMAC_KEY_FILE'} must hold at least 32 bytes, base64-encoded`);
    return key;
  }
  if (localMasterKey === undefined) throw new ConfigError('set AUDIT_HMAC_KEY (32+ random bytes, base64): it keys the audit trail chain');
  return Buffer.from(hkdfSync('sha256', localMasterKey, Buffer.alloc(0), 'encryption-proxy audit chain', 32));
}

function tlsFiles(raw: RawEnv): Config['tls'] {
  if (raw.TLS_CERT_FILE === undefined && raw.TLS_KEY_FILE === undefined) {
    if (raw.TLS_CA_FILE !== undefined) throw new ConfigError('TLS_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE');
    return undefined;
  }
  if (raw.TLS_CERT_FILE === undefined || raw.TLS_KEY_FILE === undefined) throw new ConfigError('set both TLS_CERT_FILE and TLS_KEY_FILE');
  const tls: NonNullable<Config['tls']> = {
    cert: readSecretFile(raw.TLS_CERT_FILE, 'TLS_CERT_FILE'),
    key: readSecretFile(raw.TLS_KEY_FILE, 'TLS_KEY_FILE'),
  };
  if (raw.TLS_CA_FILE !== undefined) tls.ca = readSecretFile(raw.TLS_CA_FILE, 'TLS_CA_FILE');
  return tls;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function decodeMasterKey(text: string, variable: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== KEY_LENGTH) throw new ConfigError(`${variable} must be ${KEY_LENGTH} bytes, base64-encoded`);
  return key;
}

function readSecretFile(path: string, variable: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    throw new ConfigError(`${variable} cannot be read: ${path}`);
  }
}

function readAdminToken(raw: RawEnv): string {
  if (raw.ADMIN_TOKEN !== undefined && raw.ADMIN_TOKEN_FILE !== undefined) throw new ConfigError('set ADMIN_TOKEN or ADMIN_TOKEN_FILE, not both');
  const token = raw.ADMIN_TOKEN ?? (raw.ADMIN_TOKEN_FILE === undefined ? undefined : readSecretFile(raw.ADMIN_TOKEN_FILE, 'ADMIN_TOKEN_FILE').toString('utf8').trim());
  if (token === undefined) throw new ConfigError('set ADMIN_TOKEN (or ADMIN_TOKEN_FILE): the bearer token of the operator');
  if (token.length < 24 || !/^[\x21-\x7e]+$/.test(token)) {
    throw new ConfigError(`${raw.ADMIN_TOKEN !== undefined ? 'ADMIN_TOKEN' : 'ADMIN_TOKEN_FILE'} must hold at least 24 printable characters, no spaces`);
  }
  return token;
}

function readMasterKeyFile(path: string): Buffer {
  const content = readSecretFile(path, 'LOCAL_MASTER_KEY_FILE');
  // Either the raw 96 bytes (as drivers' examples write them) or their base64 text.
  return content.length === KEY_LENGTH ? content : decodeMasterKey(content.toString('utf8'), 'LOCAL_MASTER_KEY_FILE');
}

/**
 * The KMS keys clients may name. Required with the aws provider: without a list, clients would
 * choose which keys and regions the server reaches (and how many KMS clients it keeps).
 */
function allowedAwsKeys(text: string): string[] {
  const entries = [...new Set(text.split(',').map((s) => s.trim()).filter(Boolean))];
  if (entries.length === 0) {
    throw new ConfigError(
      'KMS_PROVIDERS includes aws: set AWS_KMS_ALLOWED_KEYS to the KMS key ARNs clients may name (comma-separated; * within a field, e.g. arn:aws:kms:eu-west-1:111122223333:key/*), or to * for any key',
    );
  }
  entries.forEach((entry, i) => {
    if (!isAllowedKeyPattern(entry)) throw new ConfigError(`AWS_KMS_ALLOWED_KEYS entry ${i + 1} is not a KMS key or alias ARN (pattern) nor *`);
  });
  return entries;
}

/**
 * The CA certificates of KMS_CA_FILE, each checked to be a CA certificate: a file that holds none
 * (a key, a leaf, a typo'd path) stops the boot instead of failing every KMS call at TLS time.
 */
function readCaFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`KMS_CA_FILE cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new ConfigError('KMS_CA_FILE holds no PEM certificate');
  pems.forEach((pem, i) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      throw new ConfigError(`KMS_CA_FILE certificate ${i + 1} cannot be parsed`);
    }
    if (!cert.ca) throw new ConfigError(`KMS_CA_FILE certificate ${i + 1} (${cert.subject.replaceAll('\n', ', ')}) is not a CA certificate`);
  });
  return pems;
}

function jwtSettings(raw: RawEnv): Config['jwt'] {
  if (raw.JWT_JWKS_FILE === undefined && raw.JWT_JWKS_URL === undefined) {
    if (raw.JWT_ISSUER !== undefined || raw.JWT_AUDIENCE !== undefined) throw new ConfigError('JWT_ISSUER and JWT_AUDIENCE need JWT_JWKS_FILE or JWT_JWKS_URL');
    return undefined;
  }
  if (raw.JWT_JWKS_FILE !== undefined && raw.JWT_JWKS_URL !== undefined) throw new ConfigError('set JWT_JWKS_FILE or JWT_JWKS_URL, not both');
  // An identity provider signs tokens for many services: without both checks, a token it issued
  // for another audience (or a key set shared by several issuers) would be accepted here.
  const missing = (['JWT_ISSUER', 'JWT_AUDIENCE'] as const).filter((name) => raw[name] === undefined || raw[name].trim() === '');
  if (missing.length > 0) throw new ConfigError(`JWT authentication is on (${raw.JWT_JWKS_FILE !== undefined ? 'JWT_JWKS_FILE' : 'JWT_JWKS_URL'}): set ${missing.join(' and ')}`);
  return { jwksFile: raw.JWT_JWKS_FILE, jwksUrl: raw.JWT_JWKS_URL, issuer: raw.JWT_ISSUER!, audience: raw.JWT_AUDIENCE! };
}

/** Check the environment and turn it into the service configuration; throws `ConfigError`. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  let raw: RawEnv;
  try {
    raw = envSchema<RawEnv>({ schema: structuredClone(schema) as never, data: { ...env }, env: false, dotenv: false });
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }

  if (raw.FLEET_MAX_LAG_MS < 2 * raw.FLEET_POLL_MS) {
    throw new ConfigError('FLEET_MAX_LAG_MS must be at least twice FLEET_POLL_MS: otherwise caches would lapse between two ordinary polls');
  }
  const providers = new Set(raw.KMS_PROVIDERS.split(','));
  const kms: Config['kms'] = { timeoutMs: raw.KMS_TIMEOUT_MS, maxAttempts: raw.KMS_MAX_ATTEMPTS, breakerResetMs: raw.KMS_BREAKER_RESET_MS };
  if (providers.has('local')) {
    if (raw.LOCAL_MASTER_KEY !== undefined && raw.LOCAL_MASTER_KEY_FILE !== undefined) {
      throw new ConfigError('set LOCAL_MASTER_KEY or LOCAL_MASTER_KEY_FILE, not both');
    }
    if (raw.LOCAL_MASTER_KEY !== undefined) kms.localMasterKey = decodeMasterKey(raw.LOCAL_MASTER_KEY, 'LOCAL_MASTER_KEY');
    else if (raw.LOCAL_MASTER_KEY_FILE !== undefined) kms.localMasterKey = readMasterKeyFile(raw.LOCAL_MASTER_KEY_FILE);
    else throw new ConfigError('KMS_PROVIDERS includes local: set LOCAL_MASTER_KEY or LOCAL_MASTER_KEY_FILE');
  }
  if (providers.has('aws')) {
    const aws: NonNullable<Config['kms']['aws']> = {
      allowedKeys: allowedAwsKeys(raw.AWS_KMS_ALLOWED_KEYS),
      replicaRegions: raw.AWS_KMS_REPLICA_REGIONS.split(',').filter(Boolean),
      regionEndpoints: Object.fromEntries(raw.AWS_KMS_REGION_ENDPOINTS.split(',').filter(Boolean).map((pair) => pair.split('=') as [string, string])),
    };
    if (raw.AWS_KMS_ENDPOINT !== undefined) aws.endpoint = raw.AWS_KMS_ENDPOINT;
    if (raw.KMS_CA_FILE !== undefined) aws.caCerts = readCaFile(raw.KMS_CA_FILE);
    if ((raw.AWS_ACCESS_KEY_ID === undefined) !== (raw.AWS_SECRET_ACCESS_KEY === undefined)) {
      throw new ConfigError('set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (to use the default credential chain)');
    }
    if (raw.AWS_ACCESS_KEY_ID !== undefined && raw.AWS_SECRET_ACCESS_KEY !== undefined) {
      aws.credentials = { accessKeyId: raw.AWS_ACCESS_KEY_ID, secretAccessKey: raw.AWS_SECRET_ACCESS_KEY };
      if (raw.AWS_SESSION_TOKEN !== undefined) aws.credentials.sessionToken = raw.AWS_SESSION_TOKEN;
    }
    kms.aws = aws;
  }

  const dot = raw.KEY_VAULT_NAMESPACE.indexOf('.');
  return {
    host: raw.HOST,
    port: raw.PORT,
    logLevel: raw.LOG_LEVEL,
    mongodbUri: raw.MONGODB_URI,
    serverSelectionTimeoutMs: raw.MONGODB_SERVER_SELECTION_TIMEOUT_MS,
    keyVault: {
      uri: raw.KEY_VAULT_URI ?? raw.MONGODB_URI,
      db: raw.KEY_VAULT_NAMESPACE.slice(0, dot),
      collection: raw.KEY_VAULT_NAMESPACE.slice(dot + 1),
      trashCollection: `${raw.KEY_VAULT_NAMESPACE.slice(dot + 1)}Trash`,
    },
    keyTrash: { retentionMs: raw.KEY_TRASH_RETENTION_MS },
    keyRotation: { periodDays: raw.KEY_ROTATION_PERIOD_DAYS },
    adminToken: readAdminToken(raw),
    kms,
    dataKeyCache: { ttlMs: raw.DATA_KEY_CACHE_TTL_MS, maxEntries: raw.DATA_KEY_CACHE_MAX },
    bodyLimitBytes: raw.BODY_LIMIT_BYTES,
    maxBatchItems: raw.MAX_BATCH_ITEMS,
    schemas: { dir: raw.SCHEMAS_DIR ?? 'schemas/collections', required: raw.SCHEMAS_DIR !== undefined },
    maxFindLimit: raw.MAX_FIND_LIMIT,
    clients: { ...splitNamespace(raw.CLIENTS_NAMESPACE), cacheTtlMs: raw.AUTH_CACHE_TTL_MS },
    audit: {
      uri: raw.AUDIT_URI ?? raw.MONGODB_URI,
      ...splitNamespace(raw.AUDIT_NAMESPACE),
      hmacKey: auditKey(raw, kms.localMasterKey),
      ...(raw.AUDIT_CHAIN_ID !== undefined ? { chainId: raw.AUDIT_CHAIN_ID } : {}),
      mode: raw.AUDIT_MODE,
      spool: { dir: raw.AUDIT_SPOOL_DIR, sync: raw.AUDIT_SPOOL_SYNC, maxBacklog: raw.AUDIT_SPOOL_MAX_BACKLOG, segmentBytes: raw.AUDIT_SPOOL_SEGMENT_BYTES },
    },
    ...(jwtSettings(raw) ? { jwt: jwtSettings(raw) } : {}),
    ...(tlsFiles(raw) ? { tls: tlsFiles(raw) } : {}),
    rateLimitPerMinute: raw.RATE_LIMIT_PER_MINUTE,
    authFailuresPerMinute: raw.AUTH_FAILURES_PER_MINUTE,
    trustProxy: raw.TRUST_PROXY.split(',').map((s) => s.trim()).filter(Boolean),
    requestTimeoutMs: raw.REQUEST_TIMEOUT_MS,
    shutdownTimeoutMs: raw.SHUTDOWN_TIMEOUT_MS,
    pressure: { maxEventLoopDelayMs: raw.MAX_EVENT_LOOP_DELAY_MS, maxHeapUsedBytes: raw.MAX_HEAP_USED_BYTES },
    idempotencyTtlMs: raw.IDEMPOTENCY_TTL_MS,
    fleet: { pollMs: raw.FLEET_POLL_MS, maxLagMs: raw.FLEET_MAX_LAG_MS },
    jobs: { leaseMs: raw.JOB_LEASE_MS },
  };
}

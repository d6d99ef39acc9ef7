import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { MongoClient } from 'mongodb';
import { buildApp } from '../../src/plugins/app.js';
import { loadConfig } from '../../src/config.js';
import { stack } from './stack.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

/**
 * For the scan that proves no secret reaches a log (scripts/scan-logs.mjs, run by npm test): every
 * log line a test app writes, and every secret it meets (tokens, master keys, plaintext canaries),
 * go to files under TEST_LOG_DIR.
 */
const logDir = process.env.TEST_LOG_DIR;
const fileBase = logDir ? join(logDir, `${process.pid}-${randomBytes(4).toString('hex')}`) : undefined;
if (logDir) mkdirSync(logDir, { recursive: true });

export function recordSecret(secret: string): void {
  if (fileBase && secret.length >= 8) appendFileSync(`${fileBase}.secrets`, `${secret}\n`);
}

function recordLogLine(line: string): void {
  if (fileBase) appendFileSync(`${fileBase}.log`, line.endsWith('\n') ? line : `${line}\n`);
}

/** Plaintext canaries in request bodies, and tokens in responses, are secrets for the scan. */
function recordSecretsOf(body: unknown, response: string): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body ?? '');
  for (const canary of text.match(/CANARY[-A-Za-z0-9_]*/g) ?? []) recordSecret(canary);
  for (const token of response.match(/epx_[0-9a-f]{32}_[A-Za-z0-9_-]+/g) ?? []) recordSecret(token);
}

export interface TestApp {
  app: FastifyInstance;
  /** The raw driver, to look at what really reached the database. */
  mongo: MongoClient;
  keyVaultDb: string;
  localMasterKey: Buffer;
  auditKey: Buffer;
  env: Record<string, string>;
  logs: string[];
  /** inject() with the admin token and a JSON body. */
  call(method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
}

interface TestAppOptions {
  env?: Record<string, string>;
  /** Reuse a key vault database (and local master key) of another test app. */
  share?: TestApp;
  /**
   * Add the AWS provider with the moto endpoint and these credentials; the allow-list holds the two
   * moto keys (set AWS_KMS_ALLOWED_KEYS in `env` for others).
   */
  aws?: { accessKeyId: string; secretAccessKey: string };
}

/**
 * A fresh app on the real servers with its own key vault database, torn down with the test.
 * `t` is a tap test; teardown drops the database unless another app shares it.
 */
export async function createTestApp(
  t: { teardown(fn: () => unknown): void },
  options: TestAppOptions = {},
): Promise<TestApp> {
  const keyVaultDb = options.share?.keyVaultDb ?? `test_${randomBytes(6).toString('hex')}`;
  const localMasterKey = options.share?.localMasterKey ?? randomBytes(96);
  const auditKey = options.share?.auditKey ?? randomBytes(32);
  // Each app is an instance with its own audit spool, as each instance of a fleet has.
  const spoolDir = mkdtempSync(join(tmpdir(), 'audit-spool-'));
  const env: Record<string, string> = {
    MONGODB_URI: stack.mongodbUri,
    AUDIT_SPOOL_DIR: spoolDir,
    KEY_VAULT_NAMESPACE: `${keyVaultDb}.__keyVault`,
    CLIENTS_NAMESPACE: `${keyVaultDb}.__clients`,
    AUDIT_HMAC_KEY: auditKey.toString('base64'),
    AUDIT_NAMESPACE: `${keyVaultDb}.__audit`,
    ADMIN_TOKEN,
    LOCAL_MASTER_KEY: localMasterKey.toString('base64'),
    LOG_LEVEL: 'info',
    // Test processes share two cores with the servers and each other, so event-loop delay says
    // more about the machine than the app: shedding has its own test (test/plugins/hardening.test.ts).
    MAX_EVENT_LOOP_DELAY_MS: '0',
    // Likewise the heap: a test file holds many apps in one process (hardening.test.ts tests shedding).
    MAX_HEAP_USED_BYTES: '0',
    ...(options.aws
      ? {
          KMS_PROVIDERS: 'local,aws',
          AWS_KMS_ENDPOINT: stack.kmsEndpoint,
          AWS_ACCESS_KEY_ID: options.aws.accessKeyId,
          AWS_SECRET_ACCESS_KEY: options.aws.secretAccessKey,
          AWS_KMS_ALLOWED_KEYS: `${stack.keyArn},${stack.keyArn2}`,
          KMS_MAX_ATTEMPTS: '1',
        }
      : {}),
    ...options.env,
  };
  const logs: string[] = [];
  const app = await buildApp(loadConfig(env), {
    logStream: {
      write(line: string) {
        logs.push(line);
        recordLogLine(line);
      },
    },
  });
  recordSecret(ADMIN_TOKEN);
  recordSecret(localMasterKey.toString('base64'));
  recordSecret(auditKey.toString('base64'));
  const mongo = new MongoClient(stack.mongodbUri);
  t.teardown(async () => {
    await app.close();
    if (!options.share) await mongo.db(keyVaultDb).dropDatabase();
    await mongo.close();
    if (env.AUDIT_SPOOL_DIR === spoolDir) rmSync(spoolDir, { recursive: true, force: true });
  });
  return {
    app,
    mongo,
    keyVaultDb,
    localMasterKey,
    auditKey,
    env,
    logs,
    async call(method, url, body, headers = {}) {
      const response = await app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
        ...(body === undefined ? {} : { payload: body as InjectOptions['payload'] }),
      });
      recordSecretsOf(body, response.body);
      return response;
    },
  };
}

/** The raw key documents in a test app's key vault. */
export function keyVaultDocs(testApp: TestApp) {
  return testApp.mongo.db(testApp.keyVaultDb).collection<Record<string, any>>('__keyVault').find({}).toArray();
}

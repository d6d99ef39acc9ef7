import { randomBytes } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { MongoClient } from 'mongodb';
import { buildApp } from '../../src/plugins/app.js';
import { loadConfig } from '../../src/config.js';
import { stack } from './stack.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

/** Every log line any test app wrote, for the scan that proves no secret reaches a log. */
export const capturedLogs: string[] = [];

export interface TestApp {
  app: FastifyInstance;
  /** The raw driver, to look at what really reached the database. */
  mongo: MongoClient;
  keyVaultDb: string;
  localMasterKey: Buffer;
  env: Record<string, string>;
  logs: string[];
  /** inject() with the admin token and a JSON body. */
  call(method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
}

interface TestAppOptions {
  env?: Record<string, string>;
  /** Reuse a key vault database (and local master key) of another test app. */
  share?: TestApp;
  /** Add the AWS provider with the moto endpoint and these credentials. */
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
  const env: Record<string, string> = {
    MONGODB_URI: stack.mongodbUri,
    KEY_VAULT_NAMESPACE: `${keyVaultDb}.__keyVault`,
    ADMIN_TOKEN,
    LOCAL_MASTER_KEY: localMasterKey.toString('base64'),
    LOG_LEVEL: 'info',
    ...(options.aws
      ? {
          KMS_PROVIDERS: 'local,aws',
          AWS_KMS_ENDPOINT: stack.kmsEndpoint,
          AWS_ACCESS_KEY_ID: options.aws.accessKeyId,
          AWS_SECRET_ACCESS_KEY: options.aws.secretAccessKey,
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
        capturedLogs.push(line);
      },
    },
  });
  const mongo = new MongoClient(stack.mongodbUri);
  t.teardown(async () => {
    await app.close();
    if (!options.share) await mongo.db(keyVaultDb).dropDatabase();
    await mongo.close();
  });
  return {
    app,
    mongo,
    keyVaultDb,
    localMasterKey,
    env,
    logs,
    call(method, url, body, headers = {}) {
      return app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
        ...(body === undefined ? {} : { payload: body as InjectOptions['payload'] }),
      });
    },
  };
}

/** The raw key documents in a test app's key vault. */
export function keyVaultDocs(testApp: TestApp) {
  return testApp.mongo.db(testApp.keyVaultDb).collection<Record<string, any>>('__keyVault').find({}).toArray();
}

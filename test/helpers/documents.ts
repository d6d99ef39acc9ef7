import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestApp, type TestApp } from './app.js';

export const DET = 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic';
export const RND = 'AEAD_AES_256_CBC_HMAC_SHA_512-Random';

/** The employees schema the documents tests share: every kind of rule the product supports. */
export function employeesSchema(randomKeyId: string) {
  return {
    bsonType: 'object',
    required: ['name', 'ssn', 'tenantKey'],
    additionalProperties: false,
    properties: {
      _id: {},
      name: { bsonType: 'string', maxLength: 100 },
      tenantKey: { bsonType: 'string' },
      level: { bsonType: 'int', minimum: 1 },
      ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
      badge: { encrypt: { bsonType: 'int', algorithm: DET, keyAltName: 'hr-det' } },
      salary: { encrypt: { bsonType: 'int', algorithm: RND, keyId: [{ $uuid: randomKeyId }] } },
      medical: {
        bsonType: 'object',
        encryptMetadata: { algorithm: RND, keyId: [{ $uuid: randomKeyId }] },
        properties: {
          diagnosis: { encrypt: { bsonType: 'string' } },
          allergies: { encrypt: { bsonType: 'array' } },
          ward: { bsonType: 'string' },
        },
      },
      tenantSecret: { encrypt: { bsonType: 'string', algorithm: RND, keyId: '/tenantKey' } },
    },
    patternProperties: {
      '^note_': { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'hr-rnd' } },
    },
  };
}

export interface DocumentsTestApp extends TestApp {
  ns: string;
  keys: Record<string, string>;
  schemasDir: string;
}

/**
 * Keys first (hr-det, hr-rnd, tenant-a, tenant-b), then an app that boots with the employees
 * schema: schemas are checked against the key vault at start-up. `options.env` is added to that
 * app's environment (JWT settings, limits).
 */
export async function createDocumentsApp(
  t: { teardown(fn: () => unknown): void },
  schemaFor?: (keys: Record<string, string>) => unknown,
  options: { env?: Record<string, string> } = {},
) {
  const setup = await createTestApp(t);
  const keys: Record<string, string> = {};
  for (const name of ['hr-det', 'hr-rnd', 'tenant-a', 'tenant-b']) {
    const res = await setup.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
    if (res.statusCode !== 201) throw new Error(`creating key ${name}: ${res.statusCode} ${res.body}`);
    keys[name] = res.json().id;
  }
  const schemasDir = mkdtempSync(join(tmpdir(), 'schemas-'));
  const ns = `${setup.keyVaultDb}.employees`;
  writeFileSync(join(schemasDir, `${ns}.json`), JSON.stringify(schemaFor ? schemaFor(keys) : employeesSchema(keys['hr-rnd']!), null, 2));
  const app = await createTestApp(t, { share: setup, env: { ...options.env, SCHEMAS_DIR: schemasDir } });
  return { ...app, ns, keys, schemasDir } as DocumentsTestApp;
}

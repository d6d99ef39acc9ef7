/**
 * Apps for the fault tests: like test/helpers/documents.ts's createDocumentsApp, but on a MongoDB
 * of the test's own (the helper always uses the shared stack), with a raw client on that server.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient, BSON } from 'mongodb';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { employeesSchema } from '../helpers/documents.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface FaultDocumentsApp extends TestApp {
  ns: string;
  url: string;
  keys: Record<string, string>;
  /** A raw client on the test's own server (TestApp.mongo is on the shared stack's). */
  raw: MongoClient;
}

/**
 * Keys (hr-det, hr-rnd, tenant-a, tenant-b) created through a first app, then the app under test
 * booted with the employees schema; both talk to `mongodbUri`. `env` goes to both.
 */
export async function createFaultDocumentsApp(t: Teardown, mongodbUri: string, env: Record<string, string> = {}): Promise<FaultDocumentsApp> {
  const raw = new MongoClient(mongodbUri, { serverSelectionTimeoutMS: 5000 });
  t.teardown(() => raw.close());
  const setup = await createTestApp(t, { env: { MONGODB_URI: mongodbUri, ...env } });
  const keys: Record<string, string> = {};
  for (const name of ['hr-det', 'hr-rnd', 'tenant-a', 'tenant-b']) {
    const res = await setup.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [name] });
    if (res.statusCode !== 201) throw new Error(`creating key ${name}: ${res.statusCode} ${res.body}`);
    keys[name] = res.json().id;
  }
  const schemasDir = mkdtempSync(join(tmpdir(), 'fault-schemas-'));
  t.teardown(() => rmSync(schemasDir, { recursive: true, force: true }));
  const ns = `${setup.keyVaultDb}.employees`;
  writeFileSync(join(schemasDir, `${ns}.json`), JSON.stringify(employeesSchema(keys['hr-rnd']!), null, 2));
  const app = await createTestApp(t, { share: setup, env: { MONGODB_URI: mongodbUri, SCHEMAS_DIR: schemasDir, ...env } });
  return { ...app, ns, url: `/documents/${ns}`, keys, raw };
}

/** An employee whose every encrypted field holds a distinctive canary. */
export function canaryEmployee(run: string, i: number) {
  return {
    name: `employee-${run}-${i}`,
    tenantKey: 'tenant-a',
    ssn: `CANARY-SSN-${run}-${i}`,
    badge: { $numberInt: String(1000 + i) },
    salary: { $numberInt: String(50_000 + i) },
    medical: { diagnosis: `CANARY-DX-${run}-${i}`, ward: 'north' },
    tenantSecret: `CANARY-TS-${run}-${i}`,
  };
}

/** The encrypted fields of a raw employee document, by path. */
export function encryptedFieldsOf(doc: Record<string, any>): Record<string, unknown> {
  return {
    ssn: doc.ssn,
    badge: doc.badge,
    salary: doc.salary,
    'medical.diagnosis': doc.medical?.diagnosis,
    tenantSecret: doc.tenantSecret,
  };
}

export function isCiphertext(value: unknown): boolean {
  const v = value as { _bsontype?: string; sub_type?: number } | null | undefined;
  return v?._bsontype === 'Binary' && v.sub_type === 6;
}

/** True when any raw document, serialised to BSON, contains the bytes of `needle`. */
export function rawBytesContain(docs: Record<string, unknown>[], needle: string): boolean {
  const bytes = Buffer.from(needle, 'utf8');
  return docs.some((doc) => Buffer.from(BSON.serialize(doc)).includes(bytes));
}

/**
 * A test app set up as the spec tests' clients are: the spec's local master key, and the moto AWS
 * KMS standing in for MongoDB's own AWS account (see `mapAwsArn`).
 */
import { Binary, UUID, type Document } from 'mongodb';
import { createTestApp, recordSecret, type TestApp } from '../../helpers/app.js';
import { stack } from '../../helpers/stack.js';

/** The 96-byte local master key of the client-side encryption spec tests' README. */
export const SPEC_LOCAL_MASTER_KEY =
  'Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk';

/**
 * The data key behind the legacy tests' AWS-wrapped key (_id AAAAAAAAAAAAAAAAAAAAAA==). It is public:
 * libmongocrypt's test-data script (mongodb/libmongocrypt) encrypts exactly these bytes with the CMK,
 * and they decrypt the spec files' ciphertexts. Knowing them lets the key be wrapped by moto's CMK
 * instead, so the spec's own ciphertexts stay readable.
 */
export const SPEC_AWS_DATA_KEY =
  'TqhXy3tKckECjy4/ZNykMWG8amBF46isVPzeOgeusKrwheBmYaU8TMG5AHR/NeUDKukqo8hBGgogiQOVpLPkqBQHD8YkLsNbDmHoGOill5QAHnniF/Lz405bGucB5TfR';

/** MongoDB's CMKs named by the spec tests, and the moto CMK each stands for here. */
const SPEC_CMKS: Record<string, () => string> = {
  '89fcc2c4-08b0-4bd9-9f25-e30687b580d0': () => stack.keyArn,
  '061334ae-07a8-4ceb-a813-8135540e837d': () => stack.keyArn2,
};

/**
 * The moto ARN for a spec ARN of MongoDB's AWS account, keeping the region the spec wrote (a spec ARN
 * in another region stays a key that does not exist there). Other values pass unchanged.
 */
export function mapAwsArn(arn: string): string {
  const m = /^arn:aws:kms:([a-z0-9-]+):579766882180:key\/([0-9a-f-]+)$/.exec(arn);
  const moto = m ? SPEC_CMKS[m[2]!] : undefined;
  if (!m || !moto) return arn;
  return moto().replace(/^arn:aws:kms:[a-z0-9-]+:/, `arn:aws:kms:${m[1]}:`);
}

/** Every spec ARN inside a value (Extended JSON from a spec file), mapped to moto's. */
export function mapArnsDeep<T>(value: T): T {
  if (typeof value === 'string') return mapAwsArn(value) as T;
  if (Array.isArray(value)) return value.map(mapArnsDeep) as T;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapArnsDeep(v)])) as T;
  }
  return value;
}

/** One app per spec file: its own key vault database, the spec's local key, AWS through moto. */
export function createSpecApp(t: { teardown(fn: () => unknown): void }): Promise<TestApp> {
  // Public, but still keys: the log scan checks no log line carries them.
  recordSecret(SPEC_LOCAL_MASTER_KEY);
  recordSecret(SPEC_AWS_DATA_KEY);
  // The allow-list also holds the spec's ARNs in other regions (mapped: moto has no such key), so
  // that a test about a KMS failure reaches the KMS rather than stopping at the allow-list.
  const arns = [stack.keyArn, stack.keyArn2];
  const elsewhere = arns.map((arn) => arn.replace(/^arn:aws:kms:[a-z0-9-]+:/, 'arn:aws:kms:us-east-2:'));
  return createTestApp(t, { aws: stack.allowed, env: { LOCAL_MASTER_KEY: SPEC_LOCAL_MASTER_KEY, AWS_KMS_ALLOWED_KEYS: [...arns, ...elsewhere].join(',') } });
}

/** 96 bytes of data key wrapped by moto's first CMK (through POST /keys), to store in a spec key document. */
export async function motoWrapped(app: TestApp, dataKeyBase64: string): Promise<{ keyMaterial: Binary; masterKey: Record<string, string> }> {
  const region = /^arn:aws:kms:([a-z0-9-]+):/.exec(stack.keyArn)![1]!;
  const res = await app.call('POST', '/keys', { masterKey: { provider: 'aws', key: stack.keyArn, region }, keyMaterial: dataKeyBase64 });
  if (res.statusCode !== 201) throw new Error(`wrapping the spec's AWS data key under moto: ${res.statusCode} ${res.body}`);
  const vault = app.mongo.db(app.keyVaultDb).collection<Document>('__keyVault');
  const doc = await vault.findOneAndDelete({ _id: new UUID(res.json().id) } as Document);
  return { keyMaterial: doc!.keyMaterial as Binary, masterKey: doc!.masterKey as Record<string, string> };
}

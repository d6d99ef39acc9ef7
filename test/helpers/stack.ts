import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The real servers the integration tests run against, as exported by `scripts/stack up`
 * (`npm test` does that). With MONGODB_URI pointing at a real MongoDB, the same suite runs there.
 */
function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set: run the suite with \`npm test\`, or eval "$(scripts/stack up)" first`);
  }
  return value;
}

export const stack = {
  get mongodbUri() {
    return required('MONGODB_URI');
  },
  get kmsEndpoint() {
    return required('AWS_KMS_ENDPOINT');
  },
  get keyArn() {
    return required('TEST_KMS_KEY_ARN');
  },
  get keyArn2() {
    return required('TEST_KMS_KEY_ARN_2');
  },
  get allowed() {
    return { accessKeyId: required('TEST_AWS_ACCESS_KEY_ID'), secretAccessKey: required('TEST_AWS_SECRET_ACCESS_KEY') };
  },
  get denied() {
    return {
      accessKeyId: required('TEST_AWS_DENIED_ACCESS_KEY_ID'),
      secretAccessKey: required('TEST_AWS_DENIED_SECRET_ACCESS_KEY'),
    };
  },
};

/**
 * A new IAM user in moto whose only policy is `policy` (a policy document), created through moto's
 * IAM API as the IAM administrator the stack seeds (scripts/seed_kms.py user): for tests that need
 * an identity holding exactly some policy. Names must be new.
 */
export function createIamUser(name: string, policy: unknown): { accessKeyId: string; secretAccessKey: string } {
  const script = fileURLToPath(new URL('../../scripts/seed_kms.py', import.meta.url));
  const run = spawnSync(process.env.PYTHON ?? 'python3', [script, 'user', '--endpoint', required('MOTO_URL'), '--name', name], {
    input: JSON.stringify(policy),
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (run.status !== 0) throw new Error(`creating IAM user ${name} failed: ${run.stderr || run.error}`);
  return JSON.parse(run.stdout);
}

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

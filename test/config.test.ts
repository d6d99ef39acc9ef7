import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';

const base = { ADMIN_TOKEN: 'x'.repeat(32), LOCAL_MASTER_KEY: randomBytes(96).toString('base64') };

t.test('defaults', async (t) => {
  const config = loadConfig(base);
  t.equal(config.port, 8080);
  t.equal(config.host, '127.0.0.1');
  t.same(config.keyVault, { uri: 'mongodb://127.0.0.1:27017/', db: 'encryption', collection: '__keyVault', trashCollection: '__keyVaultTrash' });
  t.equal(config.keyTrash.retentionMs, 7 * 86_400_000, 'deleted keys are restorable for a week');
  t.equal(config.keyRotation.periodDays, 365);
  t.equal(config.kms.aws, undefined);
  t.equal(config.dataKeyCache.ttlMs, 60_000);
});

t.test('invalid configuration stops the boot with a message naming the variable', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ LOCAL_MASTER_KEY: base.LOCAL_MASTER_KEY }, /ADMIN_TOKEN/],
    [{ ...base, ADMIN_TOKEN: 'short' }, /ADMIN_TOKEN/],
    [{ ...base, PORT: 'eighty' }, /PORT/],
    [{ ...base, MONGODB_URI: 'postgres://x' }, /MONGODB_URI/],
    [{ ...base, KEY_VAULT_NAMESPACE: 'nodot' }, /KEY_VAULT_NAMESPACE/],
    [{ ...base, KEY_TRASH_RETENTION_MS: '10' }, /KEY_TRASH_RETENTION_MS/],
    [{ ...base, KEY_ROTATION_PERIOD_DAYS: '-1' }, /KEY_ROTATION_PERIOD_DAYS/],
    [{ ...base, LOCAL_MASTER_KEY: randomBytes(32).toString('base64') }, /LOCAL_MASTER_KEY must be 96 bytes/],
    [{ ADMIN_TOKEN: base.ADMIN_TOKEN }, /LOCAL_MASTER_KEY/],
    [{ ...base, KMS_PROVIDERS: 'local,gcp' }, /KMS_PROVIDERS/],
    [{ ...base, AUDIT_HMAC_KEY: 'c2hvcnQ=' }, /AUDIT_HMAC_KEY must hold at least 32 bytes/],
    [{ ...base, TLS_CERT_FILE: '/x' }, /TLS_CERT_FILE and TLS_KEY_FILE/],
    [{ ...base, JWT_ISSUER: 'https://issuer' }, /JWT_JWKS_FILE or JWT_JWKS_URL/],
    [{ ...base, JWT_JWKS_FILE: '/a', JWT_JWKS_URL: 'https://b' }, /not both/],
    [{ ...base, JWT_JWKS_FILE: '/a' }, /JWT authentication is on \(JWT_JWKS_FILE\): set JWT_ISSUER and JWT_AUDIENCE/],
    [{ ...base, JWT_JWKS_URL: 'https://b', JWT_ISSUER: 'https://issuer' }, /JWT authentication is on \(JWT_JWKS_URL\): set JWT_AUDIENCE$/],
    [{ ...base, JWT_JWKS_URL: 'https://b', JWT_AUDIENCE: 'proxy' }, /set JWT_ISSUER$/],
    [{ ...base, JWT_JWKS_URL: 'https://b', JWT_ISSUER: ' ', JWT_AUDIENCE: 'proxy' }, /set JWT_ISSUER$/],
    [{ ...base, KMS_PROVIDERS: 'aws', AWS_KMS_ALLOWED_KEYS: '*', AWS_ACCESS_KEY_ID: 'AKIA' }, /AWS_SECRET_ACCESS_KEY/],
    [{ ...base, AWS_KMS_ENDPOINT: 'ftp://x', KMS_PROVIDERS: 'aws' }, /AWS_KMS_ENDPOINT/],
    [{ ...base, LOCAL_MASTER_KEY_FILE: '/nonexistent/key' }, /not both/],
    [{ ...base, ADMIN_TOKEN: 'has a space in it and is long enough' }, /ADMIN_TOKEN/],
    [{ ...base, ADMIN_TOKEN_FILE: '/nonexistent/token' }, /not both/],
    [{ LOCAL_MASTER_KEY: base.LOCAL_MASTER_KEY, ADMIN_TOKEN_FILE: '/nonexistent/token' }, /ADMIN_TOKEN_FILE cannot be read/],
    [{ ADMIN_TOKEN: base.ADMIN_TOKEN, LOCAL_MASTER_KEY_FILE: '/nonexistent/key' }, /LOCAL_MASTER_KEY_FILE/],
  ];
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), ConfigError);
    t.throws(() => loadConfig(env), message, JSON.stringify(Object.keys(env)));
  }
});

t.test('the local master key can come from a file, raw or base64; only the KMS settings that are on apply', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const key = randomBytes(96);
  writeFileSync(join(dir, 'raw'), key);
  writeFileSync(join(dir, 'b64'), `${key.toString('base64')}\n`);
  for (const file of ['raw', 'b64']) {
    t.same(loadConfig({ ADMIN_TOKEN: base.ADMIN_TOKEN, LOCAL_MASTER_KEY_FILE: join(dir, file) }).kms.localMasterKey, key);
  }
  writeFileSync(join(dir, 'token'), 'file-token-0123456789abcdef\n');
  t.equal(loadConfig({ LOCAL_MASTER_KEY: base.LOCAL_MASTER_KEY, ADMIN_TOKEN_FILE: join(dir, 'token') }).adminToken, 'file-token-0123456789abcdef');
  t.throws(() => loadConfig({ ADMIN_TOKEN: base.ADMIN_TOKEN, KMS_PROVIDERS: 'aws', AWS_KMS_ALLOWED_KEYS: '*' }), /AUDIT_HMAC_KEY/, 'without a local key the audit key must be given');
  const arns = ['arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', 'arn:aws:kms:us-east-1:111122223333:key/*'];
  const aws = loadConfig({ ADMIN_TOKEN: base.ADMIN_TOKEN, KMS_PROVIDERS: 'aws', AWS_KMS_ALLOWED_KEYS: arns.join(', '), AUDIT_HMAC_KEY: randomBytes(32).toString('base64') });
  t.equal(aws.kms.localMasterKey, undefined);
  t.same(aws.kms.aws, { allowedKeys: arns, replicaRegions: [], regionEndpoints: {} });
  const mrk = loadConfig({
    ADMIN_TOKEN: base.ADMIN_TOKEN,
    LOCAL_MASTER_KEY: base.LOCAL_MASTER_KEY,
    KMS_PROVIDERS: 'local,aws',
    AWS_KMS_ALLOWED_KEYS: '*',
    AWS_KMS_REPLICA_REGIONS: 'us-west-2,eu-west-1',
    AWS_KMS_REGION_ENDPOINTS: 'us-east-1=http://127.0.0.1:1,us-west-2=https://kms.us-west-2.amazonaws.com',
  });
  t.same(mrk.kms.aws?.replicaRegions, ['us-west-2', 'eu-west-1']);
  t.same(mrk.kms.aws?.regionEndpoints, { 'us-east-1': 'http://127.0.0.1:1', 'us-west-2': 'https://kms.us-west-2.amazonaws.com' });
});

t.test('with aws on, the KMS keys clients may name are configured: a list of ARN patterns, or an explicit *', async (t) => {
  const aws = { ...base, KMS_PROVIDERS: 'local,aws' };
  t.throws(() => loadConfig(aws), ConfigError);
  t.throws(() => loadConfig(aws), /KMS_PROVIDERS includes aws: set AWS_KMS_ALLOWED_KEYS/, 'no list: the boot stops, naming the variable');
  t.throws(() => loadConfig({ ...aws, AWS_KMS_ALLOWED_KEYS: ' , ' }), /set AWS_KMS_ALLOWED_KEYS/, 'an empty list is no list');
  for (const entry of ['arn:a', 'key/*', 'arn:aws:kms:eu-west-1:111122223333:secret/x', 'arn:aws:s3:::bucket', 'arn:aws:kms:eu-west-1:1111:key/x', '**,x']) {
    t.throws(() => loadConfig({ ...aws, AWS_KMS_ALLOWED_KEYS: entry }), /AWS_KMS_ALLOWED_KEYS entry 1 is not a KMS key or alias ARN/, entry);
  }
  t.same(loadConfig({ ...aws, AWS_KMS_ALLOWED_KEYS: '*' }).kms.aws?.allowedKeys, ['*'], 'an explicit * is accepted (and warned about at boot)');
  t.same(
    loadConfig({ ...aws, AWS_KMS_ALLOWED_KEYS: 'arn:aws:kms:*:111122223333:key/*,arn:aws:kms:eu-west-1:111122223333:alias/app-*' }).kms.aws?.allowedKeys,
    ['arn:aws:kms:*:111122223333:key/*', 'arn:aws:kms:eu-west-1:111122223333:alias/app-*'],
  );
  t.equal(loadConfig(base).kms.aws, undefined, 'without aws the list is not needed');
});

t.test('JWT settings: a key source with the issuer and audience every token must name', async (t) => {
  const jwt = loadConfig({ ...base, JWT_JWKS_URL: 'https://idp.example/jwks', JWT_ISSUER: 'https://idp.example/', JWT_AUDIENCE: 'proxy' }).jwt;
  t.same(jwt, { jwksFile: undefined, jwksUrl: 'https://idp.example/jwks', issuer: 'https://idp.example/', audience: 'proxy' });
  t.equal(loadConfig(base).jwt, undefined, 'off by default');
});

t.test('the process environment is never read', async (t) => {
  process.env.PORT = '1234';
  t.teardown(() => delete process.env.PORT);
  t.equal(loadConfig(base).port, 8080);
});

t.test('KMS_CA_FILE: CA certificates trusted for KMS endpoints, checked at boot', async (t) => {
  const { makeTestCerts } = await import('./helpers/test-certs.js');
  const certs = makeTestCerts(t);
  const aws = { ...base, KMS_PROVIDERS: 'local,aws', AWS_KMS_ALLOWED_KEYS: '*' };
  t.equal(loadConfig(aws).kms.aws?.caCerts, undefined, 'off by default');
  const { readFileSync } = await import('node:fs');
  const ca = readFileSync(certs.caFile, 'utf8').trim();
  t.same(loadConfig({ ...aws, KMS_CA_FILE: certs.caFile }).kms.aws?.caCerts, [ca], 'the CA is read');

  const dir = mkdtempSync(join(tmpdir(), 'kms-ca-'));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  t.same(loadConfig({ ...aws, KMS_CA_FILE: file('two.pem', `${ca}\n${ca}\n`) }).kms.aws?.caCerts, [ca, ca], 'a bundle of several');
  t.throws(() => loadConfig({ ...aws, KMS_CA_FILE: join(dir, 'missing.pem') }), /KMS_CA_FILE cannot be read: ENOENT/, 'a missing file stops the boot');
  t.throws(() => loadConfig({ ...aws, KMS_CA_FILE: file('key.pem', certs.valid.key) }), /KMS_CA_FILE holds no PEM certificate/, 'a key is not a certificate');
  t.throws(
    () => loadConfig({ ...aws, KMS_CA_FILE: file('broken.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }),
    /KMS_CA_FILE certificate 1 cannot be parsed/,
  );
  t.throws(() => loadConfig({ ...aws, KMS_CA_FILE: file('leaf.pem', `${ca}\n${certs.valid.cert}`) }), /KMS_CA_FILE certificate 2 \(CN=valid\) is not a CA certificate/, 'a leaf is not a CA');
});

/**
 * Write openapi.yaml from the route schemas: the served API is the contract, and
 * test/openapi.test.ts fails when the two drift apart. Run: npm run openapi
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { buildApp } from '../src/plugins/app.js';
import { loadConfig } from '../src/config.js';

/** The OpenAPI document as served; building the app needs no database (it connects lazily). */
export async function renderOpenApi(): Promise<string> {
  const config = loadConfig({
    ADMIN_TOKEN: randomBytes(24).toString('hex'),
    LOCAL_MASTER_KEY: randomBytes(96).toString('base64'),
    KMS_PROVIDERS: 'local,aws',
    AWS_KMS_ALLOWED_KEYS: 'arn:aws:kms:us-east-1:111122223333:key/*',
    LOG_LEVEL: 'silent',
  });
  const app = await buildApp(config);
  await app.ready();
  const document = app.swagger();
  await app.close();
  return `# Generated from the route schemas by \`npm run openapi\`; do not edit by hand.\n${stringify(document, { aliasDuplicateObjects: false })}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL('../openapi.yaml', import.meta.url), await renderOpenApi());
}

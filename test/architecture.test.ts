import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';

const root = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

const files = [...sources('src'), ...sources('routes')].map((file) => ({ file, text: readFileSync(join(root, file), 'utf8') }));
const importsOf = (text: string) => [...text.matchAll(/^import[^;]*? from '([^']+)';/gms)].map((m) => m[1]!);
const offenders = (test: (file: string, specifier: string) => boolean) =>
  files.flatMap(({ file, text }) => importsOf(text).filter((spec) => test(file, spec)).map((spec) => `${file} imports ${spec}`));

t.test('only routes/ and the thin plugins in src/plugins/ import Fastify', async (t) => {
  t.same(
    offenders((file, spec) => /^(fastify|fastify-plugin|@fastify\/)/.test(spec) && !file.startsWith('routes/') && !file.startsWith('src/plugins/')),
    [],
  );
});

t.test('only the config plugin reads process.env', async (t) => {
  const readers = files.filter(({ text }) => /process\.env\b/.test(text.replace(/^\s*(\*|\/\/).*$/gm, ''))).map(({ file }) => file);
  t.same(readers, ['src/plugins/config.ts']);
});

t.test('layers are one way: routes → documents/encryption → crypto, key vault → KMS', async (t) => {
  // What each layer must not import (relative specifiers); crypto is pure and imports no sibling layer.
  const forbidden: Record<string, RegExp> = {
    'src/crypto/': /^\.\.\//,
    'src/kms/': /\/(key-vault|documents|encryption|clients|audit|plugins|routes)\//,
    'src/key-vault/': /\/(documents|encryption|clients|audit|plugins|routes)\//,
    'src/encryption/': /\/(documents|plugins|routes)\//,
    'src/documents/': /\/(plugins|routes)\//,
    // The change feed knows only MongoDB: the caches it invalidates are handed to it by the plugins.
    'src/fleet/': /^\.\.\//,
  };
  const upward = (file: string, spec: string) =>
    spec.startsWith('.') && Object.entries(forbidden).some(([layer, pattern]) => file.startsWith(layer) && pattern.test(spec));
  t.same(offenders(upward), []);
  // The composition root (app.ts) registers the routes; nothing else in src/ reaches up to them.
  t.same(offenders((file, spec) => file.startsWith('src/') && file !== 'src/plugins/app.ts' && spec.includes('/routes/')), [], 'nothing in src/ imports routes/');
});

t.test('BSON comes from the driver, so one copy of bson is loaded', async (t) => {
  t.same(offenders((_file, spec) => spec === 'bson'), []);
});

t.test('data keys are used by the encryption engine only (every use passes its authorization)', async (t) => {
  // The key store defines withDataKeys; the engine is its one caller.
  const leasing = files.filter(({ file, text }) => /\bwithDataKeys\s*\(/.test(text) && !file.startsWith('src/encryption/') && file !== 'src/key-vault/key-store.ts');
  t.same(leasing.map(({ file }) => file), [], 'nothing else leases data keys');
  // The payload functions that take an unwrapped data key.
  const keyed = /\b(encryptValue|encryptValues|decryptPayload|decryptPayloads|decryptAll|aeadEncrypt\w*|aeadDecrypt\w*)\b/;
  const importers = files.filter(({ file, text }) => {
    if (file.startsWith('src/crypto/') || file.startsWith('src/encryption/')) return false;
    // The local KMS wraps data keys with the master key's AEAD: a master-key use, not a data-key one.
    if (file === 'src/kms/local-kms.ts') return false;
    return [...text.matchAll(/^import\s*\{([^}]*)\}\s*from\s*'([^']+)';/gms)].some((m) => keyed.test(m[1]!));
  });
  t.same(importers.map(({ file }) => file), [], 'nothing else imports the keyed payload functions');
});

// The addon is optional: whatever file sits where it is looked for, loading it never throws, and
// a file this node cannot load (another platform's build, a truncated copy, a stale build) leaves
// the pure-JS path in use with the reason recorded.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadNativeAead } from '../../src/crypto/aead-native.js';

const dir = mkdtempSync(join(tmpdir(), 'aead-native-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('no file: not loaded, no error', async (t) => {
  const { addon, status } = loadNativeAead([join(dir, 'missing.node')]);
  t.equal(addon, undefined);
  t.same(status, { loaded: false, path: undefined, error: undefined });
});

t.test('a file that is no addon for this node: not loaded, the reason kept, nothing thrown', async (t) => {
  const path = join(dir, 'foreign.node');
  // The first bytes of an ELF shared object for another machine, then nothing: what a copy built
  // elsewhere or cut short looks like to dlopen.
  writeFileSync(path, Buffer.concat([Buffer.from('\x7fELF\x02\x01\x01', 'binary'), Buffer.alloc(57)]));
  const { addon, status } = loadNativeAead([join(dir, 'missing.node'), path]);
  t.equal(addon, undefined);
  t.equal(status.loaded, false);
  t.equal(status.path, path, 'the first file that exists is the one tried');
  t.type(status.error, Error);
});

t.test('a module without both functions (a stale build) is not used', async (t) => {
  const path = join(dir, 'stale.cjs');
  writeFileSync(path, 'module.exports = { decryptMany() {} };\n');
  const { addon, status } = loadNativeAead([path]);
  t.equal(addon, undefined);
  t.equal(status.loaded, false);
  t.match(status.error?.message, /exports no encryptMany/);
});

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import t from 'tap';

const require = createRequire(import.meta.url);

t.test('the mongodb driver carries the fix from patches/ (postinstall ran)', async (t) => {
  const root = dirname(require.resolve('mongodb/package.json'));
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  t.equal(version, '7.9.0', 'the version the patch was written for: refresh patches/ when bumping it');
  const connection = readFileSync(join(root, 'lib/cmap/connection.js'), 'utf8');
  t.match(connection, /encryption-proxy patch \(patches\/\)/, 'writeCommand no longer waits forever for a closed socket to drain');
  t.match(connection, /this\.socket\.once\('close', onSocketClose\)/);
});

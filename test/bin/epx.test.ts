import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { EXIT, run } from '../../bin/epx.js';
import { ADMIN_TOKEN, createTestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

t.test('epx drives keys, the rotation report and a migration job over HTTP, with clear exit codes', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed });
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  const env = { EPX_URL: url, EPX_TOKEN: ADMIN_TOKEN };
  const epx = async (...args: string[]) => {
    const lines: string[] = [];
    const code = await run(args, env, (line) => lines.push(line));
    return { code, text: lines.join('\n') };
  };

  const created = await epx('keys', 'create', '--provider', 'local', '--alt-name', 'cli-1');
  t.equal(created.code, EXIT.ok);
  t.match(created.text, /^[0-9a-f-]{36}$/);
  await epx('keys', 'create', '--provider', 'local', '--alt-name', 'cli-2');
  const list = await epx('keys', 'list');
  t.match(list.text, /local .*cli-1/);
  t.match((await epx('keys', 'report')).text, /2 data keys, 0 wrapped more than 365 days ago/, "the server's rotation period by default");

  const dry = await epx('keys', 'migrate', '--from-provider', 'local', '--to-provider', 'aws', '--to-key', stack.keyArn, '--dry-run');
  t.equal(dry.code, EXIT.ok);
  t.match(dry.text, /would migrate 2 data keys/);
  const migrated = await epx('keys', 'migrate', '--from-provider', 'local', '--to-provider', 'aws', '--to-key', stack.keyArn);
  t.equal(migrated.code, EXIT.ok, migrated.text);
  t.match(migrated.text, /succeeded: .*"rewrapped":2.*"verified":2/);
  t.match((await epx('keys', 'list', '--provider', 'aws')).text, /cli-1/);

  const down = ['keys', 'migrate', '--from-key', stack.keyArn, '--to-provider', 'local'];
  t.match((await epx(...down, '--dry-run')).text, /would migrate 2 data keys[\s\S]*2 of them down from a KMS to the local master key: refused\. .*allowDowngrade/);
  t.equal((await epx(...down)).code, EXIT.refused, 'a downgrade without --allow-downgrade → 1');
  t.match((await epx(...down, '--dry-run', '--allow-downgrade')).text, /2 of them down from a KMS to the local master key: allowed/);

  t.equal((await epx('keys', 'create', '--provider', 'aws', '--key', 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000')).code, EXIT.refused, '4xx → 1');
  t.equal((await epx('keys', 'create')).code, EXIT.usage, 'missing provider → 2');
  t.equal((await epx('keys', 'frobnicate')).code, EXIT.usage);
  t.equal((await run(['keys', 'list'], { EPX_URL: url }, () => undefined)), EXIT.usage, 'no token → 2');
  t.equal((await run(['keys', 'list'], { EPX_URL: 'http://127.0.0.1:1', EPX_TOKEN: 'x' }, () => undefined)), EXIT.unavailable, 'unreachable → 3');
  t.equal((await run(['keys', 'list'], { EPX_URL: url, EPX_TOKEN: 'wrong-token' }, () => undefined)), EXIT.refused, '401 → 1');

  const denied = await createTestApp(t, { share: h, aws: stack.denied });
  await denied.app.listen({ host: '127.0.0.1', port: 0 });
  const deniedUrl = `http://127.0.0.1:${(denied.app.server.address() as AddressInfo).port}`;
  await epx('keys', 'create', '--provider', 'local', '--alt-name', 'cli-3');
  const failed = await run(['keys', 'migrate', '--id', JSON.parse((await epx('keys', 'list', '--json')).text).items.find((k: { keyAltNames: string[] }) => k.keyAltNames.includes('cli-3')).id, '--to-provider', 'aws', '--to-key', stack.keyArn], { EPX_URL: deniedUrl, EPX_TOKEN: ADMIN_TOKEN }, () => undefined);
  t.equal(failed, EXIT.jobFailed, 'a failed job → 4');

  // Asynchronously: the server answering the command runs in this very process.
  const spawned = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'bin/epx.ts', 'keys', 'list'], { env: { ...process.env, ...env } });
  t.match(spawned.stdout, /cli-2/, 'the real command prints the same (and exits 0, or execFile would reject)');
});

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createAwsKms } from '../../src/kms/aws-kms.js';

/**
 * A replica-region KMS speaking the AWS JSON protocol, for the one thing moto cannot do: decrypt,
 * in another region, what a multi-region key encrypted. It "wraps" by prefixing the key id.
 */
async function fakeKms(t: { teardown(fn: () => unknown): void }) {
  const calls: { target: string; keyId: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target']);
      const input = JSON.parse(body) as { KeyId: string; Plaintext?: string; CiphertextBlob?: string };
      calls.push({ target, keyId: input.KeyId });
      const keyId = input.KeyId.replace(/^.*key\//, '');
      const out = target.endsWith('.Encrypt')
        ? { KeyId: input.KeyId, CiphertextBlob: Buffer.concat([Buffer.from(`${keyId}|`), Buffer.from(input.Plaintext!, 'base64')]).toString('base64') }
        : { KeyId: input.KeyId, Plaintext: Buffer.from(input.CiphertextBlob!, 'base64').subarray(keyId.length + 1).toString('base64') };
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(out));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

t.test('a multi-region key is unwrapped through a replica region while its own region is down', async (t) => {
  const replica = await fakeKms(t);
  const kms = createAwsKms({
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    timeoutMs: 1000,
    maxAttempts: 1,
    breakerResetMs: 60_000,
    regions: ['us-east-1'],
    replicaRegions: ['us-west-2'],
    regionEndpoints: { 'us-east-1': 'http://127.0.0.1:1', 'us-west-2': replica.url },
  });
  t.teardown(() => kms.destroy());
  const mrk = { provider: 'aws' as const, key: `arn:aws:kms:us-east-1:111122223333:key/mrk-${'a'.repeat(32)}`, region: 'us-east-1' };
  const dataKey = Buffer.alloc(96, 7);

  const wrapped = await kms.wrap(mrk, dataKey);
  t.same(await kms.unwrap(mrk, wrapped), dataKey, 'wrapped and unwrapped through us-west-2');
  t.same(
    replica.calls.map((c) => c.keyId),
    [mrk.key.replace('us-east-1', 'us-west-2'), mrk.key.replace('us-east-1', 'us-west-2')],
    'the replica is called with the same key id in its own region',
  );

  const single = { provider: 'aws' as const, key: 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', region: 'us-east-1' };
  await t.rejects(kms.unwrap(single, wrapped), { code: 'KMS_UNAVAILABLE' } as never, 'a single-region key has no replica to fall back to');
  t.equal(replica.calls.length, 2);
});

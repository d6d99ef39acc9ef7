import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createAwsKms } from '../../src/kms/aws-kms.js';

/** A TCP endpoint that accepts and immediately drops connections: an unreachable KMS. */
async function droppingServer(): Promise<{ url: string; server: Server; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, connections: () => connections };
}

t.test('a failing KMS opens the circuit: calls fail fast as KMS_UNAVAILABLE and stop reaching KMS', async (t) => {
  const { url, server, connections } = await droppingServer();
  t.teardown(() => server.close());
  const kms = createAwsKms({
    endpoint: url,
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    timeoutMs: 1000,
    maxAttempts: 1,
    breakerResetMs: 60_000,
  });
  t.teardown(() => kms.destroy());
  const key = { provider: 'aws' as const, key: 'arn:aws:kms:us-east-1:123456789012:key/x', region: 'us-east-1' };
  for (let i = 0; i < 3; i++) {
    await t.rejects(kms.unwrap(key, Buffer.alloc(10)), { code: 'KMS_UNAVAILABLE' } as never);
  }
  t.equal(kms.isHealthy(), false, 'the circuit is open');
  const seen = connections();
  const started = Date.now();
  for (let i = 0; i < 20; i++) {
    await t.rejects(kms.unwrap(key, Buffer.alloc(10)), { code: 'KMS_UNAVAILABLE' } as never);
  }
  t.ok(Date.now() - started < 200, 'twenty calls fail fast');
  t.equal(connections(), seen, 'and none of them reached KMS');
});

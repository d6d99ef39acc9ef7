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
    regions: ['us-east-1'],
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

t.test('only configured regions count for health, and clients for other regions are bounded', async (t) => {
  const { url, server } = await droppingServer();
  t.teardown(() => server.close());
  const kms = createAwsKms({
    endpoint: url,
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    timeoutMs: 1000,
    maxAttempts: 1,
    breakerResetMs: 60_000,
    regions: ['us-east-1'],
    maxOtherRegions: 2,
  });
  t.teardown(() => kms.destroy());
  const keyIn = (region: string) => ({ provider: 'aws' as const, key: `arn:aws:kms:${region}:123456789012:key/x`, region });
  for (const region of ['zz-one-1', 'zz-two-2', 'zz-three-3', 'zz-four-4', 'zz-five-5']) {
    for (let i = 0; i < 3; i++) await t.rejects(kms.unwrap(keyIn(region), Buffer.alloc(10)), { code: 'KMS_UNAVAILABLE' } as never);
  }
  t.equal(kms.isHealthy(), true, 'open circuits of unconfigured regions do not make the service unhealthy');
  t.same(kms.regionsInUse(), ['zz-five-5', 'zz-four-4'], 'at most maxOtherRegions clients for unconfigured regions, the least recently used dropped');
  for (let i = 0; i < 3; i++) await t.rejects(kms.unwrap(keyIn('us-east-1'), Buffer.alloc(10)), { code: 'KMS_UNAVAILABLE' } as never);
  t.equal(kms.isHealthy(), false, 'an open circuit of a configured region does');
  t.same(kms.regionsInUse().sort(), ['us-east-1', 'zz-five-5', 'zz-four-4']);
});

import t from 'tap';
import { createFailedAuthLimiter, sourceOf } from '../../src/clients/failed-auth-limiter.js';

t.test('a source is refused once it has used its failures, until its window ends', async (t) => {
  let now = 1_000_000;
  const limiter = createFailedAuthLimiter({ maxFailures: 3, windowMs: 60_000, now: () => now });
  for (let i = 0; i < 3; i++) {
    t.equal(limiter.retryAfterMs('192.0.2.1'), 0, `attempt ${i + 1} may go on`);
    limiter.recordFailure('192.0.2.1');
  }
  t.equal(limiter.retryAfterMs('192.0.2.1'), 60_000, 'the fourth waits for the whole window');
  t.equal(limiter.retryAfterMs('192.0.2.2'), 0, 'another address is not affected');
  now += 45_000;
  t.equal(limiter.retryAfterMs('192.0.2.1'), 15_000);
  now += 15_000;
  t.equal(limiter.retryAfterMs('192.0.2.1'), 0, 'a new window starts afresh');
  limiter.recordFailure('192.0.2.1');
  t.equal(limiter.retryAfterMs('192.0.2.1'), 0);
});

t.test('sources: IPv4 (also mapped), and the /64 of IPv6', async (t) => {
  t.equal(sourceOf('192.0.2.1'), '192.0.2.1');
  t.equal(sourceOf('::ffff:192.0.2.1'), '192.0.2.1');
  t.equal(sourceOf('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.equal(sourceOf('2001:0db8:0001:0002:ffff:0:0:9'), '2001:db8:1:2::/64');
  t.equal(sourceOf('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(sourceOf('::1'), '0:0:0:0::/64');
  t.equal(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64', 'a zone id does not make another source');
  t.equal(sourceOf('not-an-address'), 'not-an-address', 'what is not an address is its own source');
});

t.test('memory is bounded: the oldest sources are dropped first', async (t) => {
  const limiter = createFailedAuthLimiter({ maxFailures: 1, windowMs: 60_000, maxSources: 100 });
  for (let i = 0; i < 1000; i++) limiter.recordFailure(`10.0.${i >> 8}.${i & 255}`);
  t.equal(limiter.size, 100);
  t.ok(limiter.retryAfterMs('10.0.3.231') > 0, 'the newest are still refused');
  t.equal(limiter.retryAfterMs('10.0.0.0'), 0, 'the oldest were forgotten');
});

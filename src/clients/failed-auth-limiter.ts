/**
 * Failed authentications counted per source address, so that guessing tokens is cut off: once a
 * source has failed `maxFailures` times in a window, it is refused until the window ends, before
 * its credentials are even looked at. Per instance (like the per-client budget): a fleet of N
 * instances lets a source fail up to N × maxFailures times per window. No I/O.
 */
import { isIPv6 } from 'node:net';

export interface FailedAuthLimiterOptions {
  /** Failures a source may have in one window; the next attempt is refused. */
  maxFailures: number;
  windowMs: number;
  /** Most sources tracked at once; the oldest window is dropped first, so memory stays bounded. */
  maxSources?: number;
  now?: () => number;
}

const DEFAULT_MAX_SOURCES = 50_000;

/**
 * The source a request is counted under: an IPv4 address (also when IPv4-mapped), or the /64 of an
 * IPv6 address, since one host is commonly given a whole /64 and could otherwise rotate freely.
 */
export function sourceOf(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = ip.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export function createFailedAuthLimiter(options: FailedAuthLimiterOptions) {
  const { maxFailures, windowMs, maxSources = DEFAULT_MAX_SOURCES, now = Date.now } = options;
  const windows = new Map<string, { startedAt: number; failures: number }>();

  function current(source: string, at: number) {
    const window = windows.get(source);
    if (window === undefined || at - window.startedAt >= windowMs) return undefined;
    return window;
  }

  return {
    /** Milliseconds until the source of `ip` may try again; 0 when it may now. */
    retryAfterMs(ip: string): number {
      const at = now();
      const window = current(sourceOf(ip), at);
      return window !== undefined && window.failures >= maxFailures ? window.startedAt + windowMs - at : 0;
    },
    recordFailure(ip: string): void {
      const at = now();
      const source = sourceOf(ip);
      const window = current(source, at);
      if (window !== undefined) {
        window.failures++;
        return;
      }
      // A new window goes to the end of the map's order; the front holds the oldest.
      windows.delete(source);
      if (windows.size >= maxSources) windows.delete(windows.keys().next().value!);
      windows.set(source, { startedAt: at, failures: 1 });
    },
    /** Sources currently tracked (for tests and metrics). */
    get size(): number {
      return windows.size;
    },
  };
}

export type FailedAuthLimiter = ReturnType<typeof createFailedAuthLimiter>;

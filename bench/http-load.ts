/**
 * Two small HTTP load generators on node:http keep-alive agents (no dependency):
 *
 * - closedLoop: `concurrency` workers, each sends its next request when the previous one is
 *   answered (what autocannon does). Throughput under saturation; latencies are per request.
 * - openLoop: requests are sent on a fixed schedule (request i at start + i / rate) whatever the
 *   answers do, and each latency is measured from the request's SCHEDULED send time, so a slow
 *   answer delays no later request and a stall shows up in every request scheduled during it (no
 *   coordinated omission, as in wrk2 or HdrHistogram's corrected mode). autocannon's `overallRate`
 *   is not that: it spaces requests per connection and waits for answers, so a stall sends
 *   fewer requests rather than recording their wait.
 *
 * Each agent is private to one run and destroyed at its end, so no idle connection of one run is
 * reused by the next (e.g. across a load balancer reload).
 */
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface LoadRequest {
  method?: string;
  path: string;
  body?: string;
  /** A label to break results down by (e.g. 'encrypt', 'find'). */
  kind?: string;
}

export interface Answer {
  request: LoadRequest;
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface LoadResult {
  seconds: number;
  sent: number;
  /** Answers by status code. */
  statuses: Record<string, number>;
  /** Requests that got no answer, by error code (ECONNRESET, timeout, …). */
  errors: Record<string, number>;
  ok: number;
  /** non-2xx answers + requests without an answer. */
  failed: number;
  /** ms, one per answered request (open loop: from its scheduled send time). */
  latencies: number[];
  /** Open loop only: how late the generator itself sent requests (ms), p99 and max. */
  sendLag?: { p99: number; max: number };
  /** Open loop only: the most requests outstanding at once. */
  maxInFlight?: number;
}

export interface LoadOptions {
  url: string;
  headers?: Record<string, string>;
  seconds: number;
  next(i: number): LoadRequest;
  /** Called with every answer (e.g. to keep x-request-id of the 2xx ones). */
  onAnswer?(answer: Answer): void;
  /** Per-request time-out (ms, default 30 s). */
  timeoutMs?: number;
}

/**
 * One request on a fresh connection, with no time-out but `timeoutMs` (fetch gives up waiting for
 * response headers after 300 s, too soon for a verification of millions of records on FerretDB).
 */
export async function request(url: string, req: LoadRequest & { headers?: Record<string, string> }, timeoutMs: number): Promise<Answer> {
  const agent = new http.Agent({ keepAlive: false });
  try {
    return await send(agent, new URL(url), req.headers ?? {}, req, timeoutMs);
  } finally {
    agent.destroy();
  }
}

function send(agent: http.Agent, base: URL, headers: Record<string, string>, req: LoadRequest, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    const r = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: req.method ?? 'POST',
        path: req.path,
        headers: { ...headers, ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ request: req, status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    r.on('error', reject);
    r.end(body);
  });
}

function tally(result: LoadResult, answer: Answer | undefined, err: unknown) {
  if (answer) {
    result.statuses[answer.status] = (result.statuses[answer.status] ?? 0) + 1;
    if (answer.status >= 200 && answer.status < 300) result.ok++;
    else result.failed++;
  } else {
    const code = (err as { code?: string })?.code ?? (err as Error)?.message ?? 'error';
    result.errors[code] = (result.errors[code] ?? 0) + 1;
    result.failed++;
  }
}

const emptyResult = (): LoadResult => ({ seconds: 0, sent: 0, statuses: {}, errors: {}, ok: 0, failed: 0, latencies: [] });

/** `concurrency` workers for `seconds`, each waiting for its answer before the next request. */
export async function closedLoop(options: LoadOptions & { concurrency: number }): Promise<LoadResult> {
  const base = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const result = emptyResult();
  const started = performance.now();
  const end = started + options.seconds * 1000;
  let i = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const req = options.next(i++);
      result.sent++;
      const t0 = performance.now();
      try {
        const answer = await send(agent, base, options.headers ?? {}, req, options.timeoutMs ?? 30_000);
        result.latencies.push(performance.now() - t0);
        tally(result, answer, undefined);
        options.onAnswer?.(answer);
      } catch (err) {
        tally(result, undefined, err);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  } finally {
    agent.destroy();
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/**
 * `rate` requests a second for `seconds`, on schedule, over up to `connections` keep-alive
 * connections (a request beyond them waits in the agent's queue, and that wait is in its latency).
 * Waits for the last answers (up to the time-out) before it returns.
 */
export async function openLoop(options: LoadOptions & { rate: number; connections?: number }): Promise<LoadResult> {
  const base = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections ?? 256 });
  const result = emptyResult();
  const total = Math.round(options.rate * options.seconds);
  const interval = 1000 / options.rate;
  const lags: number[] = [];
  const pending: Promise<void>[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const started = performance.now();
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      // Everything due by now goes out, each with its own scheduled time.
      while (i < total && started + i * interval <= now) {
        const scheduled = started + i * interval;
        const req = options.next(i++);
        result.sent++;
        lags.push(now - scheduled);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        pending.push(
          send(agent, base, options.headers ?? {}, req, options.timeoutMs ?? 30_000).then(
            (answer) => {
              inFlight--;
              result.latencies.push(performance.now() - scheduled);
              tally(result, answer, undefined);
              options.onAnswer?.(answer);
            },
            (err) => {
              inFlight--;
              tally(result, undefined, err);
            },
          ),
        );
      }
      if (i >= total) return resolve();
      setTimeout(tick, Math.max(0, started + i * interval - performance.now()));
    };
    tick();
  });
  await Promise.all(pending);
  agent.destroy();
  result.seconds = (performance.now() - started) / 1000;
  lags.sort((a, b) => a - b);
  result.sendLag = { p99: quantile(lags, 0.99), max: lags[lags.length - 1] ?? 0 };
  result.maxInFlight = maxInFlight;
  return result;
}

/** The q-quantile (0..1) of an ascending array, nearest rank. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function percentiles(latencies: number[]): Percentiles {
  const s = [...latencies].sort((a, b) => a - b);
  return { count: s.length, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), p999: quantile(s, 0.999), max: s[s.length - 1] ?? Number.NaN };
}

/** A TCP port free on loopback right now (for a server started next). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

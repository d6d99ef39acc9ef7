/**
 * Private servers for the fault tests, so a test can stop, restart, cut or slow its own servers
 * without touching the shared stack other test files use in parallel: a FerretDB of its own
 * (the stack's binary, a temporary data directory, a free loopback port) and a TCP proxy in front
 * of any server (moto) that the test can close, reopen or slow down.
 *
 * Everything here is bounded in time and killed by the caller's teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A free loopback port (the OS picks it; a small race with other processes is accepted). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Wait for a child to exit, at most `ms`; resolves with its exit code (or signal name), or undefined on time-out. */
export function waitForExit(child: ChildProcess, ms: number): Promise<number | string | undefined> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal ?? undefined);
    });
  });
}

/** Stop a child: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<number | string | undefined> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode ?? undefined;
  child.kill('SIGTERM');
  const code = await waitForExit(child, graceMs);
  if (code !== undefined) return code;
  child.kill('SIGKILL');
  return waitForExit(child, 2000);
}

/** Ping a MongoDB URI until it answers, at most `ms`. */
export async function waitForMongo(uri: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 500, connectTimeoutMS: 500 });
    try {
      await client.db('admin').command({ ping: 1 });
      return;
    } catch (err) {
      last = err;
    } finally {
      await client.close().catch(() => undefined);
    }
    await sleep(100);
  }
  throw new Error(`MongoDB at ${uri} did not answer within ${ms} ms: ${String(last)}`);
}

export interface OwnFerretDb {
  uri: string;
  port: number;
  dataDir: string;
  /** The running process, if any. */
  pid(): number | undefined;
  /** SIGTERM (SIGKILL after 5 s), or SIGKILL at once (a crash); resolves with the exit code once it is gone. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<number | string | undefined>;
  /** Start again on the same port and data directory; resolves when it answers a ping. */
  start(): Promise<void>;
}

/**
 * A FerretDB of the test's own: the stack's binary (STACK_DIR/bin/ferretdb), a fresh data
 * directory and a free port. Killed, and its data removed, at teardown.
 */
export async function startOwnFerretDb(t: Teardown): Promise<OwnFerretDb> {
  const stackDir = process.env.STACK_DIR;
  if (!stackDir) throw new Error('STACK_DIR is not set: eval "$(scripts/stack up)" first (or use npm test)');
  const bin = join(stackDir, 'bin', 'ferretdb');
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'fault-ferretdb-'));
  const uri = `mongodb://127.0.0.1:${port}/`;
  let child: ChildProcess | undefined;
  let output = '';

  const server: OwnFerretDb = {
    uri,
    port,
    dataDir,
    pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
    async stop(signal = 'SIGTERM') {
      if (child === undefined) return undefined;
      if (signal === 'SIGKILL') child.kill('SIGKILL');
      const code = await stopChild(child);
      child = undefined;
      return code;
    },
    async start() {
      if (server.pid() !== undefined) throw new Error('FerretDB is already running');
      // The port was just released by the previous process: retry binding for a few seconds.
      const deadline = Date.now() + 15_000;
      for (;;) {
        output = '';
        child = spawn(bin, ['-listen', `127.0.0.1:${port}`, '-data', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
        child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
        try {
          await Promise.race([
            waitForMongo(uri, Math.max(1000, deadline - Date.now())),
            waitForExit(child, 60_000).then((code) => {
              throw new Error(`FerretDB exited (${String(code)}) during start-up: ${output}`);
            }),
          ]);
          return;
        } catch (err) {
          if (child.exitCode === null && child.signalCode === null) await stopChild(child);
          child = undefined;
          if (Date.now() >= deadline) throw err;
          await sleep(250);
        }
      }
    },
  };

  t.teardown(async () => {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await server.start();
  return server;
}

export type ProxyMode = 'pass' | 'delay';

export interface TcpProxy {
  url: string;
  port: number;
  /** Connections accepted since start. */
  connections(): number;
  /** Stop listening and cut every open connection: clients get ECONNREFUSED from now on. */
  close(): Promise<void>;
  /** Listen again on the same port. */
  open(): Promise<void>;
  /** Forward normally, or hold every chunk from the client for `delayMs` before forwarding it. */
  setMode(mode: ProxyMode, delayMs?: number): void;
  /**
   * The first chunk from a client that holds every one of `needles` is dropped, not forwarded, and
   * the proxy closes (as close()). Resolves once that happened: a fault that lands exactly between
   * two commands, whatever the machine's speed.
   */
  cutBefore(needles: Buffer[]): Promise<void>;
}

/**
 * A TCP proxy on a free loopback port in front of `target` (host:port). It can be closed (the
 * server becomes unreachable: connection refused), reopened, or made slow.
 */
export async function startTcpProxy(t: Teardown, target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let mode: ProxyMode = 'pass';
  let delayMs = 0;
  let accepted = 0;
  let server: Server | undefined;
  let cut: { needles: Buffer[]; done: () => void } | undefined;
  const port = await freePort();

  function track(socket: Socket) {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  }

  function onConnection(client: Socket) {
    accepted++;
    track(client);
    const upstream = createConnection(target);
    track(upstream);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('data', (chunk: Buffer) => {
      if (cut !== undefined && cut.needles.every((needle) => chunk.includes(needle))) {
        const { done } = cut;
        cut = undefined;
        void proxy.close().then(done);
        return;
      }
      if (mode === 'delay') {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!upstream.destroyed) upstream.write(chunk);
        }, delayMs);
        timers.add(timer);
      } else {
        upstream.write(chunk);
      }
    });
  }

  async function listen(): Promise<void> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const s = createServer(onConnection);
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.listen(port, '127.0.0.1', () => resolve());
        });
        server = s;
        return;
      } catch (err) {
        if (Date.now() >= deadline) throw err;
        await sleep(100);
      }
    }
  }

  const proxy: TcpProxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    connections: () => accepted,
    async close() {
      const s = server;
      server = undefined;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    async open() {
      if (server === undefined) await listen();
    },
    setMode(next, ms = 0) {
      mode = next;
      delayMs = ms;
    },
    cutBefore(needles) {
      return new Promise<void>((resolve) => {
        cut = { needles, done: resolve };
      });
    },
  };
  t.teardown(() => proxy.close());
  await listen();
  return proxy;
}

/** Percentile (0..100) of a list of numbers; NaN for an empty list. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/** Count by a key. */
export function tally<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

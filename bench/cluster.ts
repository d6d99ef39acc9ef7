/**
 * Drives scripts/cluster from TypeScript: N instances of the service (each its own port and audit
 * spool) behind HAProxy on loopback, for bench/harness.ts (scale-out) and test/cluster/. The
 * instances get exactly `env` (plus PATH and HOME), not the caller's whole environment.
 *
 *   const cluster = await startCluster({ instances: 2, env: serviceEnv, dir });
 *   fetch(`${cluster.url}/encrypt`, ...); await cluster.scale(3); await cluster.down();
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const script = join(root, 'scripts/cluster');

/** One server line of HAProxy's CSV statistics. */
export interface ServerStat {
  backend: string;
  /** i1, i2, …: instance 1, 2, … */
  server: string;
  status: string;
  requests: number;
  responses2xx: number;
  /** Every non-2xx response: 1xx, 3xx, 4xx, 5xx and other. */
  responsesOther: number;
  /** Sessions open now. */
  current: number;
}

export interface Cluster {
  /** The load balancer: every instance. */
  url: string;
  /** With `subsets`: urls[k] balances over instances 1..k only (urls[n] === url). */
  urls: Record<number, string>;
  adminToken: string;
  dir: string;
  instances: number;
  /** Each instance's own address, bypassing the load balancer. */
  instanceUrls: string[];
  statsUrl: string;
  /** HAProxy's per-instance counters (they restart at zero when the cluster is scaled). */
  stats(): Promise<ServerStat[]>;
  /** The audit chain of each instance (from its spool), in instance order. */
  chainIds(): string[];
  /** Add or remove instances (`scripts/cluster up -n`). */
  scale(instances: number): Promise<void>;
  /** Stop everything; `purge` also removes spools, logs and generated secrets. */
  down(purge?: boolean): Promise<void>;
  /** The last lines of an instance's log (1-based), for failure messages. */
  logTail(instance: number, chars?: number): string;
}

function run(args: string[], env: Record<string, string>, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `export NAME=value` lines (bash %q quoting of simple values) into a map. */
export function parseExports(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^export ([A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1').replace(/\\(.)/g, '$1');
  }
  return out;
}

function parseStats(csv: string): ServerStat[] {
  const lines = csv.trim().split('\n');
  const header = lines[0]!.replace(/^# /, '').split(',');
  const col = (name: string) => header.indexOf(name);
  const [px, sv, st, req, r2, r1, r3, r4, r5, ro, cur] = ['pxname', 'svname', 'status', 'req_tot', 'hrsp_2xx', 'hrsp_1xx', 'hrsp_3xx', 'hrsp_4xx', 'hrsp_5xx', 'hrsp_other', 'scur'].map(col);
  return lines
    .slice(1)
    .map((line) => line.split(','))
    .filter((f) => /^i\d+$/.test(f[sv!] ?? ''))
    .map((f) => {
      const n = (i: number) => Number(f[i] || 0);
      return {
        backend: f[px!]!,
        server: f[sv!]!,
        status: f[st!]!,
        requests: n(req!),
        responses2xx: n(r2!),
        responsesOther: n(r1!) + n(r3!) + n(r4!) + n(r5!) + n(ro!),
        current: n(cur!),
      };
    });
}

export async function startCluster(options: {
  instances: number;
  env: Record<string, string>;
  dir: string;
  subsets?: boolean;
  timeoutMs?: number;
}): Promise<Cluster> {
  const timeoutMs = options.timeoutMs ?? 180_000;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    ...options.env,
    CLUSTER_DIR: options.dir,
  };
  let exported: Record<string, string> = {};
  const up = async (n: number) => {
    const r = await run(['up', '-n', String(n), ...(options.subsets ? ['--subsets'] : [])], env, timeoutMs);
    if (r.code !== 0) throw new Error(`scripts/cluster up -n ${n} failed (exit ${r.code}):\n${r.stderr.slice(-4000)}`);
    exported = parseExports(r.stdout);
    if (!exported.CLUSTER_URL || !exported.CLUSTER_ADMIN_TOKEN) throw new Error(`scripts/cluster up printed no CLUSTER_URL:\n${r.stdout}\n${r.stderr.slice(-2000)}`);
  };
  await up(options.instances);
  const cluster: Cluster = {
    get url() {
      return exported.CLUSTER_URL!;
    },
    get urls() {
      const urls: Record<number, string> = {};
      for (const [k, v] of Object.entries(exported)) {
        const m = /^CLUSTER_URL_(\d+)$/.exec(k);
        if (m) urls[Number(m[1])] = v;
      }
      return urls;
    },
    get adminToken() {
      return exported.CLUSTER_ADMIN_TOKEN!;
    },
    dir: options.dir,
    get instances() {
      return Number(exported.CLUSTER_INSTANCES);
    },
    get instanceUrls() {
      return (exported.CLUSTER_INSTANCE_URLS ?? '').split(' ').filter(Boolean);
    },
    get statsUrl() {
      return exported.CLUSTER_STATS_URL!;
    },
    async stats() {
      const res = await fetch(`${exported.CLUSTER_STATS_URL};csv`);
      return parseStats(await res.text());
    },
    chainIds() {
      return Array.from({ length: cluster.instances }, (_, i) => readFileSync(join(options.dir, `instance-${i + 1}`, 'spool', 'chain-id'), 'utf8').trim());
    },
    async scale(n: number) {
      await up(n);
    },
    async down(purge = true) {
      const r = await run(['down', ...(purge ? ['--purge'] : [])], env, 120_000);
      if (r.code !== 0) throw new Error(`scripts/cluster down failed (exit ${r.code}):\n${r.stderr.slice(-2000)}`);
    },
    logTail(instance: number, chars = 3000) {
      try {
        return readFileSync(join(options.dir, `instance-${instance}.log`), 'utf8').slice(-chars);
      } catch {
        return '';
      }
    },
  };
  return cluster;
}

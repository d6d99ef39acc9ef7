/**
 * Scale-out launcher: a node:cluster primary forking BENCH_WORKERS copies of dist/src/server.js,
 * all listening on the same PORT (the primary hands connections round-robin). Every copy gets the
 * same environment (config, key vault, master key) but its own audit chain id, which is all a copy
 * needs: the service keeps no state of its own between requests. Prints "ready <n>" once every
 * worker listens.
 *
 *   BENCH_WORKERS=2 PORT=8080 ...service env... node bench/cluster.ts   (or with --import tsx)
 */
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';

const workers = Number(process.env.BENCH_WORKERS ?? 2);
cluster.setupPrimary({ exec: fileURLToPath(new URL('../dist/src/server.js', import.meta.url)), execArgv: ['--max-old-space-size=512'], silent: false });
let listening = 0;
cluster.on('listening', () => {
  listening += 1;
  if (listening === workers) console.log(`ready ${workers}`);
});
cluster.on('exit', (worker, code, signal) => {
  if (!stopping) {
    console.error(`worker ${worker.process.pid} exited (${code ?? signal})`);
    process.exit(1);
  }
});
let stopping = false;
const stop = () => {
  stopping = true;
  for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  setTimeout(() => process.exit(0), 3000).unref();
  cluster.on('exit', () => {
    if (Object.values(cluster.workers ?? {}).every((w) => w === undefined || w.isDead())) process.exit(0);
  });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// One audit chain per worker (AUDIT_CHAIN_ID-w<i>): appends of a chain are serialised within a
// process, and copies sharing a chain would contend on its sequence. Set BENCH_SHARED_CHAIN=1 to
// measure the shared-chain variant instead.
const chain = process.env.AUDIT_CHAIN_ID ?? 'main';
// Each worker is an instance with its own audit spool.
const spool = process.env.AUDIT_SPOOL_DIR ?? 'data/audit-spool';
for (let i = 0; i < workers; i++) {
  cluster.fork({ AUDIT_SPOOL_DIR: `${spool}/w${i}`, ...(process.env.BENCH_SHARED_CHAIN === '1' ? {} : { AUDIT_CHAIN_ID: `${chain}-w${i}` }) });
}

/**
 * Reproduces, with the bare MongoDB driver and no service code, the stall the fault tests found:
 * when the network to MongoDB is cut while commands are in flight, the driver's server monitor
 * could wait forever for 'drain' on a socket that closed under its write. The server then stayed
 * "Unknown" and every operation failed server selection, although MongoDB was back.
 * patches/mongodb+7.9.0.patch fixes it (see patches/README.md); run this after a driver upgrade.
 *
 *   eval "$(scripts/stack up)" && npx tsx scripts/repro-mongo-monitor-stall.ts [runs]
 *
 * Each run: a private FerretDB behind a TCP proxy, 4 workers (insert, then find), traffic slowed 400 ms, every
 * connection cut and new ones refused for 1.5 s, the proxy reopened, 5 s to recover. Prints each
 * run and "stalled N/M" (unpatched 7.9.0 on Node 20: about half the runs). Exit 1 if any run
 * stalled. REPRO_CLIENT_OPTIONS='{"serverMonitoringMode":"poll"}' tries other client options.
 */
import { MongoClient } from 'mongodb';
import { sleep, startOwnFerretDb, startTcpProxy } from '../test/faults/servers.js';

const teardowns: (() => unknown)[] = [];
const scope = { teardown: (fn: () => unknown) => void teardowns.push(fn) };
const runs = Number(process.argv[2] ?? 10);
const { version } = (await import('mongodb/package.json', { with: { type: 'json' } })).default as { version: string };

const ferret = await startOwnFerretDb(scope);
let stalled = 0;
for (let run = 1; run <= runs; run++) {
  const proxy = await startTcpProxy(scope, { host: '127.0.0.1', port: ferret.port });
  const client = new MongoClient(`mongodb://127.0.0.1:${proxy.port}/`, { serverSelectionTimeoutMS: 500, ...JSON.parse(process.env.REPRO_CLIENT_OPTIONS ?? '{}') });
  const collection = client.db('repro').collection('writes', { writeConcern: { w: 'majority', journal: true } });
  await collection.insertOne({ warm: true });
  let stop = false;
  let lastOk = 0;
  const writer = async () => {
    while (!stop) {
      try {
        await collection.insertOne({ at: new Date() });
        await collection.findOne({}, { sort: { _id: -1 } });
        lastOk = Date.now();
      } catch {
        await sleep(20);
      }
    }
  };
  const writers = Array.from({ length: 4 }, writer);
  await sleep(200);
  proxy.setMode('delay', 400);
  await sleep(150 + Math.random() * 400);
  await proxy.close();
  await sleep(1500);
  proxy.setMode('pass');
  const reopened = Date.now();
  await proxy.open();
  while (Date.now() - reopened < 5000 && lastOk <= reopened) await sleep(50);
  const recovered = lastOk > reopened;
  // Internal state, for the report only.
  const server = [...(client as any).topology.s.servers.values()][0];
  console.log(
    `run ${run}: ${recovered ? `recovered in ${lastOk - reopened} ms` : 'STALLED (no write succeeded within 5 s)'}; ` +
      `server ${server.description.type}, monitor ${server.monitor?.s?.state}, monitor connection closed: ${server.monitor?.connection?.closed ?? 'none'}`,
  );
  if (!recovered) stalled++;
  stop = true;
  await Promise.race([Promise.all(writers), sleep(2000)]);
  await Promise.race([client.close(), sleep(2000)]);
  await proxy.close();
}
console.log(`mongodb ${version}, node ${process.version}: stalled ${stalled}/${runs}`);
for (const fn of teardowns.reverse()) await fn();
process.exit(stalled > 0 ? 1 : 0);

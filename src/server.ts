import closeWithGrace from 'close-with-grace';
import { buildApp } from './plugins/app.js';
import { ConfigError } from './config.js';
import { loadConfig } from './plugins/config.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`encryption-proxy: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const app = await buildApp(config);
  // On SIGTERM or SIGINT: stop accepting, let in-flight requests finish (their writes are
  // acknowledged or answered as failed), close MongoDB and KMS clients, then exit 0 -- or exit 1
  // if that takes longer than SHUTDOWN_TIMEOUT_MS.
  closeWithGrace({ delay: config.shutdownTimeoutMs }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an unexpected error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
  });
  await app.listen({ host: config.host, port: config.port });
}

main().catch((err: unknown) => {
  process.stderr.write(`encryption-proxy: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

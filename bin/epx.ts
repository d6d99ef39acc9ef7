#!/usr/bin/env node
/**
 * epx: the operator's command line for the encryption proxy. It talks to the HTTP API only, with
 * the token from EPX_TOKEN or --token-file, at EPX_URL (default http://127.0.0.1:8080). The
 * commands live in bin/epx/, one file per group; `epx --help` lists them all.
 *
 * Exit codes: 0 done, 1 the API refused (4xx), 2 wrong usage, 3 the service failed or could not be
 * reached (5xx, network), 4 a job failed (or was cancelled, when waiting for it to succeed), 5 the
 * audit trail did not verify.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EXIT } from './epx/client.js';
import { run } from './epx/cli.js';

export { EXIT, run };

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  run(process.argv.slice(2), process.env, (line) => process.stdout.write(`${line}\n`), {
    interactive: process.stdout.isTTY === true,
    err: (line) => process.stderr.write(`${line}\n`),
  }).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`epx: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT.unavailable);
    },
  );
}

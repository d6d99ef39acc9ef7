/**
 * The command line: which group and command, their options (node:util parseArgs, strict per
 * group), the token, and the exit code. Each group lives in its own file.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { audit } from './audit.js';
import { CliError, EXIT, type Context } from './client.js';
import { clients } from './clients.js';
import type { CommandGroup, Options, Values } from './command.js';
import { jobs } from './jobs.js';
import { keys } from './keys.js';
import { rotations } from './rotations.js';
import { schemas } from './schemas.js';

export const GROUPS: readonly CommandGroup[] = [keys, schemas, rotations, jobs, clients, audit];

const GLOBAL: Options = {
  url: { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const FOOTER = `Options: --url URL (or EPX_URL, default http://127.0.0.1:8080), --token-file FILE (or EPX_TOKEN),
         --json (the API's JSON, for scripts), --help (epx GROUP --help: one group)
Exit codes: 0 done, 1 the API refused (4xx), 2 wrong usage, 3 the service failed or could not be
reached (5xx, network), 4 a job failed (or was cancelled, when waiting for it to succeed),
5 the audit trail did not verify.`;

export function usage(group?: CommandGroup): string {
  const body = (group ? [group] : GROUPS).map((g) => g.usage).join('\n');
  return `Usage: epx ${group ? group.name : '<group>'} <command> [options]\n\n${body}\n\n${FOOTER}`;
}

export interface RunOptions {
  /** Whether stdout is a terminal (progress bars). */
  interactive?: boolean;
  /** Where error lines go (stderr); `out` when not given. */
  err?: (line: string) => void;
  /** How often a waiting command polls its job (ms). */
  pollMs?: number;
}

/** The group named by the first positional; every option of every group is known, so option values are not mistaken for it. */
function groupOf(argv: string[]): CommandGroup | undefined {
  const options: Options = { ...GLOBAL };
  for (const group of GROUPS) Object.assign(options, group.options);
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: false, options });
  return GROUPS.find((group) => group.name === positionals[0]);
}

/** Run one command; returns the exit code. */
export async function run(argv: string[], env: Record<string, string | undefined>, out: (line: string) => void, options: RunOptions = {}): Promise<number> {
  const err = options.err ?? out;
  const group = groupOf(argv);
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { ...GLOBAL, ...group?.options } });
  } catch (e) {
    err(`epx: ${(e as Error).message}\n\n${usage(group)}`);
    return EXIT.usage;
  }
  const values = parsed.values as Values;
  const [, ...rest] = parsed.positionals;
  if (values.help === true) {
    out(usage(group));
    return EXIT.ok;
  }
  if (group === undefined) {
    err(parsed.positionals[0] === undefined ? usage() : `epx: no command group ${parsed.positionals[0]}\n\n${usage()}`);
    return EXIT.usage;
  }
  const two = `${rest[0] ?? ''} ${rest[1] ?? ''}`;
  const [name, args] = two in group.commands ? [two, rest.slice(2)] : [rest[0] ?? '', rest.slice(1)];
  const command = group.commands[name];
  if (command === undefined) {
    err(`${rest[0] === undefined ? '' : `epx: no command ${group.name} ${rest[0]}\n\n`}${usage(group)}`);
    return EXIT.usage;
  }

  let token: string | undefined;
  const tokenFile = typeof values['token-file'] === 'string' ? values['token-file'] : undefined;
  try {
    token = tokenFile ? readFileSync(tokenFile, 'utf8').trim() : env.EPX_TOKEN;
  } catch (e) {
    err(`epx: cannot read the token file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return EXIT.usage;
  }
  if (!token) {
    err('epx: no token: set EPX_TOKEN or pass --token-file');
    return EXIT.usage;
  }
  const url = (typeof values.url === 'string' ? values.url : (env.EPX_URL ?? 'http://127.0.0.1:8080')).replace(/\/+$/, '');
  const ctx: Context = { url, token, json: values.json === true, out, interactive: options.interactive === true, pollMs: options.pollMs ?? 250 };
  try {
    return await command({ ctx, args, values });
  } catch (e) {
    if (e instanceof CliError) {
      err(`epx: ${e.message}`);
      return e.exitCode;
    }
    throw e;
  }
}

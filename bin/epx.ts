#!/usr/bin/env node
/**
 * epx: the operator's command line for the encryption proxy. It talks to the HTTP API only, with
 * the token from EPX_TOKEN or --token-file, at EPX_URL (default http://127.0.0.1:8080).
 *
 * Exit codes: 0 done, 1 the API refused (4xx), 2 wrong usage, 3 the service failed or could not be
 * reached (5xx, network), 4 a job ended in failure.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SingleBar, Presets } from 'cli-progress';

const USAGE = `Usage: epx <command> [options]

  keys list [--limit N] [--provider local|aws]      list data keys (metadata only)
  keys create --provider local|aws [--key ARN] [--alt-name NAME ...]
  keys report [--older-than-days N]                 master keys and wrappings due for rotation
  keys migrate (--from-provider P | --from-key ARN | --id UUID ...) --to-provider P [--to-key ARN]
               [--dry-run] [--no-wait] [--allow-downgrade]
                                                    rewrap data keys under a new master key
                                                    (AWS → local needs --allow-downgrade and the operator token)
  jobs status JOB_ID [--wait]                       progress of a background job

Options: --url URL (or EPX_URL), --token-file FILE (or EPX_TOKEN), --json (raw JSON output)`;

export const EXIT = { ok: 0, refused: 1, usage: 2, unavailable: 3, jobFailed: 4 } as const;

class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface Context {
  url: string;
  token: string;
  json: boolean;
  out: (line: string) => void;
}

async function api(ctx: Context, method: string, path: string, body?: unknown): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(`${ctx.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ctx.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (err) {
    throw new CliError(`cannot reach ${ctx.url}: ${(err as Error).message}`, EXIT.unavailable);
  }
  const text = await response.text();
  const data = text === '' ? undefined : (JSON.parse(text) as unknown);
  if (!response.ok) {
    const problem = (data ?? {}) as { code?: string; title?: string; detail?: string };
    const message = `${response.status} ${problem.code ?? ''}: ${problem.detail ?? problem.title ?? 'request failed'}`;
    throw new CliError(message, response.status >= 500 ? EXIT.unavailable : EXIT.refused);
  }
  return data;
}

function print(ctx: Context, data: unknown, lines: () => string[]): void {
  if (ctx.json) ctx.out(JSON.stringify(data, null, 2));
  else for (const line of lines()) ctx.out(line);
}

interface Job {
  id: string;
  state: string;
  progress: { total: number; done: number; failed: number; phase: string };
  result?: Record<string, unknown>;
  error?: { code: string; detail?: string };
}

async function waitForJob(ctx: Context, id: string, interactive: boolean): Promise<Job> {
  let job = (await api(ctx, 'GET', `/jobs/${id}`)) as Job;
  const bar = interactive ? new SingleBar({ format: ' {bar} {value}/{total} keys | {phase}', hideCursor: true }, Presets.shades_classic) : undefined;
  bar?.start(Math.max(job.progress.total, 1), job.progress.done, { phase: job.progress.phase });
  while (job.state === 'running') {
    await new Promise((resolve) => setTimeout(resolve, 250));
    job = (await api(ctx, 'GET', `/jobs/${id}`)) as Job;
    bar?.update(job.progress.done, { phase: job.progress.phase });
  }
  bar?.stop();
  return job;
}

function reportJob(ctx: Context, job: Job): number {
  print(ctx, job, () =>
    job.state === 'succeeded'
      ? [`job ${job.id} succeeded: ${JSON.stringify({ ...job.result, keyIds: undefined })}`]
      : [`job ${job.id} ${job.state}: ${job.error?.code ?? ''} ${job.error?.detail ?? ''}`.trim()],
  );
  return job.state === 'succeeded' ? EXIT.ok : job.state === 'running' ? EXIT.ok : EXIT.jobFailed;
}

function masterKey(provider: string | undefined, key: string | undefined): Record<string, string> {
  if (provider !== 'local' && provider !== 'aws') throw new CliError('name a provider: local or aws', EXIT.usage);
  return provider === 'aws' ? { provider, ...(key ? { key } : {}) } : { provider };
}

/** Run one command; returns the exit code. */
export async function run(argv: string[], env: Record<string, string | undefined>, out: (line: string) => void, interactive = false): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        'token-file': { type: 'string' },
        json: { type: 'boolean', default: false },
        limit: { type: 'string' },
        provider: { type: 'string' },
        key: { type: 'string' },
        'alt-name': { type: 'string', multiple: true },
        'older-than-days': { type: 'string' },
        'from-provider': { type: 'string' },
        'from-key': { type: 'string' },
        id: { type: 'string', multiple: true },
        'to-provider': { type: 'string' },
        'to-key': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        'allow-downgrade': { type: 'boolean', default: false },
        'no-wait': { type: 'boolean', default: false },
        wait: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    out(`${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  const { values: o, positionals } = parsed;
  const [group, command, arg] = positionals;
  if (o.help || group === undefined) {
    out(USAGE);
    return o.help ? EXIT.ok : EXIT.usage;
  }
  const token = o['token-file'] ? readFileSync(o['token-file'], 'utf8').trim() : env.EPX_TOKEN;
  if (!token) {
    out('no token: set EPX_TOKEN or pass --token-file');
    return EXIT.usage;
  }
  const ctx: Context = { url: (o.url ?? env.EPX_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, ''), token, json: o.json, out };

  try {
    switch (`${group} ${command ?? ''}`) {
      case 'keys list': {
        const query = new URLSearchParams({ limit: o.limit ?? '100', ...(o.provider ? { provider: o.provider } : {}) });
        const page = (await api(ctx, 'GET', `/keys?${query}`)) as { items: { id: string; keyAltNames: string[]; masterKey: Record<string, string>; wrapAgeDays: number }[] };
        print(ctx, page, () => page.items.map((k) => `${k.id}  ${k.masterKey.provider}${k.masterKey.key ? ` ${k.masterKey.key}` : ''}  wrapped ${k.wrapAgeDays}d ago  ${k.keyAltNames.join(',')}`));
        return EXIT.ok;
      }
      case 'keys create': {
        const key = (await api(ctx, 'POST', '/keys', { masterKey: masterKey(o.provider, o.key), ...(o['alt-name'] ? { keyAltNames: o['alt-name'] } : {}) })) as { id: string };
        print(ctx, key, () => [key.id]);
        return EXIT.ok;
      }
      case 'keys report': {
        const report = (await api(ctx, 'GET', `/keys/rotation-report?olderThanDays=${o['older-than-days'] ?? '90'}`)) as {
          dataKeys: number;
          due: number;
          olderThanDays: number;
          masterKeys: { masterKey: Record<string, string>; dataKeys: number; due: number; oldestWrapDate: string }[];
        };
        print(ctx, report, () => [
          `${report.dataKeys} data keys, ${report.due} wrapped more than ${report.olderThanDays} days ago`,
          ...report.masterKeys.map((m) => `  ${m.masterKey.provider}${m.masterKey.key ? ` ${m.masterKey.key}` : ''}: ${m.dataKeys} keys, ${m.due} due, oldest wrap ${m.oldestWrapDate}`),
        ]);
        return EXIT.ok;
      }
      case 'keys migrate': {
        const filter: Record<string, unknown> = {};
        if (o['from-provider']) filter.provider = o['from-provider'];
        if (o['from-key']) filter.masterKey = o['from-key'];
        if (o.id) filter.keyIds = o.id;
        if (Object.keys(filter).length === 0) throw new CliError('say which keys: --from-provider, --from-key or --id', EXIT.usage);
        const body = {
          filter,
          masterKey: masterKey(o['to-provider'], o['to-key']),
          dryRun: o['dry-run'],
          ...(o['allow-downgrade'] ? { allowDowngrade: true } : {}),
        };
        const answer = (await api(ctx, 'POST', '/keys/migrations', body)) as Job & {
          dryRun?: boolean;
          matched?: number;
          keyIds?: string[];
          downgrade?: { keyIds: string[]; allowed: boolean; detail: string };
        };
        if (answer.dryRun) {
          const { downgrade } = answer;
          print(ctx, answer, () => [
            `would migrate ${answer.matched} data keys`,
            ...(answer.keyIds ?? []).map((id) => `  ${id}`),
            ...(downgrade ? [`${downgrade.keyIds.length} of them down from a KMS to the local master key: ${downgrade.allowed ? 'allowed' : 'refused'}. ${downgrade.detail}`] : []),
          ]);
          return EXIT.ok;
        }
        if (o['no-wait']) {
          print(ctx, answer, () => [`started job ${answer.id}`]);
          return EXIT.ok;
        }
        return reportJob(ctx, await waitForJob(ctx, answer.id, interactive && !o.json));
      }
      case 'jobs status': {
        if (!arg) throw new CliError('name the job: epx jobs status JOB_ID', EXIT.usage);
        const job = o.wait ? await waitForJob(ctx, arg, interactive && !o.json) : ((await api(ctx, 'GET', `/jobs/${arg}`)) as Job);
        if (!o.wait && job.state === 'running') {
          print(ctx, job, () => [`job ${job.id} running: ${job.progress.done}/${job.progress.total} (${job.progress.phase})`]);
          return EXIT.ok;
        }
        return reportJob(ctx, job);
      }
      default:
        out(USAGE);
        return EXIT.usage;
    }
  } catch (err) {
    if (err instanceof CliError) {
      out(`epx: ${err.message}`);
      return err.exitCode;
    }
    throw err;
  }
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  run(process.argv.slice(2), process.env, (line) => process.stdout.write(`${line}\n`), process.stdout.isTTY === true).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`epx: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT.unavailable);
    },
  );
}

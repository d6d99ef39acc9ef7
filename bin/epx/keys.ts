/** epx keys …: data keys, their alt names, the trash (delete, restore, purge), rotation report and migration. */
import { api, CliError, EXIT, listPages, query, segment } from './client.js';
import { flag, integerOf, oneOf, required, stringOf, stringsOf, usageError, type CommandGroup, type Invocation } from './command.js';
import { columns, print, reportJob, waitForJob, type Job } from './output.js';

interface Key {
  id: string;
  keyAltNames: string[];
  masterKey: Record<string, string>;
  wrapAgeDays: number;
  state?: string;
  deletedAt?: string;
}

const masterKeyText = (m: Record<string, string>) => `${m.provider}${m.key ? ` ${m.key}` : ''}`;

function keyRow(k: Key): string[] {
  const deleted = k.state === 'deleted' || k.deletedAt !== undefined ? `deleted${k.deletedAt ? ` ${k.deletedAt}` : ''}` : '';
  return [k.id, masterKeyText(k.masterKey), `wrapped ${k.wrapAgeDays}d ago`, ...(deleted ? [deleted] : []), k.keyAltNames.join(',')];
}

function masterKey(provider: string | undefined, key: string | undefined): Record<string, string> {
  if (provider !== 'local' && provider !== 'aws') throw usageError('name a provider: local or aws');
  return provider === 'aws' ? { provider, ...(key ? { key } : {}) } : { provider };
}

/** The key a command acts on: `/keys/<id>`. */
const keyPath = (args: string[], usage: string) => `/keys/${segment(required(args, 0, 'the key id', usage))}`;

async function list({ ctx, values }: Invocation) {
  const params = {
    limit: integerOf(values, 'limit', 1, 1000) ?? 100,
    provider: oneOf(values, 'provider', ['local', 'aws'] as const),
    state: oneOf(values, 'state', ['active', 'deleted', 'all'] as const),
  };
  const page = await listPages<Key>(ctx, '/keys', params, flag(values, 'all'));
  print(ctx, page, () => [...columns(page.items.map(keyRow)), ...(page.next ? [`more: --all, or the API with after=${page.next}`] : [])]);
  return EXIT.ok;
}

async function get({ ctx, args, values }: Invocation) {
  const names = stringsOf(values, 'alt-name');
  const altName = names[0];
  if (names.length > 1 || (altName === undefined) === (args[0] === undefined)) throw usageError('name the key by id or by one --alt-name NAME: epx keys get ID');
  const key = (await api(ctx, 'GET', altName === undefined ? `/keys/${segment(args[0]!)}` : `/keys/by-alt-name/${segment(altName)}`)) as Key & Record<string, unknown>;
  print(ctx, key, () => columns([keyRow(key)]));
  return EXIT.ok;
}

async function create({ ctx, values }: Invocation) {
  const altNames = stringsOf(values, 'alt-name');
  const body = { masterKey: masterKey(stringOf(values, 'provider'), stringOf(values, 'key')), ...(altNames.length > 0 ? { keyAltNames: altNames } : {}) };
  const key = (await api(ctx, 'POST', '/keys', body)) as Key;
  print(ctx, key, () => [key.id]);
  return EXIT.ok;
}

async function remove({ ctx, args, values }: Invocation) {
  const force = flag(values, 'force');
  const path = keyPath(args, 'keys delete ID [--force]');
  try {
    const answer = await api(ctx, 'DELETE', `${path}${query({ force: force ? 'true' : undefined })}`);
    print(ctx, answer ?? { id: args[0], deleted: true }, () => [`deleted ${args[0]}${force ? ' (forced)' : ''}: restore it with epx keys restore ${args[0]}, or purge it for good`]);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CliError && err.code === 'KEY_IN_USE' && !force) {
      throw new CliError(`${err.message} (a collection schema names it; --force deletes it anyway)`, err.exitCode, err.code);
    }
    throw err;
  }
}

async function restore({ ctx, args }: Invocation) {
  const answer = await api(ctx, 'POST', `${keyPath(args, 'keys restore ID')}/restore`);
  print(ctx, answer ?? { id: args[0], restored: true }, () => [`restored ${args[0]}`]);
  return EXIT.ok;
}

async function purge({ ctx, args }: Invocation) {
  const answer = await api(ctx, 'POST', `${keyPath(args, 'keys purge ID')}/purge`);
  print(ctx, answer ?? { id: args[0], purged: true }, () => [`purged ${args[0]}: everything encrypted with it is unreadable for good`]);
  return EXIT.ok;
}

async function addAltName({ ctx, args }: Invocation) {
  const usage = 'keys alt-names add ID NAME';
  const path = keyPath(args, usage);
  const key = (await api(ctx, 'POST', `${path}/alt-names`, { keyAltName: required(args, 1, 'the alt name', usage) })) as Key;
  print(ctx, key, () => columns([keyRow(key)]));
  return EXIT.ok;
}

async function removeAltName({ ctx, args, values }: Invocation) {
  const usage = 'keys alt-names remove ID NAME [--force]';
  const path = keyPath(args, usage);
  const force = flag(values, 'force');
  const url = `${path}/alt-names/${segment(required(args, 1, 'the alt name', usage))}${query({ force: force ? 'true' : undefined })}`;
  const key = (await api(ctx, 'DELETE', url).catch((err: unknown) => {
    if (err instanceof CliError && err.code === 'KEY_IN_USE') throw new CliError(`${err.message} (a collection schema names the key by it; --force removes it anyway)`, err.exitCode, err.code);
    throw err;
  })) as Key;
  print(ctx, key, () => columns([keyRow(key)]));
  return EXIT.ok;
}

async function report({ ctx, values }: Invocation) {
  // Without --older-than-days the server's KEY_ROTATION_PERIOD_DAYS applies.
  const olderThanDays = integerOf(values, 'older-than-days', 1, 36500);
  const answer = (await api(ctx, 'GET', `/keys/rotation-report${query({ olderThanDays })}`)) as {
    dataKeys: number;
    due: number;
    olderThanDays: number;
    masterKeys: { masterKey: Record<string, string>; dataKeys: number; due: number; oldestWrapDate: string }[];
  };
  print(ctx, answer, () => [
    `${answer.dataKeys} data keys, ${answer.due} wrapped more than ${answer.olderThanDays} days ago`,
    ...answer.masterKeys.map((m) => `  ${masterKeyText(m.masterKey)}: ${m.dataKeys} keys, ${m.due} due, oldest wrap ${m.oldestWrapDate}`),
  ]);
  return EXIT.ok;
}

async function migrate({ ctx, values }: Invocation) {
  const filter: Record<string, unknown> = {};
  const fromProvider = oneOf(values, 'from-provider', ['local', 'aws'] as const);
  if (fromProvider) filter.provider = fromProvider;
  if (stringOf(values, 'from-key')) filter.masterKey = stringOf(values, 'from-key');
  if (stringsOf(values, 'id').length > 0) filter.keyIds = stringsOf(values, 'id');
  if (Object.keys(filter).length === 0) throw usageError('say which keys: --from-provider, --from-key or --id');
  const body = {
    filter,
    masterKey: masterKey(stringOf(values, 'to-provider'), stringOf(values, 'to-key')),
    dryRun: flag(values, 'dry-run'),
    ...(flag(values, 'allow-downgrade') ? { allowDowngrade: true } : {}),
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
  if (flag(values, 'no-wait')) {
    print(ctx, answer, () => [`started job ${answer.id}: epx jobs status ${answer.id} --wait`]);
    return EXIT.ok;
  }
  return reportJob(ctx, await waitForJob(ctx, answer.id));
}

export const keys: CommandGroup = {
  name: 'keys',
  usage: `  keys list [--limit N] [--provider local|aws] [--state active|deleted|all] [--all]
                                                    list data keys (metadata only); --all follows every page
  keys get (ID | --alt-name NAME)                   one data key
  keys create --provider local|aws [--key ARN] [--alt-name NAME ...]
                                                    a new data key under a master key
  keys delete ID [--force]                          move a data key to the trash (--force: even if a schema names it)
  keys restore ID                                   take a deleted data key back out of the trash
  keys purge ID                                     destroy a deleted data key: its ciphertexts are lost for good
  keys alt-names add ID NAME                        give a data key another alt name
  keys alt-names remove ID NAME [--force]           take an alt name away from a data key (--force: even if a schema uses it)
  keys report [--older-than-days N]                 master keys and wrappings due for rotation
  keys migrate (--from-provider P | --from-key ARN | --id UUID ...) --to-provider P [--to-key ARN]
               [--dry-run] [--no-wait] [--allow-downgrade]
                                                    rewrap data keys under a new master key
                                                    (AWS → local needs --allow-downgrade and the operator token)`,
  options: {
    limit: { type: 'string' },
    provider: { type: 'string' },
    state: { type: 'string' },
    all: { type: 'boolean' },
    key: { type: 'string' },
    'alt-name': { type: 'string', multiple: true },
    force: { type: 'boolean' },
    'older-than-days': { type: 'string' },
    'from-provider': { type: 'string' },
    'from-key': { type: 'string' },
    id: { type: 'string', multiple: true },
    'to-provider': { type: 'string' },
    'to-key': { type: 'string' },
    'dry-run': { type: 'boolean' },
    'allow-downgrade': { type: 'boolean' },
    'no-wait': { type: 'boolean' },
  },
  commands: {
    list,
    get,
    create,
    delete: remove,
    restore,
    purge,
    'alt-names add': addAltName,
    'alt-names remove': removeAltName,
    report,
    migrate,
  },
};

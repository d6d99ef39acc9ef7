/** epx schemas …: the collection schemas (CSFLE JSON schemas) the service encrypts documents by. */
import { readFileSync } from 'node:fs';
import { api, EXIT, query, segment } from './client.js';
import { flag, integerOf, required, stringOf, usageError, type CommandGroup, type Invocation } from './command.js';
import { columns, print } from './output.js';

/** A schema or one of its versions, as far as epx needs to know it; anything else is printed as given. */
interface SchemaEntry {
  namespace?: string;
  ns?: string;
  version?: number;
  comment?: string;
  updatedAt?: string;
  createdAt?: string;
  updatedBy?: string;
  createdBy?: string;
  schema?: unknown;
}

const itemsOf = (answer: unknown): SchemaEntry[] =>
  Array.isArray(answer) ? (answer as SchemaEntry[]) : (((answer as { items?: SchemaEntry[] } | undefined)?.items ?? []) as SchemaEntry[]);

function entryRow(entry: SchemaEntry, withNamespace: boolean): string[] {
  return [
    ...(withNamespace ? [entry.namespace ?? entry.ns ?? '?'] : []),
    entry.version === undefined ? '' : `v${entry.version}`,
    entry.updatedAt ?? entry.createdAt ?? '',
    entry.updatedBy ?? entry.createdBy ?? '',
    entry.comment ?? '',
  ];
}

const nsPath = (args: string[], usage: string) => `/schemas/${segment(required(args, 0, 'the namespace (db.collection)', usage))}`;

async function list({ ctx }: Invocation) {
  const answer = await api(ctx, 'GET', '/schemas');
  print(ctx, answer, () => {
    const items = itemsOf(answer);
    return items.length === 0 ? ['no collection schemas'] : columns(items.map((entry) => entryRow(entry, true)));
  });
  return EXIT.ok;
}

async function get({ ctx, args }: Invocation) {
  const answer = (await api(ctx, 'GET', nsPath(args, 'schemas get NS'))) as SchemaEntry;
  print(ctx, answer, () => [
    ...(answer.version === undefined ? [] : [`# ${args[0]} v${answer.version}${answer.comment ? `: ${answer.comment}` : ''}`]),
    JSON.stringify(answer.schema ?? answer, null, 2),
  ]);
  return EXIT.ok;
}

/** The schema in FILE: JSON, a CSFLE schema document (what PUT /schemas/{ns} takes as `schema`). */
function readSchema(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (err) {
    throw usageError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw usageError(`${file} must hold a JSON object (a collection schema)`);
  return schema as Record<string, unknown>;
}

async function put({ ctx, args, values }: Invocation) {
  const usage = 'schemas put NS FILE [--dry-run] [--comment TEXT] [--if-version N]';
  const path = nsPath(args, usage);
  const schema = readSchema(required(args, 1, 'the schema file', usage));
  const comment = stringOf(values, 'comment');
  const ifVersion = integerOf(values, 'if-version', 0, Number.MAX_SAFE_INTEGER);
  const dryRun = flag(values, 'dry-run');
  const body = { schema, ...(comment === undefined ? {} : { comment }), ...(ifVersion === undefined ? {} : { ifVersion }) };
  const answer = (await api(ctx, 'PUT', `${path}${query({ dryRun: dryRun ? 'true' : undefined })}`, body)) as SchemaEntry | undefined;
  print(ctx, answer ?? { dryRun }, () => {
    const version = answer?.version === undefined ? '' : ` v${answer.version}`;
    return [dryRun ? `dry run: the schema of ${args[0]} is valid and would become${version || ' the next version'}; nothing was written` : `${args[0]} is now${version || ' updated'}`];
  });
  return EXIT.ok;
}

async function remove({ ctx, args }: Invocation) {
  await api(ctx, 'DELETE', nsPath(args, 'schemas delete NS'));
  print(ctx, { namespace: args[0], deleted: true }, () => [`deleted the schema of ${args[0]}`]);
  return EXIT.ok;
}

async function history({ ctx, args }: Invocation) {
  const answer = await api(ctx, 'GET', `${nsPath(args, 'schemas history NS')}/versions`);
  print(ctx, answer, () => columns(itemsOf(answer).map((entry) => entryRow(entry, false))));
  return EXIT.ok;
}

export const schemas: CommandGroup = {
  name: 'schemas',
  usage: `  schemas list                                      collections with a schema, and their versions
  schemas get NS                                    the schema of a collection (db.collection)
  schemas put NS FILE [--dry-run] [--comment TEXT] [--if-version N]
                                                    set a collection's schema from a JSON file (--dry-run: only check it;
                                                    --if-version: only if the current version is N)
  schemas delete NS                                 remove a collection's schema
  schemas history NS                                every version of a collection's schema`,
  options: {
    'dry-run': { type: 'boolean' },
    comment: { type: 'string' },
    'if-version': { type: 'string' },
  },
  commands: { list, get, put, delete: remove, history },
};

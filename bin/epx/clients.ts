/** epx clients …: API clients, their grants and tokens. */
import { readFileSync } from 'node:fs';
import { api, CliError, EXIT, listPages, segment } from './client.js';
import { flag, integerOf, required, stringOf, stringsOf, usageError, type CommandGroup, type Invocation } from './command.js';
import { columns, print } from './output.js';

interface Grant {
  scope: string;
  keyAltNames?: string[];
  keyIds?: string[];
}

interface Client {
  id: string;
  name: string;
  grants: Grant[];
  disabled: boolean;
  jwtSubject?: string;
  certSubject?: string;
  tokens: { id: string; createdAt: string; expiresAt?: string }[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `SCOPE` or `SCOPE=LIMIT,LIMIT…`, where a LIMIT that is a UUID is a key id and any other an alt-name pattern. */
export function parseGrant(text: string): Grant {
  const at = text.indexOf('=');
  const scope = at === -1 ? text : text.slice(0, at);
  if (scope === '') throw usageError(`--grant ${text}: name a scope`);
  if (at === -1) return { scope };
  const limits = text.slice(at + 1).split(',').filter((limit) => limit !== '');
  if (limits.length === 0) throw usageError(`--grant ${text}: name key ids or alt-name patterns after =, or leave out the =`);
  const keyIds = limits.filter((limit) => UUID.test(limit));
  const keyAltNames = limits.filter((limit) => !UUID.test(limit));
  return { scope, ...(keyIds.length > 0 ? { keyIds } : {}), ...(keyAltNames.length > 0 ? { keyAltNames } : {}) };
}

const grantText = (grant: Grant) => {
  const limits = [...(grant.keyIds ?? []), ...(grant.keyAltNames ?? [])];
  return limits.length === 0 ? grant.scope : `${grant.scope}=${limits.join(',')}`;
};

function grantsOf(values: Invocation['values']): Grant[] {
  const file = stringOf(values, 'grants-file');
  const inline = stringsOf(values, 'grant').map(parseGrant);
  if (file === undefined) return inline;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw usageError(`--grants-file ${file}: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw usageError(`--grants-file ${file} must hold a JSON array of grants`);
  return [...(parsed as Grant[]), ...inline];
}

async function create({ ctx, values }: Invocation) {
  const name = stringOf(values, 'name');
  if (name === undefined) throw usageError('name the client: epx clients create --name NAME --grant SCOPE ...');
  const grants = grantsOf(values);
  if (grants.length === 0) throw usageError('give the client at least one --grant (or --grants-file)');
  const jwtSubject = stringOf(values, 'jwt-subject');
  const certSubject = stringOf(values, 'cert-subject');
  const body = { name, grants, ...(jwtSubject ? { jwtSubject } : {}), ...(certSubject ? { certSubject } : {}) };
  const created = (await api(ctx, 'POST', '/clients', body)) as { client: Client; token: string };
  print(ctx, created, () => [
    `client ${created.client.id} (${created.client.name}): ${created.client.grants.map(grantText).join(' ')}`,
    `token ${created.client.tokens[0]?.id ?? ''}: ${created.token}`,
    'the token is shown once: keep it now',
  ]);
  return EXIT.ok;
}

async function list({ ctx, values }: Invocation) {
  const page = await listPages<Client>(ctx, '/clients', { limit: integerOf(values, 'limit', 1, 1000) ?? 100 }, flag(values, 'all'));
  print(ctx, page, () => [
    ...columns(
      page.items.map((client) => [
        client.id,
        client.name,
        client.disabled ? 'disabled' : 'enabled',
        `${client.tokens.length} tokens`,
        client.grants.map(grantText).join(' '),
      ]),
    ),
    ...(page.next ? [`more: --all, or the API with after=${page.next}`] : []),
  ]);
  return EXIT.ok;
}

/** Revoke the named tokens of a client, or every token it has; the first refusal stops (exit 1). */
async function revokeTokens({ ctx, args, values }: Invocation) {
  const id = required(args, 0, 'the client', 'clients revoke-tokens CLIENT_ID [--token TOKEN_ID ...]');
  let tokenIds = stringsOf(values, 'token');
  if (tokenIds.length === 0) tokenIds = ((await api(ctx, 'GET', `/clients/${segment(id)}`)) as Client).tokens.map((token) => token.id);
  const revoked: string[] = [];
  try {
    for (const tokenId of tokenIds) {
      await api(ctx, 'DELETE', `/clients/${segment(id)}/tokens/${segment(tokenId)}`);
      revoked.push(tokenId);
      if (!ctx.json) ctx.out(`revoked token ${tokenId} of client ${id}`);
    }
  } catch (err) {
    if (err instanceof CliError && ctx.json) ctx.out(JSON.stringify({ client: id, revoked }, null, 2));
    throw err;
  }
  if (ctx.json) ctx.out(JSON.stringify({ client: id, revoked }, null, 2));
  else if (revoked.length === 0) ctx.out(`client ${id} has no tokens`);
  return EXIT.ok;
}

export const clients: CommandGroup = {
  name: 'clients',
  usage: `  clients create --name NAME (--grant SCOPE[=LIMIT,...] ... | --grants-file FILE) [--jwt-subject S] [--cert-subject S]
                                                    a new client and its first token (shown once); a LIMIT is a key id
                                                    or an alt-name pattern (billing-*)
  clients list [--limit N] [--all]                  clients, their grants and token counts
  clients revoke-tokens CLIENT_ID [--token TOKEN_ID ...]
                                                    revoke the given tokens of a client, or all of them`,
  options: {
    name: { type: 'string' },
    grant: { type: 'string', multiple: true },
    'grants-file': { type: 'string' },
    'jwt-subject': { type: 'string' },
    'cert-subject': { type: 'string' },
    limit: { type: 'string' },
    all: { type: 'boolean' },
    token: { type: 'string', multiple: true },
  },
  commands: { create, list, 'revoke-tokens': revokeTokens },
};

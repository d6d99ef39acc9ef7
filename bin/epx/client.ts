/**
 * How epx talks to the service: one HTTP call per request with the operator's token, problem
 * documents turned into one line and an exit code. Nothing here prints a token or a request body.
 */

/** Exit codes, for scripts: documented in `epx --help` and the README. */
export const EXIT = { ok: 0, refused: 1, usage: 2, unavailable: 3, jobFailed: 4, auditInvalid: 5 } as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    /** The problem's stable code, when the API refused. */
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface Context {
  url: string;
  token: string;
  json: boolean;
  out: (line: string) => void;
  /** Whether stdout is a terminal: progress bars instead of plain lines. */
  interactive: boolean;
  /** How often a waiting command asks for a job's state. */
  pollMs: number;
}

/** A path segment from user input: `../clients` stays one segment, and `..` alone is refused (URLs resolve it). */
export function segment(value: string): string {
  if (value === '.' || value === '..') throw new CliError(`"${value}" is not a name`, EXIT.usage);
  return encodeURIComponent(value);
}

/** A query string from the given parameters, leaving out those not set. */
export function query(params: Record<string, string | number | boolean | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) search.set(name, String(value));
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}

export async function api(ctx: Context, method: string, path: string, body?: unknown): Promise<unknown> {
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
  let data: unknown;
  try {
    data = text === '' ? undefined : (JSON.parse(text) as unknown);
  } catch {
    // A proxy's HTML error page, say: say what came back, not a JSON parser's complaint.
    throw new CliError(`${response.status}: the answer from ${ctx.url} is not JSON`, response.status >= 400 && response.status < 500 ? EXIT.refused : EXIT.unavailable);
  }
  if (!response.ok) {
    const problem = (data ?? {}) as { code?: string; title?: string; detail?: string };
    const message = `${response.status} ${problem.code ?? ''}: ${problem.detail ?? problem.title ?? 'request failed'}`;
    throw new CliError(message, response.status >= 500 ? EXIT.unavailable : EXIT.refused, problem.code);
  }
  return data;
}

/**
 * A listing: one page, or with `all` every page (following `next` as `after`), as one
 * `{ items, next? }`.
 */
export async function listPages<T>(ctx: Context, path: string, params: Record<string, string | number | undefined>, all: boolean): Promise<{ items: T[]; next?: string }> {
  const items: T[] = [];
  let after: string | undefined;
  for (;;) {
    const page = (await api(ctx, 'GET', `${path}${query({ ...params, after })}`)) as { items: T[]; next?: string };
    items.push(...page.items);
    if (!all || page.next === undefined) return page.next === undefined ? { items } : { items, next: page.next };
    after = page.next;
  }
}

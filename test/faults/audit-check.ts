/**
 * For the audit fault tests: a stream of requests over HTTP whose every answer is noted with its
 * x-request-id and the order answers arrived in; the audit chain as MongoDB holds it, read raw and
 * checked link by link; the spool's records read from its files; and the checks each test makes
 * of a trail against the answers the clients got.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Collection } from 'mongodb';
import { ADMIN_TOKEN } from '../helpers/app.js';
import { sleep } from './servers.js';

export type Kind = 'encrypt' | 'decrypt' | 'key' | 'insert';

export const ACTION: Record<Kind, string> = { encrypt: 'crypto.encrypt', decrypt: 'crypto.decrypt', key: 'keys.create', insert: 'documents.insert' };
/** Side-effect-free operations record one event (their outcome); the others also `started` first. */
export const READ_ONLY: Record<Kind, boolean> = { encrypt: true, decrypt: true, key: false, insert: false };

export interface Answer {
  i: number;
  kind: Kind;
  sentAt: number;
  /** When the status line arrived (or the request failed). */
  doneAt: number;
  status?: number;
  code?: string;
  requestId?: string;
  /** No answer: the connection failed or was cut (e.g. ECONNRESET, ECONNREFUSED). */
  error?: string;
  /** Position among the answers, in the order they arrived. */
  order?: number;
  /** POST /keys: the alt name asked for; POST /documents: the document's name. */
  name?: string;
}

export const is2xx = (a: Answer) => a.status !== undefined && a.status >= 200 && a.status < 300;

/** What a request of each kind sends. */
export interface LoadTargets {
  /** Single-value encryption under this key (by id: a cached key needs no database read). */
  keyId: string;
  /** A ciphertext under that key, for /decrypt. */
  ciphertext: string;
  /** The documents route and a body maker, for inserts. */
  documents?: { url: string; body(name: string): unknown };
  /** A tag for alt names and document names, unique to the run. */
  run: string;
}

export interface HttpAnswer {
  status: number;
  requestId?: string;
  headers: Headers;
  body: any;
}

/** One request with the admin token; JSON in and out. Throws when there is no answer. */
export async function httpCall(base: string, method: string, path: string, body?: unknown, timeoutMs = 15_000): Promise<HttpAnswer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Text (metrics) stays text.
  }
  return { status: res.status, requestId: res.headers.get('x-request-id') ?? undefined, headers: res.headers, body: parsed };
}

/**
 * A stream of requests against `base()` (a function: the server may be restarted on another
 * port). Each answer is noted as soon as its status line arrives: a 2xx status is an answer the
 * server released, whether or not its body arrived.
 */
export function createLoad(base: () => string, targets: LoadTargets, kindOf: (i: number) => Kind) {
  const answers: Answer[] = [];
  let next = 0;
  let order = 0;

  function request(kind: Kind, i: number): { method: string; path: string; body: unknown; name?: string } {
    switch (kind) {
      case 'encrypt':
        return { method: 'POST', path: '/encrypt', body: { value: `value-${targets.run}-${i}`, algorithm: 'random', keyId: targets.keyId } };
      case 'decrypt':
        return { method: 'POST', path: '/decrypt', body: { ciphertext: targets.ciphertext } };
      case 'key': {
        const name = `audit-fault-${targets.run}-${i}`;
        return { method: 'POST', path: '/keys', body: { masterKey: { provider: 'local' }, keyAltNames: [name] }, name };
      }
      case 'insert': {
        const name = `employee-${targets.run}-${i}`;
        return { method: 'POST', path: targets.documents!.url, body: targets.documents!.body(name), name };
      }
    }
  }

  async function send(i: number): Promise<Answer> {
    const kind = kindOf(i);
    const { method, path, body, name } = request(kind, i);
    const answer: Answer = { i, kind, sentAt: Date.now(), doneAt: 0, ...(name ? { name } : {}) };
    try {
      const res = await fetch(`${base()}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      answer.doneAt = Date.now();
      answer.order = order++;
      answer.status = res.status;
      answer.requestId = res.headers.get('x-request-id') ?? undefined;
      const json = (await res.json().catch(() => ({}))) as { code?: string };
      if (json.code) answer.code = json.code;
    } catch (err) {
      answer.doneAt = Date.now();
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      answer.error = cause?.code ?? cause?.message ?? (err as Error).name;
    }
    answers.push(answer);
    return answer;
  }

  return {
    answers,
    /** `concurrency` workers sending back to back (at most one every `gapMs` each) while `go()` holds. */
    run(concurrency: number, go: () => boolean, gapMs = 0): Promise<void> {
      const worker = async () => {
        while (go()) {
          await send(next++);
          if (gapMs > 0) await sleep(gapMs);
        }
      };
      return Promise.all(Array.from({ length: concurrency }, worker)).then(() => undefined);
    },
  };
}

/** A record as the raw collection holds it. */
export interface RawRecord {
  _id: string;
  chainId: string;
  seq: number;
  prev: string;
  hmac: string;
  requestId: string;
  action: string;
  outcome: string;
  status?: number;
  code?: string;
}

/** Every record of one chain, in seq order, read with the plain driver. */
export function readChain(records: Collection<any>, chainId: string): Promise<RawRecord[]> {
  return records.find({ chainId }).sort({ seq: 1 }).toArray() as Promise<RawRecord[]>;
}

/** Where a chain read in seq order is not 1, 2, 3, … each linked to the one before. */
export function chainBreaks(chain: RawRecord[]): string[] {
  const breaks: string[] = [];
  let prev = '';
  chain.forEach((record, index) => {
    if (record.seq !== index + 1) breaks.push(`position ${index + 1} holds seq ${record.seq}`);
    else if (record.prev !== prev) breaks.push(`seq ${record.seq} does not link to seq ${record.seq - 1}`);
    prev = record.hmac;
  });
  return breaks;
}

/**
 * Every record in a spool directory's segment files (up to the zeros of preallocation). A running
 * server may be writing: a last line not yet complete is left out.
 */
export function spoolRecords(dir: string): RawRecord[] {
  return readdirSync(dir)
    .filter((n) => /^seg-\d{6}\.jsonl$/.test(n))
    .sort()
    .flatMap((n) => {
      const bytes = readFileSync(join(dir, n));
      const end = bytes.indexOf(0) === -1 ? bytes.length : bytes.indexOf(0);
      const lines = bytes.subarray(0, end).toString('utf8').split('\n');
      // Text after the last newline is a write under way (or nothing).
      return lines.slice(0, -1).map((line) => JSON.parse(line) as RawRecord);
    });
}

/** Every record of the trail through GET /audit, page by page (each page flushes the instance's spool first). */
export async function listTrail(base: string): Promise<{ chainId: string; seq: number; requestId: string; action: string; outcome: string }[]> {
  const items: { chainId: string; seq: number; requestId: string; action: string; outcome: string }[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await httpCall(base, 'GET', `/audit?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    if (page.status !== 200) throw new Error(`GET /audit answered ${page.status}: ${JSON.stringify(page.body)}`);
    items.push(...page.body.items);
    if (!page.body.next) return items;
    after = page.body.next;
  }
}

/** A value of the Prometheus text at GET /metrics (the first sample of that name). */
export async function metric(base: string, name: string): Promise<number | undefined> {
  const res = await httpCall(base, 'GET', '/metrics', undefined, 5000);
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(String(res.body));
  return match ? Number(match[1]) : undefined;
}

/** Poll GET /metrics until audit_spool_backlog is 0; the time it took, or undefined at the deadline. */
export async function waitUntilShipped(base: string, ms: number): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    const backlog = await metric(base, 'audit_spool_backlog').catch(() => undefined);
    if (backlog === 0) return Date.now() - started;
    await sleep(50);
  }
  return undefined;
}

export interface Coverage {
  /** 2xx answers without exactly one outcome event `succeeded` of their action. */
  missing: { i: number; kind: Kind; requestId?: string; events: string[] }[];
  /** State-changing 2xx answers without a `started` event before their outcome. */
  startedMissing: { i: number; kind: Kind; requestId?: string; events: string[] }[];
  /** Side-effect-free answers with more than their one event. */
  extraEvents: { i: number; kind: Kind; events: string[] }[];
  /** Events recorded twice (same request, same outcome). */
  duplicates: string[];
  /** Pairs where answer `a` arrived before request `b` was sent, yet b's first event precedes a's outcome. */
  orderViolations: { a: number; aSeq: number; b: number; bSeq: number }[];
  /** Events of the load's actions whose request got no answer at all (cut off); `answeredElsewhere` (a warm-up) aside. */
  unansweredWithEvent: number;
  /** Of those, state-changing operations with only a `started` event (cut off before their outcome). */
  unansweredStartedOnly: number;
}

/**
 * Hold the answers against the records of a chain: every 2xx has its outcome event (once), a
 * state-changing one also its `started` event before it; when an answer arrived before another
 * request was sent, the first's outcome precedes the second's first event in the chain.
 */
export function coverage(answers: Answer[], chain: RawRecord[], answeredElsewhere: string[] = []): Coverage {
  const byRequest = new Map<string, RawRecord[]>();
  for (const record of chain) byRequest.set(record.requestId, [...(byRequest.get(record.requestId) ?? []), record]);
  const label = (records: RawRecord[] | undefined) => (records ?? []).map((r) => `${r.seq}:${r.action}:${r.outcome}`);
  const acked = answers.filter(is2xx);
  const result: Coverage = { missing: [], startedMissing: [], extraEvents: [], duplicates: [], orderViolations: [], unansweredWithEvent: 0, unansweredStartedOnly: 0 };

  const span = new Map<Answer, { first: number; outcome: number }>();
  for (const a of acked) {
    const events = (a.requestId && byRequest.get(a.requestId)) || [];
    const outcomes = events.filter((e) => e.outcome === 'succeeded' && e.action === ACTION[a.kind]);
    if (outcomes.length !== 1) {
      result.missing.push({ i: a.i, kind: a.kind, ...(a.requestId ? { requestId: a.requestId } : {}), events: label(events) });
      continue;
    }
    const started = events.filter((e) => e.outcome === 'started');
    if (READ_ONLY[a.kind]) {
      if (events.length !== 1) result.extraEvents.push({ i: a.i, kind: a.kind, events: label(events) });
    } else if (started.length !== 1 || started[0]!.seq >= outcomes[0]!.seq) {
      result.startedMissing.push({ i: a.i, kind: a.kind, ...(a.requestId ? { requestId: a.requestId } : {}), events: label(events) });
    }
    span.set(a, { first: Math.min(...events.map((e) => e.seq)), outcome: outcomes[0]!.seq });
  }
  const seen = new Set<string>();
  for (const record of chain) {
    const key = `${record.requestId}:${record.outcome}`;
    if (seen.has(key)) result.duplicates.push(`${key} (seq ${record.seq})`);
    seen.add(key);
  }

  // Answers in the order they arrived, requests in the order they were sent: every answer that
  // arrived before a request was sent must have its outcome earlier in the chain than that request's first event.
  const byDone = [...span.keys()].sort((x, y) => x.doneAt - y.doneAt);
  const bySent = [...span.keys()].sort((x, y) => x.sentAt - y.sentAt);
  let d = 0;
  let latest: Answer | undefined;
  for (const b of bySent) {
    while (d < byDone.length && byDone[d]!.doneAt < b.sentAt) {
      const a = byDone[d++]!;
      if (latest === undefined || span.get(a)!.outcome > span.get(latest)!.outcome) latest = a;
    }
    if (latest !== undefined && span.get(latest)!.outcome >= span.get(b)!.first) {
      result.orderViolations.push({ a: latest.i, aSeq: span.get(latest)!.outcome, b: b.i, bSeq: span.get(b)!.first });
    }
  }

  const answered = new Set([...answeredElsewhere, ...answers.filter((a) => a.requestId).map((a) => a.requestId!)]);
  const actions = new Set(Object.values(ACTION));
  const orphans = new Map<string, RawRecord[]>();
  for (const record of chain) {
    if (actions.has(record.action) && !answered.has(record.requestId)) orphans.set(record.requestId, [...(orphans.get(record.requestId) ?? []), record]);
  }
  result.unansweredWithEvent = orphans.size;
  result.unansweredStartedOnly = [...orphans.values()].filter((records) => records.every((r) => r.outcome === 'started')).length;
  return result;
}

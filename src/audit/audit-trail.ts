/**
 * The audit trail as the service uses it: where an event becomes durable before its request is
 * answered, and where the trail is listed and verified. Two ways to make an event durable:
 *
 * - spool (the default): the instance's own chain in a local append-only spool, one fdatasync per
 *   group of events, shipped to MongoDB in the background (needs a persistent volume per instance);
 * - database: each event group-committed into MongoDB with a majority, journaled write before the
 *   answer (no local state, one database round trip per group).
 *
 * Either way every instance writes its own chain, so instances never contend for a chain head,
 * and MongoDB holds every chain with its published head for `/audit` and `/audit/verify`.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Collection } from 'mongodb';
import { createAuditLog } from './audit-log.js';
import { createRecordSigner, type AuditEvent, type AuditRecord } from './audit-record.js';
import { createAuditShipper } from './audit-shipper.js';
import { createAuditSpool, type RecoveryReport } from './audit-spool.js';
import { createAuditStore, type AuditListOptions, type CheckpointDocument, type HeadDocument } from './audit-store.js';

export interface AuditTrailOptions {
  records: Collection<AuditRecord>;
  heads: Collection<HeadDocument>;
  checkpoints: Collection<CheckpointDocument>;
  hmacKey: Buffer;
  /** A local spool directory, or undefined to write each event to the database before answering. */
  spool?: { dir: string; sync: 'fdatasync' | 'none'; maxBacklog: number; segmentBytes?: number };
  /** The chain id: of a new spool, or (database mode) of this process; `<host>-<random>` when absent. */
  chainId?: string;
  /** Database mode: how long an append may take before it fails closed. */
  timeoutMs: number;
  log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void; info(obj: object, msg: string): void };
  onShipped?(count: number): void;
}

export interface AuditTrailStatus {
  mode: 'spool' | 'database';
  chainId: string;
  /** Whether an append now costs only its own write (the chain head is known, the spool open). */
  ready: boolean;
  /** Spool mode: records not yet in the database, and the shipper's state. */
  backlog?: number;
  shipper?: string;
}

function defaultChainId(): string {
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 80) || 'instance';
  return `${host}-${randomBytes(4).toString('hex')}`;
}

export async function createAuditTrail(options: AuditTrailOptions) {
  const signer = createRecordSigner(options.hmacKey);
  const store = createAuditStore({ records: options.records, heads: options.heads, checkpoints: options.checkpoints, signer });

  if (options.spool === undefined) {
    const chainId = options.chainId ?? defaultChainId();
    const log = createAuditLog({ collection: options.records, hmacKey: options.hmacKey, chainId, timeoutMs: options.timeoutMs, store });
    return {
      append: (event: AuditEvent) => log.append(event).then((record) => {
        // The head follows the chain, best effort: verification reports a chain that ends before it.
        void store.publishHead(chainId, record).catch(() => undefined);
        return record;
      }),
      prepare: () => log.prepare(),
      flush: async (_timeoutMs?: number) => {
        await log.flush();
        return true;
      },
      list: (listOptions: AuditListOptions) => store.list(listOptions),
      verify: (verifyOptions?: { full?: boolean }) => store.verify(verifyOptions),
      status: (): AuditTrailStatus => ({ mode: 'database', chainId, ready: log.isPrepared() }),
      recovery: undefined as RecoveryReport | undefined,
      close: async () => log.flush(),
    };
  }

  const spool = createAuditSpool({ ...options.spool, signer, ...(options.chainId ? { chainId: options.chainId } : {}) });
  const recovery = await spool.open();
  const shipper = createAuditShipper({ spool, records: options.records, store, log: options.log, ...(options.onShipped ? { onShipped: options.onShipped } : {}) });
  shipper.start();
  return {
    append: (event: AuditEvent) => spool.append(event),
    /** Nothing to load: the spool knows its head from the moment it is open. */
    prepare: async () => undefined,
    /** Wait (at most `timeoutMs`) until what was appended is in the database. */
    flush: (timeoutMs = 5000) => shipper.flush(timeoutMs),
    list: (listOptions: AuditListOptions) => store.list(listOptions),
    verify: (verifyOptions?: { full?: boolean }) => store.verify(verifyOptions),
    status: (): AuditTrailStatus => {
      const shipping = shipper.status();
      return { mode: 'spool', chainId: spool.chainId, ready: !spool.state().broken, backlog: shipping.backlog, shipper: shipping.state };
    },
    recovery: recovery as RecoveryReport | undefined,
    /** Ship what is left (bounded), then close the spool; what is not shipped stays for the next start. */
    close: async (timeoutMs = 5000) => {
      await shipper.flush(timeoutMs);
      await shipper.stop();
      await spool.close();
    },
  };
}

export type AuditTrail = Awaited<ReturnType<typeof createAuditTrail>>;

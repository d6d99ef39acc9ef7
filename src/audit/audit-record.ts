/**
 * The audit record: what an event becomes once chained. Shared by the local spool, the database
 * appender and the store that lists and verifies, so all three sign and check the same bytes.
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { AppError } from '../errors.js';

export type AuditOutcome = 'started' | 'succeeded' | 'failed' | 'denied';

export interface AuditEvent {
  /** Defaults to now. */
  time?: Date;
  /** Who: 'admin' for the operator token, else a client id, or 'anonymous'. */
  clientId: string;
  /** e.g. 'keys.create', 'crypto.decrypt', 'documents.find', 'clients.create'. */
  action: string;
  outcome: AuditOutcome;
  requestId: string;
  /** HTTP status when known. */
  status?: number;
  /** Error code when failed or denied. */
  code?: string;
  /** Namespace of a document operation. */
  collection?: string;
  /** Field paths touched, never values. */
  paths?: string[];
  /** Data key ids involved. */
  keyIds?: string[];
}

export interface AuditRecord
  extends Required<Pick<AuditEvent, 'clientId' | 'action' | 'outcome' | 'requestId'>>,
    Pick<AuditEvent, 'status' | 'code' | 'collection' | 'paths' | 'keyIds'> {
  /** `${chainId}:${seq zero-padded to 12}`: the unique _id index is what forbids forks. */
  _id: string;
  chainId: string;
  /** 1 for the first record of a chain, then +1 per record. */
  seq: number;
  time: Date;
  /** The hmac of the previous record of the chain; GENESIS ('') for seq 1. */
  prev: string;
  /** HMAC-SHA-256 (hex) over the canonical serialisation of every other field but _id. */
  hmac: string;
}


/** What an event contributes to its record: everything but the chain fields and the hmac. */
export type EventFields = Omit<AuditRecord, '_id' | 'hmac' | 'chainId' | 'seq' | 'prev'>;

/** The `prev` of the first record of every chain. */
export const GENESIS = '';
/** Bumped if the canonical serialisation ever changes, so old and new records can be told apart. */
const FORMAT = 'audit-record/v1';
const OUTCOMES: ReadonlySet<string> = new Set<AuditOutcome>(['started', 'succeeded', 'failed', 'denied']);
const RECORD_FIELDS: ReadonlySet<string> = new Set([
  '_id', 'chainId', 'seq', 'time', 'clientId', 'action', 'outcome', 'requestId',
  'status', 'code', 'collection', 'paths', 'keyIds', 'prev', 'hmac',
]);

export function auditRecordId(chainId: string, seq: number): string {
  return `${chainId}:${String(seq).padStart(12, '0')}`;
}

/**
 * The bytes the HMAC covers: every field but `_id` and `hmac`, in a fixed order, absent optional
 * fields as null. A JSON array is unambiguous (no field can bleed into the next), and the record is
 * stored with the very strings and numbers serialised here, so a read-back serialises the same.
 */
function canonical(record: Omit<AuditRecord, '_id' | 'hmac'>): string {
  return JSON.stringify([
    FORMAT,
    record.chainId,
    record.seq,
    record.time.toISOString(),
    record.clientId,
    record.action,
    record.outcome,
    record.requestId,
    record.status ?? null,
    record.code ?? null,
    record.collection ?? null,
    record.paths ?? null,
    record.keyIds ?? null,
    record.prev,
  ]);
}

/** What BSON will store: its UTF-8 turns a lone surrogate into U+FFFD, so do that before hashing. */
/** A surrogate code unit: only a lone one changes in UTF-8, and most strings have none at all. */
const SURROGATE = /[\uD800-\uDFFF]/;

function storable(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new AppError('INTERNAL_ERROR', `audit event: ${name} must be a string`);
  return SURROGATE.test(value) ? Buffer.from(value, 'utf8').toString('utf8') : value;
}

function storableList(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw new AppError('INTERNAL_ERROR', `audit event: ${name} must be an array of strings`);
  return value.map((item) => storable(item, name));
}

/**
 * Copy only the fields an audit event has, checked: whatever else a caller's object carries (a
 * document, a value) never reaches the trail.
 */
export function readEvent(event: AuditEvent): EventFields {
  const time = event.time ?? new Date();
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new AppError('INTERNAL_ERROR', 'audit event: invalid time');
  if (!OUTCOMES.has(event.outcome)) throw new AppError('INTERNAL_ERROR', 'audit event: invalid outcome');
  const fields: EventFields = {
    time: new Date(time.getTime()),
    clientId: storable(event.clientId, 'clientId'),
    action: storable(event.action, 'action'),
    outcome: event.outcome,
    requestId: storable(event.requestId, 'requestId'),
  };
  if (event.status !== undefined) {
    if (!Number.isSafeInteger(event.status)) throw new AppError('INTERNAL_ERROR', 'audit event: status must be an integer');
    fields.status = event.status;
  }
  if (event.code !== undefined) fields.code = storable(event.code, 'code');
  if (event.collection !== undefined) fields.collection = storable(event.collection, 'collection');
  if (event.paths !== undefined) fields.paths = storableList(event.paths, 'paths');
  if (event.keyIds !== undefined) fields.keyIds = storableList(event.keyIds, 'keyIds');
  return fields;
}

export const isString = (value: unknown): value is string => typeof value === 'string';
const isOptional = (value: unknown, check: (v: unknown) => boolean) => value === undefined || check(value);
const isStringList = (value: unknown) => Array.isArray(value) && value.every(isString);

/** A stored document if it has exactly a record's shape (and its _id matches), else undefined. */
export function asRecord(doc: Record<string, unknown>): AuditRecord | undefined {
  for (const key of Object.keys(doc)) if (!RECORD_FIELDS.has(key)) return undefined;
  const ok =
    isString(doc.chainId) &&
    Number.isSafeInteger(doc.seq) &&
    doc._id === auditRecordId(doc.chainId, doc.seq as number) &&
    doc.time instanceof Date &&
    !Number.isNaN(doc.time.getTime()) &&
    isString(doc.clientId) &&
    isString(doc.action) &&
    isString(doc.outcome) &&
    OUTCOMES.has(doc.outcome) &&
    isString(doc.requestId) &&
    isString(doc.prev) &&
    isString(doc.hmac) &&
    isOptional(doc.status, (v) => Number.isSafeInteger(v)) &&
    isOptional(doc.code, isString) &&
    isOptional(doc.collection, isString) &&
    isOptional(doc.paths, isStringList) &&
    isOptional(doc.keyIds, isStringList);
  return ok ? (doc as unknown as AuditRecord) : undefined;
}


export const MIN_HMAC_KEY_LENGTH = 32;

/** The chain position a record follows: the seq and hmac of the record before it. */
export interface ChainHead {
  seq: number;
  hmac: string;
}

/** Signs records and checks them, with a key the database never sees. */
export function createRecordSigner(hmacKey: Buffer) {
  if (hmacKey.length < MIN_HMAC_KEY_LENGTH) throw new RangeError(`the audit HMAC key must be at least ${MIN_HMAC_KEY_LENGTH} bytes`);
  // A copy in a KeyObject: the caller may wipe or reuse its buffer.
  const key: KeyObject = createSecretKey(Buffer.from(hmacKey));
  const mac = (record: Omit<AuditRecord, '_id' | 'hmac'>) => createHmac('sha256', key).update(canonical(record), 'utf8').digest('hex');
  return {
    mac,
    /** Records for `events` at the end of `chainId` after `after`, each linked to the one before. */
    chain(chainId: string, after: ChainHead, events: EventFields[]): AuditRecord[] {
      let prev = after;
      return events.map((fields) => {
        const seq = prev.seq + 1;
        const unsigned = { chainId, seq, ...fields, prev: prev.hmac };
        const record: AuditRecord = { _id: auditRecordId(chainId, seq), ...unsigned, hmac: mac(unsigned) };
        prev = record;
        return record;
      });
    },
    /** Whether a record's hmac is the one its fields give. */
    intact(record: AuditRecord): boolean {
      const { _id, hmac, ...unsigned } = record;
      const expected = Buffer.from(mac(unsigned), 'utf8');
      const stored = Buffer.from(hmac, 'utf8');
      return stored.length === expected.length && timingSafeEqual(stored, expected);
    },
    /** An HMAC over other statements of the trail (checkpoints, heads), apart from record hmacs. */
    sign(statement: unknown[]): string {
      return createHmac('sha256', key).update(JSON.stringify(['audit-statement/v1', ...statement]), 'utf8').digest('hex');
    },
  };
}

export type RecordSigner = ReturnType<typeof createRecordSigner>;

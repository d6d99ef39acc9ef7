/**
 * Data-key documents in the shape MongoDB drivers write and read:
 * { _id: UUID, keyAltNames?: [string], keyMaterial: BinData(0), creationDate, updateDate,
 *   status: 0, masterKey: { provider, key?, region?, endpoint? } }
 */
import { Binary, UUID } from 'mongodb';
import { AppError } from '../errors.js';
import type { MasterKey } from '../kms/master-key.js';

export interface KeyDocument {
  _id: Binary;
  keyAltNames?: string[];
  keyMaterial: Binary;
  creationDate: Date;
  updateDate: Date;
  status: number;
  masterKey: Record<string, unknown>;
}

/**
 * A deleted data key, in the trash collection beside the vault (src/key-vault/key-trash.ts): the
 * key document as it was, and its deletion record.
 */
export interface TrashedKeyDocument extends KeyDocument {
  deletedAt: Date;
  /** The client id of whoever deleted it. */
  deletedBy: string;
  /** When the sweep may purge it for good. */
  purgeAfter: Date;
  /** Set while a restore moves it back: a crash part way then keeps the vault copy. */
  restoringAt?: Date;
}

/** What the API shows of a data key: metadata only, never material. */
export interface KeyView {
  id: string;
  keyAltNames: string[];
  status: number;
  creationDate: string;
  /** When the key was last wrapped: creation or the latest rewrap (drivers move it for nothing else). */
  updateDate: string;
  ageDays: number;
  /** Days since the key was last wrapped under a master key. */
  wrapAgeDays: number;
  /** The latest rewrap, if there was one. */
  lastRewrapDate?: string;
  /** The stored master-key description: provider and the ARN, region, etc. that name the key. */
  masterKey: { provider: string } & Record<string, string>;
  /** `deleted`: in the trash, unusable, restorable until `purgeAfter`. */
  state: 'active' | 'deleted';
  deletedAt?: string;
  deletedBy?: string;
  purgeAfter?: string;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Parse a key id from the API (canonical UUID text) into the BSON UUID stored as `_id`. */
export function parseKeyId(text: string): UUID {
  if (!uuidPattern.test(text)) throw new AppError('INVALID_KEY_ID');
  return new UUID(text);
}

/** The canonical text of a 16-byte key id. */
export function keyIdToString(id: Uint8Array): string {
  const hex = Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The public view of a key document. It must describe any key a driver may have written, also one
 * of a provider this server cannot use (gcp, azure, kmip), so it copies the master key's naming
 * fields rather than interpreting them. Those fields name a key; none of them is secret.
 */
export function toKeyView(doc: KeyDocument, now = Date.now()): KeyView {
  const masterKey: KeyView['masterKey'] = { provider: String(doc.masterKey?.provider ?? 'unknown') };
  for (const [field, value] of Object.entries(doc.masterKey ?? {})) {
    if (typeof value === 'string') masterKey[field] = value;
  }
  const created = doc.creationDate instanceof Date ? doc.creationDate : new Date(0);
  const updated = doc.updateDate instanceof Date ? doc.updateDate : created;
  return {
    id: keyIdToString(doc._id.buffer),
    keyAltNames: doc.keyAltNames ?? [],
    status: typeof doc.status === 'number' ? doc.status : 0,
    creationDate: created.toISOString(),
    updateDate: updated.toISOString(),
    ageDays: Math.floor((now - created.getTime()) / 86_400_000),
    wrapAgeDays: Math.floor((now - updated.getTime()) / 86_400_000),
    ...(updated.getTime() > created.getTime() ? { lastRewrapDate: updated.toISOString() } : {}),
    masterKey,
    state: 'active',
  };
}

/** The public view of a trashed key: its key view, and when, by whom, and until when. */
export function toTrashedKeyView(doc: TrashedKeyDocument, now = Date.now()): KeyView {
  return {
    ...toKeyView(doc, now),
    state: 'deleted',
    deletedAt: doc.deletedAt.toISOString(),
    deletedBy: doc.deletedBy,
    purgeAfter: doc.purgeAfter.toISOString(),
  };
}

/** The stored form of a master key: drivers write `region` and `key` for aws, nothing else for local. */
export function storedMasterKey(masterKey: MasterKey): Record<string, unknown> {
  if (masterKey.provider === 'local') return { provider: 'local' };
  const stored: Record<string, unknown> = { provider: 'aws', region: masterKey.region, key: masterKey.key };
  if (masterKey.endpoint !== undefined) stored.endpoint = masterKey.endpoint;
  return stored;
}

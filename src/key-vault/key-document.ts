/**
 * Data-key documents in the shape MongoDB drivers write and read:
 * { _id: UUID, keyAltNames?: [string], keyMaterial: BinData(0), creationDate, updateDate,
 *   status: 0, masterKey: { provider, key?, region?, endpoint? } }
 */
import { Binary, UUID } from 'bson';
import { AppError } from '../errors.js';
import { readStoredMasterKey, type MasterKey } from '../kms/master-key.js';

export interface KeyDocument {
  _id: Binary;
  keyAltNames?: string[];
  keyMaterial: Binary;
  creationDate: Date;
  updateDate: Date;
  status: number;
  masterKey: Record<string, unknown>;
}

/** What the API shows of a data key: metadata only, never material. */
export interface KeyView {
  id: string;
  keyAltNames: string[];
  status: number;
  creationDate: string;
  updateDate: string;
  ageDays: number;
  masterKey: MasterKey;
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

export function toKeyView(doc: KeyDocument, now = Date.now()): KeyView {
  return {
    id: keyIdToString(doc._id.buffer),
    keyAltNames: doc.keyAltNames ?? [],
    status: doc.status,
    creationDate: doc.creationDate.toISOString(),
    updateDate: doc.updateDate.toISOString(),
    ageDays: Math.floor((now - doc.creationDate.getTime()) / 86_400_000),
    masterKey: readStoredMasterKey(doc.masterKey),
  };
}

/** The stored form of a master key: drivers write `region` and `key` for aws, nothing else for local. */
export function storedMasterKey(masterKey: MasterKey): Record<string, unknown> {
  if (masterKey.provider === 'local') return { provider: 'local' };
  const stored: Record<string, unknown> = { provider: 'aws', region: masterKey.region, key: masterKey.key };
  if (masterKey.endpoint !== undefined) stored.endpoint = masterKey.endpoint;
  return stored;
}

import type { MasterKey } from './master-key.js';

/**
 * A master-key provider wraps and unwraps 96-byte data keys. It is the only code that ever holds
 * a master key (local) or talks to a key management service (aws).
 */
export interface KmsProvider<M extends MasterKey = MasterKey> {
  wrap(masterKey: M, dataKey: Buffer): Promise<Buffer>;
  unwrap(masterKey: M, keyMaterial: Buffer): Promise<Buffer>;
}

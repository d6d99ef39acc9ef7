/**
 * The optional native batch decryptor and encryptor (both in native/aead_native.c,
 * built by `npm run build:native`).
 * Loading never throws: without a build, or with one this node cannot load, `nativeAead.loaded` is
 * false and callers use the pure-JS path, which gives exactly the same results.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

interface Addon {
  decryptMany(key: Uint8Array, input: Uint8Array, layout: Int32Array, out: Uint8Array, results: Int32Array): void;
  encryptMany(key: Uint8Array, input: Uint8Array, layout: Int32Array, ivs: Uint8Array, out: Uint8Array): void;
}

export interface NativeAeadStatus {
  loaded: boolean;
  /** The addon file found (loaded or not), if any. */
  path: string | undefined;
  /** Why a file that exists did not load. */
  error: Error | undefined;
}

// From src/crypto (tsx) and from dist/src/crypto (compiled) alike.
const candidates = ['../../native/build/Release/aead_native.node', '../../../native/build/Release/aead_native.node'].map((relative) =>
  fileURLToPath(new URL(relative, import.meta.url)),
);

/**
 * Load the first of `paths` that exists. Never throws: a file this node cannot load (not an addon,
 * built for another platform, or a stale build missing a function) gives `loaded: false` and the
 * reason, and callers take the pure-JS path.
 */
export function loadNativeAead(paths: readonly string[]): { addon: Addon | undefined; status: NativeAeadStatus } {
  const path = paths.find((candidate) => existsSync(candidate));
  if (path === undefined) return { addon: undefined, status: { loaded: false, path, error: undefined } };
  try {
    const addon = createRequire(import.meta.url)(path) as Addon;
    // A stale build without one of them is not used at all: both directions share the fallback.
    for (const fn of ['decryptMany', 'encryptMany'] as const) {
      if (typeof addon[fn] !== 'function') throw new Error(`the addon exports no ${fn} (rebuild it: npm run build:native)`);
    }
    return { addon, status: { loaded: true, path, error: undefined } };
  } catch (err) {
    return { addon: undefined, status: { loaded: false, path, error: err as Error } };
  }
}

const { addon, status } = loadNativeAead(candidates);
export const nativeAead: Readonly<NativeAeadStatus> = Object.freeze(status);

export interface NativeItem {
  ciphertext: Uint8Array;
  ad: Uint8Array;
}

/**
 * Verify and decrypt every item under one 96-byte key in one native call. Each result is the
 * plaintext (a view into one buffer shared by the batch) or null for any failure. Undefined when
 * the addon is not loaded.
 */
export function nativeDecryptMany(key: Uint8Array, items: readonly NativeItem[]): (Buffer | null)[] | undefined {
  if (addon === undefined) return undefined;
  const layout = new Int32Array(items.length * 2);
  let total = 0;
  items.forEach(({ ciphertext, ad }, i) => {
    layout[2 * i] = ad.length;
    layout[2 * i + 1] = ciphertext.length;
    total += ad.length + ciphertext.length;
  });
  // One contiguous input: one boundary crossing for the whole batch instead of one per field.
  const input = Buffer.allocUnsafeSlow(total);
  let at = 0;
  for (const { ciphertext, ad } of items) {
    input.set(ad, at);
    input.set(ciphertext, at + ad.length);
    at += ad.length + ciphertext.length;
  }
  const out = Buffer.allocUnsafeSlow(total);
  const results = new Int32Array(items.length * 2);
  addon.decryptMany(key, input, layout, out, results);
  const plaintexts: (Buffer | null)[] = new Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const start = results[2 * i]!;
    const length = results[2 * i + 1]!;
    plaintexts[i] = length < 0 ? null : out.subarray(start, start + length);
  }
  return plaintexts;
}

export interface NativeEncryptItem {
  plaintext: Uint8Array;
  ad: Uint8Array;
  deterministic: boolean;
}

const IV_LENGTH = 16;
const TAG_LENGTH = 32;
const BLOCK = 16;

/**
 * Encrypt every item under one 96-byte key in one native call. `ivs` holds 16 bytes per item, the
 * IV of each random one. Each result is AD ‖ IV ‖ S ‖ tag, a view into one buffer shared by the
 * batch. Undefined when the addon is not loaded.
 */
export function nativeEncryptMany(key: Uint8Array, items: readonly NativeEncryptItem[], ivs: Uint8Array): Buffer[] | undefined {
  if (addon === undefined) return undefined;
  const layout = new Int32Array(items.length * 3);
  let inTotal = 0;
  let outTotal = 0;
  for (let i = 0; i < items.length; i++) {
    const { plaintext, ad, deterministic } = items[i]!;
    layout[3 * i] = ad.length;
    layout[3 * i + 1] = plaintext.length;
    layout[3 * i + 2] = deterministic ? 1 : 0;
    inTotal += ad.length + plaintext.length;
    outTotal += ad.length + IV_LENGTH + (Math.floor(plaintext.length / BLOCK) + 1) * BLOCK + TAG_LENGTH;
  }
  const input = Buffer.allocUnsafeSlow(inTotal);
  let at = 0;
  for (const { plaintext, ad } of items) {
    input.set(ad, at);
    input.set(plaintext, at + ad.length);
    at += ad.length + plaintext.length;
  }
  const out = Buffer.allocUnsafeSlow(outTotal);
  try {
    addon.encryptMany(key, input, layout, ivs, out);
  } finally {
    // The input is every plaintext of the batch.
    input.fill(0);
  }
  const payloads: Buffer[] = new Array(items.length);
  at = 0;
  for (let i = 0; i < items.length; i++) {
    const length = layout[3 * i]! + IV_LENGTH + (Math.floor(layout[3 * i + 1]! / BLOCK) + 1) * BLOCK + TAG_LENGTH;
    payloads[i] = out.subarray(at, at + length);
    at += length;
  }
  return payloads;
}

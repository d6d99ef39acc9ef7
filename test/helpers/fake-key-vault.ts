/**
 * An in-memory key vault for unit tests of the documents layer: the real encryption engine runs
 * over it, so what is tested is the engine's authorization and the real payload format, without a
 * database or a KMS. The libmongocrypt fixture's data key is one of its keys, so ciphertexts can
 * be checked against the golden vectors.
 */
import { UUID } from 'mongodb';
import type { Principal } from '../../src/clients/scopes.js';
import { createEncryptionEngine } from '../../src/encryption/encryption-engine.js';
import { AppError } from '../../src/errors.js';
import type { KeyVault } from '../../src/key-vault/key-vault.js';
import vectors from '../fixtures/libmongocrypt-vectors.json' with { type: 'json' };

/** Key ids of the fake vault, by alt name. `fixture` holds the libmongocrypt vectors' data key. */
export const KEY_IDS = {
  fixture: vectors.keyId,
  other: '22222222-3333-4444-8555-666666666666',
  next: '33333333-4444-4555-8666-777777777777',
  tenantA: '44444444-5555-4666-8777-888888888888',
} as const;

export interface FakeVaultOptions {
  /** Key ids whose lease fails with this error (e.g. KMS_UNAVAILABLE, as an unwrap would). */
  failing?: Map<string, AppError>;
}

export function fakeKeyVault(options: FakeVaultOptions = {}) {
  const keys = new Map<string, { key: Buffer; names: string[] }>([
    [KEY_IDS.fixture, { key: Buffer.from(vectors.dataKey, 'base64'), names: ['fixture'] }],
    [KEY_IDS.other, { key: Buffer.alloc(96, 7), names: ['other'] }],
    [KEY_IDS.next, { key: Buffer.alloc(96, 9), names: ['next'] }],
    [KEY_IDS.tenantA, { key: Buffer.alloc(96, 11), names: ['tenant-a'] }],
  ]);
  const leased: string[][] = [];
  const vault = {
    async resolveAltNames(names: string[]) {
      const out = new Map<string, UUID>();
      for (const [id, k] of keys) for (const name of k.names) if (names.includes(name)) out.set(name, new UUID(id));
      return out;
    },
    async altNamesOf(ids: string[]) {
      return new Map(ids.map((id) => [id, keys.get(id)?.names ?? []]));
    },
    async withDataKeys<T>(ids: Iterable<string>, use: (keys: Map<string, unknown>) => T | Promise<T>) {
      const wanted = [...new Set(ids)];
      leased.push(wanted);
      return use(new Map(wanted.map((id) => [id, options.failing?.get(id) ?? keys.get(id)?.key ?? new AppError('KEY_NOT_FOUND')])));
    },
  };
  return { vault: vault as unknown as KeyVault, leased, resolveAltNames: vault.resolveAltNames };
}

/** The real engine over a fake vault. */
export function fakeEngine(options: FakeVaultOptions = {}) {
  const fake = fakeKeyVault(options);
  return { ...fake, engine: createEncryptionEngine({ keyVault: fake.vault }) };
}

export const principal = (grants: Principal['grants']): Principal => ({ clientId: 'c', name: 'c', grants });
/** The operator: every scope on every key. */
export const OPERATOR = principal([{ scope: '*' }]);

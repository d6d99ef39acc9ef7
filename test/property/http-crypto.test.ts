/**
 * Properties of POST /encrypt and POST /decrypt over HTTP, on the real servers: random values
 * round-trip exactly, and no byte string sent for decryption gets anything but 200 or
 * 400 DECRYPTION_FAILED. Few runs: every request writes audit events to the database.
 */
import t from 'tap';
import fc from 'fast-check';
import { createTestApp } from '../helpers/app.js';
import { fromEjson, toEjson } from '../../src/ejson.js';
import { canonical, deterministicValueArb, randomValueArb, relaxedLosslessArb, seed } from './arbitraries.js';

const params = { seed, numRuns: 50 };

t.test('encrypt and decrypt over HTTP', async (t) => {
  const h = await createTestApp(t);
  const created = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['prop'] });
  t.equal(created.statusCode, 201);
  const keyId = created.json().id as string;
  const keyIdBytes = Buffer.from(keyId.replaceAll('-', ''), 'hex');

  async function encrypt(value: unknown, algorithm: 'random' | 'deterministic'): Promise<string> {
    const res = await h.call('POST', '/encrypt', { value: toEjson(value, 'canonical'), algorithm, keyId });
    if (res.statusCode !== 200) throw new Error(`encrypt ${canonical(value)}: ${res.statusCode} ${res.body}`);
    return res.json().ciphertext as string;
  }

  t.test('POST /encrypt then /decrypt?format=canonical returns the exact canonical value', async (t) => {
    const cases = fc.oneof(
      randomValueArb.map((value) => ({ value, algorithm: 'random' as const })),
      deterministicValueArb.map((value) => ({ value, algorithm: 'deterministic' as const })),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ value, algorithm }) => {
        const ciphertext = await encrypt(value, algorithm);
        const res = await h.call('POST', '/decrypt?format=canonical', { ciphertext });
        const want = JSON.stringify(toEjson(value, 'canonical'));
        const got = res.statusCode === 200 ? JSON.stringify(res.json().value) : `${res.statusCode} ${res.body}`;
        if (got !== want) throw new Error(`${algorithm} ${want} came back as ${got}`);
      }),
      params,
    );
    t.pass('holds');
  });

  t.test('relaxed output (the default) parses back to the same value where relaxed is lossless', async (t) => {
    await fc.assert(
      fc.asyncProperty(relaxedLosslessArb, async (value) => {
        const ciphertext = await encrypt(value, 'random');
        const res = await h.call('POST', '/decrypt', { ciphertext });
        const got = res.statusCode === 200 ? canonical(fromEjson(res.json().value)) : `${res.statusCode} ${res.body}`;
        if (got !== canonical(value)) throw new Error(`${canonical(value)} came back as ${got} (relaxed: ${JSON.stringify(res.json().value)})`);
      }),
      params,
    );
    t.pass('holds');
  });

  t.test('any byte string sent to /decrypt gets 200 or 400 DECRYPTION_FAILED, never a 5xx', async (t) => {
    const real = await encrypt('a value of a few blocks, to tamper with', 'random');
    const realBytes = Buffer.from(real, 'base64');
    const bytes = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b)),
      // A well-formed header naming the real key (or none), then anything.
      fc
        .tuple(fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 150 }))
        .map(([subtype, ourKey, type, rest]) =>
          Buffer.concat([Buffer.from([subtype]), ourKey ? keyIdBytes : Buffer.alloc(16), Buffer.from([type]), rest]),
        ),
      // The real ciphertext, tampered at one byte, or cut short.
      fc.tuple(fc.nat({ max: realBytes.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([pos, mask]) => {
        const tampered = Buffer.from(realBytes);
        tampered[pos]! ^= mask;
        return tampered;
      }),
      fc.nat({ max: realBytes.length - 1 }).map((length) => realBytes.subarray(0, Math.max(length, 1))),
    );
    await fc.assert(
      fc.asyncProperty(bytes, fc.boolean(), async (b, batch) => {
        const ciphertext = b.toString('base64');
        const res = await h.call('POST', '/decrypt', batch ? { items: [{ ciphertext, reference: 'r' }] } : { ciphertext });
        if (res.statusCode >= 500) throw new Error(`${ciphertext}: ${res.statusCode} ${res.body}`);
        if (batch) {
          const [item] = res.json().items;
          return res.statusCode === 200 && item.reference === 'r' && ('value' in item || item.error?.code === 'DECRYPTION_FAILED');
        }
        return res.statusCode === 200 || (res.statusCode === 400 && res.json().code === 'DECRYPTION_FAILED');
      }),
      { ...params, numRuns: 80 },
    );
    t.pass('holds');
  });
});

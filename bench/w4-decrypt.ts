/**
 * W4 (issue #5): decrypt one document of 1500 encrypted string fields under one cached data key,
 * as the MongoDB CSFLE benchmark does (libmongocrypt: ~230 docs/s per thread on the 2-core box).
 * Each document is read from its BSON bytes, every payload parsed and decrypted, values put back.
 * Native and pure JS run in interleaved rounds so drift hits both alike.
 *   npx tsx bench/w4-decrypt.ts [rounds=7] [docsPerRound=60]
 */
import { randomBytes, randomInt } from 'node:crypto';
import { BSON, type Binary } from 'mongodb';
import { aeadDecryptManyJs, aeadDecryptManyNative, AeadError, type AeadDecryptMany } from '../src/crypto/aead.js';
import { nativeAead } from '../src/crypto/aead-native.js';
import { decryptAll, encryptValue, parsePayload } from '../src/crypto/fle-payload.js';

const FIELDS = 1500;
const rounds = Number(process.argv[2] ?? 7);
const docsPerRound = Number(process.argv[3] ?? 60);

const key = randomBytes(96);
const keyId = randomBytes(16);
const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ';
const plain: Record<string, string> = {};
for (let i = 0; i < FIELDS; i++) {
  plain[`field${i}`] = Array.from({ length: randomInt(10, 21) }, () => alphabet[randomInt(alphabet.length)]).join('');
}
const encrypted: Record<string, Binary> = {};
for (const [name, value] of Object.entries(plain)) encrypted[name] = encryptValue(value, keyId, key, 'random');
const bytes = BSON.serialize(encrypted);

function decryptDocument(decryptMany: AeadDecryptMany): Record<string, unknown> {
  const doc = BSON.deserialize(bytes) as Record<string, Binary>;
  const names = Object.keys(doc);
  const parsed = names.map((name) => parsePayload(doc[name]!.buffer));
  const values = decryptAll(parsed, () => key, decryptMany);
  const out: Record<string, unknown> = doc;
  names.forEach((name, i) => {
    const value = values[i];
    if (value instanceof AeadError || value === undefined) throw new Error(`${name} did not decrypt`);
    out[name] = value;
  });
  return out;
}

const impls: [string, AeadDecryptMany][] = [['pure JS', aeadDecryptManyJs]];
if (nativeAead.loaded) impls.unshift(['native', aeadDecryptManyNative]);
else console.log(`native addon not loaded (${nativeAead.error?.message ?? 'not built: npm run build:native'}); pure JS only`);

for (const [name, impl] of impls) {
  const doc = decryptDocument(impl);
  for (const [field, value] of Object.entries(plain)) if (doc[field] !== value) throw new Error(`${name}: ${field} decrypted wrong`);
  for (let i = 0; i < 20; i++) decryptDocument(impl); // warm-up
}

const samples = new Map<string, number[]>(impls.map(([name]) => [name, []]));
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? impls : [...impls].reverse();
  for (const [name, impl] of order) {
    for (let d = 0; d < docsPerRound; d++) {
      const start = process.hrtime.bigint();
      decryptDocument(impl);
      samples.get(name)!.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`W4: ${FIELDS} string fields/doc, ${rounds} interleaved rounds x ${docsPerRound} docs, node ${process.version}`);
for (const [name, xs] of samples) {
  const ms = median(xs);
  console.log(`${name.padEnd(8)} median ${ms.toFixed(3)} ms/doc  ${(1000 / ms).toFixed(0)} docs/s`);
}

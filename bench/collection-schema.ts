/** The benchmarks' collection shape (W3, document operations): 5 deterministic, 5 random, 5 plain strings, 5 ints. */
const DET = 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic';
const RND = 'AEAD_AES_256_CBC_HMAC_SHA_512-Random';

/** The schema, encrypting (keys by alt name: bench-det, bench-rnd) or with the same fields in plaintext. */
export function collectionSchema(encrypted: boolean) {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < 5; i++) properties[`d${i}`] = encrypted ? { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'bench-det' } } : { bsonType: 'string' };
  for (let i = 0; i < 5; i++) properties[`r${i}`] = encrypted ? { encrypt: { bsonType: 'string', algorithm: RND, keyAltName: 'bench-rnd' } } : { bsonType: 'string' };
  for (let i = 0; i < 5; i++) properties[`s${i}`] = { bsonType: 'string' };
  for (let i = 0; i < 5; i++) properties[`n${i}`] = { bsonType: 'int' };
  return { bsonType: 'object', properties };
}

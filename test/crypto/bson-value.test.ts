/**
 * The bare BSON value bytes CSFLE encrypts, for the types the driver's bson cannot carry itself:
 * dbPointer (0x0C) and undefined (0x06), alone and inside documents and arrays.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { BSON, Int32, ObjectId } from 'mongodb';
import { BsonType, decodeValue, encodeValue } from '../../src/crypto/bson-value.js';
import { decryptPayload, encryptValue, parsePayload } from '../../src/crypto/fle-payload.js';
import { BSONUndefined, DBPointer } from '../../src/crypto/legacy-bson-types.js';

const OID = '57e193d7a9cc81b4027498b5';
const pointer = new DBPointer('db.example', new ObjectId(OID));

t.test('a dbPointer is its namespace as a BSON string, then the 12 ObjectId bytes', async (t) => {
  const { type, bytes } = encodeValue(pointer);
  t.equal(type, 0x0c);
  t.equal(bytes.toString('hex'), `0b000000${Buffer.from('db.example\0').toString('hex')}${OID}`);
  const back = decodeValue(type, bytes);
  t.ok(back instanceof DBPointer, 'decoded as a dbPointer, not a DBRef');
  t.equal((back as DBPointer).namespace, 'db.example');
  t.equal((back as DBPointer).oid.toHexString(), OID);
});

t.test('undefined is the type byte alone', async (t) => {
  t.same(encodeValue(new BSONUndefined()), { type: 0x06, bytes: Buffer.alloc(0) });
  t.ok(decodeValue(0x06, Buffer.alloc(0)) instanceof BSONUndefined);
  t.throws(() => decodeValue(0x06, Buffer.from([0])), 'undefined has no value bytes');
});

t.test('inside documents and arrays they keep their type; everything around them is bson\'s own encoding', async (t) => {
  const value = { a: new Int32(1), p: pointer, list: ['x', new BSONUndefined(), { q: pointer }] };
  const { type, bytes } = encodeValue(value);
  t.equal(type, BsonType.document);
  const decoded = decodeValue(type, bytes) as typeof value;
  t.equal(decoded.a.value, 1);
  t.ok(decoded.p instanceof DBPointer);
  t.equal(decoded.list[0], 'x');
  t.ok(decoded.list[1] instanceof BSONUndefined);
  t.ok((decoded.list[2] as { q: unknown }).q instanceof DBPointer);
  t.equal(bytes.readInt32LE(0), bytes.length, 'the document length frames it');
  // Without legacy values, bson writes the whole value, as before.
  const plain = { a: new Int32(1), s: 'x' };
  const doc = Buffer.from(BSON.serialize({ '': plain }));
  t.same(encodeValue(plain).bytes, doc.subarray(6, doc.length - 1));
  // An array of one dbPointer, byte for byte.
  const array = encodeValue([pointer]);
  t.equal(array.type, BsonType.array);
  const element = encodeValue(pointer).bytes;
  const expected = Buffer.concat([Buffer.alloc(4), Buffer.from([0x0c]), Buffer.from('0\0'), element, Buffer.from([0])]);
  expected.writeInt32LE(expected.length, 0);
  t.same(array.bytes, expected);
});

t.test('malformed bytes are refused, never half-read', async (t) => {
  const good = encodeValue(pointer).bytes;
  t.throws(() => decodeValue(0x0c, good.subarray(0, good.length - 1)), 'a short ObjectId');
  t.throws(() => decodeValue(0x0c, Buffer.concat([good, Buffer.from([0])])), 'trailing bytes');
  const badUtf8 = Buffer.from(good);
  badUtf8[4] = 0xff;
  t.throws(() => decodeValue(0x0c, badUtf8), 'a namespace that is not UTF-8');
  const noNul = Buffer.from(good);
  noNul[14] = 0x41;
  t.throws(() => decodeValue(0x0c, noNul), 'a namespace without its NUL');
  const array = encodeValue([pointer, pointer]).bytes;
  const swapped = Buffer.from(array);
  swapped[5] = 0x31; // first key "1": keys out of order
  t.throws(() => decodeValue(BsonType.array, swapped), 'array keys out of order');
  const truncated = Buffer.from(array.subarray(0, array.length - 3));
  truncated.writeInt32LE(truncated.length, 0);
  truncated[truncated.length - 1] = 0;
  t.throws(() => decodeValue(BsonType.array, truncated), 'a truncated element');
  t.throws(() => encodeValue({ 'a\0b': pointer }), 'a field name with a NUL byte');
});

t.test('encrypted and decrypted, the type byte in the associated data is the value\'s own', async (t) => {
  const key = randomBytes(96);
  const keyId = randomBytes(16);
  for (const [value, code] of [
    [pointer, 0x0c],
    [{ p: pointer, u: new BSONUndefined() }, 0x03],
  ] as const) {
    const ciphertext = encryptValue(value, keyId, key, 'random');
    const parsed = parsePayload(ciphertext.buffer);
    t.equal(parsed.type, code);
    t.same(encodeValue(decryptPayload(parsed, key)), encodeValue(value), 'the same bytes after a round trip');
  }
  const det = encryptValue(pointer, keyId, key, 'deterministic');
  t.same(encryptValue(new DBPointer('db.example', new ObjectId(OID)), keyId, key, 'deterministic').buffer, det.buffer, 'deterministic: equal dbPointers, equal ciphertexts');
  t.throws(() => encryptValue(new BSONUndefined(), keyId, key, 'random'), { name: 'UnsupportedTypeError' }, 'undefined alone is never encrypted');
});

/**
 * Every BSON type through the HTTP API keeps its exact type: /encrypt then /decrypt, and /documents
 * (insert, read back, equality query), both algorithms. A type an algorithm may not carry gets a
 * 400 with a stable code, never a different type.
 */
import t from 'tap';
import type { Binary } from 'mongodb';
import { createTestApp } from '../helpers/app.js';

const DET = 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic';
const RND = 'AEAD_AES_256_CBC_HMAC_SHA_512-Random';
const OID = '57e193d7a9cc81b4027498b5';

interface Case {
  /** The $jsonSchema alias. */
  alias: string;
  /** The BSON type byte inside the ciphertext. */
  code: number;
  /** Canonical Extended JSON. */
  value: unknown;
  deterministic: boolean;
  random: boolean;
}

const binary = (subType: string, base64 = 'AQIDBA==') => ({ $binary: { base64, subType } });

const cases: Case[] = [
  { alias: 'double', code: 0x01, value: { $numberDouble: '1.5' }, deterministic: false, random: true },
  { alias: 'double', code: 0x01, value: { $numberDouble: '2.0' }, deterministic: false, random: true },
  { alias: 'double', code: 0x01, value: { $numberDouble: '-0.0' }, deterministic: false, random: true },
  { alias: 'double', code: 0x01, value: { $numberDouble: 'NaN' }, deterministic: false, random: true },
  { alias: 'string', code: 0x02, value: 'héllo \u{1F600}', deterministic: true, random: true },
  { alias: 'object', code: 0x03, value: { a: { $numberInt: '1' }, b: { $numberLong: '2' }, c: { $symbol: 's' } }, deterministic: false, random: true },
  { alias: 'object', code: 0x03, value: { p: { $dbPointer: { $ref: 'db.c', $id: { $oid: OID } } }, q: [{ $dbPointer: { $ref: 'db.d', $id: { $oid: OID } } }] }, deterministic: false, random: true },
  { alias: 'array', code: 0x04, value: [{ $numberInt: '1' }, { $numberDouble: '1.0' }, 'x', { $undefined: true }], deterministic: false, random: true },
  ...['00', '01', '02', '03', '04', '05', '07', '08', '80'].map((subType) => ({ alias: 'binData', code: 0x05, value: binary(subType, subType === '04' || subType === '03' ? 'AAECAwQFBgcICQoLDA0ODw==' : 'AQIDBA=='), deterministic: true, random: true })),
  { alias: 'binData', code: 0x05, value: binary('09', 'AwABAg=='), deterministic: true, random: true },
  { alias: 'undefined', code: 0x06, value: { $undefined: true }, deterministic: false, random: false },
  { alias: 'objectId', code: 0x07, value: { $oid: OID }, deterministic: true, random: true },
  { alias: 'bool', code: 0x08, value: true, deterministic: false, random: true },
  { alias: 'date', code: 0x09, value: { $date: { $numberLong: '1577836800123' } }, deterministic: true, random: true },
  { alias: 'date', code: 0x09, value: { $date: { $numberLong: '-62135596800000' } }, deterministic: true, random: true },
  { alias: 'null', code: 0x0a, value: null, deterministic: false, random: false },
  { alias: 'regex', code: 0x0b, value: { $regularExpression: { pattern: '^a.c$', options: 'imsux' } }, deterministic: true, random: true },
  { alias: 'dbPointer', code: 0x0c, value: { $dbPointer: { $ref: 'db.example', $id: { $oid: OID } } }, deterministic: true, random: true },
  { alias: 'javascript', code: 0x0d, value: { $code: 'function () { return 1; }' }, deterministic: true, random: true },
  { alias: 'symbol', code: 0x0e, value: { $symbol: 'sym' }, deterministic: true, random: true },
  { alias: 'javascriptWithScope', code: 0x0f, value: { $code: 'x', $scope: { x: { $numberInt: '1' } } }, deterministic: false, random: true },
  { alias: 'int', code: 0x10, value: { $numberInt: '-2147483648' }, deterministic: true, random: true },
  { alias: 'timestamp', code: 0x11, value: { $timestamp: { t: 4294967295, i: 1 } }, deterministic: true, random: true },
  { alias: 'long', code: 0x12, value: { $numberLong: '5' }, deterministic: true, random: true },
  { alias: 'long', code: 0x12, value: { $numberLong: '9223372036854775807' }, deterministic: true, random: true },
  { alias: 'decimal', code: 0x13, value: { $numberDecimal: '1.2340' }, deterministic: false, random: true },
  { alias: 'minKey', code: 0xff, value: { $minKey: 1 }, deterministic: false, random: false },
  { alias: 'maxKey', code: 0x7f, value: { $maxKey: 1 }, deterministic: false, random: false },
];

const label = (c: Case) => `${c.alias} ${JSON.stringify(c.value)}`;

t.test('/encrypt and /decrypt: each type comes back as itself, or is refused with UNSUPPORTED_BSON_TYPE', async (t) => {
  const h = await createTestApp(t);
  const key = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['types'] });
  t.equal(key.statusCode, 201, key.body);
  for (const c of cases) {
    for (const algorithm of ['deterministic', 'random'] as const) {
      const res = await h.call('POST', '/encrypt', { value: c.value, algorithm, keyAltName: 'types' });
      if (!c[algorithm]) {
        t.equal(res.statusCode, 400, `${label(c)} ${algorithm}: refused`);
        t.equal(res.json().code, 'UNSUPPORTED_BSON_TYPE', `${label(c)} ${algorithm}: refused as a type`);
        continue;
      }
      t.equal(res.statusCode, 200, `${label(c)} ${algorithm}: ${res.body}`);
      const { ciphertext } = res.json() as { ciphertext: string };
      const payload = Buffer.from(ciphertext, 'base64');
      t.equal(payload[0], algorithm === 'deterministic' ? 1 : 2, `${label(c)} ${algorithm}: blob subtype`);
      t.equal(payload[17], c.code, `${label(c)} ${algorithm}: the original BSON type byte`);
      const canonical = await h.call('POST', '/decrypt?format=canonical', { ciphertext });
      t.same(canonical.json(), { value: c.value }, `${label(c)} ${algorithm}: canonical Extended JSON out as in`);
      const relaxed = await h.call('POST', '/decrypt', { ciphertext });
      t.equal(relaxed.statusCode, 200, `${label(c)} ${algorithm}: relaxed`);
      if (algorithm === 'deterministic') {
        const again = await h.call('POST', '/encrypt', { value: c.value, algorithm, keyAltName: 'types' });
        t.equal(again.json().ciphertext, ciphertext, `${label(c)}: deterministic is repeatable`);
      }
    }
  }
  // Relaxed output keeps the types relaxed Extended JSON can tell apart.
  const relaxedOf = async (value: unknown) => {
    const enc = await h.call('POST', '/encrypt', { value, algorithm: 'random', keyAltName: 'types' });
    return (await h.call('POST', '/decrypt', { ciphertext: enc.json().ciphertext })).json().value;
  };
  t.same(await relaxedOf({ $symbol: 'sym' }), { $symbol: 'sym' }, 'a symbol stays a symbol, not a string');
  t.same(await relaxedOf({ $dbPointer: { $ref: 'db.x', $id: { $oid: OID } } }), { $dbPointer: { $ref: 'db.x', $id: { $oid: OID } } }, 'a dbPointer stays a dbPointer, not a DBRef');
  t.same(await relaxedOf({ $numberDouble: '2.5' }), 2.5);
  t.same(await relaxedOf({ $numberLong: '9007199254740993' }), { $numberLong: '9007199254740993' }, 'an int64 beyond 2^53 stays exact');
  // A subtype-6 value is already ciphertext.
  const nested = await h.call('POST', '/encrypt', { value: binary('06', 'AQIDBA=='), algorithm: 'random', keyAltName: 'types' });
  t.equal(nested.json().code, 'UNSUPPORTED_BSON_TYPE', 'binData subtype 6 is refused');
});

t.test('/documents: each type is stored encrypted with its type byte, read back as itself, and found by equality where deterministic', async (t) => {
  const h = await createTestApp(t);
  const key = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['doc-types'] });
  t.equal(key.statusCode, 201, key.body);
  const keyId = [{ $uuid: key.json().id }];
  const fields = cases.flatMap((c, i) =>
    (['deterministic', 'random'] as const).filter((a) => c[a]).map((algorithm) => ({ c, name: `f${i}_${algorithm}`, algorithm })),
  );
  const properties: Record<string, unknown> = Object.fromEntries(
    fields.map(({ c, name, algorithm }) => [name, { encrypt: { bsonType: c.alias, algorithm: algorithm === 'deterministic' ? DET : RND, keyId } }]),
  );
  // Neither a type nor a rule: any value goes to the engine, which refuses what no algorithm carries.
  properties.untyped = { encrypt: { algorithm: RND, keyId } };
  const ns = `${h.keyVaultDb}.types`;
  const put = await h.call('PUT', `/schemas/${ns}`, { schema: { bsonType: 'object', properties } });
  t.equal(put.statusCode, 201, put.body);

  // A schema asking deterministic encryption of a type it cannot carry is refused as a schema.
  for (const alias of ['double', 'decimal', 'bool', 'object', 'array', 'javascriptWithScope', 'null', 'minKey']) {
    const bad = await h.call('PUT', `/schemas/${h.keyVaultDb}.bad`, { schema: { bsonType: 'object', properties: { f: { encrypt: { bsonType: alias, algorithm: DET, keyId } } } } });
    t.equal(bad.json().code, 'INVALID_SCHEMA', `deterministic ${alias} in a schema`);
  }

  const document: Record<string, unknown> = { _id: 'all-types' };
  for (const { c, name } of fields) document[name] = c.value;
  let inserted = await h.call('POST', `/documents/${ns}`, { document });
  for (let attempt = 0; inserted.json().code === 'SCHEMA_NOT_READY' && attempt < 50; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    inserted = await h.call('POST', `/documents/${ns}`, { document });
  }
  t.equal(inserted.statusCode, 201, inserted.body);

  const raw = (await h.mongo.db(h.keyVaultDb).collection('types').findOne({ _id: 'all-types' as never }))!;
  for (const { c, name, algorithm } of fields) {
    const stored = raw[name] as Binary;
    t.equal(stored?.sub_type, 6, `${name} (${label(c)}) is stored as ciphertext`);
    t.equal(Buffer.from(stored.buffer)[0], algorithm === 'deterministic' ? 1 : 2, `${name}: ${algorithm}`);
    t.equal(Buffer.from(stored.buffer)[17], c.code, `${name}: the type byte is ${c.alias}'s`);
  }

  const read = await h.call('GET', `/documents/${ns}/all-types?format=canonical`);
  t.equal(read.statusCode, 200, read.body);
  const back = read.json().document as Record<string, unknown>;
  for (const { c, name } of fields) t.same(back[name], c.value, `${name}: read back as ${label(c)}`);

  for (const { c, name, algorithm } of fields) {
    if (algorithm !== 'deterministic') continue;
    const res = await h.call('POST', `/documents/${ns}/count`, { filter: { [name]: { $eq: c.value } } });
    t.same([res.statusCode, res.json().count], [200, 1], `${name}: found by equality on ${label(c)}`);
  }
  // Equality on the same plaintext under another type finds nothing: the type is part of the ciphertext.
  const intField = fields.find((f) => f.c.alias === 'int' && f.algorithm === 'deterministic')!;
  const asLong = await h.call('POST', `/documents/${ns}/count`, { filter: { [intField.name]: { $eq: { $numberLong: '-2147483648' } } } });
  t.not(asLong.statusCode === 200 && asLong.json().count === 1, true, 'an int64 does not match an int32 field');

  for (const value of [null, { $undefined: true }, { $minKey: 1 }, { $maxKey: 1 }]) {
    const res = await h.call('POST', `/documents/${ns}`, { document: { untyped: value } });
    t.same([res.statusCode, res.json().code], [400, 'UNSUPPORTED_BSON_TYPE'], `${JSON.stringify(value)} in an encrypted field is refused`);
  }
  // The driver cannot write a dbPointer: outside an encrypted field it is refused, not converted.
  const pointer = { $dbPointer: { $ref: 'db.x', $id: { $oid: OID } } };
  const plain = await h.call('POST', `/documents/${ns}`, { document: { plain: pointer } });
  t.same([plain.statusCode, plain.json().code], [400, 'UNSUPPORTED_BSON_TYPE'], 'an unencrypted dbPointer is refused with 400');
  const undef = await h.call('POST', `/documents/${ns}`, { document: { plain: [{ $undefined: true }] } });
  t.same([undef.statusCode, undef.json().code], [400, 'UNSUPPORTED_BSON_TYPE'], 'an unencrypted undefined is refused, not written as null');
  const query = await h.call('POST', `/documents/${ns}/count`, { filter: { plain: pointer } });
  t.same([query.statusCode, query.json().code], [400, 'UNSUPPORTED_BSON_TYPE'], 'a dbPointer in a filter on an unencrypted field is refused');
  for (const id of [pointer, { $undefined: true }]) {
    const byId = await h.call('GET', `/documents/${ns}/${encodeURIComponent(JSON.stringify(id))}`);
    t.same([byId.statusCode, byId.json().code], [400, 'DOCUMENT_VALIDATION_FAILED'], `${JSON.stringify(id)} as an _id in a path is refused`);
    const asId = await h.call('POST', `/documents/${ns}`, { document: { _id: id } });
    t.equal(asId.statusCode, 400, `${JSON.stringify(id)} as an _id is refused`);
  }
  const docs = await h.mongo.db(h.keyVaultDb).collection('types').countDocuments();
  t.equal(docs, 1, 'nothing else was written');
});

t.test('/documents: unencrypted fields keep their types on the way back too', async (t) => {
  const h = await createTestApp(t);
  const ns = `${h.keyVaultDb}.plain`;
  const put = await h.call('PUT', `/schemas/${ns}`, { schema: { bsonType: 'object' } });
  t.equal(put.statusCode, 201, put.body);
  // The types FerretDB (the test database) stores unencrypted; see docs/bson-types.md. (It also
  // stores a double -0.0 as 0.0: encrypted, -0.0 keeps its sign, as the first test shows.)
  const document = {
    _id: 'plain',
    double: { $numberDouble: '2.0' },
    int: { $numberInt: '7' },
    long: { $numberLong: '7' },
    bigLong: { $numberLong: '9223372036854775807' },
    regex: { $regularExpression: { pattern: 'a', options: 'imsux' } },
    nested: { list: [{ $numberDouble: '1.0' }, { $numberLong: '1' }, { $numberInt: '1' }] },
    timestamp: { $timestamp: { t: 1, i: 2 } },
    date: { $date: { $numberLong: '1577836800123' } },
    binary: binary('04', 'AAECAwQFBgcICQoLDA0ODw=='),
  };
  let inserted = await h.call('POST', `/documents/${ns}`, { document });
  for (let attempt = 0; inserted.json().code === 'SCHEMA_NOT_READY' && attempt < 50; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    inserted = await h.call('POST', `/documents/${ns}`, { document });
  }
  t.equal(inserted.statusCode, 201, inserted.body);
  const one = await h.call('GET', `/documents/${ns}/plain?format=canonical`);
  t.same(one.json().document, document, 'by id');
  const found = await h.call('POST', `/documents/${ns}/find?format=canonical`, { filter: { _id: 'plain' } });
  t.same(found.json().items?.[0], document, 'by find');
});

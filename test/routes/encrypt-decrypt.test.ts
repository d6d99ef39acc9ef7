import t from 'tap';
import { createTestApp } from '../helpers/app.js';

t.test('POST /encrypt and /decrypt over HTTP', async (t) => {
  const h = await createTestApp(t);
  const created = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['people'] });
  t.equal(created.statusCode, 201);
  const keyId = created.json().id as string;

  t.test('round-trips canonical Extended JSON of many types exactly', async (t) => {
    const values = [
      'plain text',
      { $numberInt: '7' },
      { $numberLong: '1099511627776' },
      { $numberDouble: '7.0' },
      { $numberDecimal: '12.50' },
      { $date: { $numberLong: '1700000000000' } },
      { $oid: '65a1b2c3d4e5f60718293a4b' },
      { $binary: { base64: 'AAEC', subType: '00' } },
      { a: { b: [1, 'x'] } },
      true,
    ];
    for (const value of values) {
      const enc = await h.call('POST', '/encrypt', { value, algorithm: 'random', keyId });
      t.equal(enc.statusCode, 200, JSON.stringify(value));
      const dec = await h.call('POST', '/decrypt?format=canonical', { ciphertext: enc.json().ciphertext });
      t.equal(dec.statusCode, 200);
      const expected = JSON.stringify(value) === '{"a":{"b":[1,"x"]}}' ? { a: { b: [{ $numberInt: '1' }, 'x'] } } : value;
      t.same(dec.json().value, expected);
    }
  });

  t.test('relaxed output is the default', async (t) => {
    const enc = await h.call('POST', '/encrypt', { value: 42, algorithm: 'deterministic', keyAltName: 'people' });
    const dec = await h.call('POST', '/decrypt', { ciphertext: enc.json().ciphertext });
    t.same(dec.json(), { value: 42 });
  });

  t.test('deterministic is stable; random is not; both decrypt', async (t) => {
    const det = async () => (await h.call('POST', '/encrypt', { value: 'x', algorithm: 'deterministic', keyId })).json().ciphertext;
    const rnd = async () =>
      (await h.call('POST', '/encrypt', { value: 'x', algorithm: 'AEAD_AES_256_CBC_HMAC_SHA_512-Random', keyId })).json().ciphertext;
    const [d1, d2, r1, r2] = [await det(), await det(), await rnd(), await rnd()];
    t.equal(d1, d2);
    t.not(r1, r2);
    const dec = await h.call('POST', '/decrypt', { items: [d1, r1, r2].map((ciphertext) => ({ ciphertext })) });
    t.same(dec.json().items, [{ value: 'x' }, { value: 'x' }, { value: 'x' }]);
  });

  t.test('int64 beyond 2^53 keeps every digit, also in relaxed output', async (t) => {
    const enc = await h.call('POST', '/encrypt', { value: { $numberLong: '9007199254740993' }, algorithm: 'random', keyId });
    const dec = await h.call('POST', '/decrypt', { ciphertext: enc.json().ciphertext });
    t.same(dec.json().value, { $numberLong: '9007199254740993' });
    const small = await h.call('POST', '/encrypt', { value: { $numberLong: '42' }, algorithm: 'random', keyId });
    t.same((await h.call('POST', '/decrypt', { ciphertext: small.json().ciphertext })).json().value, 42);
  });

  t.test('a batch of 1000 values under 1000 different alt names answers each item', async (t) => {
    const items = Array.from({ length: 1000 }, (_, i) => ({ value: `v${i}`, algorithm: 'random', keyAltName: i % 100 === 0 ? 'people' : `nobody-${i}` }));
    const enc = await h.call('POST', '/encrypt', { items });
    t.equal(enc.statusCode, 200);
    const answers = enc.json().items as { ciphertext?: string; error?: { code: string } }[];
    t.equal(answers.filter((a) => a.ciphertext !== undefined).length, 10, 'the ten items naming a real key are encrypted');
    t.ok(answers.every((a, i) => (i % 100 === 0 ? a.ciphertext : a.error?.code === 'KEY_NOT_FOUND')), 'the rest are KEY_NOT_FOUND, each in its place');
  });

  t.test('batches answer item by item with references', async (t) => {
    const enc = await h.call('POST', '/encrypt', {
      items: [
        { reference: 'a', value: 'one', algorithm: 'deterministic', keyId },
        { reference: 'b', value: 1.5, algorithm: 'deterministic', keyId },
        { reference: 'c', value: 'three', algorithm: 'random', keyAltName: 'nobody' },
        { reference: 'd', value: { $numberInt: 'NaN-ish' }, algorithm: 'random', keyId },
        { value: 'five', algorithm: 'random', keyAltName: 'people' },
      ],
    });
    t.equal(enc.statusCode, 200);
    const items = enc.json().items;
    t.equal(items.length, 5);
    t.equal(items[0].reference, 'a');
    t.type(items[0].ciphertext, 'string');
    t.equal(items[1].error.code, 'UNSUPPORTED_BSON_TYPE');
    t.equal(items[2].error.code, 'KEY_NOT_FOUND');
    t.equal(items[3].error.code, 'INVALID_EXTENDED_JSON');
    t.type(items[4].ciphertext, 'string');
    t.notOk('reference' in items[4]);

    const dec = await h.call('POST', '/decrypt', {
      items: [
        { reference: 'a', ciphertext: items[0].ciphertext },
        { reference: 'junk', ciphertext: 'AAAA' },
        { ciphertext: items[4].ciphertext },
      ],
    });
    t.same(dec.json().items[0], { reference: 'a', value: 'one' });
    t.equal(dec.json().items[1].error.code, 'DECRYPTION_FAILED');
    t.same(dec.json().items[2], { value: 'five' });
  });

  t.test('every decryption failure gives the same answer', async (t) => {
    const good = (await h.call('POST', '/encrypt', { value: 'secret', algorithm: 'random', keyId })).json().ciphertext as string;
    const doomedKey = (await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).json().id;
    const orphan = (await h.call('POST', '/encrypt', { value: 'secret', algorithm: 'random', keyId: doomedKey })).json().ciphertext as string;
    t.equal((await h.call('DELETE', `/keys/${doomedKey}`)).statusCode, 204);
    const raw = Buffer.from(good, 'base64');
    const flipped = Buffer.from(raw);
    flipped[raw.length - 1]! ^= 1;
    const unknownKey = Buffer.from(raw);
    unknownKey[5]! ^= 1;
    const badAlgorithm = Buffer.from(raw);
    badAlgorithm[0] = 9;
    const bodies = new Set<string>();
    for (const bytes of [flipped, unknownKey, badAlgorithm, raw.subarray(0, 40), Buffer.from('not a payload at all'), Buffer.from(orphan, 'base64')]) {
      const res = await h.call('POST', '/decrypt', { ciphertext: bytes.toString('base64') });
      t.equal(res.statusCode, 400);
      t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
      const { instance: _instance, ...rest } = res.json();
      bodies.add(JSON.stringify(rest));
    }
    t.equal(bodies.size, 1);
    t.match([...bodies][0], /DECRYPTION_FAILED/);
    t.notMatch(JSON.stringify([...bodies]), /secret/);
  });

  t.test('bad input gets a 4xx with a code, never a 500', async (t) => {
    const cases: [unknown, number, string][] = [
      [{ ciphertext: 'not base64!!' }, 400, 'VALIDATION_FAILED'],
      [{ value: 'x', algorithm: 'random', keyId: 'not-a-uuid' }, 400, 'VALIDATION_FAILED'],
      [{ value: 'x', algorithm: 'random', keyId: '00000000-0000-4000-8000-000000000000' }, 404, 'KEY_NOT_FOUND'],
      [{ value: 'x', algorithm: 'random', keyAltName: 'missing' }, 404, 'KEY_NOT_FOUND'],
      [{ value: 1.5, algorithm: 'deterministic', keyId }, 400, 'UNSUPPORTED_BSON_TYPE'],
      [{ value: null, algorithm: 'random', keyId }, 400, 'UNSUPPORTED_BSON_TYPE'],
      [{ value: 'x', algorithm: 'random', keyId, extra: 1 }, 400, 'VALIDATION_FAILED'],
      [{ value: 'x', algorithm: 'sideways', keyId }, 400, 'VALIDATION_FAILED'],
      [{ value: 'x', algorithm: 'random' }, 400, 'VALIDATION_FAILED'],
      [{ value: 'x', algorithm: 'random', keyId, keyAltName: 'people' }, 400, 'VALIDATION_FAILED'],
      [{ value: { $numberInt: 'abc' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $numberInt: '1.5' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $numberDouble: 'zz' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $date: 'yesterday-ish' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $oid: 'zz' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $symbol: 5 }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $numberLong: '99999999999999999999' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $date: { $numberLong: '99999999999999999999' } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $date: 'Tue, 01 Jan 2020 00:00:00 GMT' }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $binary: { base64: '!!!', subType: '00' } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $binary: { base64: 'AAAA', subType: 'zz' } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $timestamp: { t: 4294967296, i: 1 } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $code: 5 }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $dbPointer: { $ref: 'a', $id: 'not an ObjectId' } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $dbPointer: { $ref: 5, $id: { $oid: '65a1b2c3d4e5f60718293a4b' } } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $dbPointer: { $ref: 'a', $id: { $oid: '65a1b2c3d4e5f60718293a4b' }, $db: 'x' } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ value: { $code: 'f', $scope: { p: { $dbPointer: { $ref: 'a', $id: { $oid: '65a1b2c3d4e5f60718293a4b' } } } } }, algorithm: 'random', keyId }, 400, 'INVALID_EXTENDED_JSON'],
      [{ items: [] }, 400, 'VALIDATION_FAILED'],
    ];
    for (const [body, status, code] of cases) {
      const url = 'ciphertext' in (body as object) ? '/decrypt' : '/encrypt';
      const res = await h.call('POST', url, body);
      t.equal(res.statusCode, status, JSON.stringify(body));
      t.equal(res.json().code, code, JSON.stringify(body));
    }
    const huge = await h.call('POST', '/encrypt', { value: 'x'.repeat(2 * 1024 * 1024), algorithm: 'random', keyId });
    t.equal(huge.statusCode, 413);
    t.equal(huge.json().code, 'BODY_TOO_LARGE');
    const notJson = await h.call('POST', '/encrypt', '{"value": ', { 'content-type': 'application/json' });
    t.equal(notJson.statusCode, 400);
    t.equal(notJson.json().code, 'INVALID_JSON');
    const poisoned = await h.call('POST', '/encrypt', '{"__proto__": {"x": 1}, "value": "x"}', { 'content-type': 'application/json' });
    t.equal(poisoned.statusCode, 400);
    t.equal(poisoned.json().code, 'INVALID_JSON');
    const batch = await h.call('POST', '/encrypt', { items: [{ value: { $symbol: 5 }, algorithm: 'random', keyId }, { value: 'fine', algorithm: 'random', keyId }] });
    t.equal(batch.statusCode, 200, 'one bad item does not fail the batch');
    t.equal(batch.json().items[0].error.code, 'INVALID_EXTENDED_JSON');
    t.type(batch.json().items[1].ciphertext, 'string');
    const text = await h.call('POST', '/encrypt', 'hello', { 'content-type': 'text/plain' });
    t.equal(text.statusCode, 415);
    t.equal(text.json().code, 'UNSUPPORTED_MEDIA_TYPE');
  });

  t.test('no token, or a wrong one, is 401', async (t) => {
    const none = await h.app.inject({ method: 'POST', url: '/encrypt', payload: { value: 'x', algorithm: 'random', keyId } });
    t.equal(none.statusCode, 401);
    t.equal(none.json().code, 'UNAUTHORIZED');
    t.equal(none.headers['www-authenticate'], 'Bearer');
    const wrong = await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId }, { authorization: 'Bearer nope' });
    t.equal(wrong.statusCode, 401);
    const lower = await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId }, { authorization: `bearer ${h.env.ADMIN_TOKEN}` });
    t.equal(lower.statusCode, 200, 'the scheme is case-insensitive');
  });
});

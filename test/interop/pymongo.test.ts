import t from 'tap';
import { createTestApp } from '../helpers/app.js';
import { pymongo } from './pymongo-peer.js';

const deterministicValues = [
  'Ada Lovelace',
  '',
  'ünïcødé 🔐',
  { $numberInt: '-12' },
  { $numberLong: '9007199254740993' },
  { $date: { $numberLong: '1700000000123' } },
  { $oid: '65a1b2c3d4e5f60718293a4b' },
  { $binary: { base64: 'c2VjcmV0', subType: '00' } },
];
const randomOnlyValues = [{ $numberDouble: '3.25' }, true, { nested: { list: [{ $numberInt: '1' }, 'two'] } }, { $numberDecimal: '10.01' }];

t.test('pymongo (libmongocrypt) and the service read each other, sharing one key vault', async (t) => {
  const h = await createTestApp(t);
  const serviceKey = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['from-service'] })).json().id;
  const pyKey = pymongo(h, { op: 'createKey', keyAltNames: ['from-pymongo'] }).id!;

  async function serviceEncrypt(value: unknown, algorithm: string, ref: Record<string, string>): Promise<string> {
    const res = await h.call('POST', '/encrypt', { value, algorithm, ...ref });
    t.equal(res.statusCode, 200, `service encrypts ${JSON.stringify(value)}`);
    return res.json().ciphertext;
  }

  for (const [label, ref] of [
    ['a key the service created', { keyId: serviceKey }],
    ['a key pymongo created', { keyAltName: 'from-pymongo' }],
  ] as const) {
    t.test(`with ${label}`, async (t) => {
      const items = [
        ...deterministicValues.map((value) => ({ value, algorithm: 'deterministic' })),
        ...[...deterministicValues, ...randomOnlyValues].map((value) => ({ value, algorithm: 'random' })),
      ];
      const ours: string[] = [];
      for (const item of items) ours.push(await serviceEncrypt(item.value, item.algorithm, ref));

      const readByPymongo = pymongo(h, { op: 'decrypt', items: ours }).items!;
      t.same(readByPymongo, items.map((i) => i.value), 'pymongo decrypts what /encrypt produced, type for type');

      const theirs = pymongo(h, { op: 'encrypt', items: items.map((i) => ({ ...i, ...ref })) }).items as string[];
      const deterministicCount = deterministicValues.length;
      t.same(theirs.slice(0, deterministicCount), ours.slice(0, deterministicCount), 'deterministic ciphertexts are byte-identical');

      const res = await h.call('POST', '/decrypt?format=canonical', { items: theirs.map((ciphertext) => ({ ciphertext })) });
      t.equal(res.statusCode, 200);
      t.same(
        res.json().items.map((i: { value: unknown }) => i.value),
        items.map((i) => i.value),
        '/decrypt reads what pymongo encrypted',
      );
    });
  }

  t.test('a key pymongo created is listed with the same metadata shape', async (t) => {
    const view = (await h.call('GET', `/keys/${pyKey}`)).json();
    t.same(view.keyAltNames, ['from-pymongo']);
    t.same(view.masterKey, { provider: 'local' });
    t.equal(view.status, 0);
  });
});

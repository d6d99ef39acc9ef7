/**
 * Extended JSON for the types the driver's bson parser would change: {"$dbPointer": ...} (it makes
 * a DBRef) and {"$undefined": true} (it makes null). Both stay themselves, in both formats.
 */
import t from 'tap';
import { BSONUndefined, DBPointer } from '../src/crypto/legacy-bson-types.js';
import { fromEjson, toEjson } from '../src/ejson.js';

const OID = '57e193d7a9cc81b4027498b5';
const pointerJson = { $dbPointer: { $ref: 'db.example', $id: { $oid: OID } } };

t.test('dbPointer and undefined in and out, alone and nested', async (t) => {
  const pointer = fromEjson(pointerJson);
  t.ok(pointer instanceof DBPointer);
  t.ok(fromEjson({ $undefined: true }) instanceof BSONUndefined);
  const nested = { a: [pointerJson, { $undefined: true }], b: { c: pointerJson }, n: { $numberLong: '7' } };
  const value = fromEjson(nested);
  for (const format of ['canonical', 'relaxed'] as const) {
    t.same(toEjson(pointer, format), pointerJson, `${format}: a dbPointer, not a DBRef`);
    t.same(toEjson(new BSONUndefined(), format), { $undefined: true }, `${format}: undefined, not null`);
  }
  t.same(toEjson(value, 'canonical'), nested);
  t.same(toEjson(value, 'relaxed'), { ...nested, n: 7 });
  // A field named __proto__ beside them is a field.
  const proto = fromEjson(JSON.parse(`{"__proto__": {"x": 1}, "p": ${JSON.stringify(pointerJson)}}`)) as Record<string, unknown>;
  t.ok(Object.hasOwn(proto, '__proto__'));
  t.equal(Object.getPrototypeOf(proto), Object.prototype);
});

t.test('a malformed or misplaced one is INVALID_EXTENDED_JSON', async (t) => {
  const bad = [
    { $dbPointer: { $ref: 'a', $id: OID } },
    { $dbPointer: { $ref: 'a', $id: { $oid: 'xyz' } } },
    { $dbPointer: { $ref: 1, $id: { $oid: OID } } },
    { $dbPointer: { $ref: 'a', $id: { $oid: OID }, $db: 'd' } },
    { $dbPointer: { $ref: 'a', $id: { $oid: OID } }, extra: 1 },
    { $dbPointer: null },
    { $undefined: false },
    { $undefined: true, x: 1 },
    { $code: 'f', $scope: { p: pointerJson } },
    { $ref: 'c', $id: 1, u: { $undefined: true } },
  ];
  for (const json of bad) t.throws(() => fromEjson(json), { code: 'INVALID_EXTENDED_JSON' }, JSON.stringify(json));
});

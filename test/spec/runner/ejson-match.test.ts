import t from 'tap';
import { Binary, Int32, Long } from 'mongodb';
import { matchEjson } from './ejson-match.js';

t.test('numbers match by value whatever their BSON type', async (t) => {
  t.equal(matchEjson({ a: 1 }, { a: new Long(1) }), undefined);
  t.equal(matchEjson({ a: { $numberLong: '2' } }, { a: new Int32(2) }), undefined);
  t.match(matchEjson({ a: 1 }, { a: 2 }), /expected 1, got 2/);
});

t.test('root documents may hold extra fields, embedded ones may not', async (t) => {
  t.equal(matchEjson({ a: 1 }, { a: 1, b: 2 }), undefined);
  t.match(matchEjson({ a: { x: 1 } }, { a: { x: 1, y: 2 } }), /unexpected field\(s\) y/);
  t.match(matchEjson({ a: 1 }, { a: 1, b: 2 }, { root: false }), /unexpected field\(s\) b/);
});

t.test('special operators', async (t) => {
  const bin = new Binary(Buffer.alloc(16), 4);
  t.equal(matchEjson({ id: { $$type: 'binData' } }, { id: bin }), undefined);
  t.match(matchEjson({ id: { $$type: 'date' } }, { id: bin }), /not of type date/);
  t.equal(matchEjson({ r: { $$exists: false } }, {}), undefined);
  t.match(matchEjson({ r: { $$exists: false } }, { r: 1 }), /expected absent/);
  t.equal(matchEjson({ $$unsetOrMatches: null }, null), undefined);
  t.equal(matchEjson({ a: { $$unsetOrMatches: { b: 1 } } }, {}), undefined);
  t.match(matchEjson({ a: { $$unsetOrMatches: { b: 1 } } }, { a: { b: 2 } }), /expected 1, got 2/);
});

t.test('binaries compare byte for byte, arrays by length and order', async (t) => {
  const b64 = Buffer.from('abc').toString('base64');
  t.equal(matchEjson({ v: { $binary: { base64: b64, subType: '06' } } }, { v: new Binary(Buffer.from('abc'), 6) }), undefined);
  t.ok(matchEjson({ v: { $binary: { base64: b64, subType: '06' } } }, { v: new Binary(Buffer.from('abd'), 6) }));
  t.match(matchEjson([1, 2], [1]), /expected 2 items/);
  t.match(matchEjson([1, 2], [2, 1]), /expected 1, got 2/);
});

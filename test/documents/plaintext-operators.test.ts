/**
 * No over-refusal, over HTTP on the real database: what MongoDB's query analysis allows on
 * unencrypted fields passes the proxy (badQueries.json), and where FerretDB does not implement an
 * operator or stage, the proxy sent the right command and answers the database's refusal as a
 * clean 422 DATABASE_UNSUPPORTED_OPERATION, never a 500.
 */
import t from 'tap';
import { Collection, type Document } from 'mongodb';
import { createDocumentsApp, DET, RND } from '../helpers/documents.js';

/** A schema with plaintext fields of every shape the operators need, beside encrypted ones. */
function schema(keys: Record<string, string>) {
  return {
    bsonType: 'object',
    properties: {
      name: { bsonType: 'string' },
      flags: { bsonType: 'int' },
      tags: { bsonType: 'array' },
      place: { bsonType: 'array' },
      ssn: { encrypt: { bsonType: 'string', algorithm: DET, keyAltName: 'hr-det' } },
      salary: { encrypt: { bsonType: 'int', algorithm: RND, keyId: [{ $uuid: keys['hr-rnd'] }] } },
    },
  };
}

async function sent<T>(fn: () => Promise<T>): Promise<{ result: T; commands: { method: string; arg: unknown }[] }> {
  const commands: { method: string; arg: unknown }[] = [];
  const proto = Collection.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = (['find', 'aggregate'] as const).map((m) => [m, proto[m]!] as const);
  for (const [method, original] of originals) {
    proto[method] = function (this: Collection, ...args: unknown[]) {
      if (this.collectionName === 'employees') commands.push({ method, arg: args[0] });
      return original.apply(this, args);
    };
  }
  try {
    return { result: await fn(), commands };
  } finally {
    for (const [method, original] of originals) proto[method] = original;
  }
}

t.test('plaintext operators work; the same operators on encrypted fields are refused; FerretDB gaps are a clean 422', async (t) => {
  const h = await createDocumentsApp(t, schema);
  const url = `/documents/${h.ns}`;
  const people = [
    { _id: 1, name: 'Ann', flags: 5, tags: ['x', 'y'], place: [0.5, 0.5], ssn: '1', salary: 10 },
    { _id: 2, name: 'bob', flags: 6, tags: ['z'], place: [5, 5], ssn: '2', salary: 20 },
  ];
  t.equal((await h.call('POST', url, { documents: people })).json().inserted, 2);
  const ids = (res: { json(): { items: { _id: number }[] } }) => res.json().items.map((d) => d._id);

  const works: [string, unknown, number[]][] = [
    ['$bitsAllSet', { flags: { $bitsAllSet: 4 } }, [1, 2]],
    ['$bitsAllClear', { flags: { $bitsAllClear: 1 } }, [2]],
    ['$bitsAnySet', { flags: { $bitsAnySet: [0] } }, [1]],
    ['$bitsAnyClear', { flags: { $bitsAnyClear: 1 } }, [2]],
    ['$regex', { name: { $regex: '^a', $options: 'i' } }, [1]],
    ['$not $regex', { name: { $not: { $regex: '^a', $options: 'i' } } }, [2]],
    ['$exists', { salary: { $exists: true } }, [1, 2]],
    ['$type', { name: { $type: 'string' } }, [1, 2]],
    ['$elemMatch', { tags: { $elemMatch: { $eq: 'z' } } }, [2]],
    ['$size', { tags: { $size: 2 } }, [1]],
    ['$all', { tags: { $all: ['x', 'y'] } }, [1]],
    ['$mod', { flags: { $mod: [3, 0] } }, [2]],
    ['$comment', { $comment: 'audit me', name: 'bob' }, [2]],
    ['beside an equality on a deterministic field', { flags: { $bitsAnySet: 4 }, ssn: '2' }, [2]],
  ];
  for (const [what, filter, expected] of works) {
    const res = await h.call('POST', `${url}/find`, { filter, sort: { _id: 1 } });
    t.equal(res.statusCode, 200, `${what}: ${res.body}`);
    t.same(ids(res), expected, what);
  }
  const positional = await h.call('POST', `${url}/find`, { filter: { tags: 'y' }, projection: { 'tags.$': 1 } });
  t.equal(positional.statusCode, 200, positional.body);
  t.same(positional.json().items, [{ _id: 1, tags: ['y'] }], 'the positional projection');

  const onEncrypted: [string, unknown, string][] = [
    ['$bitsAllSet', { ssn: { $bitsAllSet: 1 } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['$geoWithin', { ssn: { $geoWithin: { $box: [[0, 0], [1, 1]] } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['$near', { salary: { $near: [0, 0] } }, 'QUERY_ON_RANDOM_FIELD'],
    ['$mod', { ssn: { $mod: [3, 1] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['$expr', { $expr: { $eq: ['$ssn', '1'] } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
    ['positional projection', { ssn: '1' }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD'],
  ];
  for (const [what, filter, code] of onEncrypted) {
    const body = what === 'positional projection' ? { filter, projection: { 'ssn.$': 1 } } : { filter };
    const res = await h.call('POST', `${url}/find`, body);
    t.same([res.statusCode, res.json().code], [400, code], `${what} on an encrypted field: ${res.body}`);
  }
  for (const filter of [{ $where: 'true' }, { $expr: { $function: { body: 'return true', args: [], lang: 'js' } } }, { $nor: [{ tags: { $elemMatch: { $where: 'x' } } }] }, { $text: { $search: 'x' } }]) {
    const res = await h.call('POST', `${url}/find`, { filter });
    t.same([res.statusCode, res.json().code], [400, 'QUERY_OPERATOR_NOT_ALLOWED'], JSON.stringify(filter));
  }

  // What FerretDB does not implement: the proxy passes the plaintext operator on as is, and the
  // database's refusal is a clean 422.
  const gaps: [string, string, unknown][] = [
    ['$geoWithin', 'find', { filter: { place: { $geoWithin: { $box: [[0, 0], [1, 1]] } } } }],
    ['$geoIntersects', 'find', { filter: { place: { $geoIntersects: { $geometry: { type: 'Point', coordinates: [0, 0] } } } } }],
    ['$near', 'find', { filter: { place: { $near: [0, 0] } } }],
    ['$expr with $gt', 'find', { filter: { $expr: { $gt: ['$flags', 5] } } }],
    ['$sortByCount', 'aggregate', { pipeline: [{ $sortByCount: '$name' }] }],
    ['$bucket', 'aggregate', { pipeline: [{ $bucket: { groupBy: '$flags', boundaries: [0, 6, 10] } }] }],
    ['$facet', 'aggregate', { pipeline: [{ $facet: { n: [{ $match: { ssn: '1' } }, { $count: 'n' }] } }] }],
    ['$replaceRoot', 'aggregate', { pipeline: [{ $replaceRoot: { newRoot: { n: '$name' } } }] }],
    ['$sample', 'aggregate', { pipeline: [{ $sample: { size: 1 } }] }],
    ['$group $first', 'aggregate', { pipeline: [{ $group: { _id: null, f: { $first: '$name' } } }] }],
  ];
  for (const [what, route, body] of gaps) {
    const { result: res, commands } = await sent(() => h.call('POST', `${url}/${route}`, body));
    t.equal(commands.length, 1, `${what}: the command was sent`);
    t.same([res.statusCode, res.json().code], [422, 'DATABASE_UNSUPPORTED_OPERATION'], `${what}: ${res.body}`);
    if (what === '$facet') {
      const facet = (commands[0]!.arg as Document[])[0]!.$facet.n[0].$match.ssn;
      t.equal(facet?._bsontype === 'Binary' && facet.sub_type, 6, 'the $facet $match equality was sent as ciphertext');
    }
  }
});

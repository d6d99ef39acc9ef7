import t from 'tap';
import { BSON } from 'mongodb';
import { createDocumentsApp } from '../helpers/documents.js';

// The driver's copy of bson: one module instance, so instanceof and its buffers are shared.
const { EJSON } = BSON;

const employee = (i: number, tenant: 'tenant-a' | 'tenant-b') => ({
  name: `Employee ${i}`,
  tenantKey: tenant,
  level: i,
  ssn: `CANARY-SSN-${i}-x9q`,
  badge: { $numberInt: String(1000 + i) },
  salary: { $numberInt: String(50000 + i) },
  medical: { diagnosis: `CANARY-DIAG-${i}-k2w`, allergies: [`CANARY-ALLERGY-${i}`, 'dust'], ward: 'north' },
  tenantSecret: `CANARY-TENANT-${i}-z7p`,
  note_private: `CANARY-NOTE-${i}-m3v`,
});

t.test('/documents: schema-driven encryption end to end on the real server', async (t) => {
  const h = await createDocumentsApp(t);
  const raw = () => h.mongo.db(h.keyVaultDb).collection('employees');
  const url = `/documents/${h.ns}`;

  const inserted: string[] = [];
  for (let i = 1; i <= 6; i++) {
    const res = await h.call('POST', url, { document: employee(i, i % 2 ? 'tenant-a' : 'tenant-b') });
    t.equal(res.statusCode, 201, res.body);
    inserted.push(res.json().insertedId.$oid);
  }

  t.test('the database holds no canary plaintext, and every schema field is subtype 6', async (t) => {
    const docs = await raw().find({}).toArray();
    t.equal(docs.length, 6);
    const dump = EJSON.stringify(docs);
    t.notMatch(dump, /CANARY/, 'no plaintext canary anywhere in the raw collection');
    for (const doc of docs) {
      for (const value of [doc.ssn, doc.badge, doc.salary, doc.medical.diagnosis, doc.medical.allergies, doc.tenantSecret, doc.note_private]) {
        t.equal(value?._bsontype, 'Binary');
        t.equal(value?.sub_type, 6);
      }
      t.equal(doc.medical.ward, 'north', 'fields the schema does not encrypt stay plaintext');
      t.equal(typeof doc.name, 'string');
    }
  });

  t.test('reads decrypt, keeping types', async (t) => {
    const res = await h.call('GET', `${url}/${inserted[0]}?format=canonical`);
    t.equal(res.statusCode, 200);
    const doc = res.json().document;
    t.equal(doc.ssn, 'CANARY-SSN-1-x9q');
    t.same(doc.salary, { $numberInt: '50001' });
    t.same(doc.medical.allergies, ['CANARY-ALLERGY-1', 'dust']);
    t.equal(doc.tenantSecret, 'CANARY-TENANT-1-z7p');
    t.equal(doc.note_private, 'CANARY-NOTE-1-m3v');
    t.notOk(res.json().unreadable);
  });

  t.test('equality queries on deterministic fields return exactly the right documents', async (t) => {
    const find = async (filter: unknown, extra: Record<string, unknown> = {}) => {
      const res = await h.call('POST', `${url}/find`, { filter, ...extra });
      t.equal(res.statusCode, 200, res.body);
      return res.json().items.map((d: { name: string }) => d.name).sort();
    };
    t.same(await find({ ssn: 'CANARY-SSN-2-x9q' }), ['Employee 2']);
    t.same(await find({ ssn: { $eq: 'CANARY-SSN-3-x9q' } }), ['Employee 3']);
    t.same(await find({ ssn: { $in: ['CANARY-SSN-1-x9q', 'CANARY-SSN-5-x9q', 'nobody'] } }), ['Employee 1', 'Employee 5']);
    t.same(await find({ ssn: { $nin: ['CANARY-SSN-1-x9q', 'CANARY-SSN-2-x9q'] } }), ['Employee 3', 'Employee 4', 'Employee 5', 'Employee 6']);
    t.same(await find({ ssn: { $ne: 'CANARY-SSN-1-x9q' }, tenantKey: 'tenant-a' }), ['Employee 3', 'Employee 5']);
    t.same(await find({ ssn: { $not: { $eq: 'CANARY-SSN-1-x9q' } }, level: { $lte: 2 } }), ['Employee 2']);
    t.same(await find({ $or: [{ ssn: 'CANARY-SSN-4-x9q' }, { badge: { $numberInt: '1006' } }] }), ['Employee 4', 'Employee 6']);
    t.same(await find({ $and: [{ badge: 1002 }, { ssn: 'CANARY-SSN-2-x9q' }] }), ['Employee 2']);
    t.same(await find({ $nor: [{ ssn: 'CANARY-SSN-1-x9q' }, { level: { $gt: 2 } }] }), ['Employee 2']);
    t.same(await find({ 'medical.ward': 'north', level: { $in: [1, 2] } }), ['Employee 1', 'Employee 2']);
    const count = await h.call('POST', `${url}/count`, { filter: { ssn: { $in: ['CANARY-SSN-1-x9q', 'CANARY-SSN-2-x9q'] } } });
    t.same(count.json(), { count: 2 });
    const byGet = await h.call('GET', `${url}?filter=${encodeURIComponent(JSON.stringify({ ssn: 'CANARY-SSN-6-x9q' }))}`);
    t.equal(byGet.json().items[0].name, 'Employee 6');
  });

  t.test('paging with a cursor, projection and sort on plaintext fields', async (t) => {
    const names: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const res = await h.call('POST', `${url}/find`, { filter: {}, sort: { level: -1 }, projection: { name: 1, ssn: 1 }, limit: 4, ...(cursor ? { cursor } : {}) });
      t.equal(res.statusCode, 200, res.body);
      for (const doc of res.json().items) {
        names.push(doc.name);
        t.same(Object.keys(doc).sort(), ['_id', 'name', 'ssn']);
        t.match(doc.ssn, /^CANARY-SSN/);
      }
      cursor = res.json().next;
      if (!cursor) break;
    }
    t.same(names, ['Employee 6', 'Employee 5', 'Employee 4', 'Employee 3', 'Employee 2', 'Employee 1']);
    const wrong = await h.call('POST', `${url}/find`, { filter: { level: 1 }, limit: 4, cursor: '4.AAAAAAAAAAAAAAAA' });
    t.equal(wrong.json().code, 'INVALID_QUERY');
  });

  t.test('forbidden queries give a 400 naming the path, and touch nothing', async (t) => {
    const before = EJSON.stringify(await raw().find({}).sort({ _id: 1 }).toArray());
    const cases: [string, unknown, string, RegExp][] = [
      ['find', { filter: { salary: 50001 } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
      ['find', { filter: { 'medical.diagnosis': 'x' } }, 'QUERY_ON_RANDOM_FIELD', /medical\.diagnosis/],
      ['find', { filter: { note_private: 'x' } }, 'QUERY_ON_RANDOM_FIELD', /note_private/],
      ['find', { filter: { ssn: { $regex: '^CAN' } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
      ['find', { filter: { ssn: { $gt: 'A' } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
      ['find', { filter: { ssn: 12 } }, 'INVALID_QUERY', /ssn/],
      ['find', { filter: { medical: { diagnosis: 'x' } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /medical/],
      ['find', { filter: { 'salary.x': 1 } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
      ['find', { filter: { $where: 'true' } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
      ['find', { filter: { $expr: { $eq: ['$ssn', 'x'] } } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
      ['find', { filter: { level: { $function: {} } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$function/],
      ['find', { filter: { level: { $elemMatch: { $where: 'x' } } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$where/],
      ['find', { filter: { level: { $accumulator: {} } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$accumulator/],
      ['find', { filter: { level: { $bogus: 1 } } }, 'QUERY_OPERATOR_NOT_ALLOWED', /\$bogus/],
      ['find', { filter: {}, sort: { salary: 1 } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
      ['find', { filter: {}, sort: { ssn: 1 } }, 'UNSUPPORTED_QUERY_ON_ENCRYPTED_FIELD', /ssn/],
      ['find', { filter: {}, projection: { 'salary.low': 1 } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
      ['count', { filter: { salary: 1 } }, 'QUERY_ON_RANDOM_FIELD', /salary/],
      ['update', { filter: { salary: 1 }, update: { $set: { level: 9 } }, many: true }, 'QUERY_ON_RANDOM_FIELD', /salary/],
      ['update', { filter: { level: 1 }, update: { $inc: { salary: 1 } } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /salary/],
      ['update', { filter: { level: 1 }, update: { $set: { 'medical.diagnosis.code': 'x' } } }, 'ENCRYPTED_FIELD_NOT_WRITABLE', /medical\.diagnosis/],
      ['update', { filter: { level: 1 }, update: { $unset: { ssn: '' } } }, 'DOCUMENT_VALIDATION_FAILED', /ssn/],
      ['update', { filter: {}, update: { $set: { level: 9 } }, many: true }, 'INVALID_QUERY', /empty filter/],
      ['delete', { filter: { note_private: 'x' }, many: true }, 'QUERY_ON_RANDOM_FIELD', /note_private/],
      ['delete', { filter: {}, many: true }, 'INVALID_QUERY', /empty filter/],
    ];
    for (const [op, body, code, path] of cases) {
      const res = await h.call('POST', `${url}/${op}`, body);
      t.equal(res.statusCode, 400, `${op} ${JSON.stringify(body)}`);
      t.equal(res.json().code, code, `${op} ${JSON.stringify(body)}`);
      t.match(res.json().detail ?? '', path, `${op} names the path`);
    }
    t.equal(EJSON.stringify(await raw().find({}).sort({ _id: 1 }).toArray()), before, 'the collection is unchanged');
  });

  t.test('updates re-encrypt what they replace; plaintext operators work', async (t) => {
    const id = inserted[0]!;
    const res = await h.call('PATCH', `${url}/${id}`, {
      update: { $set: { ssn: 'CANARY-SSN-NEW-1', 'medical.diagnosis': 'CANARY-DIAG-NEW' }, $inc: { level: 10 } },
    });
    t.equal(res.statusCode, 200, res.body);
    t.same(res.json(), { matched: 1, modified: 1 });
    const stored = await raw().findOne({ name: 'Employee 1' });
    t.notMatch(EJSON.stringify(stored), /CANARY/);
    t.equal(stored!.ssn.sub_type, 6);
    t.equal(stored!.level, 11);
    const found = await h.call('POST', `${url}/find`, { filter: { ssn: 'CANARY-SSN-NEW-1' } });
    t.equal(found.json().items.length, 1);
    t.equal(found.json().items[0].medical.diagnosis, 'CANARY-DIAG-NEW');
    t.equal(found.json().items[0].medical.ward, 'north', 'sibling plaintext fields survive a dotted $set');

    // As mongocryptd: a field keyed by a JSON pointer has no document to read its key from in an update.
    const before = EJSON.stringify(await raw().find({ tenantKey: 'tenant-b' }).toArray());
    const many = await h.call('POST', `${url}/update`, { filter: { tenantKey: 'tenant-b' }, update: { $set: { tenantSecret: 'CANARY-rotated' } }, many: true });
    t.equal(many.json().code, 'KEY_POINTER_NOT_WRITABLE', many.body);
    t.match(many.json().detail, /tenantSecret/);
    t.equal(EJSON.stringify(await raw().find({ tenantKey: 'tenant-b' }).toArray()), before, 'nothing written');

    const wrongType = await h.call('PATCH', `${url}/${id}`, { update: { $set: { salary: 'lots' } } });
    t.equal(wrongType.json().code, 'DOCUMENT_VALIDATION_FAILED');
    const unknownField = await h.call('PATCH', `${url}/${id}`, { update: { $set: { hobby: 'golf' } } });
    t.equal(unknownField.json().code, 'DOCUMENT_VALIDATION_FAILED');
    const missing = await h.call('PATCH', `${url}/000000000000000000000000`, { update: { $set: { level: 2 } } });
    t.equal(missing.statusCode, 404);
    t.equal(missing.json().code, 'DOCUMENT_NOT_FOUND');
  });

  t.test('replace validates and encrypts like an insert; delete by id and by encrypted filter', async (t) => {
    const id = inserted[5]!;
    const replaced = await h.call('PUT', `${url}/${id}`, { document: { ...employee(60, 'tenant-b'), ssn: 'CANARY-REPLACED' } });
    t.same(replaced.json(), { matched: 1, modified: 1 });
    t.notMatch(EJSON.stringify(await raw().findOne({ name: 'Employee 60' })), /CANARY/);
    t.equal((await h.call('POST', `${url}/count`, { filter: { ssn: 'CANARY-REPLACED' } })).json().count, 1);
    const bad = await h.call('PUT', `${url}/${id}`, { document: { name: 'no ssn', tenantKey: 'tenant-a' } });
    t.equal(bad.json().code, 'DOCUMENT_VALIDATION_FAILED');

    const deleted = await h.call('POST', `${url}/delete`, { filter: { ssn: 'CANARY-REPLACED' } });
    t.same(deleted.json(), { deleted: 1 });
    t.equal((await h.call('DELETE', `${url}/${inserted[4]}`)).statusCode, 204);
    t.equal((await h.call('DELETE', `${url}/${inserted[4]}`)).statusCode, 404);
    t.equal(await raw().countDocuments(), 4);
  });

  t.test('explain says what would be encrypted, and why, writing nothing', async (t) => {
    const before = await raw().countDocuments();
    const doc = await h.call('POST', `${url}/explain`, { document: employee(99, 'tenant-a') });
    t.equal(doc.statusCode, 200, doc.body);
    const fields = doc.json().fields as { path: string; algorithm: string; keyId?: string; keyAltNameFrom?: string; rule: string }[];
    t.same(fields.map((f) => f.path).sort(), ['badge', 'medical.allergies', 'medical.diagnosis', 'note_private', 'salary', 'ssn', 'tenantSecret']);
    t.equal(fields.find((f) => f.path === 'ssn')!.keyId, h.keys['hr-det']);
    t.equal(fields.find((f) => f.path === 'ssn')!.algorithm, 'deterministic');
    t.equal(fields.find((f) => f.path === 'tenantSecret')!.keyAltNameFrom, '/tenantKey');
    t.match(fields.find((f) => f.path === 'note_private')!.rule, /patternProperties/);
    t.equal(doc.json().valid, true);
    const invalid = await h.call('POST', `${url}/explain`, { document: { name: 'x' } });
    t.equal(invalid.json().valid, false);
    t.match(invalid.json().validation, /ssn|tenantKey/);
    const query = await h.call('POST', `${url}/explain`, { filter: { ssn: { $in: ['a', 'b'] }, level: 3 } });
    t.same(query.json().fields.map((f: { path: string }) => f.path), ['ssn']);
    t.notMatch(query.body, /"a"|"b"/, 'explain never echoes values');
    t.equal(await raw().countDocuments(), before);
  });

  t.test('only configured collections are reachable, never the key vault', async (t) => {
    for (const ns of [`${h.keyVaultDb}.__keyVault`, `${h.keyVaultDb}.other`, 'admin.system.users']) {
      const res = await h.call('POST', `/documents/${ns}/find`, { filter: {} });
      t.equal(res.statusCode, 404, ns);
      t.equal(res.json().code, 'COLLECTION_NOT_FOUND');
    }
    t.equal((await h.call('POST', '/documents/nodot/find', { filter: {} })).statusCode, 400);
  });
});

/**
 * Spec prose test 4, "BSON Size Limits and Batch Splitting", over HTTP: the spec's collection
 * schema (limits-schema.json) and data key (limits-key.json, under the spec's local master key)
 * with documents near MongoDB's 16 MiB document limit, before and after encryption
 * (limits-doc.json: 1005 bytes that encrypt to about 10 KB). Documents that fit once encrypted are
 * written, one by one and in a batch; one that exceeds the limit only once encrypted is refused
 * with a clean 400, alone or as its own item of a batch, and nothing of it is written.
 * The spec's "split after the first document" is about the 2 MiB mongocryptd limit of a driver's
 * batch: the service encrypts itself and hands the driver plain documents, which it splits by
 * MongoDB's message size; what is checked here is that every document of the batch lands.
 * Steps 7-8 (Queryable Encryption, MongoDB 8.0 bulkWrite) are not applicable.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { BSON, type Document } from 'mongodb';
import { createTestApp } from '../helpers/app.js';
import { readSpecJson } from './spec-data.js';
import { proseSummary, SPEC_LOCAL_MASTER_KEY } from './prose.js';

const summary = proseSummary(t, 4);
summary.notApplicable('steps 7-8: Queryable Encryption (encryptedFields, MongoDB 8.0 bulkWrite), which the service does not do');

const MiB2 = 2097152;
const MiB16 = 16777216;
const limitsDoc = readSpecJson<Record<string, string>>('client-side-encryption-prose/limits-doc.json');

async function limitsApp(t: Test) {
  const env = { LOCAL_MASTER_KEY: SPEC_LOCAL_MASTER_KEY };
  const setup = await createTestApp(t, { env });
  // The spec's step 4: the key document is inserted as it is.
  const key = BSON.EJSON.deserialize(readSpecJson('client-side-encryption-prose/limits-key.json') as Document, { relaxed: false });
  await setup.mongo.db(setup.keyVaultDb).collection('__keyVault').insertOne(key, { writeConcern: { w: 'majority' } });
  const schemasDir = mkdtempSync(join(tmpdir(), 'schemas-'));
  const ns = `${setup.keyVaultDb}.coll`;
  writeFileSync(join(schemasDir, `${ns}.json`), JSON.stringify(readSpecJson('client-side-encryption-prose/limits-schema.json')));
  // Request bodies of up to two documents of 16 MiB.
  const h = await createTestApp(t, { share: setup, env: { ...env, SCHEMAS_DIR: schemasDir, BODY_LIMIT_BYTES: String(40 * 1024 * 1024) } });
  const coll = h.mongo.db(h.keyVaultDb).collection<Document>('coll');
  return { h, ns, coll };
}

t.test('steps 1-6: documents under 16 MiB once encrypted are written; one over it is refused with a clean 400', async (t) => {
  summary.track(t);
  const { h, ns, coll } = await limitsApp(t);

  const step1 = await h.call('POST', `/documents/${ns}`, { document: { _id: 'over_2mib_under_16mib', unencrypted: 'a'.repeat(MiB2) } });
  t.equal(step1.statusCode, 201, `step 1: over 2 MiB, under 16 MiB: ${step1.body.slice(0, 300)}`);

  const step2 = await h.call('POST', `/documents/${ns}`, { document: { ...limitsDoc, _id: 'encryption_exceeds_2mib', unencrypted: 'a'.repeat(MiB2 - 2000) } });
  t.equal(step2.statusCode, 201, `step 2: over 2 MiB only once encrypted: ${step2.body.slice(0, 300)}`);
  const stored = await coll.findOne({ _id: 'encryption_exceeds_2mib' as never });
  t.equal(stored?.['00']?.sub_type, 6, 'its schema fields are ciphertext in the database');

  const step3 = await h.call('POST', `/documents/${ns}`, {
    documents: [
      { _id: 'over_2mib_1', unencrypted: 'a'.repeat(MiB2) },
      { _id: 'over_2mib_2', unencrypted: 'a'.repeat(MiB2) },
    ],
  });
  t.equal(step3.statusCode, 200, step3.body.slice(0, 300));
  t.same([step3.json().inserted, step3.json().failed], [2, 0], 'step 3: a batch of two 2 MiB documents is written');

  const step4 = await h.call('POST', `/documents/${ns}`, {
    documents: [
      { ...limitsDoc, _id: 'encryption_exceeds_2mib_1', unencrypted: 'a'.repeat(MiB2 - 2000) },
      { ...limitsDoc, _id: 'encryption_exceeds_2mib_2', unencrypted: 'a'.repeat(MiB2 - 2000) },
    ],
  });
  t.equal(step4.statusCode, 200, step4.body.slice(0, 300));
  t.same([step4.json().inserted, step4.json().failed], [2, 0], 'step 4: a batch of two that exceed 2 MiB once encrypted is written');

  const step5 = await h.call('POST', `/documents/${ns}`, { document: { _id: 'under_16mib', unencrypted: 'a'.repeat(MiB16 - 2000) } });
  t.equal(step5.statusCode, 201, `step 5: just under 16 MiB: ${step5.body.slice(0, 300)}`);

  const step6 = await h.call('POST', `/documents/${ns}`, { document: { ...limitsDoc, _id: 'encryption_exceeds_16mib', unencrypted: 'a'.repeat(MiB16 - 2000) } });
  t.equal(step6.statusCode, 400, `step 6: over 16 MiB once encrypted is refused: ${step6.body.slice(0, 300)}`);
  t.equal(step6.json().code, 'DOCUMENT_TOO_LARGE');
  t.equal(await coll.countDocuments({ _id: 'encryption_exceeds_16mib' as never }), 0, 'and not written');

  const ids = (await coll.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id).sort();
  t.same(ids, ['encryption_exceeds_2mib', 'encryption_exceeds_2mib_1', 'encryption_exceeds_2mib_2', 'over_2mib_1', 'over_2mib_2', 'over_2mib_under_16mib', 'under_16mib']);
});

t.test('a batch with one document too large once encrypted: that item fails with DOCUMENT_TOO_LARGE, the other is written', async (t) => {
  summary.track(t);
  const { h, ns, coll } = await limitsApp(t);
  const res = await h.call('POST', `/documents/${ns}`, {
    documents: [
      { ...limitsDoc, _id: 'too_large', unencrypted: 'a'.repeat(MiB16 - 2000) },
      { ...limitsDoc, _id: 'fits', unencrypted: 'a'.repeat(MiB2) },
    ],
  });
  t.equal(res.statusCode, 200, res.body.slice(0, 300));
  t.same([res.json().inserted, res.json().failed], [1, 1]);
  t.equal(res.json().items[0].error.code, 'DOCUMENT_TOO_LARGE', 'the large one fails on its own');
  t.ok(res.json().items[1].insertedId, 'the other is written');
  t.same((await coll.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id), ['fits']);

  const replace = await h.call('PUT', `/documents/${ns}/fits`, { document: { ...limitsDoc, unencrypted: 'a'.repeat(MiB16 - 2000) } });
  t.equal(replace.statusCode, 400, `a replacement too large once encrypted is refused too: ${replace.body.slice(0, 300)}`);
  t.equal(replace.json().code, 'DOCUMENT_TOO_LARGE');
  t.equal((await coll.findOne({ _id: 'fits' as never }))?.unencrypted.length, MiB2, 'the stored document is unchanged');
});

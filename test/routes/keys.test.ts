import { randomBytes } from 'node:crypto';
import t from 'tap';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

t.test('/keys life cycle with the local provider', async (t) => {
  const h = await createTestApp(t);

  t.test('create writes a driver-shaped key document and shows metadata only', async (t) => {
    const res = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['alpha', 'beta'] });
    t.equal(res.statusCode, 201);
    const view = res.json();
    t.equal(res.headers.location, `/keys/${view.id}`);
    t.same(Object.keys(view).sort(), ['ageDays', 'creationDate', 'id', 'keyAltNames', 'masterKey', 'state', 'status', 'updateDate', 'wrapAgeDays']);
    t.equal(view.state, 'active');
    t.same(view.masterKey, { provider: 'local' });
    t.notMatch(res.body, /keyMaterial/);

    const [doc] = (await keyVaultDocs(h)).filter((d) => d.keyAltNames?.includes('alpha'));
    t.ok(doc);
    t.same(Object.keys(doc!).sort(), ['_id', 'creationDate', 'keyAltNames', 'keyMaterial', 'masterKey', 'status', 'updateDate']);
    const id = doc!._id as unknown as { _bsontype: string; sub_type: number };
    t.ok(id._bsontype === 'Binary' && id.sub_type === 4, '_id is a UUID');
    t.ok(doc!.keyMaterial._bsontype === 'Binary' && doc!.keyMaterial.sub_type === 0);
    t.equal(doc!.keyMaterial.length(), 16 + 96 + 16 + 32, 'a 96-byte key wrapped by the AEAD: IV, 112 bytes of padded body, tag');
    t.equal(doc!.status, 0);
    t.ok(doc!.creationDate instanceof Date);
    t.same(doc!.masterKey, { provider: 'local' });
  });

  t.test('get by id and by alt name; list pages through every key', async (t) => {
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      made.push((await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`page-${i}`] })).json().id);
    }
    t.equal((await h.call('GET', `/keys/${made[0]}`)).json().keyAltNames[0], 'page-0');
    t.equal((await h.call('GET', '/keys/by-alt-name/page-3')).json().id, made[3]);
    t.equal((await h.call('GET', '/keys/by-alt-name/nope')).statusCode, 404);
    t.equal((await h.call('GET', '/keys/00000000-0000-4000-8000-000000000000')).json().code, 'KEY_NOT_FOUND');
    t.equal((await h.call('GET', '/keys/not-a-uuid')).statusCode, 400);

    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const res = await h.call('GET', `/keys?limit=2${after ? `&after=${after}` : ''}`);
      t.equal(res.statusCode, 200);
      const body = res.json();
      t.ok(body.items.length <= 2);
      seen.push(...body.items.map((k: { id: string }) => k.id));
      if (!body.next) break;
      after = body.next;
    }
    const all = (await keyVaultDocs(h)).length;
    t.equal(seen.length, all);
    t.equal(new Set(seen).size, all, 'no key twice');
    t.notMatch((await h.call('GET', '/keys?limit=1000')).body, /keyMaterial/);
  });

  t.test('alt names are unique across keys and can be added and removed', async (t) => {
    const a = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['shared'] })).json().id;
    const clash = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['other', 'shared'] });
    t.equal(clash.statusCode, 409);
    t.equal(clash.json().code, 'KEY_ALT_NAME_CONFLICT');
    t.notOk((await keyVaultDocs(h)).some((d) => d.keyAltNames?.includes('other')), 'a refused key is not written');

    const b = (await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).json();
    t.same(b.keyAltNames, []);
    t.equal((await h.call('POST', `/keys/${b.id}/alt-names`, { keyAltName: 'shared' })).statusCode, 409);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const added = await h.call('POST', `/keys/${b.id}/alt-names`, { keyAltName: 'fresh' });
    t.same(added.json().keyAltNames, ['fresh']);
    t.equal(added.json().updateDate, b.updateDate, 'like the drivers, alt-name changes leave updateDate (the wrap date) alone');
    const notThere = await h.call('DELETE', `/keys/${b.id}/alt-names/never-had-it`);
    t.equal(notThere.statusCode, 200, 'removing a name the key does not hold answers the key unchanged, as the drivers do');
    t.same(notThere.json().keyAltNames, ['fresh']);
    t.equal((await h.call('GET', `/keys/${b.id}`)).json().updateDate, added.json().updateDate, 'a no-op removal changes nothing');

    const removed = await h.call('DELETE', `/keys/${a}/alt-names/shared`);
    t.same(removed.json().keyAltNames, []);
    const stored = (await keyVaultDocs(h)).find((d) => d._id.toString('hex') === a.replaceAll('-', ''));
    t.notOk('keyAltNames' in stored!, 'no empty keyAltNames array is left behind');
    t.equal((await h.call('POST', `/keys/${b.id}/alt-names`, { keyAltName: 'shared' })).statusCode, 200, 'a freed name can be reused');
  });

  t.test('custom key material is imported exactly, and must be 96 bytes', async (t) => {
    const material = randomBytes(96);
    const res = await h.call('POST', '/keys', {
      masterKey: { provider: 'local' },
      keyAltNames: ['imported'],
      keyMaterial: material.toString('base64'),
    });
    t.equal(res.statusCode, 201);
    const enc = await h.call('POST', '/encrypt', { value: 'v', algorithm: 'deterministic', keyAltName: 'imported' });
    t.equal(enc.statusCode, 200);
    const short = await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyMaterial: randomBytes(64).toString('base64') });
    t.equal(short.statusCode, 400);
    t.equal(short.json().code, 'INVALID_KEY_MATERIAL');
  });

  t.test('bad master keys are refused before anything is written', async (t) => {
    const before = (await keyVaultDocs(h)).length;
    const cases: [unknown, number, string][] = [
      [{ masterKey: { provider: 'vault' } }, 400, 'VALIDATION_FAILED'],
      [{ masterKey: { provider: 'local', key: 'arn:aws:kms:us-east-1:123456789012:key/x' } }, 400, 'INVALID_MASTER_KEY'],
      [{ masterKey: { provider: 'aws' } }, 400, 'INVALID_MASTER_KEY'],
      [{ masterKey: { provider: 'aws', key: 'arn:aws:kms:us-east-1:123456789012:key/abc' } }, 422, 'PROVIDER_NOT_CONFIGURED'],
      [{ masterKey: { provider: 'aws', key: 'arn:aws:kms:us-east-1:123456789012:key/abc', endpoint: 'evil.example' } }, 400, 'VALIDATION_FAILED'],
      [{ masterKey: { provider: 'local' }, keyAltNames: ['dup', 'dup'] }, 400, 'VALIDATION_FAILED'],
      [{ masterKey: { provider: 'local' }, keyAltNames: [''] }, 400, 'VALIDATION_FAILED'],
    ];
    for (const [body, status, code] of cases) {
      const res = await h.call('POST', '/keys', body);
      t.equal(res.statusCode, status, JSON.stringify(body));
      t.equal(res.json().code, code, JSON.stringify(body));
    }
    t.equal((await keyVaultDocs(h)).length, before);
  });

  t.test('a rewrap with an empty selection list is refused instead of selecting every key', async (t) => {
    for (const filter of [{ keyIds: [] }, { keyAltNames: [] }]) {
      const res = await h.call('POST', '/keys/rewrap', { filter, masterKey: { provider: 'local' } });
      t.equal(res.statusCode, 400, JSON.stringify(filter));
    }
    const res = await h.call('POST', '/keys/rewrap', { filter: { keyAltNames: ['no-such-name'] }, masterKey: { provider: 'local' } });
    t.same(res.json(), { matched: 0, rewrapped: 0, keyIds: [] });
  });

  t.test('delete makes the key and everything under it unreadable', async (t) => {
    const id = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['doomed'] })).json().id;
    const ct = (await h.call('POST', '/encrypt', { value: 'bye', algorithm: 'random', keyId: id })).json().ciphertext;
    t.equal((await h.call('POST', '/decrypt', { ciphertext: ct })).statusCode, 200);
    t.equal((await h.call('DELETE', `/keys/${id}`)).statusCode, 204);
    const again = await h.call('DELETE', `/keys/${id}`);
    t.same([again.statusCode, again.json().code], [409, 'KEY_ALREADY_DELETED'], 'deleting a deleted key says so');
    t.equal((await h.call('GET', `/keys/${id}`)).json().state, 'deleted', 'it waits in the trash');
    const after = await h.call('POST', '/decrypt', { ciphertext: ct });
    t.equal(after.statusCode, 400);
    t.equal(after.json().code, 'DECRYPTION_FAILED');
    const byName = await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'doomed' });
    t.equal(byName.statusCode, 404, 'a deleted alt name no longer resolves');
  });
});

t.test('the rotation report groups data keys by master key and flags wrappings older than the period', async (t) => {
  const h = await createTestApp(t);
  const fresh = (await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).json().id;
  const old = (await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).json().id;
  const { UUID } = await import('mongodb');
  const longAgo = new Date(Date.now() - 400 * 86_400_000);
  await h.mongo.db(h.keyVaultDb).collection('__keyVault').updateOne({ _id: new UUID(old) as never }, { $set: { creationDate: longAgo, updateDate: longAgo } });
  const report = (await h.call('GET', '/keys/rotation-report')).json();
  t.equal(report.olderThanDays, 365, 'by default the rotation period (KEY_ROTATION_PERIOD_DAYS)');
  t.equal(report.dataKeys, 2);
  t.equal(report.due, 1);
  t.same(report.masterKeys[0].masterKey, { provider: 'local' });
  t.same(report.masterKeys[0].dueKeyIds, [old]);
  t.equal(report.masterKeys[0].oldestWrapDate, longAgo.toISOString());
  t.equal((await h.call('GET', '/keys/rotation-report?olderThanDays=500')).json().due, 0);
  const view = (await h.call('GET', `/keys/${old}`)).json();
  t.ok(view.ageDays >= 399 && view.wrapAgeDays >= 399);
  t.notOk((await h.call('GET', `/keys/${fresh}`)).json().lastRewrapDate, 'never rewrapped');
});

t.test('keys written by drivers for providers this server does not use are still listed, not used', async (t) => {
  const h = await createTestApp(t);
  const { UUID, Binary } = await import('mongodb');
  const id = new UUID();
  await h.mongo
    .db(h.keyVaultDb)
    .collection('__keyVault')
    .insertOne({
      _id: id as never,
      keyAltNames: ['from-gcp'],
      keyMaterial: new Binary(Buffer.alloc(100, 1)),
      creationDate: new Date('2024-01-01T00:00:00Z'),
      updateDate: new Date('2024-01-01T00:00:00Z'),
      status: 0,
      masterKey: { provider: 'gcp', projectId: 'p', location: 'global', keyRing: 'r', keyName: 'k' },
    });
  const list = await h.call('GET', '/keys');
  t.equal(list.statusCode, 200);
  t.same(list.json().items[0].masterKey, { provider: 'gcp', projectId: 'p', location: 'global', keyRing: 'r', keyName: 'k' });
  t.ok(list.json().items[0].ageDays > 300);
  const enc = await h.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyAltName: 'from-gcp' });
  t.equal(enc.statusCode, 422);
  t.equal(enc.json().code, 'PROVIDER_NOT_CONFIGURED');
});

t.test('a server started with another local master key cannot use the keys, and says so generically', async (t) => {
  const first = await createTestApp(t);
  const id = (await first.call('POST', '/keys', { masterKey: { provider: 'local' } })).json().id;
  const ct = (await first.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId: id })).json().ciphertext;
  const other = await createTestApp(t, { env: { KEY_VAULT_NAMESPACE: `${first.keyVaultDb}.__keyVault` } });
  const res = await other.call('POST', '/decrypt', { ciphertext: ct });
  t.equal(res.statusCode, 400);
  t.equal(res.json().code, 'DECRYPTION_FAILED');
});

t.test('a key-limited client must cover every key name and key id it claims, removes or selects', async (t) => {
  const h = await createTestApp(t);
  const client = async (grants: unknown[]) => {
    const res = await h.call('POST', '/clients', { name: 'billing team', grants });
    t.equal(res.statusCode, 201, res.body);
    const token = res.json().token as string;
    return (method: string, url: string, body?: unknown) =>
      h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
  };
  const billing = await client([
    { scope: 'keys:write', keyAltNames: ['billing-*'] },
    { scope: 'keys:read', keyAltNames: ['billing-*'] },
    { scope: 'keys:rewrap', keyAltNames: ['billing-*'] },
  ]);
  const namesInVault = async () => (await keyVaultDocs(h)).flatMap((d) => d.keyAltNames ?? []).sort();
  const forbidden = (res: { statusCode: number; body: string }, detail: RegExp, what: string) => {
    t.equal(res.statusCode, 403, `${what}: ${res.body}`);
    t.equal(JSON.parse(res.body).code, 'FORBIDDEN', what);
    t.match(JSON.parse(res.body).detail, detail, what);
  };

  t.test('POST /keys: every alt name, not any', async (t) => {
    const before = await namesInVault();
    forbidden(
      await billing('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['billing-x', 'hr-2027'], keyMaterial: randomBytes(96).toString('base64') }),
      /keyAltNames\[1\]/,
      'claiming another team’s name beside one of its own',
    );
    forbidden(await billing('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-2027', 'billing-x'] }), /keyAltNames\[0\]/, 'in either order');
    forbidden(await billing('POST', '/keys', { masterKey: { provider: 'local' } }), /without alt names/, 'a key without names (as before)');
    t.same(await namesInVault(), before, 'nothing was written');
    t.equal((await h.call('GET', '/keys/by-alt-name/hr-2027')).statusCode, 404, 'the name is still free');
    const ok = await billing('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['billing-x', 'billing-y'] });
    t.equal(ok.statusCode, 201, ok.body);
  });

  t.test('alt names added and removed must be covered, also on a shared key', async (t) => {
    const shared = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['billing-shared', 'hr-shared'] })).json().id;
    forbidden(await billing('POST', `/keys/${shared}/alt-names`, { keyAltName: 'hr-2028' }), /key alt name/, 'adding a name of another team');
    forbidden(await billing('DELETE', `/keys/${shared}/alt-names/hr-shared`), /key alt name/, 'removing a name of another team');
    t.same((await h.call('GET', `/keys/${shared}`)).json().keyAltNames, ['billing-shared', 'hr-shared'], 'the other team’s name still resolves');
    t.equal((await billing('POST', `/keys/${shared}/alt-names`, { keyAltName: 'billing-more' })).statusCode, 200);
    t.equal((await billing('DELETE', `/keys/${shared}/alt-names/billing-more`)).statusCode, 200);
  });

  t.test('rewrap and migration selections: every key id and alt name named must be covered', async (t) => {
    const hr = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['hr-only'] })).json().id;
    const mine = (await h.call('GET', '/keys/by-alt-name/billing-x')).json().id;
    const unknown = '00000000-0000-4000-8000-000000000000';
    const cases: [filter: unknown, detail: RegExp][] = [
      [{ keyAltNames: ['hr-nothing'] }, /filter\.keyAltNames\[0\]/],
      [{ keyAltNames: ['billing-x', 'hr-only'] }, /filter\.keyAltNames\[1\]/],
      [{ keyIds: [unknown] }, /filter\.keyIds\[0\]/],
      [{ keyIds: [mine, hr] }, /filter\.keyIds\[1\]/],
    ];
    for (const [filter, detail] of cases) {
      forbidden(await billing('POST', '/keys/rewrap', { filter, masterKey: { provider: 'local' } }), detail, `rewrap ${JSON.stringify(filter)}`);
      forbidden(await billing('POST', '/keys/migrations', { filter, masterKey: { provider: 'local' }, dryRun: true }), detail, `migration ${JSON.stringify(filter)}`);
    }
    const ok = await billing('POST', '/keys/rewrap', { filter: { keyIds: [mine.toUpperCase()], keyAltNames: ['billing-x'] }, masterKey: { provider: 'local' } });
    t.equal(ok.statusCode, 200, ok.body);
    t.same(ok.json().keyIds, [mine]);
    const dry = await billing('POST', '/keys/migrations', { filter: { keyAltNames: ['billing-y'] }, masterKey: { provider: 'local' }, dryRun: true });
    t.equal(dry.statusCode, 200, dry.body);
    t.equal(dry.json().matched, 1);
    forbidden(await billing('POST', '/keys/rewrap', { filter: {}, masterKey: { provider: 'local' } }), /do not cover/, 'an empty filter still needs every matched key covered (as before)');
  });
});

async function waitForJob(h: TestApp, id: string) {
  for (let i = 0; i < 100; i++) {
    const job = (await h.call('GET', `/jobs/${id}`)).json();
    if (job.state !== 'running') return job;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('job did not finish');
}

t.test('rewrap and migration from AWS down to the local master key need allowDowngrade, from the operator', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed });
  const aws = { provider: 'aws', key: stack.keyArn };
  const local = { provider: 'local' };
  const made = await h.call('POST', '/keys', { masterKey: aws, keyAltNames: ['down-1'] });
  t.equal(made.statusCode, 201, made.body);
  const awsKey = made.json().id as string;
  const localKey = (await h.call('POST', '/keys', { masterKey: local, keyAltNames: ['down-local'] })).json().id as string;
  const ciphertext = (await h.call('POST', '/encrypt', { value: 'kept', algorithm: 'random', keyId: awsKey })).json().ciphertext;
  const res = await h.call('POST', '/clients', { name: 'rewrapper', grants: [{ scope: 'keys:rewrap' }, { scope: 'jobs:read' }] });
  const token = res.json().token as string;
  const rewrapper = (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
  const stored = async (id: string) => (await keyVaultDocs(h)).find((d) => d._id.toString('hex') === id.replaceAll('-', ''))!;
  const refused = (res: { statusCode: number; body: string }, what: string) => {
    t.equal(res.statusCode, 403, `${what}: ${res.body}`);
    t.equal(JSON.parse(res.body).code, 'FORBIDDEN', what);
    t.match(JSON.parse(res.body).detail, /allowDowngrade/, `${what}: the detail says what is needed`);
  };

  t.test('rewrap', async (t) => {
    const before = await keyVaultDocs(h);
    refused(await h.call('POST', '/keys/rewrap', { filter: { keyIds: [awsKey] }, masterKey: local }), 'the operator without the flag');
    refused(await h.call('POST', '/keys/rewrap', { filter: { keyIds: [awsKey] }, masterKey: local, allowDowngrade: false }), 'the operator with the flag false');
    refused(await h.call('POST', '/keys/rewrap', { filter: {}, masterKey: local }), 'a selection with one AWS key among local ones');
    refused(await rewrapper('POST', '/keys/rewrap', { filter: { keyIds: [awsKey] }, masterKey: local, allowDowngrade: true }), 'a client, even with the flag');
    t.same(await keyVaultDocs(h), before, 'nothing was rewrapped');

    t.equal((await rewrapper('POST', '/keys/rewrap', { filter: { keyIds: [localKey] }, masterKey: local })).statusCode, 200, 'local → local is no downgrade');
    const rotated = await rewrapper('POST', '/keys/rewrap', { filter: { keyIds: [awsKey] }, masterKey: { provider: 'aws', key: stack.keyArn2 } });
    t.equal(rotated.statusCode, 200, `AWS → AWS (CMK rotation) is no downgrade: ${rotated.body}`);

    const down = await h.call('POST', '/keys/rewrap', { filter: { keyIds: [awsKey] }, masterKey: local, allowDowngrade: true });
    t.equal(down.statusCode, 200, down.body);
    t.same(down.json().keyIds, [awsKey]);
    t.same((await stored(awsKey)).masterKey, { provider: 'local' });
    t.same((await h.call('POST', '/decrypt', { ciphertext })).json(), { value: 'kept' }, 'the data key is unchanged');
  });

  t.test('migration: a dry run shows the plan and says the flag is needed; the job needs it', async (t) => {
    const id = (await h.call('POST', '/keys', { masterKey: aws, keyAltNames: ['down-2'] })).json().id as string;
    const body = { filter: { keyAltNames: ['down-2'] }, masterKey: local };
    const dry = await h.call('POST', '/keys/migrations', { ...body, dryRun: true });
    t.equal(dry.statusCode, 200, dry.body);
    t.match(dry.json(), { dryRun: true, matched: 1, keyIds: [id], downgrade: { keyIds: [id], allowed: false, detail: /allowDowngrade/ } });
    const byClient = await rewrapper('POST', '/keys/migrations', { ...body, dryRun: true, allowDowngrade: true });
    t.match(byClient.json(), { matched: 1, downgrade: { keyIds: [id], allowed: false, detail: /operator/ } }, 'a client’s flag does not count');
    const allowed = await h.call('POST', '/keys/migrations', { ...body, dryRun: true, allowDowngrade: true });
    t.match(allowed.json(), { matched: 1, downgrade: { keyIds: [id], allowed: true } });
    const up = await h.call('POST', '/keys/migrations', { filter: { keyIds: [localKey] }, masterKey: aws, dryRun: true });
    t.notOk('downgrade' in up.json(), 'local → AWS is no downgrade');

    refused(await h.call('POST', '/keys/migrations', body), 'the operator without the flag');
    refused(await rewrapper('POST', '/keys/migrations', { ...body, allowDowngrade: true }), 'a client with the flag');
    t.equal((await stored(id)).masterKey.provider, 'aws', 'no job ran');

    const started = await h.call('POST', '/keys/migrations', { ...body, allowDowngrade: true });
    t.equal(started.statusCode, 202, started.body);
    t.equal(started.json().params.allowDowngrade, true, 'the job records that it was allowed');
    const job = await waitForJob(h, started.json().id);
    t.equal(job.state, 'succeeded', JSON.stringify(job));
    t.same((await stored(id)).masterKey, { provider: 'local' });
  });
});

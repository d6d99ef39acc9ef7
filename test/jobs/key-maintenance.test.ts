/**
 * Rotation that reminds: the data_keys_rotation_due gauge (counted in the key vault periodically,
 * not per scrape), the daily warning naming counts only, and the rotation report's default period,
 * all from KEY_ROTATION_PERIOD_DAYS; and the settling, by an instance as it starts, of a key move a
 * crash cut short. Over HTTP against FerretDB.
 */
import { UUID } from 'mongodb';
import t from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';

async function gauge(h: TestApp): Promise<number> {
  const text = (await h.call('GET', '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith('data_keys_rotation_due '));
  if (line === undefined) throw new Error('no data_keys_rotation_due in /metrics');
  return Number(line.split(' ')[1]);
}

async function ageKey(h: TestApp, id: string, days: number): Promise<void> {
  const then = new Date(Date.now() - days * 86_400_000);
  await h.mongo.db(h.keyVaultDb).collection('__keyVault').updateOne({ _id: new UUID(id) as never }, { $set: { creationDate: then, updateDate: then } });
}

const warnings = (h: TestApp) => h.logs.map((line) => JSON.parse(line)).filter((entry) => entry.level === 40 && /KEY_ROTATION_PERIOD_DAYS/.test(entry.msg));

t.test('keys wrapped longer ago than the period: counted in a gauge, warned about, reported; a rewrap clears them', async (t) => {
  const h = await createTestApp(t, { env: { KEY_ROTATION_PERIOD_DAYS: '30' } });
  await h.app.ready();
  // Past the count and the reminder each instance makes 1 to 2 s after it is ready; the next are
  // 10 minutes and a day away.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const old = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['old-wrap'] })).json().id as string;
  await h.call('POST', '/keys', { masterKey: { provider: 'local' } });
  await ageKey(h, old, 40);

  t.equal(await gauge(h), 0, 'not counted yet: a scrape does not query the key vault');
  t.equal(await h.app.keyMaintenance.refreshRotationDue(), 1);
  t.equal(await gauge(h), 1, 'the periodic count sets the gauge');

  const report = (await h.call('GET', '/keys/rotation-report')).json();
  t.same([report.olderThanDays, report.due], [30, 1], 'the report uses the same period by default');

  await h.app.keyMaintenance.remind();
  const [warning] = warnings(h);
  t.ok(warning, 'a warning while keys are due');
  t.match(warning, { due: 1, dataKeys: 2, olderThanDays: 30, dueByProvider: { local: 1 } });
  t.notMatch(JSON.stringify(warning), old, 'counts, not key ids');
  t.notMatch(JSON.stringify(warning), /keyMaterial/);

  const rewrapped = await h.call('POST', '/keys/rewrap', { filter: { keyIds: [old] }, masterKey: { provider: 'local' } });
  t.equal(rewrapped.statusCode, 200, rewrapped.body);
  t.equal(await h.app.keyMaintenance.refreshRotationDue(), 0, 'a rewrap dates the wrapping anew');
  t.equal(await gauge(h), 0);
  await h.app.keyMaintenance.remind();
  t.equal(warnings(h).length, 1, 'no warning when nothing is due');
});

t.test('KEY_ROTATION_PERIOD_DAYS=0 turns the reminders off; the report then defaults to 365 days', async (t) => {
  const h = await createTestApp(t, { env: { KEY_ROTATION_PERIOD_DAYS: '0' } });
  const old = (await h.call('POST', '/keys', { masterKey: { provider: 'local' } })).json().id as string;
  await ageKey(h, old, 400);
  t.equal(await h.app.keyMaintenance.refreshRotationDue(), 0);
  t.equal(await gauge(h), 0);
  const report = (await h.call('GET', '/keys/rotation-report')).json();
  t.same([report.olderThanDays, report.due], [365, 1]);
});

t.test('an instance that starts settles a key a crash left in both collections', async (t) => {
  const { createKeyTrash } = await import('../../src/key-vault/key-trash.js');
  const a = await createTestApp(t);
  await a.app.ready();
  // Past a's own settling and first sweep at start: what follows is the restarted instance's work.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const id = (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['cut-short'] })).json().id as string;
  t.equal((await a.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId: id })).statusCode, 200, 'a has the key cached');
  const db = a.mongo.db(a.keyVaultDb);
  const vault = db.collection<any>('__keyVault');
  const trash = createKeyTrash({ vault, trash: db.collection<any>('__keyVaultTrash') });
  const doc = await vault.findOne({ _id: new UUID(id) });
  // A delete that died after its first write.
  await trash.writeTrashCopy(doc, { deletedAt: new Date(), deletedBy: 'cl_crashed', purgeAfter: new Date(Date.now() + 86_400_000) });
  t.equal((await a.call('GET', `/keys/${id}`)).json().state, 'active', 'usable until settled');

  const restarted = await createTestApp(t, { share: a });
  await restarted.app.ready();
  let state = 'active';
  for (let i = 0; i < 40 && state === 'active'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    state = (await restarted.call('GET', `/keys/${id}`)).json().state;
  }
  t.equal(state, 'deleted', 'the delete that was cut short is finished');
  t.equal(await vault.countDocuments({ _id: new UUID(id) }), 0);
  let status = 200;
  for (let i = 0; i < 30 && status === 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    status = (await a.call('POST', '/encrypt', { value: 'x', algorithm: 'random', keyId: id })).statusCode;
  }
  t.equal(status, 404, 'and the other instance was told (its cached key dropped)');
});

import t from 'tap';
import { createTestApp, keyVaultDocs, type TestApp } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';

async function waitForJob(h: TestApp, id: string) {
  for (let i = 0; i < 100; i++) {
    const job = (await h.call('GET', `/jobs/${id}`)).json();
    if (job.state !== 'running') return job;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('job did not finish');
}

t.test('guided local → AWS migration: dry run, a job with progress, a verification pass, no ciphertext touched', async (t) => {
  const h = await createTestApp(t, { aws: stack.allowed });
  const ids: string[] = [];
  const ciphertexts: string[] = [];
  for (let i = 0; i < 12; i++) {
    const id = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`mig-${i}`] })).json().id;
    ids.push(id);
    ciphertexts.push((await h.call('POST', '/encrypt', { value: `value-${i}`, algorithm: 'deterministic', keyId: id })).json().ciphertext);
  }
  const target = { provider: 'aws', key: stack.keyArn };

  const dry = await h.call('POST', '/keys/migrations', { filter: { provider: 'local' }, masterKey: target, dryRun: true });
  t.equal(dry.statusCode, 200, dry.body);
  t.equal(dry.json().matched, 12);
  t.same(dry.json().keyIds.sort(), [...ids].sort());
  t.ok((await keyVaultDocs(h)).every((d) => d.masterKey.provider === 'local'), 'a dry run changes nothing');

  const denied = await createTestApp(t, { share: h, aws: stack.denied });
  const refused = await denied.call('POST', '/keys/migrations', { filter: { provider: 'local' }, masterKey: target });
  t.equal(refused.statusCode, 202);
  const failed = await waitForJob(denied, refused.json().id);
  t.equal(failed.state, 'failed');
  t.equal(failed.error.code, 'KMS_ACCESS_DENIED');
  t.ok((await keyVaultDocs(h)).every((d) => d.masterKey.provider === 'local'), 'a refused migration leaves every key as it was');

  const started = await h.call('POST', '/keys/migrations', { filter: { provider: 'local' }, masterKey: target });
  t.equal(started.statusCode, 202, started.body);
  t.equal(started.headers.location, `/jobs/${started.json().id}`);
  const job = await waitForJob(h, started.json().id);
  t.equal(job.state, 'succeeded', JSON.stringify(job));
  t.same(job.progress, { total: 12, done: 12, failed: 0, phase: 'done' });
  t.equal(job.result.rewrapped, 12);
  t.equal(job.result.verified, 12, 'every migrated key was unwrapped under its new wrapping and checked');
  t.ok((await keyVaultDocs(h)).every((d) => d.masterKey.provider === 'aws' && d.masterKey.key === stack.keyArn));

  const awsOnly = await createTestApp(t, { share: h, aws: stack.allowed, env: { KMS_PROVIDERS: 'aws' } });
  const dec = await awsOnly.call('POST', '/decrypt', { items: ciphertexts.map((ciphertext) => ({ ciphertext })) });
  t.same(dec.json().items.map((i: { value: string }) => i.value), ids.map((_, i) => `value-${i}`), 'old ciphertexts read with no local master key');
  const again = await awsOnly.call('POST', '/encrypt', { value: 'value-0', algorithm: 'deterministic', keyId: ids[0] });
  t.equal(again.json().ciphertext, ciphertexts[0], 'deterministic ciphertexts are unchanged');

  const audit = (await h.call('GET', '/audit?action=keys.migration.finished')).json().items;
  t.same(audit.map((e: { outcome: string }) => e.outcome).sort(), ['failed', 'succeeded'], 'both migrations finished in the audit trail');
  t.equal(audit.find((e: { outcome: string }) => e.outcome === 'failed').code, 'KMS_ACCESS_DENIED');
  t.equal((await h.call('GET', `/jobs/job_${'0'.repeat(24)}`)).json().code, 'JOB_NOT_FOUND');
});

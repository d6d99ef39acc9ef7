/**
 * A shutdown hands a running job over: the instance stops the job between two keys and lets its
 * lease go, and another instance takes it over at its next scan (not a lease later) and finishes
 * it. A master-key migration, local → AWS KMS (moto), slowed on A by a delaying proxy so that A
 * is mid-job when it shuts down. Keys A already rewrapped are not rewrapped again.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { sleep, startTcpProxy } from '../faults/servers.js';

const KEYS = 20;

t.test('a graceful shutdown mid-migration hands the job to another instance, which finishes it', async (t) => {
  const kmsUrl = new URL(stack.kmsEndpoint);
  const slowKms = await startTcpProxy(t, { host: kmsUrl.hostname, port: Number(kmsUrl.port) });
  slowKms.setMode('delay', 80);
  const env = { JOB_LEASE_MS: '2000' };
  const a = await createTestApp(t, { aws: stack.allowed, env: { ...env, AWS_KMS_ENDPOINT: `http://127.0.0.1:${slowKms.port}`, KMS_TIMEOUT_MS: '10000' } });
  const b = await createTestApp(t, { share: a, aws: stack.allowed, env });
  const ciphertexts: string[] = [];
  for (let i = 0; i < KEYS; i++) {
    const id = (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`handover-${i}`] })).json().id as string;
    ciphertexts.push((await a.call('POST', '/encrypt', { value: `v${i}`, algorithm: 'random', keyId: id })).json().ciphertext);
  }
  const target = { provider: 'aws', key: stack.keyArn };
  const started = await a.call('POST', '/keys/migrations', { filter: { provider: 'local' }, masterKey: target });
  t.equal(started.statusCode, 202, started.body);
  const jobUrl = started.headers.location as string;
  let job = (await b.call('GET', jobUrl)).json();
  for (let i = 0; i < 200 && job.progress.done < 10; i++) {
    await sleep(50);
    job = (await b.call('GET', jobUrl)).json();
  }
  t.ok(job.progress.done >= 10 && job.progress.done < KEYS, `A is mid-job: ${job.progress.done} of ${KEYS}`);
  const closedAt = performance.now();
  await a.app.close();
  // Running on B, or already finished by it on a fast machine: never failed (runs === 2 below shows the handover).
  const afterClose = (await b.call('GET', jobUrl)).json().state;
  t.ok(['running', 'succeeded'].includes(afterClose), `handed over, not failed (${afterClose})`);

  for (let i = 0; i < 300 && job.state === 'running'; i++) {
    await sleep(100);
    job = (await b.call('GET', jobUrl)).json();
  }
  t.equal(job.state, 'succeeded', JSON.stringify(job));
  t.equal(job.runs, 2);
  t.comment(`B finished the job ${Math.round(performance.now() - closedAt)} ms after A shut down`);
  t.ok(job.result.alreadyMigrated >= 10, `keys A rewrapped were not rewrapped again (${job.result.alreadyMigrated})`);
  t.equal(job.result.rewrapped + job.result.alreadyMigrated, KEYS);
  t.equal(job.result.verified, job.result.rewrapped);
  t.equal(job.result.keyIds.length, KEYS);
  t.ok((await keyVaultDocs(b)).every((d) => d.masterKey.provider === 'aws' && d.masterKey.key === stack.keyArn), 'every key is under the AWS key');
  const dec = await b.call('POST', '/decrypt', { items: ciphertexts.map((ciphertext) => ({ ciphertext })) });
  t.same(
    dec.json().items.map((item: { value: string }) => item.value),
    ciphertexts.map((_, i) => `v${i}`),
    'and every ciphertext still decrypts',
  );
});

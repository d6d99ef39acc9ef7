/**
 * A cancel reaches the job wherever it runs: a master-key migration, local → AWS KMS (moto), runs
 * on A, slowed by a delaying proxy in front of KMS; the cancel is sent to B. A stops between two
 * keys within about a second, the job ends cancelled, and every key is valid under one master key
 * or the other: each ciphertext still decrypts, through either instance. Running the migration
 * again moves the rest.
 */
import t from 'tap';
import { createTestApp, keyVaultDocs } from '../helpers/app.js';
import { stack } from '../helpers/stack.js';
import { sleep, startTcpProxy } from '../faults/servers.js';

const KEYS = 40;

t.test('a cancel sent to one instance stops the job running on another at its next key; the keys stay valid', async (t) => {
  const kmsUrl = new URL(stack.kmsEndpoint);
  const slowKms = await startTcpProxy(t, { host: kmsUrl.hostname, port: Number(kmsUrl.port) });
  slowKms.setMode('delay', 100);
  // A lease long enough that a busy machine does not make B take the job over: this is about the cancel.
  const env = { JOB_LEASE_MS: '15000' };
  const a = await createTestApp(t, { aws: stack.allowed, env: { ...env, AWS_KMS_ENDPOINT: `http://127.0.0.1:${slowKms.port}`, KMS_TIMEOUT_MS: '10000' } });
  const b = await createTestApp(t, { share: a, aws: stack.allowed, env });
  const ciphertexts: string[] = [];
  for (let i = 0; i < KEYS; i++) {
    const id = (await a.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: [`cancel-${i}`] })).json().id as string;
    ciphertexts.push((await a.call('POST', '/encrypt', { value: `v${i}`, algorithm: 'random', keyId: id })).json().ciphertext);
  }
  const migration = { filter: { provider: 'local' }, masterKey: { provider: 'aws', key: stack.keyArn } };
  const started = await a.call('POST', '/keys/migrations', migration);
  t.equal(started.statusCode, 202, started.body);
  const jobUrl = started.headers.location as string;
  let job = (await b.call('GET', jobUrl)).json();
  for (let i = 0; i < 300 && job.progress.done < 10; i++) {
    await sleep(50);
    job = (await b.call('GET', jobUrl)).json();
  }
  t.ok(job.progress.done >= 10 && job.progress.done < KEYS, `A is mid-job: ${job.progress.done} of ${KEYS}`);

  const askedAt = performance.now();
  const cancel = await b.call('POST', `${jobUrl}/cancel`);
  t.equal(cancel.statusCode, 202, cancel.body);
  t.equal(cancel.json().state, 'running', 'B does not run it: it answers at once, the job still running on A');
  t.equal(cancel.json().cancel.requestedBy, 'admin');
  for (let i = 0; i < 100 && job.state === 'running'; i++) {
    await sleep(50);
    job = (await b.call('GET', jobUrl)).json();
  }
  const stoppedMs = Math.round(performance.now() - askedAt);
  t.equal(job.state, 'cancelled', JSON.stringify(job));
  t.ok(stoppedMs < 4000, `A stopped ${stoppedMs} ms after the cancel reached B`);
  t.equal(job.runs, 1, 'on A, where it ran all along');
  t.equal(job.cancel.requestedBy, 'admin');
  t.notOk(job.result, 'no result: it did not finish');

  const underAws = async () => (await keyVaultDocs(b)).filter((d) => d.masterKey.provider === 'aws').length;
  const moved = await underAws();
  t.ok(moved >= 10 && moved < KEYS, `${moved} keys were rewrapped before it stopped, ${KEYS - moved} were not`);
  await sleep(1500);
  t.equal(await underAws(), moved, 'and nothing moved after: A really stopped');
  for (const [name, h] of [['A', a], ['B', b]] as const) {
    const dec = await h.call('POST', '/decrypt', { items: ciphertexts.map((ciphertext) => ({ ciphertext })) });
    t.same(
      dec.json().items.map((item: { value: string }) => item.value),
      ciphertexts.map((_, i) => `v${i}`),
      `every ciphertext still decrypts through ${name}, under whichever master key its key has now`,
    );
  }
  t.equal((await b.call('POST', `${jobUrl}/cancel`)).json().code, 'JOB_FINISHED');

  slowKms.setMode('pass');
  const rest = await b.call('POST', '/keys/migrations', migration);
  t.equal(rest.statusCode, 202, rest.body);
  let again = rest.json();
  for (let i = 0; i < 300 && again.state === 'running'; i++) {
    await sleep(100);
    again = (await b.call('GET', `/jobs/${again.id}`)).json();
  }
  t.equal(again.state, 'succeeded', JSON.stringify(again));
  t.equal(again.result.rewrapped, KEYS - moved, 'running it again moves the keys the cancelled run left');
  t.equal(await underAws(), KEYS);
});

import t from 'tap';
import { ADMIN_TOKEN, createTestApp } from './helpers/app.js';

t.test('no plaintext, token or key material reaches a log line, on success or failure', async (t) => {
  const h = await createTestApp(t, { env: { LOG_LEVEL: 'trace' } });
  const canary = 'CANARY-plaintext-5f1e';
  const key = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['logs'] })).json();
  const material = Buffer.alloc(96, 7).toString('base64');
  await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyMaterial: material });
  const ct = (await h.call('POST', '/encrypt', { value: canary, algorithm: 'deterministic', keyId: key.id })).json().ciphertext;
  await h.call('POST', '/decrypt', { ciphertext: ct });
  await h.call('POST', '/decrypt', { items: [{ ciphertext: ct }, { ciphertext: 'AAAA' }] });
  await h.call('POST', '/encrypt', { value: { $numberInt: canary }, algorithm: 'random', keyId: key.id });
  await h.call('POST', '/encrypt', { value: canary, algorithm: 'random', keyId: key.id, stray: canary });
  await h.call('POST', '/encrypt', `{"value": "${canary}"`, { 'content-type': 'application/json' });
  await h.call('GET', `/keys?after=${canary}`);
  await h.app.inject({ method: 'POST', url: '/encrypt', headers: { authorization: `Bearer ${canary}` }, payload: {} });

  const logs = h.logs.join('');
  t.ok(h.logs.length > 10, 'requests were logged');
  t.match(logs, /"reqId"/);
  for (const secret of [canary, ADMIN_TOKEN, h.localMasterKey.toString('base64'), material, ct]) {
    t.notOk(logs.includes(secret), `log lines do not contain ${secret.slice(0, 12)}…`);
  }
});

import t from 'tap';
import { createTestApp } from '../helpers/app.js';

t.test('/metrics counts requests, crypto, KMS and the key cache, and names no key or value', async (t) => {
  const h = await createTestApp(t);
  const key = (await h.call('POST', '/keys', { masterKey: { provider: 'local' }, keyAltNames: ['metric-secret-name'] })).json().id;
  for (let i = 0; i < 3; i++) await h.call('POST', '/encrypt', { value: 'CANARY-metrics', algorithm: 'random', keyId: key });
  const ct = (await h.call('POST', '/encrypt', { value: 'x', algorithm: 'deterministic', keyId: key })).json().ciphertext;
  await h.call('POST', '/decrypt', { ciphertext: ct });
  await h.call('POST', '/decrypt', { ciphertext: 'AAAA' });
  await h.call('GET', `/keys/by-alt-name/metric-secret-name`);

  const res = await h.call('GET', '/metrics');
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  const text = res.body;
  t.match(text, /http_requests_total\{route="\/encrypt",method="POST",status="200"\} 4/);
  t.match(text, /http_request_duration_seconds_bucket\{le="[0-9.]+",route="\/encrypt",method="POST"\}/);
  t.match(text, /crypto_operations_total\{operation="encrypt",algorithm="random",outcome="ok"\} 3/);
  t.match(text, /crypto_operations_total\{operation="encrypt",algorithm="deterministic",outcome="ok"\} 1/);
  t.match(text, /crypto_operations_total\{operation="decrypt",algorithm="deterministic",outcome="ok"\} 1/);
  t.match(text, /crypto_operations_total\{operation="decrypt",algorithm="unknown",outcome="error"\} 1/);
  t.match(text, /kms_calls_total\{provider="local",operation="wrap",outcome="ok"\} 1/);
  t.match(text, /kms_call_duration_seconds_count\{provider="local",operation="wrap",outcome="ok"\} 1/);
  t.match(text, /data_key_cache_requests_total\{result="hit"\} \d+/);
  t.match(text, /audit_write_failures_total 0/);
  t.match(text, /process_resident_memory_bytes/);
  t.match(text, /route="\/keys\/by-alt-name\/:name"/, 'routes are reported by pattern');
  t.notMatch(text, /metric-secret-name|CANARY|[0-9a-f]{8}-[0-9a-f]{4}-/, 'no alt names, values or key ids');
});

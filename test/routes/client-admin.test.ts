import t, { type Test } from 'tap';
import { createTestApp, type TestApp } from '../helpers/app.js';

const KEY_A = '0f1e2d3c-4b5a-4697-8877-665544332211';
const KEY_B = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';

/** A client made by the operator, and a way to call the API with its token. */
async function clientOf(t: Test, h: TestApp, name: string, grants: unknown[]) {
  const res = await h.call('POST', '/clients', { name, grants });
  t.equal(res.statusCode, 201, res.body);
  const { client, token } = res.json() as { client: { id: string; tokens: { id: string }[] }; token: string };
  return { id: client.id, tokenId: client.tokens[0]!.id, token, call: as(h, token) };
}

function as(h: TestApp, token: string) {
  return (method: string, url: string, body?: unknown) =>
    h.app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { payload: body as object }) });
}

t.test('clients:admin manages clients only within its own grants (grants are bounded by the granter)', async (t) => {
  const h = await createTestApp(t);
  const admin = await clientOf(t, h, 'team admin', [
    { scope: 'clients:admin' },
    { scope: 'encrypt', keyAltNames: ['billing-*'] },
    { scope: 'encrypt', keyIds: [KEY_A] },
    { scope: 'documents:shop.orders:read' },
  ]);
  const powerful = await clientOf(t, h, 'powerful', [{ scope: 'decrypt' }, { scope: 'keys:delete' }]);
  const grantsOf = async (id: string) => (await h.call('GET', `/clients/${id}`)).json().grants;
  const refused = (res: { statusCode: number; body: string }, detail: RegExp, what: string) => {
    t.equal(res.statusCode, 403, `${what}: ${res.body}`);
    const problem = JSON.parse(res.body || '{}') as { code?: string; detail?: string };
    t.equal(problem.code, 'FORBIDDEN', what);
    t.match(problem.detail, detail, what);
    t.notMatch(res.body, /epx_/, `${what}: no token in the answer`);
  };

  t.test('it cannot raise its own grants', async (t) => {
    const before = await grantsOf(admin.id);
    for (const extra of [{ scope: 'decrypt' }, { scope: 'keys:delete' }, { scope: 'documents:*:read' }, { scope: 'encrypt' }, { scope: 'encrypt', keyAltNames: ['*'] }]) {
      const res = await admin.call('PATCH', `/clients/${admin.id}`, { grants: [...before, extra] });
      refused(res, new RegExp(`^You may hand out only grants you hold: grants\\[4\\] \\(${extra.scope.replace('*', '\\*')}\\)`), `PATCH self + ${JSON.stringify(extra)}`);
    }
    t.same(await grantsOf(admin.id), before, 'its grants are unchanged');
    const narrower = [{ scope: 'clients:admin' }, { scope: 'encrypt', keyAltNames: ['billing-eu-*'] }];
    t.equal((await admin.call('PATCH', `/clients/${admin.id}`, { grants: [...narrower, ...before.slice(2)] })).statusCode, 200, 'narrowing its own grants is fine');
    await h.call('PATCH', `/clients/${admin.id}`, { grants: before });
  });

  t.test('it cannot create a client with grants it does not hold', async (t) => {
    const count = async () => (await h.call('GET', '/clients?limit=1000')).json().items.length;
    const before = await count();
    const cases: [grants: unknown[], detail: RegExp][] = [
      [[{ scope: 'decrypt' }], /grants\[0\] \(decrypt\) is a scope you do not hold/],
      [[{ scope: 'clients:admin' }, { scope: 'keys:delete' }], /grants\[1\] \(keys:delete\) is a scope you do not hold/],
      [[{ scope: 'documents:*:read' }], /grants\[0\] \(documents:\*:read\) is a scope you do not hold/],
      [[{ scope: 'encrypt' }], /grants\[0\] \(encrypt\) has no key limits/],
      [[{ scope: 'encrypt', keyAltNames: ['billing*'] }], /grants\[0\] \(encrypt\) has keyAltNames\[0\], which is wider/],
      [[{ scope: 'encrypt', keyAltNames: ['hr-2027'] }], /keyAltNames\[0\], which is wider/],
      [[{ scope: 'encrypt', keyIds: [KEY_B] }], /grants\[0\] \(encrypt\) has keyIds\[0\], which none of your grants/],
    ];
    for (const [grants, detail] of cases) refused(await admin.call('POST', '/clients', { name: 'minion', grants }), detail, `POST /clients ${JSON.stringify(grants)}`);
    t.equal(await count(), before, 'no client was created');

    const made = await admin.call('POST', '/clients', {
      name: 'minion',
      grants: [{ scope: 'clients:admin' }, { scope: 'encrypt', keyAltNames: ['billing-eu-*', 'billing-x'], keyIds: [KEY_A] }, { scope: 'documents:shop.orders:read' }],
    });
    t.equal(made.statusCode, 201, `grants within its own are fine: ${made.body}`);
  });

  t.test('it cannot act on a client more powerful than itself', async (t) => {
    const token = await admin.call('POST', `/clients/${powerful.id}/tokens`, {});
    refused(token, /^That client holds more than you do: its grants\[0\] \(decrypt\) is a scope you do not hold\.$/, 'POST tokens of a more powerful client');
    const patches: unknown[] = [{ name: 'renamed' }, { disabled: true }, { grants: [{ scope: 'encrypt', keyAltNames: ['billing-1'] }] }];
    for (const patch of patches) refused(await admin.call('PATCH', `/clients/${powerful.id}`, patch), /^That client holds more than you do/, `PATCH ${JSON.stringify(patch)}`);
    refused(await admin.call('DELETE', `/clients/${powerful.id}/tokens/${powerful.tokenId}`), /^That client holds more than you do/, 'revoke its token');
    refused(await admin.call('DELETE', `/clients/${powerful.id}`), /^That client holds more than you do/, 'delete it');

    const still = (await h.call('GET', `/clients/${powerful.id}`)).json();
    t.equal(still.name, 'powerful');
    t.equal(still.disabled, false);
    t.same(still.grants, [{ scope: 'decrypt' }, { scope: 'keys:delete' }]);
    t.equal(still.tokens.length, 1, 'no token was added or removed');
    t.equal((await powerful.call('GET', '/clients')).statusCode, 403, 'its own token still works (and has its own grants only)');

    const peer = await clientOf(t, h, 'peer', [{ scope: 'encrypt', keyAltNames: ['billing-x'] }, { scope: 'documents:shop.orders:read' }]);
    const minted = await admin.call('POST', `/clients/${peer.id}/tokens`, {});
    t.equal(minted.statusCode, 201, `a client within its grants: tokens ${minted.body}`);
    t.equal((await admin.call('PATCH', `/clients/${peer.id}`, { name: 'peer 2', disabled: true })).statusCode, 200, 'and changes');
    t.equal((await admin.call('DELETE', `/clients/${peer.id}/tokens/${minted.json().tokenId}`)).statusCode, 204);
    t.equal((await admin.call('DELETE', `/clients/${peer.id}`)).statusCode, 204);
  });

  t.test('a token it mints for a client it may manage carries that client’s grants only', async (t) => {
    const minion = await clientOf(t, h, 'minion 2', [{ scope: 'encrypt', keyAltNames: ['billing-x'] }]);
    const res = await admin.call('POST', `/clients/${minion.id}/tokens`, {});
    t.equal(res.statusCode, 201);
    const use = as(h, res.json().token);
    t.equal((await use('GET', '/clients')).statusCode, 403);
  });

  t.test('unknown clients are still 404, not 403', async (t) => {
    const nobody = `cl_${'0'.repeat(24)}`;
    t.equal((await admin.call('PATCH', `/clients/${nobody}`, { name: 'x' })).statusCode, 404);
    t.equal((await admin.call('DELETE', `/clients/${nobody}`)).statusCode, 404);
    t.equal((await admin.call('POST', `/clients/${nobody}/tokens`, {})).statusCode, 404);
    t.equal((await admin.call('DELETE', `/clients/${nobody}/tokens/${'0'.repeat(32)}`)).statusCode, 404);
  });

  t.test('the operator is unaffected', async (t) => {
    const made = await h.call('POST', '/clients', { name: 'by the operator', grants: [{ scope: 'decrypt' }, { scope: 'clients:admin' }, { scope: 'documents:*:write' }] });
    t.equal(made.statusCode, 201);
    t.equal((await h.call('POST', `/clients/${powerful.id}/tokens`, {})).statusCode, 201);
    t.equal((await h.call('PATCH', `/clients/${powerful.id}`, { grants: [{ scope: 'decrypt' }, { scope: 'keys:delete' }, { scope: 'audit:read' }] })).statusCode, 200);
    t.equal((await h.call('DELETE', `/clients/${made.json().client.id}`)).statusCode, 204);
  });
});

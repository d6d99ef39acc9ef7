import t from 'tap';
import {
  allows,
  assertGrantsCovered,
  checkGrants,
  globMatches,
  isOperator,
  MAX_GRANTS,
  patternIncludes,
  uncoveredAltName,
  uncoveredGrant,
  type Grant,
  type Principal,
} from '../../src/clients/scopes.js';
import { AppError } from '../../src/errors.js';

const KEY_A = '0f1e2d3c-4b5a-4697-8877-665544332211';
const KEY_B = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';

/** The error `fn` throws, or undefined. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

const principal = (...grants: Grant[]): Principal => ({ clientId: 'cl_test', name: 'test', grants });

t.test('globMatches', async (t) => {
  const cases: [pattern: string, text: string, expected: boolean][] = [
    ['tenant-a', 'tenant-a', true],
    ['tenant-a', 'tenant-ab', false],
    ['tenant-a', 'xtenant-a', false],
    ['tenant-a*', 'tenant-a', true],
    ['tenant-a*', 'tenant-a-2024', true],
    ['tenant-a*', 'tenant-b', false],
    ['*-pii', 'hr-pii', true],
    ['*-pii', 'hr-pii-old', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXXbYYc', true],
    ['a*b*c', 'aXXcYYb', false],
    ['a**b', 'ab', true],
    ['*', '', true],
    ['*', 'anything at all', true],
    ['', '', true],
    ['', 'a', false],
    // Regular-expression characters are literal.
    ['a.b', 'a.b', true],
    ['a.b', 'axb', false],
    ['a+b?', 'a+b?', true],
    ['a+b?', 'aab', false],
    ['(x|y)', '(x|y)', true],
    ['(x|y)', 'x', false],
    ['[ab]', 'a', false],
    ['^a$', '^a$', true],
    ['a\\*', 'a\\anything', true],
    ['tenant-\u00e9*', 'tenant-\u00e9t\u00e9', true],
  ];
  for (const [pattern, text, expected] of cases) t.equal(globMatches(pattern, text), expected, `${JSON.stringify(pattern)} vs ${JSON.stringify(text)}`);
});

t.test('globMatches stays fast on adversarial input', async (t) => {
  const pattern = `${'*a'.repeat(120)}*b`;
  const text = 'a'.repeat(255);
  const started = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) t.equal(globMatches(pattern, text), false);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.ok(ms < 2000, `100 worst-case matches took ${ms.toFixed(1)} ms`);
  t.end();
});

t.test('checkGrants accepts and normalises', async (t) => {
  t.same(checkGrants([]), []);
  t.same(
    checkGrants([
      { scope: 'encrypt' },
      { scope: 'decrypt', keyAltNames: ['tenant-a*', 'tenant-a*'], keyIds: [KEY_A.toUpperCase()] },
      { scope: 'keys:read', keyIds: [KEY_B] },
      { scope: 'keys:write', keyAltNames: ['*'] },
      { scope: 'keys:delete' },
      { scope: 'keys:rewrap' },
      { scope: 'clients:admin' },
      { scope: 'audit:read' },
      { scope: 'documents:hr.employees:read' },
      { scope: 'documents:hr.employees.archive:write' },
      { scope: 'documents:*:write' },
    ]),
    [
      { scope: 'encrypt' },
      { scope: 'decrypt', keyAltNames: ['tenant-a*'], keyIds: [KEY_A] },
      { scope: 'keys:read', keyIds: [KEY_B] },
      { scope: 'keys:write', keyAltNames: ['*'] },
      { scope: 'keys:delete' },
      { scope: 'keys:rewrap' },
      { scope: 'clients:admin' },
      { scope: 'audit:read' },
      { scope: 'documents:hr.employees:read' },
      { scope: 'documents:hr.employees.archive:write' },
      { scope: 'documents:*:write' },
    ],
  );
  const input = [{ scope: 'decrypt', keyAltNames: ['x'] }];
  const output = checkGrants(input);
  t.not(output[0], input[0], 'returns copies');
  t.not(output[0]!.keyAltNames, input[0]!.keyAltNames);
  t.same(checkGrants(Array.from({ length: MAX_GRANTS }, () => ({ scope: 'encrypt' }))).length, MAX_GRANTS);
});

t.test('checkGrants refuses, naming the entry', async (t) => {
  const cases: [input: unknown, detail: RegExp][] = [
    [undefined, /^grants must be an array/],
    [{ scope: 'encrypt' }, /^grants must be an array/],
    [Array.from({ length: MAX_GRANTS + 1 }, () => ({ scope: 'encrypt' })), /at most 100/],
    [[null], /^grants\[0\] must be an object/],
    [['encrypt'], /^grants\[0\] must be an object/],
    [[[]], /^grants\[0\] must be an object/],
    [[{ scope: 'encrypt' }, { scope: 'encrypt', extra: 1 }], /^grants\[1\] has an unknown field/],
    [[{}], /^grants\[0\]\.scope is not a known scope/],
    [[{ scope: 42 }], /^grants\[0\]\.scope is not a known scope/],
    [[{ scope: 'keys:*' }], /^grants\[0\]\.scope is not a known scope/],
    [[{ scope: 'Encrypt' }], /scope is not a known scope/],
    [[{ scope: 'documents:read' }], /scope is not a known scope/],
    [[{ scope: 'documents::read' }], /scope is not a known scope/],
    [[{ scope: 'documents:hr:read' }], /scope is not a known scope/],
    [[{ scope: 'documents:hr.employees:delete' }], /scope is not a known scope/],
    [[{ scope: 'documents:hr.$cmd:read' }], /scope is not a known scope/],
    [[{ scope: 'documents:a b.c:read' }], /scope is not a known scope/],
    [[{ scope: `documents:hr.${'x'.repeat(300)}:read` }], /scope is not a known scope/],
    [[{ scope: '*' }], /^grants\[0\]\.scope: "\*" belongs to the operator only/],
    [[{ scope: 'clients:admin', keyIds: [KEY_A] }], /^grants\[0\]: key limits apply only/],
    [[{ scope: 'audit:read', keyAltNames: ['x'] }], /key limits apply only/],
    [[{ scope: 'documents:*:read', keyAltNames: ['x'] }], /key limits apply only/],
    [[{ scope: 'decrypt', keyIds: [] }], /^grants\[0\]\.keyIds must not be empty/],
    [[{ scope: 'decrypt', keyAltNames: [] }], /^grants\[0\]\.keyAltNames must not be empty/],
    [[{ scope: 'decrypt', keyAltNames: 'tenant-a*' }], /keyAltNames must be an array/],
    [[{ scope: 'decrypt', keyIds: ['not-a-uuid'] }], /^grants\[0\]\.keyIds\[0\] must be a UUID/],
    [[{ scope: 'decrypt', keyIds: [KEY_A, `${KEY_A}0`] }], /^grants\[0\]\.keyIds\[1\] must be a UUID/],
    [[{ scope: 'decrypt', keyAltNames: ['ok', ''] }], /^grants\[0\]\.keyAltNames\[1\] must be a pattern/],
    [[{ scope: 'decrypt', keyAltNames: ['x'.repeat(256)] }], /keyAltNames\[0\] must be a pattern of 1 to 255/],
    [[{ scope: 'decrypt', keyAltNames: [7] }], /keyAltNames\[0\] must be a pattern/],
    [[{ scope: 'decrypt', keyAltNames: Array.from({ length: 101 }, (_, i) => `n${i}`) }], /keyAltNames may hold at most 100/],
  ];
  for (const [input, detail] of cases) {
    const err = thrown(() => checkGrants(input));
    t.ok(err instanceof AppError, `${JSON.stringify(input)?.slice(0, 80)} is refused with an AppError`);
    t.match(err, { code: 'INVALID_SCOPE', detail: detail });
  }
  t.ok(checkGrants([{ scope: 'decrypt', keyAltNames: ['x'.repeat(255)] }]), 'a 255-character pattern is fine');
  const secretish = 'documents:tenant-secret-value:read';
  const err = thrown(() => checkGrants([{ scope: secretish }]));
  t.match(err, { code: 'INVALID_SCOPE' });
  t.notMatch((err as AppError).detail, /tenant-secret-value/, 'the detail does not echo the value');
});

t.test('allows: scopes without limits', async (t) => {
  const p = principal({ scope: 'encrypt' }, { scope: 'keys:read' }, { scope: 'documents:hr.employees:read' }, { scope: 'documents:*:write' });
  const cases: [scope: string, target: Parameters<typeof allows>[2], expected: boolean][] = [
    ['encrypt', undefined, true],
    ['encrypt', { keyId: KEY_A }, true],
    ['encrypt', { keyAltNames: ['anything'] }, true],
    ['decrypt', undefined, false],
    ['keys:read', undefined, true],
    ['keys:write', undefined, false],
    ['keys', undefined, false],
    ['clients:admin', undefined, false],
    ['documents:hr.employees:read', undefined, true],
    ['documents:hr.employees:write', undefined, true],
    ['documents:hr.other:read', undefined, false],
    ['documents:hr.other:write', undefined, true],
    ['documents:*:read', undefined, false],
    ['documents:*:write', undefined, true],
    ['documents:read', { collection: 'hr.employees' }, true],
    ['documents:read', { collection: 'hr.other' }, false],
    ['documents:write', { collection: 'any.thing' }, true],
    ['documents:read', undefined, false],
    ['documents:hr.employees:read', { collection: 'hr.employees' }, true],
    ['documents:hr.employees:read', { collection: 'hr.other' }, false],
    ['', undefined, false],
    ['*', undefined, false],
  ];
  for (const [scope, target, expected] of cases) t.equal(allows(p, scope, target), expected, `${scope} ${JSON.stringify(target)}`);
  t.equal(allows(principal(), 'encrypt'), false, 'no grants allow nothing');
  t.equal(allows(principal({ scope: 'documents:hr.employees:read' }), 'documents:hr.employeesX:read'), false);
  t.equal(allows(principal({ scope: 'documents:hr.employees:read' }), 'documents:hr.employees:readx'), false);
});

t.test('allows: key limits', async (t) => {
  const p = principal({ scope: 'decrypt', keyAltNames: ['tenant-a*'], keyIds: [KEY_A] }, { scope: 'keys:read', keyIds: [KEY_B] });
  const cases: [scope: string, target: Parameters<typeof allows>[2], expected: boolean][] = [
    ['decrypt', undefined, true],
    ['decrypt', { keyId: KEY_A }, true],
    ['decrypt', { keyId: KEY_A.toUpperCase() }, true],
    ['decrypt', { keyId: KEY_B }, false],
    ['decrypt', { keyAltNames: ['tenant-a'] }, true],
    ['decrypt', { keyAltNames: ['tenant-a-2024'] }, true],
    ['decrypt', { keyAltNames: ['tenant-b'] }, false],
    ['decrypt', { keyAltNames: ['tenant-b', 'tenant-a-x'] }, true],
    ['decrypt', { keyAltNames: [] }, false],
    ['decrypt', { keyId: KEY_B, keyAltNames: ['tenant-a1'] }, true],
    ['decrypt', { keyId: KEY_B, keyAltNames: ['tenant-b'] }, false],
    ['decrypt', {}, false],
    ['decrypt', { collection: 'hr.employees' }, false],
    ['keys:read', undefined, true],
    ['keys:read', { keyId: KEY_B }, true],
    ['keys:read', { keyId: KEY_A }, false],
    ['keys:read', { keyAltNames: ['tenant-a'] }, false],
    ['encrypt', undefined, false],
    ['encrypt', { keyId: KEY_A }, false],
  ];
  for (const [scope, target, expected] of cases) t.equal(allows(p, scope, target), expected, `${scope} ${JSON.stringify(target)}`);

  const onlyIds = principal({ scope: 'encrypt', keyIds: [KEY_A] });
  t.equal(allows(onlyIds, 'encrypt', { keyAltNames: ['tenant-a'] }), false, 'an id limit is not met by alt names');
  const onlyNames = principal({ scope: 'encrypt', keyAltNames: ['tenant-a'] });
  t.equal(allows(onlyNames, 'encrypt', { keyId: KEY_A }), false, 'an alt-name limit is not met by an id alone');
  t.equal(allows(onlyNames, 'encrypt', { keyAltNames: ['tenant-a.'] }), false);
});

t.test('allows: grants add up', async (t) => {
  const p = principal({ scope: 'encrypt', keyAltNames: ['tenant-a*'] }, { scope: 'encrypt', keyAltNames: ['tenant-b*'] });
  t.equal(allows(p, 'encrypt', { keyAltNames: ['tenant-a1'] }), true);
  t.equal(allows(p, 'encrypt', { keyAltNames: ['tenant-b1'] }), true);
  t.equal(allows(p, 'encrypt', { keyAltNames: ['tenant-c1'] }), false);
  const withUnlimited = principal({ scope: 'encrypt', keyAltNames: ['tenant-a*'] }, { scope: 'encrypt' });
  t.equal(allows(withUnlimited, 'encrypt', { keyAltNames: ['tenant-c1'] }), true, 'an unlimited grant covers every key');
});

t.test("allows: the operator's '*' allows everything", async (t) => {
  const operator = principal({ scope: '*' });
  for (const scope of ['encrypt', 'decrypt', 'keys:delete', 'clients:admin', 'audit:read', 'documents:hr.employees:write', 'documents:*:read', 'future:scope']) {
    t.equal(allows(operator, scope), true, scope);
  }
  t.equal(allows(operator, 'decrypt', { keyId: KEY_B, keyAltNames: ['whatever'] }), true);
  t.equal(allows(operator, 'documents:read', { collection: 'a.b' }), true);
});

t.test('patternIncludes: only inclusions it is sure of', async (t) => {
  const cases: [outer: string, inner: string, expected: boolean][] = [
    ['billing-*', 'billing-*', true],
    ['billing-*', 'billing-eu-*', true],
    ['billing-*', 'billing-x', true],
    ['billing-*', 'billing-', true],
    ['billing-*', 'billing*', false],
    ['billing-*', 'billin*', false],
    ['billing-*', '*', false],
    ['billing-*', '*billing-*', false],
    ['billing-*', 'hr-2027', false],
    ['*', '*', true],
    ['*', 'anything*at*all', true],
    ['*-pii', 'hr-*-pii', true],
    ['*-pii', 'hr-pii*', false],
    ['*-pii', '*', false],
    ['a*b', 'a*c*b', true],
    ['a*b', 'a*', false],
    ['a*b*', 'a*', false],
    ['a*', 'a', true],
    ['a', 'a*', false],
    ['a', 'a', true],
    ['a', 'b', false],
    ['a**b', 'a***b', true],
    ['a*b', 'a***b', true],
    ['a*a', 'a*', false],
    ['ab*', 'a*b', false],
    ['*b*', 'a*b', true],
    // A literal of the outer pattern never matches a star of the inner one.
    ['x*y', '**', false],
    ['tenant-\u00e9*', 'tenant-\u00e9t\u00e9*', true],
  ];
  for (const [outer, inner, expected] of cases) t.equal(patternIncludes(outer, inner), expected, `${JSON.stringify(inner)} ⊆ ${JSON.stringify(outer)}`);
});

t.test('patternIncludes is sound: no name of the inner pattern escapes the outer one', async (t) => {
  // Every pattern over {a, b, *} up to 4 characters against every name over {a, b} up to 5:
  // whenever the inclusion is claimed, each name the inner pattern matches, the outer matches too.
  const patterns = [''];
  for (let length = 1; length <= 4; length++) {
    for (const prefix of patterns.filter((p) => p.length === length - 1)) for (const c of 'ab*') patterns.push(prefix + c);
  }
  const names = [''];
  for (let length = 1; length <= 5; length++) {
    for (const prefix of names.filter((n) => n.length === length - 1)) for (const c of 'ab') names.push(prefix + c);
  }
  let claimed = 0;
  let wrong = 0;
  for (const outer of patterns) {
    for (const inner of patterns) {
      if (!patternIncludes(outer, inner)) continue;
      claimed++;
      if (names.some((name) => globMatches(inner, name) && !globMatches(outer, name))) wrong++;
    }
  }
  t.ok(claimed > 1000, `${claimed} inclusions claimed`);
  t.equal(wrong, 0, 'none of them wrongly');
});

t.test('patternIncludes stays fast on adversarial input', async (t) => {
  const outer = `${'*a'.repeat(120)}*b`;
  const inner = `${'a*'.repeat(127)}a`;
  const started = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) t.equal(patternIncludes(outer, inner), false);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.ok(ms < 2000, `100 worst-case inclusions took ${ms.toFixed(1)} ms`);
  t.end();
});

t.test('uncoveredGrant: grants are bounded by the granter', async (t) => {
  const held: Grant[] = [
    { scope: 'clients:admin' },
    { scope: 'encrypt', keyAltNames: ['billing-*'] },
    { scope: 'encrypt', keyIds: [KEY_A] },
    { scope: 'decrypt', keyAltNames: ['billing-eu-*', 'billing-us-*'] },
    { scope: 'keys:read' },
    { scope: 'documents:*:read' },
    { scope: 'documents:hr.employees:write' },
  ];
  const covered: Grant[][] = [
    [],
    [{ scope: 'clients:admin' }],
    [{ scope: 'encrypt', keyAltNames: ['billing-*'] }],
    [{ scope: 'encrypt', keyAltNames: ['billing-eu-*', 'billing-x'] }],
    [{ scope: 'encrypt', keyIds: [KEY_A.toUpperCase()] }],
    [{ scope: 'encrypt', keyIds: [KEY_A], keyAltNames: ['billing-*'] }, { scope: 'keys:read', keyIds: [KEY_B] }],
    [{ scope: 'decrypt', keyAltNames: ['billing-us-*', 'billing-eu-1'] }],
    [{ scope: 'keys:read' }, { scope: 'keys:read', keyAltNames: ['*'] }],
    [{ scope: 'documents:*:read' }, { scope: 'documents:hr.employees:read' }, { scope: 'documents:a.b:read' }],
    [{ scope: 'documents:hr.employees:write' }],
  ];
  for (const requested of covered) t.equal(uncoveredGrant(held, requested), undefined, JSON.stringify(requested));

  const refused: [requested: Grant[], detail: string][] = [
    [[{ scope: 'decrypt' }], 'grants[0] (decrypt) has no key limits, and your grants of that scope do'],
    [[{ scope: 'keys:delete' }], 'grants[0] (keys:delete) is a scope you do not hold'],
    [[{ scope: 'clients:admin' }, { scope: 'audit:read' }], 'grants[1] (audit:read) is a scope you do not hold'],
    [[{ scope: 'encrypt' }], 'grants[0] (encrypt) has no key limits, and your grants of that scope do'],
    [[{ scope: 'encrypt', keyAltNames: ['*'] }], 'grants[0] (encrypt) has keyAltNames[0], which is wider than your patterns for that scope'],
    [[{ scope: 'encrypt', keyAltNames: ['billing-*', 'billing*'] }], 'grants[0] (encrypt) has keyAltNames[1], which is wider than your patterns for that scope'],
    [[{ scope: 'encrypt', keyAltNames: ['hr-2027'] }], 'grants[0] (encrypt) has keyAltNames[0], which is wider than your patterns for that scope'],
    [[{ scope: 'encrypt', keyIds: [KEY_B] }], 'grants[0] (encrypt) has keyIds[0], which none of your grants of that scope lists'],
    [[{ scope: 'encrypt', keyIds: [KEY_A, KEY_B] }], 'grants[0] (encrypt) has keyIds[1], which none of your grants of that scope lists'],
    [[{ scope: 'decrypt', keyIds: [KEY_A] }], 'grants[0] (decrypt) has keyIds[0], which none of your grants of that scope lists'],
    [[{ scope: 'decrypt', keyAltNames: ['billing-*'] }], 'grants[0] (decrypt) has keyAltNames[0], which is wider than your patterns for that scope'],
    [[{ scope: 'documents:*:write' }], 'grants[0] (documents:*:write) is a scope you do not hold'],
    [[{ scope: 'documents:hr.other:write' }], 'grants[0] (documents:hr.other:write) is a scope you do not hold'],
    // Empty limit lists would mean "any key" to the key authorizer: the wide reading.
    [[{ scope: 'encrypt', keyIds: [] }], 'grants[0] (encrypt) has no key limits, and your grants of that scope do'],
  ];
  for (const [requested, detail] of refused) t.equal(uncoveredGrant(held, requested), detail, JSON.stringify(requested));
  t.notMatch(uncoveredGrant(held, [{ scope: 'encrypt', keyIds: [KEY_B], keyAltNames: ['hr-2027'] }]), /hr-2027|aaaaaaaa/, 'no id or pattern in the detail');

  t.equal(uncoveredGrant([], [{ scope: 'encrypt' }]), 'grants[0] (encrypt) is a scope you do not hold');
  t.equal(uncoveredGrant([{ scope: 'encrypt', keyIds: [] }], [{ scope: 'encrypt', keyIds: [KEY_A] }]), 'grants[0] (encrypt) has keyIds[0], which none of your grants of that scope lists', 'an empty held list covers no key');
  t.equal(uncoveredGrant([{ scope: 'documents:hr.employees:read' }], [{ scope: 'documents:*:read' }]), 'grants[0] (documents:*:read) is a scope you do not hold');
});

t.test("uncoveredGrant: the operator's '*' covers everything", async (t) => {
  const everything: Grant[] = [
    { scope: 'decrypt' },
    { scope: 'keys:delete' },
    { scope: 'clients:admin' },
    { scope: 'documents:*:read' },
    { scope: 'encrypt', keyIds: [KEY_A], keyAltNames: ['*'] },
  ];
  t.equal(uncoveredGrant([{ scope: '*' }], everything), undefined);
});

t.test('assertGrantsCovered and isOperator', async (t) => {
  const admin = principal({ scope: 'clients:admin' }, { scope: 'encrypt', keyAltNames: ['billing-*'] });
  t.doesNotThrow(() => assertGrantsCovered(admin, [{ scope: 'encrypt', keyAltNames: ['billing-1'] }], 'requested'));
  t.match(thrown(() => assertGrantsCovered(admin, [{ scope: 'decrypt' }], 'requested')), {
    code: 'FORBIDDEN',
    detail: 'You may hand out only grants you hold: grants[0] (decrypt) is a scope you do not hold.',
  });
  t.match(thrown(() => assertGrantsCovered(admin, [{ scope: 'clients:admin' }, { scope: 'keys:delete' }], 'target')), {
    code: 'FORBIDDEN',
    detail: 'That client holds more than you do: its grants[1] (keys:delete) is a scope you do not hold.',
  });
  t.doesNotThrow(() => assertGrantsCovered(principal({ scope: '*' }), [{ scope: 'keys:delete' }], 'target'));
  t.equal(isOperator(principal({ scope: '*' })), true);
  t.equal(isOperator(admin), false);
  t.equal(isOperator(principal()), false);
});

t.test('uncoveredAltName: each name claimed must be covered on its own', async (t) => {
  const p = principal({ scope: 'keys:write', keyAltNames: ['billing-*'] }, { scope: 'keys:write', keyIds: [KEY_A] }, { scope: 'keys:read' });
  t.equal(uncoveredAltName(p, 'keys:write', ['billing-x']), -1);
  t.equal(uncoveredAltName(p, 'keys:write', ['billing-x', 'hr-2027']), 1, 'one covered name does not carry another');
  t.equal(uncoveredAltName(p, 'keys:write', ['hr-2027', 'billing-x']), 0);
  t.equal(uncoveredAltName(p, 'keys:write', []), -1);
  t.equal(uncoveredAltName(p, 'keys:read', ['hr-2027']), -1, 'an unlimited grant covers any name');
  t.equal(uncoveredAltName(p, 'keys:delete', ['billing-x']), 0);
  t.equal(uncoveredAltName(principal({ scope: '*' }), 'keys:write', ['anything']), -1);
});

import t from 'tap';
import { createKeyAllowList, isAllowedKeyPattern } from '../../src/kms/allowed-keys.js';
import { createKms } from '../../src/kms/kms.js';
import type { AwsMasterKey } from '../../src/kms/master-key.js';

const KEY = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const aws = (key: string, region = /:kms:([^:]+):/.exec(key)?.[1] ?? 'us-east-1'): AwsMasterKey => ({ provider: 'aws', key, region });

t.test('entries are ARN patterns or *', async (t) => {
  for (const ok of ['*', KEY, 'arn:aws:kms:eu-west-1:111122223333:key/*', 'arn:aws:kms:*:*:key/*', 'arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/app-*']) {
    t.ok(isAllowedKeyPattern(ok), ok);
  }
  for (const bad of ['', '**', 'arn:*', 'key/*', 'arn:aws:kms:eu-west-1:111122223333:*', 'arn:aws:iam::111122223333:role/x', `${KEY},x`]) {
    t.notOk(isAllowedKeyPattern(bad), bad);
  }
});

t.test('a key is allowed when its ARN matches an entry field by field, in the ARN\'s own region', async (t) => {
  const list = createKeyAllowList(['arn:aws:kms:eu-west-1:111122223333:key/*', 'arn:aws:kms:us-west-2:111122223333:alias/app-*']);
  t.ok(list.allows(aws(KEY)));
  t.ok(list.allows(aws('arn:aws:kms:us-west-2:111122223333:alias/app-billing')));
  t.notOk(list.allows(aws('arn:aws:kms:us-west-2:111122223333:alias/other')), 'alias outside the pattern');
  t.notOk(list.allows(aws(KEY.replace('eu-west-1', 'eu-west-2'))), 'another region');
  t.notOk(list.allows(aws(KEY.replace('111122223333', '444455556666'))), 'another account');
  t.notOk(list.allows(aws('arn:aws:kms:eu-west-1:111122223333:alias/x')), 'an alias where keys are listed');
  t.notOk(list.allows(aws('arn:aws:kms:eu-west-1:111122223333:key/x:extra')), 'a * never crosses a field');
  t.notOk(list.allows(aws(KEY, 'zz-nowhere-9')), 'a region other than the ARN\'s (as a stored document may name)');
  t.notOk(list.allows(aws('1234abcd-12ab-34cd-56ef-1234567890ab', 'eu-west-1')), 'a bare key id (as drivers may store) matches no ARN pattern');
  t.same(list.regions, ['eu-west-1', 'us-west-2'], 'the regions the configuration names');
  t.equal(list.openRegions, false);
});

t.test('* allows any key, still only in its own ARN\'s region; an empty list allows nothing', async (t) => {
  const any = createKeyAllowList(['*']);
  t.ok(any.allows(aws(KEY)));
  t.ok(any.allows(aws('1234abcd-12ab-34cd-56ef-1234567890ab', 'ap-south-1')));
  t.notOk(any.allows(aws(KEY, 'zz-nowhere-9')));
  t.same(any.regions, []);
  t.equal(any.openRegions, true);
  t.equal(createKeyAllowList(['arn:aws:kms:*:111122223333:key/*']).openRegions, true, 'a * region leaves regions open');
  t.notOk(createKeyAllowList([]).allows(aws(KEY)));
});

t.test('createKms refuses keys outside the list before KMS is called, to wrap and to unwrap', async (t) => {
  // The endpoint is a closed port: any call that reached "KMS" would fail as KMS_UNAVAILABLE.
  const kms = createKms({
    aws: { endpoint: 'http://127.0.0.1:1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, timeoutMs: 500, maxAttempts: 1, breakerResetMs: 60_000 },
    allowedAwsKeys: [KEY],
  });
  t.teardown(() => kms.close());
  const other = aws(KEY.replace('1234abcd', 'ffffffff'));
  t.throws(() => kms.checkUsable(other), { code: 'MASTER_KEY_NOT_ALLOWED' });
  await t.rejects(kms.wrap(other, Buffer.alloc(96)), { code: 'MASTER_KEY_NOT_ALLOWED' });
  await t.rejects(kms.unwrap(other, Buffer.alloc(10)), { code: 'MASTER_KEY_NOT_ALLOWED' }, 'a stored key naming an unlisted master key');
  await t.rejects(kms.unwrap(aws(KEY, 'zz-nowhere-9'), Buffer.alloc(10)), { code: 'MASTER_KEY_NOT_ALLOWED' }, 'a stored key naming another region');
  await t.rejects(kms.unwrap(aws(KEY), Buffer.alloc(10)), { code: 'KMS_UNAVAILABLE' }, 'the listed key does reach KMS');
  const unlisted = createKms({ aws: { timeoutMs: 500, maxAttempts: 1, breakerResetMs: 1000 } });
  t.teardown(() => unlisted.close());
  t.throws(() => unlisted.checkUsable(aws(KEY)), { code: 'MASTER_KEY_NOT_ALLOWED' }, 'no list, no key');
});

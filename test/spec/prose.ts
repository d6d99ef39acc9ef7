/**
 * Shared by the prose tests (MongoDB's client-side encryption spec, tests/README.md "Prose Tests")
 * translated to this service's HTTP API: the spec's local master key and the summary line each
 * file prints, so a run shows at a glance which prose tests hold and which do not apply, and why.
 */

/** The spec's LOCAL_MASTERKEY: 96 bytes, base64. */
export const SPEC_LOCAL_MASTER_KEY =
  'Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk';

import { saveSuite, type TestResult } from './runner/results.js';

interface Tap {
  name?: string;
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
  passing(): boolean;
}

/**
 * Count the cases of prose test `n`; the summary line is printed when the file's tests end.
 * `track(t)` in a case's subtest counts it as passed only when every assertion of it held.
 */
export function proseSummary(t: Tap, n: number) {
  let passed = 0;
  let failed = 0;
  const notApplicable: string[] = [];
  const results: TestResult[] = [];
  t.teardown(() => {
    const na = notApplicable.length > 0 ? `, ${notApplicable.length} not applicable (${notApplicable.join('; ')})` : ', 0 not applicable';
    const fail = failed > 0 ? `, ${failed} failed` : '';
    const line = `spec prose ${n}: ${passed} passed${fail}${na}`;
    t.comment(line);
    for (const reason of notApplicable) results.push({ test: reason.split(/[:(]/)[0]!.trim(), status: 'not applicable', reason });
    saveSuite(
      {
        id: `prose-${String(n).padStart(2, '0')}`,
        title: 'Prose tests (tests/README.md, through the HTTP API)',
        notes: ['test/spec/prose-<n>-*.test.ts translate the prose steps to HTTP requests against the real servers; each case is one line.'],
        files: [{ file: `prose ${n}`, results }],
      },
      process.env.WRITE_CONFORMANCE === '1',
    );
  });
  return {
    track(sub: Tap) {
      sub.teardown(() => {
        const test = sub.name ?? `case ${results.length + 1}`;
        if (sub.passing()) {
          passed++;
          results.push({ test, status: 'pass' });
        } else {
          failed++;
          results.push({ test, status: 'fail', reason: 'an assertion failed (see the test output)' });
        }
      });
    },
    notApplicable(reason: string) {
      notApplicable.push(reason);
    },
  };
}

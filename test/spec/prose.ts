/**
 * Shared by the prose tests (MongoDB's client-side encryption spec, tests/README.md "Prose Tests")
 * translated to this service's HTTP API: the spec's local master key and the summary line each
 * file prints, so a run shows at a glance which prose tests hold and which do not apply, and why.
 */

/** The spec's LOCAL_MASTERKEY: 96 bytes, base64. */
export const SPEC_LOCAL_MASTER_KEY =
  'Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk';

interface Tap {
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
  t.teardown(() => {
    const na = notApplicable.length > 0 ? `, ${notApplicable.length} not applicable (${notApplicable.join('; ')})` : ', 0 not applicable';
    const fail = failed > 0 ? `, ${failed} failed` : '';
    const line = `spec prose ${n}: ${passed} passed${fail}${na}`;
    t.comment(line);
  });
  return {
    track(sub: Tap) {
      sub.teardown(() => {
        if (sub.passing()) passed++;
        else failed++;
      });
    },
    notApplicable(reason: string) {
      notApplicable.push(reason);
    },
  };
}

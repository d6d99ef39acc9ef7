/**
 * A batch's payloads mostly name one data key. For the audit trail's list of distinct key ids,
 * formatting the id of every payload costs more than its decryption; comparing 16 bytes with the
 * previous payload's does not.
 */

/** The payloads that start a run naming a different key id (bytes 1 to 16) than the one before. */
export function firstOfKeyIdRuns(payloads: readonly Uint8Array[]): Uint8Array[] {
  const firsts: Uint8Array[] = [];
  let last: Uint8Array | undefined;
  for (const payload of payloads) {
    if (payload.length < 17) continue;
    if (last === undefined || !sameKeyId(last, payload)) {
      firsts.push(payload);
      last = payload;
    }
  }
  return firsts;
}

function sameKeyId(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 1; i < 17; i++) if (a[i] !== b[i]) return false;
  return true;
}

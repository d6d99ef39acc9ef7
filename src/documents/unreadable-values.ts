/**
 * What a read does with a stored value that cannot be decrypted (malformed or tampered
 * ciphertext, a deleted or unusable data key). By default the read fails, as the drivers'
 * automatic decryption does: a client that reads, edits and writes back must never store null
 * over a ciphertext it was handed as null. Exports that must go on past a bad value ask for a
 * report instead. Masking (no decrypt grant) is another thing and is never an error.
 */
import { toEjson } from '../ejson.js';
import { AppError } from '../errors.js';

/** `fail`: the read answers UNREADABLE_VALUE. `report`: the value is null and listed. */
export type UnreadablePolicy = 'fail' | 'report';

export const unreadablePolicies: readonly UnreadablePolicy[] = ['fail', 'report'];

function describeId(id: unknown): string {
  if (id === undefined) return 'without _id';
  // Canonical Extended JSON: the caller can paste it back as the id of GET /documents/{ns}/{id}.
  return `with _id ${JSON.stringify(toEjson(id, 'canonical'))}`.slice(0, 300);
}

/**
 * Fail the read when a value could not be decrypted, unless the caller asked for a report. The
 * error names the first document (its _id) and the field path, never why: one generic answer for
 * every cause of a failed decryption, and nothing of the document is released.
 */
export function enforceUnreadablePolicy(
  documents: readonly Record<string, unknown>[],
  unreadable: ReadonlyMap<number, string[]>,
  policy: UnreadablePolicy = 'fail',
): void {
  if (policy === 'report' || unreadable.size === 0) return;
  const [index, paths] = [...unreadable].sort(([a], [b]) => a - b)[0]!;
  const more = paths.length > 1 ? ` (and ${paths.length - 1} more field${paths.length > 2 ? 's' : ''})` : '';
  throw new AppError(
    'UNREADABLE_VALUE',
    `The document ${describeId(documents[index]?._id)}: ${paths[0]}${more} could not be decrypted. Nothing of it was answered; ask with onUnreadable=report to have such values as null and listed.`,
  );
}

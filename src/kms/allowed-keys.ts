/**
 * Which AWS KMS keys the server may reach: the allow-list of AWS_KMS_ALLOWED_KEYS. A client names a
 * master key when it creates or rewraps a data key, and every key named is a KMS client, a circuit
 * breaker and an IAM question in some region; so what is reachable is the operator's choice, never
 * the client's. Pure functions, no I/O.
 */
import type { AwsMasterKey } from './master-key.js';

/** The explicit "any key in any region" entry; the server warns about it at boot. */
export const ANY_KEY = '*';

/**
 * An entry is `*` or a KMS key/alias ARN in which `*` may stand for any run of characters inside one
 * ARN field (never across a `:`): `arn:aws:kms:eu-west-1:111122223333:key/*`.
 */
const patternShape = /^arn:aws[a-z-]*:kms:([a-z0-9-]+|\*):(\d{12}|\*):(key|alias)\/[A-Za-z0-9/_+=.@*-]+$/;

export function isAllowedKeyPattern(entry: string): boolean {
  return entry === ANY_KEY || patternShape.test(entry);
}

/** `*` matches any run of characters (also none); linear, one backtrack point, no regular expression. */
function fieldMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let resume = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (star !== -1) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** Match ARN field by field, so a `*` in the key id cannot also swallow the region or the account. */
function arnMatches(pattern: string, arn: string): boolean {
  const want = pattern.split(':');
  const have = arn.split(':');
  return want.length === have.length && want.every((field, i) => fieldMatches(field, have[i]!));
}

function regionOf(arn: string): string | undefined {
  return /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/.exec(arn)?.[1];
}

export interface KeyAllowList {
  /** Whether a master key may be used: its ARN matches an entry, and it is called in the ARN's own region. */
  allows(masterKey: AwsMasterKey): boolean;
  /** The regions the entries name; the only ones a key can be in unless an entry leaves the region open. */
  readonly regions: string[];
  /** True when some entry (`*`, or a `*` region) lets keys name regions the configuration does not list. */
  readonly openRegions: boolean;
}

/** Build the allow-list from checked entries (see `isAllowedKeyPattern`); an empty list allows nothing. */
export function createKeyAllowList(entries: string[]): KeyAllowList {
  const any = entries.includes(ANY_KEY);
  const patterns = entries.filter((entry) => entry !== ANY_KEY);
  const regions = [...new Set(patterns.map(regionOf).filter((region): region is string => region !== undefined))];
  return {
    regions,
    openRegions: any || patterns.some((pattern) => regionOf(pattern) === undefined),
    allows(masterKey) {
      const arnRegion = regionOf(masterKey.key);
      // A key document names its region next to the ARN (drivers write both); calling KMS in any
      // other region than the ARN's would reach endpoints the ARN never chose.
      if (arnRegion !== undefined && arnRegion !== masterKey.region) return false;
      if (any) return true;
      return arnRegion !== undefined && patterns.some((pattern) => arnMatches(pattern, masterKey.key));
    },
  };
}

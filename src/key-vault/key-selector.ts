/** Which data keys an operation (a list, a rewrap, a migration) applies to, as a key-vault filter. */
import type { Filter, UUID } from 'mongodb';
import type { MasterKey } from '../kms/master-key.js';
import type { KeyDocument } from './key-document.js';

export interface KeySelector {
  keyIds?: UUID[];
  keyAltNames?: string[];
  provider?: MasterKey['provider'];
  /** Only keys wrapped by this AWS master key ARN. */
  masterKeyArn?: string;
}

/** The filter of a selection: all its conditions must hold. */
export function selectorFilter(selector: KeySelector): Filter<KeyDocument> {
  // Only UUID ids: a stray document of another shape in the vault is not a data key.
  const clauses: Filter<KeyDocument>[] = [{ _id: { $type: 'binData' } }];
  // A list given empty selects nothing (never everything).
  if (selector.keyIds !== undefined) clauses.push({ _id: { $in: selector.keyIds } });
  if (selector.keyAltNames !== undefined) clauses.push({ keyAltNames: { $in: selector.keyAltNames } });
  if (selector.provider !== undefined) clauses.push({ 'masterKey.provider': selector.provider });
  if (selector.masterKeyArn !== undefined) clauses.push({ 'masterKey.key': selector.masterKeyArn });
  return clauses.length === 1 ? clauses[0]! : { $and: clauses };
}

/**
 * Views are refused, as drivers refuse to auto-encrypt them ("cannot auto encrypt a view"): a
 * view's pipeline can rename, compute or merge fields, so the collection schema no longer says
 * which values are ciphertext under which key. Writes would fail in MongoDB anyway; reads would
 * decrypt whatever the pipeline put where the schema expects an encrypted field.
 *
 * Whether a namespace is a view is MongoDB's answer (listCollections' `type`), kept per namespace
 * for `ttlMs` at most: a collection dropped and recreated as a view is refused within that bound,
 * and a write that slips through in the meantime is refused by MongoDB (166) with the same code.
 * Only namespaces with a collection schema are checked, so the cache holds at most those.
 */
import { AppError } from '../errors.js';

export interface ViewCheckOptions {
  /** listCollections' `type` for db.collection ('collection', 'view', …), undefined when absent. */
  collectionType(db: string, collection: string): Promise<string | undefined>;
  ttlMs: number;
  now?: () => number;
}

export function createViewCheck({ collectionType, ttlMs, now = Date.now }: ViewCheckOptions) {
  const known = new Map<string, { view: boolean; until: number }>();

  async function isView(db: string, collection: string): Promise<boolean> {
    const namespace = `${db}.${collection}`;
    const cached = known.get(namespace);
    if (cached !== undefined && cached.until > now()) return cached.view;
    const view = (await collectionType(db, collection)) === 'view';
    known.set(namespace, { view, until: now() + ttlMs });
    return view;
  }

  return {
    /** 400 NAMESPACE_IS_VIEW when db.collection is a view. */
    async assertNotView(db: string, collection: string): Promise<void> {
      if (await isView(db, collection)) throw new AppError('NAMESPACE_IS_VIEW');
    },
  };
}

export type ViewCheck = ReturnType<typeof createViewCheck>;

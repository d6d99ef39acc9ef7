import type { AppError } from '../src/errors.js';
import { errorCodes } from '../src/errors.js';
import type { ItemResult } from '../src/encryption/encryption-engine.js';

/** The per-item error of a batch answer: the problem fields without type and instance. */
export function itemError(error: AppError) {
  const out: { code: string; title: string; status: number; detail?: string } = {
    code: error.code,
    title: errorCodes[error.code].title,
    status: error.status,
  };
  if (error.detail !== undefined && error.status < 500) out.detail = error.detail;
  return out;
}

/** Shape batch results item by item, echoing each caller's reference. */
export function batchItems<T>(
  results: ItemResult<T>[],
  references: (string | undefined)[],
  field: string,
  present: (value: T) => unknown,
) {
  return results.map((result, index) => {
    const item: Record<string, unknown> = {};
    if (references[index] !== undefined) item.reference = references[index];
    if (result.ok) item[field] = present(result.value);
    else item.error = itemError(result.error);
    return item;
  });
}

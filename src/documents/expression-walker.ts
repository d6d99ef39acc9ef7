/**
 * Aggregation expressions ($expr, and the expressions of pipeline stages) as query analysis sees
 * them: which fields they read, and whether they run JavaScript on the server. The walker knows
 * no plan; its caller decides what a field reference may touch.
 */
import { AppError } from '../errors.js';
import { isPlainObject } from './bson-types.js';

/** Operators that run JavaScript on the server: refused everywhere, at any depth. */
export const serverSideJavaScript: ReadonlySet<string> = new Set(['$where', '$function', '$accumulator']);

/**
 * Operators that read a field named by a runtime value ($getField: {field, input} takes $$CURRENT
 * by default): which field they read cannot be known before the query runs, so they count as a
 * read of the whole document.
 */
const dynamicFieldOperators = new Set(['$getField', '$setField', '$unsetField']);

export interface ExpressionVisitor {
  /** A field path the expression reads (without its leading `$`). */
  field(path: string): void;
  /** The expression reads the whole document ($$ROOT, $$CURRENT or a dynamic field name). */
  root(): void;
}

/** Refuse server-side JavaScript anywhere in `value` (a filter, an update, a pipeline). */
export function refuseServerSideJavaScript(value: unknown): void {
  if (Array.isArray(value)) {
    for (const item of value) refuseServerSideJavaScript(item);
    return;
  }
  // A JavaScript Code value is data (an equality operand, a value to store): only these operators
  // run code, so a stored javascript value can still be found by equality.
  if (!isPlainObject(value)) return;
  for (const [key, inner] of Object.entries(value)) {
    if (serverSideJavaScript.has(key)) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${key} is not allowed: it runs JavaScript on the server.`);
    refuseServerSideJavaScript(inner);
  }
}

const sortingAccumulators = new Set(['$top', '$bottom', '$topN', '$bottomN']);

/** Visit every field an aggregation expression reads. */
export function walkExpression(expression: unknown, visitor: ExpressionVisitor): void {
  if (typeof expression === 'string') {
    if (expression.startsWith('$$')) {
      const [variable, ...rest] = expression.slice(2).split('.');
      if (variable === 'ROOT' || variable === 'CURRENT') {
        if (rest.length > 0) visitor.field(rest.join('.'));
        else visitor.root();
      }
      return;
    }
    if (expression.startsWith('$')) visitor.field(expression.slice(1));
    return;
  }
  if (Array.isArray(expression)) {
    for (const item of expression) walkExpression(item, visitor);
    return;
  }
  if (!isPlainObject(expression)) return;
  for (const [key, inner] of Object.entries(expression)) {
    if (serverSideJavaScript.has(key)) throw new AppError('QUERY_OPERATOR_NOT_ALLOWED', `${key} is not allowed: it runs JavaScript on the server.`);
    // A literal is a value, never a field path, whatever its strings look like.
    if (key === '$literal') continue;
    if (dynamicFieldOperators.has(key)) visitor.root();
    // Their sortBy names fields without a "$": sorting by one computes on it as much as reading it.
    if (sortingAccumulators.has(key) && isPlainObject(inner) && isPlainObject(inner.sortBy)) {
      for (const path of Object.keys(inner.sortBy)) visitor.field(path);
    }
    walkExpression(inner, visitor);
  }
}

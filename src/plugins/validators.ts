import { Ajv } from 'ajv';
import ajvFormats from 'ajv-formats';

/**
 * Request validation: query strings, params and headers are text, so their values are coerced to
 * the schema's types ("10" → 10); JSON bodies are not (null must not become false, or false the
 * string "false"). Unknown fields are refused, never stripped.
 */
export function buildValidator(externalSchemas: Record<string, unknown>) {
  const make = (coerceTypes: false | 'array') => {
    const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: false, strict: false });
    (ajvFormats as unknown as (ajv: Ajv) => void)(ajv);
    for (const schema of Object.values(externalSchemas)) ajv.addSchema(schema as object);
    return ajv;
  };
  const bodies = make(false);
  const text = make('array');
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) => (httpPart === 'body' ? bodies : text).compile(schema);
}

/**
 * Conformance of the update rules with MongoDB's client-side encryption spec tests (legacy suite,
 * read from the pinned Go driver module): every update, replacement and bulk request of
 * updateOne, updateMany, replaceOne, findOneAndUpdate, findOneAndReplace, bulk and badQueries is
 * checked as the proxy checks it before any write, against the spec's own schema. Where the spec
 * expects an error the proxy refuses with the matching stable code; where it expects success the
 * proxy lets the request through. A unit test: no database, no key.
 */
import t from 'tap';
import { fromEjson } from '../../src/ejson.js';
import { collectJobs } from '../../src/documents/document-crypto.js';
import { compilePlan } from '../../src/documents/encryption-plan.js';
import { createPlaintextValidator } from '../../src/documents/plaintext-validator.js';
import { planFilter } from '../../src/documents/query-rewriter.js';
import { planUpdateWrite } from '../../src/documents/update-rewriter.js';
import { AppError, type ErrorCode } from '../../src/errors.js';
import { readSpecJson } from './spec-data.js';

interface SpecOperation {
  name: string;
  arguments?: Record<string, unknown> & { requests?: SpecOperation[] };
  result?: unknown;
}
interface SpecFile {
  json_schema: Record<string, unknown>;
  tests: { description: string; operations: SpecOperation[] }[];
}

/** The spec's error messages (mongocryptd's and libmongocrypt's) and the proxy's code for each. */
const expectedCodes: [RegExp, ErrorCode][] = [
  [/Cannot query on fields encrypted with the randomized encryption/, 'QUERY_ON_RANDOM_FIELD'],
  [/\$rename between two encrypted fields must have the same metadata/, 'RENAME_ENCRYPTION_MISMATCH'],
  [/not allowed on encrypted values/, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
  [/Cannot encrypt fields below '\$' positional update operator/, 'ENCRYPTED_FIELD_NOT_WRITABLE'],
  [/Cannot encrypt element of type/, 'DOCUMENT_VALIDATION_FAILED'],
  [/^$/, 'INVALID_QUERY'],
];

const files = ['updateOne', 'updateMany', 'replaceOne', 'findOneAndUpdate', 'findOneAndReplace', 'findOneAndDelete', 'bulk', 'badQueries'];

/** What the proxy checks before a write (document-writes.ts): the filter, then the update or the replacement. */
function check(spec: SpecFile, operation: SpecOperation): void {
  const plan = compilePlan(spec.json_schema);
  const validator = createPlaintextValidator(spec.json_schema, 'spec');
  const args = operation.arguments ?? {};
  if (args.filter !== undefined) planFilter(fromEjson(args.filter), plan);
  if (args.update !== undefined) {
    const update = Array.isArray(args.update) ? args.update.map((s) => fromEjson(s)) : fromEjson(args.update);
    const result = planUpdateWrite(update, plan, args.arrayFilters === undefined ? undefined : fromEjson(args.arrayFilters));
    for (const { path, value } of result.plainWrites) {
      const problem = validator.validateAt(path, value);
      if (problem) throw new AppError('DOCUMENT_VALIDATION_FAILED', problem.message);
    }
    if (result.kind === 'operators') {
      for (const { op, path, node } of result.encrypted) {
        const container = (update as Record<string, Record<string, unknown>>)[op]!;
        collectJobs(container[path], node, path, {}, [], { object: container, name: path });
        const problem = validator.validateAt(path, container[path]);
        if (problem) throw new AppError('DOCUMENT_VALIDATION_FAILED', problem.message);
      }
    }
  }
  for (const key of ['replacement', 'document'] as const) {
    if (args[key] === undefined) continue;
    const document = fromEjson(args[key]) as Record<string, unknown>;
    if (plan) collectJobs(document, plan, '', document);
    const problem = validator.validate(document);
    if (problem) throw new AppError('DOCUMENT_VALIDATION_FAILED', problem.message);
  }
}

const writeOperations = new Set(['updateOne', 'updateMany', 'replaceOne', 'findOneAndUpdate', 'findOneAndReplace', 'findOneAndDelete', 'insertOne', 'deleteOne', 'deleteMany']);

for (const file of files) {
  t.test(`${file}.json`, async (t) => {
    const spec = readSpecJson<SpecFile>(`client-side-encryption/legacy/${file}.json`);
    let checked = 0;
    for (const test of spec.tests) {
      for (const operation of test.operations) {
        const requests = operation.name === 'bulkWrite' ? (operation.arguments?.requests ?? []) : [operation];
        for (const request of requests) {
          if (!writeOperations.has(request.name)) continue;
          // badQueries' insert cases test the document walker and the engine, not the update rules.
          if (file === 'badQueries' && request.name === 'insertOne') continue;
          const expected = (operation.result as { errorContains?: string } | undefined)?.errorContains;
          const what = `${test.description}: ${request.name} ${JSON.stringify(request.arguments).slice(0, 120)}`;
          let error: unknown;
          try {
            check(spec, request);
          } catch (err) {
            error = err;
          }
          checked++;
          if (expected === undefined) {
            t.equal(error, undefined, `${what}: accepted, as the spec expects (${(error as Error | undefined)?.message ?? ''})`);
            continue;
          }
          const code = expectedCodes.find(([pattern]) => pattern.test(expected))?.[1];
          t.ok(code, `${what}: a known spec error (${expected})`);
          t.ok(error instanceof AppError, `${what}: refused, as the spec expects "${expected}"`);
          t.equal((error as AppError | undefined)?.code, code, what);
        }
      }
    }
    t.ok(checked > 0, 'the file has write operations');
  });
}

import { AppError } from '../../src/errors.js';

/** The AppError `fn` throws (fails the test when it throws anything else, or nothing). */
export function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected an AppError, nothing was thrown');
}

/**
 * The shape of a command group (keys, schemas, rotations, jobs, clients, audit): its options for
 * node:util parseArgs, its help, and its commands; plus the checks every command makes of its
 * arguments, which fail with exit code 2 before anything is sent.
 */
import type { ParseArgsConfig } from 'node:util';
import { CliError, EXIT, type Context } from './client.js';

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface Invocation {
  ctx: Context;
  /** The positionals after the group and command names. */
  args: string[];
  values: Values;
}

export interface CommandGroup {
  name: string;
  /** One line per command, for `epx --help` and `epx <group> --help`. */
  usage: string;
  options: Options;
  /** Commands by name; a name may hold a space (`alt-names add`). */
  commands: Record<string, (run: Invocation) => Promise<number>>;
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage);
}

export function stringOf(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function stringsOf(values: Values, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : typeof value === 'string' ? [value] : [];
}

export function flag(values: Values, name: string): boolean {
  return values[name] === true;
}

/** A whole number option within bounds, or undefined when not given. */
export function integerOf(values: Values, name: string, min: number, max: number): number | undefined {
  const text = stringOf(values, name);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw usageError(`--${name} must be a whole number from ${min} to ${max}`);
  return Number(text);
}

/** The positional at `index`, or a usage error naming what is missing. */
export function required(args: string[], index: number, what: string, usage: string): string {
  const value = args[index];
  if (value === undefined || value === '') throw usageError(`name ${what}: epx ${usage}`);
  return value;
}

/** One of `allowed`, or undefined when not given. */
export function oneOf<T extends string>(values: Values, name: string, allowed: readonly T[]): T | undefined {
  const value = stringOf(values, name);
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw usageError(`--${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** A key reference: a UUID is a key id, anything else a key alt name. */
export function keyRef(value: string): { keyId: string } | { keyAltName: string } {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value) ? { keyId: value } : { keyAltName: value };
}

// Resolves SecretRefs. Deliberately separate from loading: validating a config (e.g. in CI)
// must never need, read or print the secrets it refers to.
import { readFileSync } from 'node:fs';
import type { SecretRef } from './types.js';

/** A referenced secret could not be obtained. The message names the variable or file, never the value. */
export class SecretError extends Error {
  readonly code = 'SECRET_UNAVAILABLE' as const;

  constructor(
    message: string,
    /** `env:NAME` or `file:PATH`, for logs and audit events. */
    readonly ref: string,
  ) {
    super(message);
    this.name = 'SecretError';
  }
}

/** Return the secret `ref` points at, or undefined for `{ none: true }`; throws SecretError if unavailable. */
export function resolveSecret(ref: SecretRef, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if ('none' in ref) return undefined;

  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined) throw new SecretError(`environment variable ${ref.env} is not set`, `env:${ref.env}`);
    // An empty password is almost always a deployment mistake, not a real credential.
    if (value === '') throw new SecretError(`environment variable ${ref.env} is empty`, `env:${ref.env}`);
    return value;
  }

  let text: string;
  try {
    text = readFileSync(ref.file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? 'read failed';
    throw new SecretError(`cannot read secret file ${ref.file} (${reason})`, `file:${ref.file}`);
  }
  // Editors and `echo` add a newline that is not part of the password; strip exactly one.
  const value = text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
  if (value === '') throw new SecretError(`secret file ${ref.file} is empty`, `file:${ref.file}`);
  return value;
}

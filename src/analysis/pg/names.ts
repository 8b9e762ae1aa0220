// How names appear in facts: as PostgreSQL prints them (quote_ident without the
// keyword list). A folded, plain name stays bare; anything else is double-quoted,
// so `"Users"`, `"a.b"` and `a.b` never read the same.

import { Buffer } from 'node:buffer';

const PLAIN = /^[a-z_][a-z0-9_$]*$/;

/** One identifier as PostgreSQL would print it. */
export function ident(name: string): string {
  return PLAIN.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** A dotted name from its parts, each printed with `ident`. */
export function dotted(parts: readonly string[]): string {
  let out = '';
  for (let i = 0; i < parts.length; i++) out += (i === 0 ? '' : '.') + ident(parts[i]!);
  return out;
}

// NAMEDATALEN - 1: PostgreSQL truncates longer identifiers, at a character boundary.
const MAX_NAME_BYTES = 63;

/** An identifier as PostgreSQL stores it (a name from a string, e.g. in SET search_path). */
export function truncateName(name: string): string {
  if (Buffer.byteLength(name, 'utf8') <= MAX_NAME_BYTES) return name;
  let out = '';
  let bytes = 0;
  for (const ch of name) {
    bytes += Buffer.byteLength(ch, 'utf8');
    if (bytes > MAX_NAME_BYTES) break;
    out += ch;
  }
  return out;
}

// Fingerprints and normalized texts for the audit trail, from libpg_query through the
// guarded parser pool. Both are computed on the text with its credentials scrubbed:
// libpg_query's fingerprint hashes the strings of DDL options (a role's or a server's
// password among them), so it could confirm a guessed password, and its normalization
// leaves those options in place.

import { scrubParsedSecrets } from '../secrets.js';
import { pgFingerprint, pgNormalize, pgParserLoaded } from './parser.js';

// The parser reads a C string: text after a NUL would not be seen. A lone surrogate has no UTF-8 form.
const UNREADABLE = /\0|\p{Surrogate}/u;

function readable(sql: string, fn: string): boolean {
  if (!pgParserLoaded()) throw new Error(`${fn} called before the PostgreSQL parser was loaded: await loadPgParser() first`);
  return typeof sql === 'string' && !UNREADABLE.test(sql);
}

/**
 * A 16-hex-digit fingerprint shared by texts that differ only in literals, white space,
 * comments or keyword case; null when the text does not parse (or the parser is restarting).
 */
export function fingerprintPg(sql: string): string | null {
  return readable(sql, 'fingerprintPg') ? pgFingerprint(scrubParsedSecrets(sql)) : null;
}

/**
 * `sql` with its constants replaced by $1, $2... where libpg_query's normalization reaches
 * them (DML, SET, role and user-mapping options; not most other DDL options, which stay as
 * written), and credential-bearing literals and comments replaced by '***' wherever they
 * are; null when the text does not parse (or the parser is restarting).
 */
export function normalizePg(sql: string): string | null {
  return readable(sql, 'normalizePg') ? pgNormalize(scrubParsedSecrets(sql)) : null;
}

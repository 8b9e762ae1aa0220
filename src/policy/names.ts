// Patterns for dotted SQL names (tables, columns, functions), compiled to regexes
// over names as facts print them: PostgreSQL's quote_ident form, where a plain
// lower-case identifier is bare and anything else is double-quoted (`"Users"`,
// `"a.b"`, `"alice@example.com"`). Matching the printed form directly keeps the hot
// path free of any parsing or allocation.
//
// A pattern is written like a SQL name: parts separated by dots; an unquoted part is
// a glob folded to lower case, as SQL folds unquoted identifiers; a double-quoted
// part is one exact name (`public."Users"`). A bare `*` in facts is no name at all
// but "unknown" (a schema under an unknown search_path, every table of a schema, the
// columns of SELECT *): deny-side regexes accept it for any part, allow-side ones
// only for a part that is `*` itself.

import { expandBraces, GlobError } from './glob.js';

/** One part of a dotted pattern. */
export interface NamePart {
  /** The name (unquoted, unescaped) or the folded glob text. */
  text: string;
  /** Double-quoted in the pattern: an exact name, no globbing, no folding. */
  quoted: boolean;
}

const PLAIN = /^[a-z_][a-z0-9_$]*$/;
const BARE_CHARS = /^[a-z0-9_$]*$/;
/** Any printed identifier: bare, or quoted with "" for a quote. */
export const ANY_IDENT = '(?:[^."]+|"(?:[^"]|"")*")';

/** Splits a pattern at unquoted dots (folding unquoted parts unless told not to); throws GlobError for bad quoting or empty parts. */
export function splitName(pattern: string, fold = true): NamePart[] {
  const parts: NamePart[] = [];
  let i = 0;
  while (i <= pattern.length) {
    if (pattern[i] === '"') {
      let text = '';
      i++;
      for (;;) {
        if (i >= pattern.length) throw new GlobError(`"${pattern}": unclosed double quote`);
        if (pattern[i] === '"') {
          if (pattern[i + 1] === '"') { text += '"'; i += 2; continue; }
          i++;
          break;
        }
        text += pattern[i++];
      }
      if (text === '') throw new GlobError(`"${pattern}": empty quoted name`);
      if (i < pattern.length && pattern[i] !== '.') throw new GlobError(`"${pattern}": a quoted name must be a whole part`);
      parts.push({ text, quoted: true });
    } else {
      let j = i;
      while (j < pattern.length && pattern[j] !== '.') {
        if (pattern[j] === '"') throw new GlobError(`"${pattern}": a quoted name must be a whole part`);
        if (pattern[j] === '{') {
          const end = pattern.indexOf('}', j);
          if (end < 0) throw new GlobError(`"${pattern}": unclosed {`);
          if (pattern.slice(j, end).includes('.')) throw new GlobError(`"${pattern}": {a,b} alternatives cannot contain a dot; write one per part`);
          j = end;
        }
        j++;
      }
      const text = pattern.slice(i, j);
      if (text === '') throw new GlobError(`"${pattern}": empty part`);
      parts.push({ text: fold ? text.toLowerCase() : text, quoted: false });
      i = j;
    }
    i++; // the dot
  }
  return parts;
}

/** True when the part is `*`: any name, and also the unknown `*`. */
export function isWildcard(p: NamePart): boolean {
  return !p.quoted && /^\*+$/.test(p.text);
}

/** The pattern as people read it, each part as written (used by lint to compare). */
export function partsKey(parts: readonly NamePart[]): string {
  return parts.map((p) => (p.quoted ? `"${p.text.replaceAll('"', '""')}"` : p.text)).join('.');
}

/** Regex source for a part against printed identifiers; `unknown` also accepts the bare `*`. */
export function partSource(p: NamePart, unknown: boolean): string {
  const star = unknown || isWildcard(p) ? '|\\*' : '';
  if (p.quoted) return `(?:${escapeRe(printIdent(p.text))}${star})`;
  if (isWildcard(p)) return `(?:${ANY_IDENT}|\\*)`;
  const alternatives = expandBraces(p.text);
  if (alternatives.length > 256) throw new GlobError(`"${p.text}": too many {a,b} alternatives`);
  return `(?:${alternatives.map(globPrinted).join('|')}${star})`;
}

/** A name as facts print it (quote_ident without the keyword list). */
export function printIdent(name: string): string {
  return PLAIN.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

// One brace-free glob -> its printed forms: bare when every literal character can be
// bare, and always quoted (a name may need quotes for characters the glob matches).
function globPrinted(glob: string): string {
  let bare = '';
  let quoted = '';
  let literal = '';
  let wild = false;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' || c === '?') {
      wild = true;
      bare += c === '*' ? '[^."]*' : '[^."]';
      quoted += c === '*' ? '(?:[^"]|"")*' : '(?:[^"]|"")';
      continue;
    }
    const lit = c === '\\' ? glob[++i] : c;
    if (lit === undefined) throw new GlobError(`"${glob}": ends with a lone backslash`);
    if (c !== '\\' && (lit === '}' || lit === '{')) throw new GlobError(`"${glob}": unbalanced braces`);
    literal += lit;
    bare += escapeRe(lit);
    quoted += escapeRe(lit === '"' ? '""' : lit);
  }
  // A literal name prints exactly one way; a glob may match names printed either way.
  if (!wild) return escapeRe(printIdent(literal));
  return BARE_CHARS.test(literal) ? `${bare}|"${quoted}"` : `"${quoted}"`;
}

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

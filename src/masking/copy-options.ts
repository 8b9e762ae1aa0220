// What a COPY statement moves and how its rows are written, read from libpg_query's
// AST so that the relay can mask COPY ... TO STDOUT rows. The grammar folds the
// legacy option syntax (`WITH CSV HEADER DELIMITER AS ';'`, `BINARY`) into the same
// DefElem options as `WITH (FORMAT csv, ...)`, so one reading serves both.
//
// Where PostgreSQL would reject an option value, the reading leans towards masking:
// an unreadable HEADER counts as false (a header row masked is harmless, a data row
// passed as a header is not) and the format name is matched case-insensitively.

import { Buffer } from 'node:buffer';
import { bodyOf, isObj, items, names, str, sval, unwrap, type Obj } from '../analysis/pg/ast.js';
import { parsePg } from '../analysis/pg/parser.js';

/** How COPY writes rows. quote and escape matter only for csv. */
export interface CopyFormat {
  kind: 'text' | 'csv' | 'binary';
  delimiter: string;
  null: string;
  quote: string;
  escape: string;
  header: boolean;
}

/** One COPY statement as far as masking needs it. */
export interface CopyStatement {
  direction: 'to' | 'from';
  target: 'stdout' | 'stdin' | 'file' | 'program';
  /** The table, or null for COPY (query). */
  relation: { schema: string | null; name: string } | null;
  /** The explicit column list, folded as PostgreSQL folds identifiers. */
  columns: string[] | null;
  /** The inner query's text for COPY (query), or null when it cannot be sliced out. */
  query: string | null;
  format: CopyFormat;
  /** The ENCODING option: rows are then in that encoding, not the client's. */
  encoding: string | null;
}

/** Parses `sql` as a single COPY statement; null for anything else or text that does not parse. */
export function copyOptions(sql: string): CopyStatement | null {
  // The keyword is always spelled out; the empty text is kept from the parser, which
  // fails on it in a way that costs its instance.
  if (!/copy/i.test(sql)) return null;
  const parsed = parsePg(sql);
  if (!parsed.ok || !isObj(parsed.tree)) return null;
  const stmts = items(parsed.tree.stmts);
  if (stmts.length !== 1 || !isObj(stmts[0])) return null;
  const raw = stmts[0];
  const b = unwrap(raw.stmt, 'CopyStmt');
  if (!b) return null;
  const options = readOptions(b.options);
  if (!options) return null;
  const direction = b.is_from === true ? 'from' : 'to';
  const file = str(b.filename);
  const target = b.is_program === true ? 'program' : file !== null ? 'file' : direction === 'to' ? 'stdout' : 'stdin';
  let relation: CopyStatement['relation'] = null;
  const rv = isObj(b.relation) ? bodyOf(b.relation, 'RangeVar') : null;
  if (rv) relation = { schema: str(rv.schemaname), name: str(rv.relname) ?? '' };
  const attlist = items(b.attlist);
  const columns = attlist.length > 0 ? names(attlist) : null;
  let query: string | null = null;
  if (b.query !== undefined) {
    // Locations are byte offsets into the whole text; the statement spans stmt_len bytes (0: to the end).
    const bytes = Buffer.from(sql, 'utf8');
    const start = typeof raw.stmt_location === 'number' ? raw.stmt_location : 0;
    const len = typeof raw.stmt_len === 'number' && raw.stmt_len > 0 ? raw.stmt_len : bytes.length - start;
    query = innerQuery(bytes.subarray(start, start + len).toString('utf8'), start, b.query);
  }
  return { direction, target, relation, columns, query, format: options.format, encoding: options.encoding };
}

function readOptions(list: unknown): { format: CopyFormat; encoding: string | null } | null {
  const given = new Map<string, unknown>();
  for (const o of items(list)) {
    const d = unwrap(o, 'DefElem');
    const name = d ? str(d.defname) : null;
    if (d && name !== null) given.set(name, d.arg);
  }
  const kindText = given.has('format') ? (optionString(given.get('format')) ?? '').toLowerCase() : 'text';
  if (kindText !== 'text' && kindText !== 'csv' && kindText !== 'binary') return null;
  const kind: CopyFormat['kind'] = kindText;
  const csv = kind === 'csv';
  const pick = (name: string, fallback: string): string =>
    given.has(name) ? (optionString(given.get(name)) ?? fallback) : fallback;
  const quote = pick('quote', '"');
  const format: CopyFormat = {
    kind,
    delimiter: pick('delimiter', csv ? ',' : '\t'),
    null: pick('null', csv ? '' : '\\N'),
    quote,
    escape: pick('escape', quote),
    header: given.has('header') && headerOn(given.get('header')),
  };
  const encoding = given.has('encoding') ? optionString(given.get('encoding')) : null;
  return { format, encoding };
}

// defGetString: the text of a String, Integer, Float or Boolean argument.
function optionString(arg: unknown): string | null {
  const s = sval(arg);
  if (s !== null) return s;
  const i = unwrap(arg, 'Integer');
  if (i) return String(typeof i.ival === 'number' ? i.ival : 0);
  const f = unwrap(arg, 'Float');
  if (f) return str(f.fval);
  const bool = unwrap(arg, 'Boolean');
  if (bool) return bool.boolval === true ? 'true' : 'false';
  return null;
}

// defGetCopyHeaderChoice: no argument, 1, true, on and MATCH turn the header on.
function headerOn(arg: unknown): boolean {
  if (arg === undefined || arg === null) return true;
  const value = (optionString(arg) ?? '').toLowerCase();
  return value === '1' || value === 'true' || value === 'on' || value === 'match';
}

// The text between COPY's opening parenthesis and its match, checked against the
// locations the parser gave the inner query's nodes. `stmt` starts at byte `base`.
function innerQuery(stmt: string, base: number, node: unknown): string | null {
  const open = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[^]*?\*\/)*copy(?:\s|--[^\n]*(?:\n|$)|\/\*[^]*?\*\/)*\(/i.exec(stmt);
  if (!open) return null;
  const from = open[0].length;
  const close = matchingParen(stmt, from);
  if (close < 0) return null;
  const lo = base + Buffer.byteLength(stmt.slice(0, from), 'utf8');
  const hi = base + Buffer.byteLength(stmt.slice(0, close), 'utf8');
  for (const at of locations(node)) if (at < lo || at >= hi) return null;
  const text = stmt.slice(from, close).trim();
  return text === '' ? null : text;
}

const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

// The index of the `)` closing the parenthesis opened just before `from`, skipping
// strings, quoted identifiers, dollar quotes and comments; -1 when there is none.
function matchingParen(s: string, from: number): number {
  let depth = 1;
  let i = from;
  while (i < s.length) {
    const c = s[i]!;
    const prev = i > 0 ? s[i - 1]! : ' ';
    if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
    else if (c === "'") {
      const backslashes = (prev === 'e' || prev === 'E') && (i < 2 || !IDENT_CHAR.test(s[i - 2]!));
      i = endOfQuoted(s, i + 1, "'", backslashes);
      continue;
    } else if (c === '"') {
      i = endOfQuoted(s, i + 1, '"', false);
      continue;
    } else if (c === '-' && s[i + 1] === '-') {
      const nl = s.indexOf('\n', i);
      i = nl < 0 ? s.length : nl + 1;
      continue;
    } else if (c === '/' && s[i + 1] === '*') {
      i = endOfComment(s, i + 2);
      continue;
    } else if (c === '$' && !IDENT_CHAR.test(prev)) {
      DOLLAR.lastIndex = i;
      const tag = DOLLAR.exec(s);
      if (tag) {
        const end = s.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? s.length : end + tag[0].length;
        continue;
      }
    }
    i++;
  }
  return -1;
}

function endOfQuoted(s: string, i: number, q: string, backslashes: boolean): number {
  while (i < s.length) {
    const c = s[i]!;
    if (backslashes && c === '\\') i += 2;
    else if (c === q && s[i + 1] === q) i += 2;
    else if (c === q) return i + 1;
    else i++;
  }
  return i;
}

// Block comments nest in PostgreSQL.
function endOfComment(s: string, i: number): number {
  let depth = 1;
  while (i < s.length && depth > 0) {
    if (s[i] === '/' && s[i + 1] === '*') {
      depth++;
      i += 2;
    } else if (s[i] === '*' && s[i + 1] === '/') {
      depth--;
      i += 2;
    } else i++;
  }
  return i;
}

function locations(node: unknown, out: number[] = []): number[] {
  if (Array.isArray(node)) for (const n of node) locations(n, out);
  else if (isObj(node)) {
    for (const [k, v] of Object.entries(node as Obj)) {
      if (k === 'location' && typeof v === 'number' && v >= 0) out.push(v);
      else locations(v, out);
    }
  }
  return out;
}

// Fingerprints and normalized texts for the audit trail, from libpg_query through the
// guarded parser pool. Both are computed on the text with its credentials scrubbed:
// libpg_query's fingerprint hashes the strings of DDL options (a role's or a server's
// password among them) and the names in expressions (set_config('app.password',
// hunter2)), so it could confirm a guessed password, and its normalization leaves those
// in place.

import { afterBlank, credentialName, mayCallSetConfig, scrubParsedSecrets, sqlTokenEnd } from '../secrets.js';
import { constString, isObj, items, names, str, unwrap, type Obj } from './ast.js';
import { parsePg, pgFingerprint, pgNormalize, pgParserLoaded } from './parser.js';

// The parser reads a C string: text after a NUL would not be seen. A lone surrogate has no UTF-8 form.
const UNREADABLE = /\0|\p{Surrogate}/u;

function readable(sql: string, fn: string): boolean {
  if (!pgParserLoaded()) throw new Error(`${fn} called before the PostgreSQL parser was loaded: await loadPgParser() first`);
  return typeof sql === 'string' && !UNREADABLE.test(sql);
}

// The set_config values go by the parse tree, before the scanner replaces the literal
// that names the setting (which would then name none); null when the text does not parse.
function scrubbed(sql: string): string | null {
  const text = scrubConfigValues(sql);
  return text === null ? null : scrubParsedSecrets(text);
}

/**
 * A 16-hex-digit fingerprint shared by texts that differ only in literals, white space,
 * comments or keyword case; null when the text does not parse (or the parser is restarting).
 */
export function fingerprintPg(sql: string): string | null {
  const text = readable(sql, 'fingerprintPg') ? scrubbed(sql) : null;
  return text === null ? null : pgFingerprint(text);
}

/**
 * `sql` with its constants replaced by $1, $2... where libpg_query's normalization reaches
 * them (DML, SET, role and user-mapping options; not most other DDL options, which stay as
 * written), and credential-bearing literals and comments replaced by '***' wherever they
 * are; null when the text does not parse (or the parser is restarting).
 */
export function normalizePg(sql: string): string | null {
  const text = readable(sql, 'normalizePg') ? scrubbed(sql) : null;
  return text === null ? null : pgNormalize(text);
}

/**
 * `text` with the value of every set_config call that may set a credential replaced by
 * '***': one whose setting is named like a credential, or named by anything but a string
 * literal. Normalization replaces constants and parameters, which are kept; a value
 * written as an identifier (`hunter2`, `"hunter2"`), an expression or a call would stay.
 * Null when the text does not parse or its calls cannot be read back from it.
 */
function scrubConfigValues(text: string): string | null {
  if (!mayCallSetConfig(text)) return text;
  const parsed = parsePg(text);
  if (!parsed.ok) return null;
  const calls = funcCalls(parsed.tree).filter((call) => configValueArgs(call).length > 0);
  if (calls.length === 0) return text;
  // One pass each over the text, however many calls: a text may hold thousands.
  const starts = charIndexes(text, calls.map((call) => (typeof call.location === 'number' ? call.location : -1)));
  const groups = parenGroups(text);
  const spans: [number, number][] = [];
  for (const call of calls) {
    const found = argSpans(text, call, starts, groups);
    if (found === null) return null;
    for (const span of found) spans.push(span);
  }
  return replaceSpans(text, spans, "'***'");
}

/** Every FuncCall of a parse tree, wrapped or bare (CALL's funccall), walked without recursion: trees nest deep. */
function funcCalls(tree: unknown): Obj[] {
  const calls: Obj[] = [];
  const stack: unknown[] = [tree];
  while (stack.length > 0) {
    const x = stack.pop();
    if (Array.isArray(x)) for (const item of x as unknown[]) stack.push(item);
    else if (isObj(x)) {
      for (const k in x) {
        const v = x[k];
        if ((k === 'FuncCall' || k === 'funccall') && isObj(v)) calls.push(v);
        if (typeof v === 'object') stack.push(v);
      }
    }
  }
  return calls;
}

/**
 * The arguments of `call`, if a set_config(setting_name, new_value, is_local), whose
 * text must go: when the setting is named like a credential or by anything but a
 * string literal, every other argument that is neither a constant nor a parameter.
 */
function configValueArgs(call: Obj): number[] {
  const fn = names(call.funcname);
  if (fn === null || fn[fn.length - 1]?.toLowerCase() !== 'set_config') return [];
  const args = items(call.args);
  const setting = args.findIndex((a, k) => {
    const named = unwrap(a, 'NamedArgExpr');
    return named ? str(named.name)?.toLowerCase() === 'setting_name' : k === 0;
  });
  const name = setting < 0 ? null : constString(argValue(args[setting]));
  if (name !== null && !credentialName(name)) return [];
  const scrub: number[] = [];
  args.forEach((a, k) => {
    const v = argValue(a);
    if (k !== setting && !unwrap(v, 'A_Const') && !unwrap(v, 'ParamRef')) scrub.push(k);
  });
  return scrub;
}

/** An argument's expression, without its name in named notation (`new_value => x`). */
function argValue(a: unknown): unknown {
  return unwrap(a, 'NamedArgExpr')?.arg ?? a;
}

/**
 * The text spans of the arguments of `call` that configValueArgs names, read from the
 * call's location (`starts`: UTF-16 index by libpg_query's byte offset): the function's
 * name, `(`, then its arguments (`groups`). Null when the text there does not match the tree.
 */
function argSpans(text: string, call: Obj, starts: Map<number, number>, groups: Map<number, number[]>): [number, number][] | null {
  const start = typeof call.location === 'number' ? starts.get(call.location) : undefined;
  const open = start === undefined ? -1 : callOpen(text, start);
  const group = groups.get(open);
  const tree = items(call.args);
  // set_config() has no argument, not one empty one.
  if (group === undefined || group.length !== Math.max(tree.length, 1)) return null;
  return configValueArgs(call).map((k) => {
    const from = afterBlank(text, k === 0 ? open + 1 : group[k - 1]! + 1);
    return [unwrap(tree[k], 'NamedArgExpr') ? namedValueStart(text, from) : from, group[k]!];
  });
}

/** The UTF-16 index of each UTF-8 byte offset (libpg_query's locations) that starts a character. */
function charIndexes(text: string, offsets: number[]): Map<number, number> {
  const found = new Map<number, number>();
  const wanted = [...new Set(offsets)].filter((o) => o >= 0).sort((a, b) => a - b);
  let k = 0;
  let bytes = 0;
  for (let i = 0; k < wanted.length; i++) {
    while (k < wanted.length && wanted[k]! < bytes) k++;
    if (wanted[k] === bytes) found.set(bytes, i);
    if (i >= text.length) break;
    const c = text.charCodeAt(i);
    // A surrogate pair is 4 bytes, counted at its first half.
    bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : (c & 0xfc00) === 0xd800 ? 4 : (c & 0xfc00) === 0xdc00 ? 0 : 3;
  }
  return found;
}

/** The `(` of the call whose name starts at `at` (`pg_catalog . "set_config" (`); -1 if not found. */
function callOpen(text: string, at: number): number {
  let i = afterBlank(text, at);
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x28) return i;
    const end = c === 0x2e ? i + 1 : sqlTokenEnd(text, i);
    if (end === i) return -1;
    i = afterBlank(text, end);
  }
  return -1;
}

/**
 * Each `(` of a text that parses, by position: the commas directly inside it, then its
 * `)`. Read as PostgreSQL reads the text, outside literals, quoted identifiers and
 * comments; a comma inside brackets (`ARRAY['a', 'b']`) belongs to them.
 */
function parenGroups(text: string): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  const open: number[][] = [];
  let i = 0;
  while (i < text.length) {
    const skip = sqlTokenEnd(text, i);
    if (skip > i) {
      i = skip;
      continue;
    }
    const c = text.charCodeAt(i);
    if (c === 0x28 || c === 0x5b) {
      const group: number[] = [];
      if (c === 0x28) groups.set(i, group);
      open.push(group);
    } else if (c === 0x29 || c === 0x5d) open.pop()?.push(i);
    else if (c === 0x2c) open[open.length - 1]?.push(i);
    i++;
  }
  return groups;
}

/** Where the value of the named argument at `at` (`name => value` or `name := value`) starts. */
function namedValueStart(text: string, at: number): number {
  const i = afterBlank(text, sqlTokenEnd(text, at));
  const c = text.charCodeAt(i);
  return (c === 0x3d && text.charCodeAt(i + 1) === 0x3e) || (c === 0x3a && text.charCodeAt(i + 1) === 0x3d) ? afterBlank(text, i + 2) : at;
}

/** `text` with each span replaced by `by`; a span inside one replaced before it goes with it. */
function replaceSpans(text: string, spans: [number, number][], by: string): string {
  spans.sort((a, b) => a[0] - b[0]);
  let out = '';
  let copied = 0;
  for (const [from, to] of spans) {
    if (from < copied) continue;
    out += text.slice(copied, from) + by;
    copied = to;
  }
  return out + text.slice(copied);
}

// Credentials in SQL text, so that the audit trail never records one: which names and
// strings carry a credential (the analyzer marks such statements `secret`), and
// scrubbing, which replaces each credential-bearing literal with '***' (in text that
// does not parse, a value out of quotes too, and what the parser's error quotes of
// it). The scanner reads text as PostgreSQL's lexer does with standard_conforming_strings
// on (dbward refuses sessions that turn it off), looks at each character a bounded
// number of times and uses no backtracking regex on unbounded spans: hostile text costs
// linear time.

// Option and setting names whose value is a credential: password, sslpassword,
// odbc_pwd, client_secret, api_token, api_key... `passfile` names a file, not a credential.
const CREDENTIAL_NAME = /passw(?:or)?d|pwd$|secret|token$|api_?key$|private_?key$/i;
const NOT_CREDENTIAL: ReadonlySet<string> = new Set(['password_required', 'password_encryption']);
// A password in a libpq/ODBC connection string (`password=`, `sslpassword =`, `PWD=`).
const CONNINFO_PASSWORD = /(?:passw(?:or)?d|\bpwd)\s*=/i;
// A URI with a password in its userinfo (`postgresql://user:secret@host`). The first
// class excludes ':' so that a failed match never backtracks over more than one run.
const URI_PASSWORD = /:\/\/[^\s/?#@:]*:[^\s/?#@]*@/;
// `/etc/passwd` is no credential: passwd and pwd count only as `name=`.
const MENTION = /password|(?:passwd|\bpwd)\s*=/i;

/** Whether an option or setting named `name` holds a credential (`password`, `sslpassword`, `odbc_pwd`, `client_secret`, `api_token`). */
export function credentialName(name: string): boolean {
  // set_config(' app.pwd ', ...) names the same setting to a reader, if not to the server.
  const n = name.trim();
  return CREDENTIAL_NAME.test(n) && !NOT_CREDENTIAL.has(n.toLowerCase());
}

/** Whether a string value holds a connection string or URI with a password. */
export function conninfoCredential(s: string): boolean {
  return CONNINFO_PASSWORD.test(s) || URI_PASSWORD.test(s);
}

/** Whether code or text mentions a password at all (DO and function bodies, comments). */
export function mentionsCredential(s: string): boolean {
  return MENTION.test(s) || URI_PASSWORD.test(s);
}

// A credential name anywhere in a text: CREDENTIAL_NAME without its anchors, derived so the two never drift apart.
const CREDENTIAL_WORD = new RegExp(CREDENTIAL_NAME.source.replaceAll('$', ''), 'i');
// A text that may call set_config, whose setting may be named by an expression that
// names no credential in the text (`set_config($1, ...)`); U&"..." may spell it too.
const MAY_SET_CONFIG = /set_config|u&"/i;

/** Whether `text` may call set_config: it spells the name, or may spell it with U&"..." escapes. */
export function mayCallSetConfig(text: string): boolean {
  return MAY_SET_CONFIG.test(text);
}

/**
 * `message`, an error about a text that does not parse (libpg_query's `syntax error at
 * or near "..."`), fit to record beside the scrubbed text: when `text` may carry a
 * credential, what the message quotes or puts in parentheses becomes ***.
 */
export function scrubMessage(text: string, message: string): string {
  if (typeof message !== 'string') return '';
  // The quoted token may be the very credential the scrubber removed from the text, or
  // a part of it that the scrubber cannot tell apart: drop it whenever one may be there.
  if (typeof text === 'string' && !CREDENTIAL_WORD.test(text) && !URI_PASSWORD.test(text) && !MAY_SET_CONFIG.test(text)) return message;
  return between(between(message, '"', '"'), '(', ')');
}

/** `m` with everything from the first `open` to the last `close` replaced by ***. */
function between(m: string, open: string, close: string): string {
  const from = m.indexOf(open);
  if (from < 0) return m;
  const to = m.lastIndexOf(close);
  return `${m.slice(0, from + 1)}***${to > from ? m.slice(to) : close}`;
}

/**
 * `text` with credentials replaced by '***', for a text the parser could not read:
 * the value after a credential name (PASSWORD 'x', OPTIONS (password 'x'), SET
 * x.password = 'x'; any quoting, unterminated, or out of quotes), every literal or
 * comment that mentions a password (a connection string with password=), and the
 * literal after one of these. A value out of quotes runs to the next `,`, `)` or `;`:
 * a password typed without quotes may hold anything; so does a quoted value that goes
 * on (`'hun' || 'ter2'`, `'x'::text`). The value given to set_config of a credential
 * goes the same way, and every argument of a set_config whose setting is not named by
 * one plain literal (`set_config($1, 'x')`). Where the text may have been
 * written for backslash escapes, a replaced literal runs to the later of the two
 * possible ends. Never throws.
 */
export function scrubSecrets(text: string): string {
  return typeof text === 'string' ? scrub(text, true) : '';
}

/**
 * `text` with credential-bearing literals replaced by '***' as scrubSecrets does, for a
 * text that parses: read exactly as PostgreSQL reads it, so the result still parses.
 */
export function scrubParsedSecrets(text: string): string {
  return scrub(text, false);
}

const QUOTE = 0x27;
const DQUOTE = 0x22;
const DOLLAR = 0x24;
const BACKSLASH = 0x5c;
const IDENT = /[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/y;
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

/**
 * What the scanner expects next. `set`: after SET (and SESSION, LOCAL or a qualifier),
 * a setting's name. `name`: after a credential name, its value; `setting`: the same
 * after SET, where TO also introduces the value. `secret`: a literal here continues a
 * credential (after one, or after a `,`). `value`: after `name =`, a literal or a bare
 * value that is a credential.
 */
type Next = 'plain' | 'set' | 'name' | 'setting' | 'secret' | 'value';

/** A part of a text to replace: [from, to) by `by`. */
interface Span {
  from: number;
  to: number;
  by: string;
}

/** Whether a literal read next is a credential. */
function pending(next: Next): boolean {
  return next !== 'plain' && next !== 'set';
}

function scrub(text: string, tolerant: boolean): string {
  const n = text.length;
  let out = '';
  let copied = 0;
  const replace = (from: number, to: number, by: string): void => {
    out += text.slice(copied, from) + by;
    copied = to;
  };
  let next: Next = 'plain';
  // What a set_config call read earlier leaves to scrub further on (text that does not parse).
  let held: Span | null = null;
  let i = 0;
  while (i < n) {
    if (held !== null && i >= held.from) {
      if (held.to > copied) replace(Math.max(held.from, copied), held.to, held.by);
      i = Math.max(i, held.to);
      next = 'plain';
      held = null;
      continue;
    }
    const c = text.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    const c1 = text.charCodeAt(i + 1);
    // Comments: PostgreSQL starts one at `--` or `/*`, even inside an operator.
    if ((c === 0x2d && c1 === 0x2d) || (c === 0x2f && c1 === 0x2a)) {
      const block = c === 0x2f;
      const end = block ? commentEnd(text, i) : lineEnd(text, i);
      if (mentionsCredential(text.slice(i, end))) replace(i, end, block ? '/* *** */' : '-- ***');
      i = end;
      continue;
    }
    if (tolerant && next === 'value') {
      // `ALTER SYSTEM SET app.password = hunter2`, `... = 'hun' || 'ter2'`.
      const v = tolerantValue(text, i);
      // After a literal, one continued on the next line is the same value.
      next = v !== null && v.by !== '***' ? 'secret' : 'plain';
      if (v !== null) {
        replace(v.from, v.to, v.by);
        i = v.to;
        continue;
      }
    }

    // A literal: [open, end) with the text between its quotes.
    let open = -1;
    let end = -1;
    let body = '';
    let escapes = false;
    let id: string | undefined;
    if (c === QUOTE) open = i;
    else if (c === DOLLAR) {
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(text)?.[0];
      if (tag !== undefined) {
        const close = text.indexOf(tag, i + tag.length);
        open = i;
        end = close < 0 ? n : close + tag.length;
        body = text.slice(i + tag.length, close < 0 ? n : close);
      }
    } else if (identStart(c)) {
      IDENT.lastIndex = i;
      id = IDENT.exec(text)?.[0];
      // E'...', N'...', B'...', X'...', U&'...': the prefix stays, the quoted part goes.
      const p = id?.length === 1 ? id.toLowerCase() : '';
      if ((p === 'e' || p === 'n' || p === 'b' || p === 'x') && c1 === QUOTE) {
        open = i + 1;
        escapes = p === 'e';
      } else if (p === 'u' && c1 === 0x26 && text.charCodeAt(i + 2) === QUOTE) open = i + 2;
    }
    if (open >= 0) {
      if (end < 0) {
        end = quotedEnd(text, open, escapes);
        body = text.slice(open + 1, end);
      }
      if (!pending(next) && !mentionsCredential(body)) {
        i = end;
        continue;
      }
      // A client that wrote backslash escapes meant the literal to end later.
      if (tolerant && !escapes && text.charCodeAt(open) === QUOTE) end = Math.max(end, quotedEnd(text, open, true));
      replace(open, end, "'***'");
      next = 'secret';
      i = end;
      continue;
    }
    if (next === 'value') {
      // A value out of quotes in text that parses (`ALTER SYSTEM SET app.password =
      // hunter2`), which keeps parsing: only a whole identifier or number becomes a
      // literal, never a function's name or a parameter, and one that does not is read
      // again as itself.
      end = c === DQUOTE ? quotedEnd(text, i, false) : tokenEnd(text, i, id);
      if (end > i && valueEnds(text, end) && id?.toLowerCase() !== 'default') {
        replace(i, end, "'***'");
        next = 'secret';
        i = end;
        continue;
      }
      next = 'plain';
    } else if (tolerant && (next === 'name' || next === 'setting') && bareValue(c, id)) {
      // `PASSWORD hunter2`, `PASSWORD "hunter2"`: typos the parser refuses, which must
      // not put the password in the trail all the same.
      end = valueEnd(text, i);
      replace(i, end, '***');
      next = 'plain';
      i = end;
      continue;
    }

    // A quoted identifier ("password" or U&"..."): a name like any other.
    const from = c === DQUOTE ? i : (id === 'u' || id === 'U') && c1 === 0x26 && text.charCodeAt(i + 2) === DQUOTE ? i + 2 : -1;
    const quoted = from >= 0 ? quotedIdent(text, from) : null;
    const w = quoted?.name ?? id;
    if (w !== undefined) {
      end = quoted?.end ?? i + w.length;
      next = word(w, next, tolerant, text.charCodeAt(end) === 0x2e);
      if (tolerant && held === null && w.toLowerCase() === 'set_config') held = configCall(text, end);
      i = end;
    } else {
      // `name = 'x'` and `f('app.password', 'x')` keep a credential pending; so does
      // the `.` of a qualified setting name.
      if (c === 0x3d && pending(next)) next = 'value';
      else if (c === 0x2c) next = pending(next) ? 'secret' : 'plain';
      else if (c !== 0x2e || next !== 'set') next = 'plain';
      i++;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/**
 * What a word (identifier or keyword) makes of a pending credential. `qualifier`: a
 * `.` follows it, so a setting's name goes on.
 */
function word(w: string, next: Next, tolerant: boolean, qualifier: boolean): Next {
  if (credentialName(w)) return next === 'set' ? 'setting' : 'name';
  const lower = w.toLowerCase();
  // `SET app.password TO x` names its value; `RENAME COLUMN password TO x` does not,
  // and text that parses must keep parsing.
  if (lower === 'to' && (next === 'name' || next === 'setting' || next === 'secret')) return tolerant || next === 'setting' ? 'value' : 'secret';
  if (lower === 'set') return 'set';
  if (next === 'set' && (qualifier || lower === 'session' || lower === 'local')) return 'set';
  return 'plain';
}

// Words read as SQL, not as a password typed out of quotes, right after a credential
// name: PostgreSQL's reserved keywords (`SELECT password FROM users`, `PASSWORD NULL`)
// and the operators spelled as words that may follow a column.
const NOT_A_VALUE: ReadonlySet<string> = new Set([
  'all', 'analyse', 'analyze', 'and', 'any', 'array', 'as', 'asc', 'asymmetric', 'between', 'both', 'case', 'cast',
  'check', 'collate', 'column', 'constraint', 'create', 'cross', 'current_catalog', 'current_date', 'current_role',
  'current_time', 'current_timestamp', 'current_user', 'default', 'deferrable', 'desc', 'distinct', 'do', 'else', 'end',
  'except', 'false', 'fetch', 'for', 'foreign', 'from', 'full', 'grant', 'group', 'having', 'ilike', 'in', 'initially',
  'inner', 'intersect', 'into', 'is', 'isnull', 'join', 'lateral', 'leading', 'left', 'like', 'limit', 'localtime',
  'localtimestamp', 'natural', 'not', 'notnull', 'null', 'offset', 'on', 'only', 'or', 'order', 'outer', 'overlaps',
  'placing', 'primary', 'references', 'returning', 'right', 'select', 'session_user', 'similar', 'some', 'symmetric',
  'system_user', 'table', 'then', 'to', 'trailing', 'true', 'union', 'unique', 'user', 'using', 'variadic', 'when',
  'where', 'window', 'with',
]);

/** Whether what starts at `c` (the word `id`, if one) after a credential name is its value, out of quotes. */
function bareValue(c: number, id: string | undefined): boolean {
  // `,` `;` `(` `)` end or call, `=` introduces the value, and comments were skipped.
  if (c === 0x2c || c === 0x3b || c === 0x28 || c === 0x29 || c === 0x3d) return false;
  return id === undefined || !NOT_A_VALUE.has(id.toLowerCase());
}

function identStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** End (exclusive) of a quoted string or identifier opening at `at`; the text's end if unterminated. */
function quotedEnd(text: string, at: number, escapes: boolean): number {
  const q = text.charCodeAt(at);
  const n = text.length;
  for (let i = at + 1; i < n; i++) {
    const c = text.charCodeAt(i);
    if (escapes && c === BACKSLASH) i++;
    else if (c === q) {
      if (text.charCodeAt(i + 1) !== q) return i + 1;
      i++;
    }
  }
  return n;
}

/** End (exclusive) of a -- comment at `at`. */
function lineEnd(text: string, at: number): number {
  const end = text.indexOf('\n', at);
  return end < 0 ? text.length : end;
}

/** End (exclusive) of a /* comment at `at`; they nest. */
function commentEnd(text: string, at: number): number {
  const n = text.length;
  let depth = 0;
  for (let i = at; i < n - 1; i++) {
    const c = text.charCodeAt(i);
    const c1 = text.charCodeAt(i + 1);
    if (c === 0x2f && c1 === 0x2a) {
      depth++;
      i++;
    } else if (c === 0x2a && c1 === 0x2f) {
      i++;
      if (--depth === 0) return i + 1;
    }
  }
  return n;
}

const NUMBER = /[-+]?\.?[0-9][0-9A-Za-z_.]*/y;

/** End of the identifier `id` or the number at `at`; `at` when neither starts there. */
function tokenEnd(text: string, at: number, id: string | undefined): number {
  if (id !== undefined) return at + id.length;
  NUMBER.lastIndex = at;
  return NUMBER.test(text) ? NUMBER.lastIndex : at;
}

/** Whether only white space stands between `at` and a `,`, `;`, `)` or the end. */
function valueEnds(text: string, at: number): boolean {
  let i = at;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  const c = text.charCodeAt(i);
  return i === text.length || c === 0x2c || c === 0x3b || c === 0x29;
}

/**
 * End of a value out of quotes at `at` in text that does not parse: up to the next `,`
 * (unless not `commas`), `;` or unmatched `)` outside quotes, comments, parentheses and
 * brackets (`ARRAY['a', 'b']`), white space before it left out.
 */
function valueEnd(text: string, at: number, commas = true): number {
  const n = text.length;
  let depth = 0;
  let i = at;
  while (i < n) {
    const c = text.charCodeAt(i);
    const c1 = text.charCodeAt(i + 1);
    if (c === QUOTE) {
      i = Math.max(quotedEnd(text, i, false), quotedEnd(text, i, true));
      continue;
    }
    if (c === DQUOTE) {
      i = quotedEnd(text, i, false);
      continue;
    }
    if (c === DOLLAR) {
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(text)?.[0];
      if (tag !== undefined) {
        const close = text.indexOf(tag, i + tag.length);
        i = close < 0 ? n : close + tag.length;
        continue;
      }
    } else if ((c === 0x2d && c1 === 0x2d) || (c === 0x2f && c1 === 0x2a)) {
      i = c === 0x2d ? lineEnd(text, i) : commentEnd(text, i);
      continue;
    } else if (c === 0x28 || c === 0x5b) depth++;
    else if (c === 0x29 || c === 0x5d) {
      if (depth === 0) {
        if (c === 0x29) break;
      } else depth--;
    } else if (((c === 0x2c && commas) || c === 0x3b) && depth === 0) break;
    i++;
  }
  while (i > at && isSpace(text.charCodeAt(i - 1))) i--;
  return i;
}

/** The name a quoted identifier at `at` spells, without its quotes, and its end (exclusive). */
function quotedIdent(text: string, at: number): { name: string; end: number } {
  const end = quotedEnd(text, at, false);
  const closed = end > at + 1 && text.charCodeAt(end - 1) === DQUOTE;
  return { name: text.slice(at + 1, closed ? end - 1 : end).replaceAll('""', '"'), end };
}

/** The first position from `at` that is neither white space nor a comment. */
export function afterBlank(text: string, at: number): number {
  const n = text.length;
  let i = at;
  for (;;) {
    while (i < n && isSpace(text.charCodeAt(i))) i++;
    const c = text.charCodeAt(i);
    const c1 = text.charCodeAt(i + 1);
    if (c === 0x2d && c1 === 0x2d) i = lineEnd(text, i);
    else if (c === 0x2f && c1 === 0x2a) i = commentEnd(text, i);
    else return i;
  }
}

/**
 * End of the literal at `at` ('...', E'...', U&'...', N/B/X'...', $tag$...$tag$), read
 * both ways where backslashes may escape, as the scanner reads them; `at` when none starts there.
 */
function literalEnd(text: string, at: number): number {
  const c = text.charCodeAt(at);
  if (c === DOLLAR) {
    DOLLAR_TAG.lastIndex = at;
    const tag = DOLLAR_TAG.exec(text)?.[0];
    if (tag === undefined) return at;
    const close = text.indexOf(tag, at + tag.length);
    return close < 0 ? text.length : close + tag.length;
  }
  const p = c | 0x20;
  let q = at;
  if ((p === 0x65 || p === 0x6e || p === 0x62 || p === 0x78) && text.charCodeAt(at + 1) === QUOTE) q = at + 1;
  else if (p === 0x75 && text.charCodeAt(at + 1) === 0x26 && text.charCodeAt(at + 2) === QUOTE) q = at + 2;
  if (text.charCodeAt(q) !== QUOTE) return at;
  if (p === 0x65 && q === at + 1) return quotedEnd(text, q, true);
  return Math.max(quotedEnd(text, q, false), quotedEnd(text, q, true));
}

/**
 * A credential's value at `at` in text that does not parse, and what replaces it. One
 * literal, alone or before a word read as SQL (`'x' oops`, as after PASSWORD 'x'),
 * becomes '***'; anything else runs to the next `,` `)` or `;`: a value out of quotes,
 * or a literal the value goes on after (`'hun' || 'ter2'`, `'hun'ter2'`, `'x'::text`).
 * Null when no value starts there.
 */
function tolerantValue(text: string, at: number): Span | null {
  const end = valueEnd(text, at);
  if (end <= at) return null;
  const lit = literalEnd(text, at);
  return lit > at && lit <= end && endsWithWord(text, lit, end) ? { from: at, to: lit, by: "'***'" } : { from: at, to: end, by: '***' };
}

/** Whether [from, to) is empty or white space and then one word: no operator, nothing glued to what precedes it. */
function endsWithWord(text: string, from: number, to: number): boolean {
  if (from === to) return true;
  if (!isSpace(text.charCodeAt(from))) return false;
  let i = from;
  while (isSpace(text.charCodeAt(i))) i++;
  if (!identStart(text.charCodeAt(i))) return false;
  IDENT.lastIndex = i;
  return IDENT.test(text) && IDENT.lastIndex === to;
}

/**
 * What to scrub of a call to set_config(setting_name, new_value, is_local) whose name
 * ends at `after` in text that does not parse; null when no `(` follows.
 */
function configCall(text: string, after: number): Span | null {
  const open = afterBlank(text, after);
  return text.charCodeAt(open) === 0x28 ? configArgs(text, open) : null;
}

/**
 * The value, when one plain literal names the setting and it is a credential; every
 * argument (up to the call's `)`), when anything else names it: an expression, a
 * parameter, named notation, an E'' or U&'' literal with escapes could each name one.
 */
function configArgs(text: string, open: number): Span | null {
  const name = plainLiteral(text, afterBlank(text, open + 1));
  if (name !== null) {
    const after = afterBlank(text, name.end);
    const c = text.charCodeAt(after);
    if (c === 0x2c) return credentialName(name.body) ? tolerantValue(text, afterBlank(text, after + 1)) : null;
    // set_config('x') or the text's end: no value.
    if (c === 0x29 || c === 0x3b || after >= text.length) return null;
  }
  const end = valueEnd(text, open + 1, false);
  return end > open + 1 ? { from: open + 1, to: end, by: '***' } : null;
}

/**
 * A closed literal at `at` whose text reads the same whatever the escaping ('...',
 * E'...' or N'...' without a backslash, $tag$...$tag$), and its end; else null.
 */
function plainLiteral(text: string, at: number): { body: string; end: number } | null {
  const c = text.charCodeAt(at);
  if (c === DOLLAR) {
    DOLLAR_TAG.lastIndex = at;
    const tag = DOLLAR_TAG.exec(text)?.[0];
    const close = tag === undefined ? -1 : text.indexOf(tag, at + tag.length);
    return tag === undefined || close < 0 ? null : { body: text.slice(at + tag.length, close), end: close + tag.length };
  }
  const p = c | 0x20;
  const q = (p === 0x65 || p === 0x6e) && text.charCodeAt(at + 1) === QUOTE ? at + 1 : at;
  if (text.charCodeAt(q) !== QUOTE) return null;
  for (let i = q + 1; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === BACKSLASH) return null;
    if (ch === QUOTE) {
      if (text.charCodeAt(i + 1) !== QUOTE) return { body: text.slice(q + 1, i).replaceAll("''", "'"), end: i + 1 };
      i++;
    }
  }
  return null;
}

/**
 * End of the literal, quoted identifier, identifier or comment at `at` in text that
 * parses, read exactly as PostgreSQL reads it; `at` when none starts there.
 */
export function sqlTokenEnd(text: string, at: number): number {
  const c = text.charCodeAt(at);
  const c1 = text.charCodeAt(at + 1);
  if (c === QUOTE || c === DQUOTE) return quotedEnd(text, at, false);
  if ((c === 0x2d && c1 === 0x2d) || (c === 0x2f && c1 === 0x2a)) return c === 0x2d ? lineEnd(text, at) : commentEnd(text, at);
  if (c === DOLLAR) return literalEnd(text, at);
  if (!identStart(c)) return at;
  IDENT.lastIndex = at;
  const id = IDENT.exec(text)?.[0] ?? '';
  const p = id.length === 1 ? c | 0x20 : 0;
  if (p === 0x65 && c1 === QUOTE) return quotedEnd(text, at + 1, true);
  if ((p === 0x6e || p === 0x62 || p === 0x78) && c1 === QUOTE) return quotedEnd(text, at + 1, false);
  if (p === 0x75 && c1 === 0x26 && (text.charCodeAt(at + 2) === QUOTE || text.charCodeAt(at + 2) === DQUOTE)) return quotedEnd(text, at + 2, false);
  return at + id.length;
}

// Credentials in SQL text, so that the audit trail never records one: which names and
// strings carry a credential (the analyzer marks such statements `secret`), and
// scrubbing, which replaces each credential-bearing literal with '***'. The scanner
// reads text as PostgreSQL's lexer does with standard_conforming_strings on (dbward
// refuses sessions that turn it off), looks at each character a bounded number of
// times and uses no backtracking regex on unbounded spans: hostile text costs linear time.

// Option and setting names whose value is a credential: password, sslpassword,
// odbc_pwd, client_secret... `passfile` names a file, not a credential.
const CREDENTIAL_NAME = /passw(?:or)?d|pwd$|secret/i;
const NOT_CREDENTIAL: ReadonlySet<string> = new Set(['password_required', 'password_encryption']);
// A password in a libpq/ODBC connection string (`password=`, `sslpassword =`, `PWD=`).
const CONNINFO_PASSWORD = /(?:passw(?:or)?d|\bpwd)\s*=/i;
// A URI with a password in its userinfo (`postgresql://user:secret@host`). The first
// class excludes ':' so that a failed match never backtracks over more than one run.
const URI_PASSWORD = /:\/\/[^\s/?#@:]*:[^\s/?#@]*@/;
// `/etc/passwd` is no credential: passwd and pwd count only as `name=`.
const MENTION = /password|(?:passwd|\bpwd)\s*=/i;

/** Whether an option or setting named `name` holds a credential (`password`, `sslpassword`, `odbc_pwd`, `client_secret`). */
export function credentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(name) && !NOT_CREDENTIAL.has(name.toLowerCase());
}

/** Whether a string value holds a connection string or URI with a password. */
export function conninfoCredential(s: string): boolean {
  return CONNINFO_PASSWORD.test(s) || URI_PASSWORD.test(s);
}

/** Whether code or text mentions a password at all (DO and function bodies, comments). */
export function mentionsCredential(s: string): boolean {
  return MENTION.test(s) || URI_PASSWORD.test(s);
}

/**
 * `text` with credentials replaced by '***', for a text the parser could not read:
 * the literal after a credential name (PASSWORD 'x', OPTIONS (password 'x'), SET
 * x.password = 'x'; any quoting), every literal or comment that mentions a password
 * (a connection string with password=), and the literal after one of these. Where the
 * text may have been written for backslash escapes, a replaced literal runs to the
 * later of the two possible ends. Never throws.
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
 * What the scanner expects next: `secret`, a literal that holds a credential (after a
 * credential name, or continuing one); `value`, after `name =`, a literal or a bare
 * value that is a credential.
 */
type Next = 'plain' | 'secret' | 'value';

function scrub(text: string, tolerant: boolean): string {
  const n = text.length;
  let out = '';
  let copied = 0;
  const replace = (from: number, to: number, by: string): void => {
    out += text.slice(copied, from) + by;
    copied = to;
  };
  let next: Next = 'plain';
  let i = 0;
  while (i < n) {
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
      if (next === 'plain' && !mentionsCredential(body)) {
        i = end;
        continue;
      }
      // A client that wrote backslash escapes meant the literal to end later.
      if (tolerant && !escapes && text.charCodeAt(open) === QUOTE) end = Math.max(end, quotedEnd(text, open, true));
      // After `name =` in text that does not parse, x'...' may be the value x' of a misread literal.
      replace(tolerant && next === 'value' ? i : open, end, "'***'");
      next = 'secret';
      i = end;
      continue;
    }
    if (next === 'value') {
      // A value out of quotes: `ALTER SYSTEM SET app.password = hunter2`. Text that parses
      // keeps parsing: only a whole identifier or number becomes a literal, never a
      // function's name or a parameter, and one that does not is read again as itself.
      end = c === DQUOTE ? quotedEnd(text, i, false) : tolerant ? bareEnd(text, i) : tokenEnd(text, i, id);
      if (tolerant || (end > i && valueEnds(text, end) && id?.toLowerCase() !== 'default')) {
        replace(i, end, tolerant ? '***' : "'***'");
        next = 'secret';
        i = end;
        continue;
      }
      next = 'plain';
    }

    // A quoted identifier ("password" or U&"..."): a name like any other.
    const from = c === DQUOTE ? i : (id === 'u' || id === 'U') && c1 === 0x26 && text.charCodeAt(i + 2) === DQUOTE ? i + 2 : -1;
    if (from >= 0) {
      end = quotedEnd(text, from, false);
      next = word(text.slice(from + 1, end), next);
      i = end;
    } else if (id !== undefined) {
      next = word(id, next);
      i += id.length;
    } else {
      // `name = 'x'` and `f('app.password', 'x')` keep a credential pending.
      if (c === 0x3d && next !== 'plain') next = 'value';
      else if (c !== 0x2c) next = 'plain';
      i++;
    }
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/** What a word (identifier or keyword) makes of a pending credential. */
function word(w: string, next: Next): Next {
  if (credentialName(w)) return 'secret';
  if (next !== 'plain' && w.toLowerCase() === 'to') return 'secret';
  return 'plain';
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

/** End of a bare value: up to white space, a quote or a delimiter. */
function bareEnd(text: string, at: number): number {
  let i = at;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (isSpace(c) || c === QUOTE || c === DQUOTE || c === 0x3b || c === 0x2c || c === 0x29 || c === 0x28) break;
    i++;
  }
  return i === at ? at + 1 : i;
}

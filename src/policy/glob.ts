// Globs for plain strings (users, groups, target names, environments, labels, claim
// values): `*` any run, `?` one character, `{a,b}` either alternative, `\` escapes.
// Compiled once, at load, to anchored regexes. Dotted SQL names have their own
// patterns (names.ts), built from these pieces.

/** A glob that cannot be compiled; the message says why. */
export class GlobError extends Error {}

const GLOB_CHARS = /[*?{\\]/;

/** True when `s` contains glob syntax (otherwise it is a literal). */
export function hasGlob(s: string): boolean {
  return GLOB_CHARS.test(s);
}

/** Regular-expression source (unanchored) for a glob. */
export function globSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      // Runs of stars mean the same as one; collapsing them keeps the regex linear.
      while (glob[i + 1] === '*') i++;
      out += '[\\s\\S]*';
    } else if (c === '?') out += '[\\s\\S]';
    else if (c === '\\') {
      const next = glob[++i];
      if (next === undefined) throw new GlobError(`"${glob}": ends with a lone backslash`);
      out += escapeRe(next);
    } else if (c === '{') {
      const end = glob.indexOf('}', i);
      if (end < 0) throw new GlobError(`"${glob}": unclosed {`);
      const inner = glob.slice(i + 1, end);
      if (inner.includes('{')) throw new GlobError(`"${glob}": braces cannot nest`);
      out += `(?:${inner.split(',').map(globSource).join('|')})`;
      i = end;
    } else if (c === '}') throw new GlobError(`"${glob}": } without {`);
    else out += escapeRe(c);
  }
  return out;
}

/** One anchored regex matching any of `globs`. */
export function globsRegex(globs: readonly string[], flags = ''): RegExp {
  return new RegExp(`^(?:${globs.map(globSource).join('|')})$`, flags);
}

/** Every literal-alternative spelling of a glob's braces: `{a,b}.x` -> `a.x`, `b.x` (stops past `limit`). */
export function expandBraces(glob: string, limit = 256): string[] {
  const start = glob.indexOf('{');
  if (start < 0) return [glob];
  const end = glob.indexOf('}', start);
  if (end < 0) return [glob];
  const head = glob.slice(0, start);
  const tails = expandBraces(glob.slice(end + 1), limit);
  const out: string[] = [];
  for (const alt of glob.slice(start + 1, end).split(',')) {
    for (const tail of tails) {
      out.push(head + alt + tail);
      if (out.length > limit) return out;
    }
  }
  return out;
}

/**
 * True when every string `inner` matches is certainly matched by `outer` (for lint:
 * a false "no" only means a shadowed rule goes unreported): `outer` is `*`, or each
 * brace alternative of `inner` is `outer` itself or a literal that `outer` matches.
 */
export function globCovers(outer: string, inner: string, caseInsensitive = false): boolean {
  if (caseInsensitive) {
    outer = outer.toLowerCase();
    inner = inner.toLowerCase();
  }
  if (/^\*+$/.test(outer)) return true;
  const alternatives = expandBraces(inner);
  if (alternatives.length > 256) return false;
  return alternatives.every((alt) => {
    if (alt === outer) return true;
    if (hasGlob(alt)) return false;
    try {
      return globsRegex([outer]).test(alt);
    } catch {
      return false;
    }
  });
}

function escapeRe(c: string): string {
  return c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

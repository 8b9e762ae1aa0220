// `dbward policy check`: everything that stops a load (schema, duplicate ids, bad
// globs), plus rules that load but cannot do what they say: conditions that
// contradict each other, patterns that can only meet quoted identifiers, and rules
// another rule always overrides (an allow under a deny that matches all it matches).
// Coverage is decided conservatively: a shadowed rule may go unreported, a reported
// one is shadowed.

import type { ConfigProblem } from '../config/errors.js';
import { fieldPath, type PathSegment } from '../config/locate.js';
import type { CompiledRule } from './compile.js';
import { expandBraces, globCovers, globsRegex, hasGlob } from './glob.js';
import { isWildcard, partsKey, splitName, type NamePart } from './names.js';
import { compilePolicyFiles, sortProblems } from './load.js';
import type { RawIdentityMatch, RawRule, RawStatementMatch, RawTargetMatch } from './types.js';

// Kinds whose statements never change data by themselves (EXPLAIN ANALYZE or a
// data-modifying WITH adds the nested kind, so `select` alone stays read-only here).
const READ_ONLY_KINDS = new Set([
  'select', 'show', 'explain', 'begin', 'commit', 'rollback', 'savepoint', 'release', 'listen', 'unlisten',
  'fetch', 'move', 'close', 'set', 'reset', 'discard', 'deallocate',
]);
const DEFINITE_WRITE_FLAGS = new Set(['writes', 'ddl', 'dcl']);
const MAYBE_WRITE_FLAGS = new Set([...DEFINITE_WRITE_FLAGS, 'dynamic_sql', 'anonymous_code', 'server_program', 'server_file_access']);

/** Every problem with the policy files at `paths`, load errors and lint findings together, in file order. */
export function checkPolicy(paths: string[]): ConfigProblem[] {
  const { policy, problems } = compilePolicyFiles(paths);
  return sortProblems([...problems, ...lintRules(policy.rules)]);
}

/** Lint findings for compiled rules (which loaded without errors). */
export function lintRules(rules: readonly CompiledRule[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const rule of rules) {
    const report = (sub: PathSegment[], message: string): void => {
      const at = [...rule.path, ...sub];
      out.push({ file: rule.file, ...rule.source.locate.value(at), field: fieldPath(at), message });
    };
    neverMatches(rule, report);
    quotedOnly(rule, report);
    shadowed(rule, rules, report);
  }
  return out;
}

type Report = (sub: PathSegment[], message: string) => void;

function neverMatches(rule: CompiledRule, report: Report): void {
  const s = rule.raw.match?.statement;
  if (!s) return;
  const sp = ['match', 'statement'];
  const allowOnly = rule.action === 'allow';
  if (s.writes === true && s.kinds && s.kinds.every((k) => READ_ONLY_KINDS.has(k))) {
    const kinds = `[${s.kinds.join(', ')}]`;
    // A SELECT writes only through functions such as nextval(), or (deny-side) a nested write in WITH.
    if (!s.kinds.includes('select')) report([...sp, 'writes'], `can never match: writes: true with kinds ${kinds}, which do not write`);
    else {
      const via = allowOnly ? 'a writing function such as nextval()' : 'a writing function such as nextval() or a data-modifying WITH';
      report([...sp, 'writes'], `writes: true with kinds ${kinds}, which do not write by themselves, matches only a SELECT that writes through ${via}; to match writes, list the write kinds (insert, update, delete, merge)`);
    }
  }
  if (s.writes === false) {
    const writing = allowOnly || rule.action === 'limit_rows' ? MAYBE_WRITE_FLAGS : DEFINITE_WRITE_FLAGS;
    if (s.flags && s.flags.every((f) => writing.has(f))) report([...sp, 'writes'], `can never match: writes: false with flags [${s.flags.join(', ')}], which mean writing`);
    if (s.tables?.write) report([...sp, 'writes'], 'can never match: writes: false with tables.write');
  }
  if (rule.allows && s.functions && s.functions.every((f) => f.startsWith('oid:'))) {
    // Such a rule can only match fast-path calls, which carry kind call and nothing else.
    const extra: string[] = (['tables', 'columns', 'flags'] as const).filter((k) => s[k] !== undefined);
    if (s.writes === true) extra.push('writes');
    if (s.kinds && !s.kinds.includes('call')) extra.push('kinds other than call');
    if (extra.length > 0) report([...sp, 'functions'], `can never match: oid: patterns match only fast-path calls, which have no ${extra.join(', ')} as written here`);
  }
}

// Unquoted pattern parts fold to lower case, as SQL identifiers do; someone who wrote
// `public.Users` may have meant the quoted table "Users", which it does not match.
function quotedOnly(rule: CompiledRule, report: Report): void {
  const s = rule.raw.match?.statement;
  if (!s) return;
  const lists: [PathSegment[], string[] | undefined][] = [
    [['tables', 'read'], s.tables?.read], [['tables', 'write'], s.tables?.write], [['tables', 'any'], s.tables?.any],
    [['columns'], s.columns], [['functions'], s.functions],
  ];
  for (const [sub, list] of lists) {
    list?.forEach((p, i) => {
      let parts: NamePart[];
      try {
        parts = splitName(p, false);
      } catch {
        return;
      }
      if (parts.some((x) => !x.quoted && /[A-Z]/.test(x.text))) {
        const quoted = partsKey(parts.map((x) => (!x.quoted && /[A-Z]/.test(x.text) && !hasGlob(x.text) ? { text: x.text, quoted: true } : x)));
        report(['match', 'statement', ...sub, i], `"${p}" matches ${partsKey(splitName(p))}: unquoted names fold to lower case as in SQL; for names with capitals write ${quoted}`);
      }
    });
  }
}

const STRENGTH: Record<string, number> = { allow: 0, limit_rows: 0, require_approval: 1, deny: 2 };

function shadowed(rule: CompiledRule, rules: readonly CompiledRule[], report: Report): void {
  if (rule.action === 'deny') return;
  const by = rules.find((d) => d !== rule && d.restrictive && d.action !== 'limit_rows' && STRENGTH[d.action]! > STRENGTH[rule.action]! && covers(d.raw, rule.raw));
  if (!by) return;
  const what = rule.action === 'require_approval' ? 'can never ask for approval' : 'can never allow';
  report(['id'], `rule "${rule.id}" ${what}: every statement it matches is also matched by ${by.action} rule "${by.id}" (${by.file}:${by.line}:${by.column}), and the stricter action wins`);
}

/** True when every statement and session `a` matches is certainly matched by restrictive rule `d`. */
export function covers(d: RawRule, a: RawRule): boolean {
  const dm = d.match ?? {};
  const am = a.match ?? {};
  return identityCovers(dm.identity, am.identity) && targetCovers(dm.target, am.target) && statementCovers(dm.statement, am.statement);
}

function globsCover(outer: string | string[] | undefined, inner: string | string[] | undefined): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return false;
  const o = [outer].flat();
  return [inner].flat().every((i) => o.some((x) => globCovers(x, i, x.includes('@') && i.includes('@'))));
}

function setCovers(outer: string | string[] | undefined, inner: string | string[] | undefined): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return false;
  const o = new Set([outer].flat());
  return [inner].flat().every((i) => o.has(i));
}

function identityCovers(d: RawIdentityMatch | undefined, a: RawIdentityMatch | undefined): boolean {
  if (!d) return true;
  a ??= {};
  if (!globsCover(d.users, a.users) || !globsCover(d.groups, a.groups) || !setCovers(d.kind, a.kind)) return false;
  for (const [path, values] of Object.entries(d.claims ?? {})) {
    const mine = a.claims?.[path];
    if (mine === undefined) return false;
    if (!globsCover([values].flat().map(String), [mine].flat().map(String))) return false;
  }
  return true;
}

function targetCovers(d: RawTargetMatch | undefined, a: RawTargetMatch | undefined): boolean {
  if (!d) return true;
  a ??= {};
  if (!globsCover(d.name, a.name) || !setCovers(d.engine, a.engine) || !globsCover(d.environment, a.environment)) return false;
  for (const [key, globs] of Object.entries(d.labels ?? {})) {
    if (!globsCover(globs, a.labels?.[key])) return false;
  }
  return true;
}

const ANY: NamePart = { text: '*', quoted: false };

// Patterns compared part by part in their full form, so `users` reads as `*.users`.
function fullForm(pattern: string, width: number): NamePart[] | null {
  try {
    const parts = splitName(pattern);
    return parts.length > width ? null : [...Array<NamePart>(width - parts.length).fill(ANY), ...parts];
  } catch {
    return null;
  }
}

function partCovers(outer: NamePart, inner: NamePart): boolean {
  if (isWildcard(outer)) return true;
  const alternatives = inner.quoted ? [inner] : expandBraces(inner.text).map((text) => ({ text, quoted: false }));
  return alternatives.every((i) => {
    if (outer.quoted === i.quoted && outer.text === i.text) return true;
    // A glob covers another pattern's part only when that part is one literal name.
    if (!i.quoted && hasGlob(i.text)) return false;
    if (outer.quoted) return outer.text === i.text;
    try {
      return globsRegex([outer.text]).test(i.text);
    } catch {
      return false;
    }
  });
}

function patternsCover(outer: string[] | undefined, inner: string[] | undefined, width: number): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return false;
  const form = (p: string): NamePart[] | string | null => (p.startsWith('oid:') ? p : fullForm(p, width));
  const os = outer.map(form);
  return inner.map(form).every((i) => i !== null && os.some((o) => {
    if (o === null) return false;
    if (typeof o === 'string' || typeof i === 'string') return o === 'oid:*' ? typeof i === 'string' : o === i;
    return o.length === i.length && o.every((part, k) => partCovers(part, i[k]!));
  }));
}

function statementCovers(d: RawStatementMatch | undefined, a: RawStatementMatch | undefined): boolean {
  if (!d) return !a?.unparsable;
  a ??= {};
  if (d.unparsable || a.unparsable) return d.unparsable === true && a.unparsable === true;
  if (!setCovers(d.kinds, a.kinds) || !setCovers(d.flags, a.flags)) return false;
  if (d.writes === true && !(a.writes === true || a.tables?.write !== undefined || (a.flags?.every((f) => MAYBE_WRITE_FLAGS.has(f)) ?? false))) return false;
  if (d.writes === false && a.writes !== false) return false;
  const dt = d.tables ?? {};
  const at = a.tables ?? {};
  if (!patternsCover(dt.read, at.read, 2) || !patternsCover(dt.write, at.write, 2)) return false;
  if (dt.any !== undefined && !(['read', 'write', 'any'] as const).some((k) => patternsCover(dt.any, at[k], 2))) return false;
  return patternsCover(d.columns, a.columns, 3) && patternsCover(d.functions, a.functions, 2);
}

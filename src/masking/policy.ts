// The masking section of policy files, compiled: column patterns become regexes
// over printed `schema.table.column` names (as the catalog resolves them, so an
// alias or a view cannot hide a column), and per session only the rules whose
// match holds and whose exemption does not are kept.

import type { ConfigProblem } from '../config/errors.js';
import { fieldPath, type PathSegment } from '../config/locate.js';
import type { SessionIdentity } from '../identity/types.js';
import type { TargetInfo } from '../proxy/session.js';
import { identityMatcher, targetMatcher, type PolicySource } from '../policy/compile.js';
import { GlobError, globsRegex } from '../policy/glob.js';
import type { IdentityMatcher, TargetMatcher } from '../policy/match.js';
import { partSource, splitName, type NamePart } from '../policy/names.js';
import type { RawMaskRule, RawSessionMatch } from '../policy/types.js';
import type { DetectorName, MaskSpec } from './types.js';

/** Which sessions a section applies to; absent parts match any. */
interface SessionCondition {
  identity: IdentityMatcher | null;
  target: TargetMatcher | null;
}

/** A masking rule ready to apply. */
export interface CompiledMaskRule {
  id: string;
  spec: MaskSpec;
  /** Against printed `schema.table.column`; null when the rule names no columns. */
  columns: RegExp | null;
  /** Against classification tags from column comments (`dbward:<name>`). */
  classes: RegExp | null;
  detect: readonly DetectorName[];
  match: SessionCondition | null;
  exempt: SessionCondition | null;
}

/** The masking sections of all policy files together. */
export interface CompiledMasking {
  strict: boolean;
  derived: 'mask' | 'deny';
  /** Against `schema.function`: user-defined functions whose results need no mask; null when none. */
  trusted: RegExp | null;
  rules: CompiledMaskRule[];
}

type Report = (src: PolicySource, path: PathSegment[], message: string) => void;

/** Compiles the masking sections; `ids` holds statement rule ids already taken (ids are unique across both). */
export function compileMasking(sources: PolicySource[], ids: Set<string>): { masking: CompiledMasking; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const report: Report = (src, path, message) => {
    problems.push({ file: src.file, ...src.locate.value(path), field: fieldPath(path), message });
  };
  let strict = false;
  let derived: 'mask' | 'deny' = 'mask';
  // Classifications first, from every file: a rule may name one defined in another file.
  const classes = new Map<string, string[]>();
  const trusted: string[] = [];
  for (const src of sources) {
    const m = src.data.masking;
    if (!m) continue;
    strict ||= m.strict === true;
    if (m.derived === 'deny') derived = 'deny';
    (m.trusted_functions ?? []).forEach((pattern, i) => {
      try {
        trusted.push(functionSource(pattern));
      } catch (err) {
        if (!(err instanceof GlobError)) throw err;
        report(src, ['masking', 'trusted_functions', i], err.message);
      }
    });
    for (const [name, cols] of Object.entries(m.classifications ?? {})) classes.set(name, [...(classes.get(name) ?? []), ...cols]);
  }
  const rules: CompiledMaskRule[] = [];
  for (const src of sources) {
    (src.data.masking?.rules ?? []).forEach((raw, i) => {
      const path: PathSegment[] = ['masking', 'rules', i];
      if (ids.has(raw.id)) return report(src, [...path, 'id'], `duplicate rule id "${raw.id}"`);
      ids.add(raw.id);
      const rule = compileRule(raw, classes, src, path, report);
      if (rule) rules.push(rule);
    });
  }
  const trustedRe = trusted.length === 0 ? null : new RegExp(`^(?:${trusted.join('|')})$`);
  return { masking: { strict, derived, trusted: trustedRe, rules }, problems };
}

function compileRule(raw: RawMaskRule, classes: Map<string, string[]>, src: PolicySource, path: PathSegment[], report: Report): CompiledMaskRule | null {
  if (raw.strategy !== 'partial' && (raw.keep_first !== undefined || raw.keep_last !== undefined)) {
    report(src, [...path, raw.keep_first !== undefined ? 'keep_first' : 'keep_last'], `only used with strategy partial, not ${raw.strategy}`);
  }
  const patterns = [...(raw.columns ?? [])];
  let classRe: RegExp | null = null;
  try {
    if (raw.classifications) {
      classRe = globsRegex(raw.classifications);
      for (const [name, cols] of classes) if (classRe.test(name)) patterns.push(...cols);
    }
    const columns = patterns.length === 0 ? null : columnsRegex(patterns);
    const spec: MaskSpec = { strategy: raw.strategy, rule: raw.id };
    if (raw.keep_first !== undefined) spec.keepFirst = raw.keep_first;
    if (raw.keep_last !== undefined) spec.keepLast = raw.keep_last;
    return {
      id: raw.id, spec, columns, classes: classRe, detect: raw.detect ?? [],
      match: condition(raw.match), exempt: condition(raw.exempt),
    };
  } catch (err) {
    if (!(err instanceof GlobError)) throw err;
    report(src, path, err.message);
    return null;
  }
}

function condition(raw: RawSessionMatch | undefined): SessionCondition | null {
  if (!raw) return null;
  return {
    identity: raw.identity ? identityMatcher(raw.identity) : null,
    target: raw.target ? targetMatcher(raw.target) : null,
  };
}

const ANY: NamePart = { text: '*', quoted: false };

// column, table.column or schema.table.column; missing leading parts are any.
function columnsRegex(patterns: string[]): RegExp {
  return new RegExp(`^(?:${patterns.map((p) => nameSource(p, 3, 'column, table.column or schema.table.column')).join('|')})$`);
}

// function or schema.function; a missing schema is any.
function functionSource(pattern: string): string {
  return nameSource(pattern, 2, 'function or schema.function');
}

// A dotted glob of at most `size` parts against printed names of exactly `size` parts.
function nameSource(pattern: string, size: number, shape: string): string {
  const p = splitName(pattern);
  if (p.length > size) throw new GlobError(`"${pattern}": a ${size === 3 ? 'column' : 'function'} pattern is ${shape}`);
  const full = [...Array<NamePart>(size - p.length).fill(ANY), ...p];
  return full.map((x) => partSource(x, false)).join('\\.');
}

/** The rules that mask for this session: match holds (in doubt, it holds), exemption holds only when proven. */
export function rulesFor(m: CompiledMasking, identity: SessionIdentity, target: TargetInfo): CompiledMaskRule[] {
  return m.rules.filter((r) => holds(r.match, identity, target, true) && !(r.exempt && holds(r.exempt, identity, target, false)));
}

function holds(c: SessionCondition | null, identity: SessionIdentity, target: TargetInfo, restrictive: boolean): boolean {
  if (!c) return true;
  if (c.target && !c.target.matches(target)) return false;
  return c.identity ? c.identity.matches(identity, restrictive) : true;
}

// Policy YAML (schema-valid) -> compiled rules: globs become anchored regexes,
// kinds and flags become bit masks, so that deciding a statement costs a few bit
// tests and regex runs per rule and allocates nothing. Problems the schema cannot
// express (duplicate ids, bad globs, fields that do not fit the action) are
// collected here with their positions.

import type { ConfigProblem } from '../config/errors.js';
import { compileMasking, type CompiledMasking } from '../masking/policy.js';
import type { Locator, PathSegment } from '../config/locate.js';
import { fieldPath } from '../config/locate.js';
import { GlobError, globsRegex } from './glob.js';
import { ANY_IDENT, isWildcard, partSource, splitName, type NamePart } from './names.js';
import { ClaimMatcher, ColumnPatterns, FunctionPatterns, IdentityMatcher, StatementMatcher, TablePatterns, TargetMatcher, flagBit, kindBits } from './match.js';
import type { RawIdentityMatch, RawPolicy, RawRule, RawTargetMatch, RuleAction } from './types.js';

/** One parsed policy file. */
export interface PolicySource {
  file: string;
  data: RawPolicy;
  locate: Locator;
}

/** A rule ready for decide(). */
export interface CompiledRule {
  /** Position in the policy (all files, in load order); decisions list rule ids in this order. */
  index: number;
  id: string;
  action: RuleAction;
  description: string | undefined;
  file: string;
  line: number;
  column: number;
  /** deny, require_approval, limit_rows: matched on any evidence (over-approximation). */
  restrictive: boolean;
  /** allow, limit_rows: matched only when the whole statement is covered (under-approximation). */
  allows: boolean;
  message: string | undefined;
  approvers: readonly string[];
  ttlSec: number;
  /** require_approval: how the client waits, how many approvers, how long a request stays open, how a grant is used. */
  approval: { mode: 'wait' | 'retry'; required: number; timeoutSec: number; grant: 'once' | 'window' };
  rows: number;
  identity: IdentityMatcher | null;
  target: TargetMatcher | null;
  statement: StatementMatcher | null;
  unparsable: boolean;
  raw: RawRule;
  /** Where the rule sits in its file, for lint messages. */
  path: PathSegment[];
  source: PolicySource;
}

/** All rules of a policy (one or more files) and its default. */
export interface CompiledPolicy {
  rules: CompiledRule[];
  defaultAction: 'allow' | 'deny';
  sources: string[];
  masking: CompiledMasking;
}

const DEFAULT_TTL_SEC = 3600;
const DEFAULT_TIMEOUT_SEC = 600;

/** Compiles schema-valid policy files into one policy; problems are errors that must stop a load. */
export function compilePolicy(sources: PolicySource[]): { policy: CompiledPolicy; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const rules: CompiledRule[] = [];
  const seen = new Map<string, CompiledRule>();
  let defaultAction: 'allow' | 'deny' | undefined;
  let defaultFrom: PolicySource | undefined;

  for (const src of sources) {
    const at = (path: PathSegment[], message: string): void => {
      problems.push({ file: src.file, ...src.locate.value(path), field: path.length ? fieldPath(path) : '', message });
    };
    if (src.data.default !== undefined) {
      if (defaultAction !== undefined && defaultAction !== src.data.default) {
        at(['default'], `conflicts with default: ${defaultAction} in ${defaultFrom!.file}; files loaded together must agree`);
      } else {
        defaultAction = src.data.default;
        defaultFrom = src;
      }
    }
    (src.data.rules ?? []).forEach((raw, i) => {
      const path: PathSegment[] = ['rules', i];
      const rule = compileRule(raw, rules.length, path, src, at);
      const first = seen.get(raw.id);
      if (first) {
        at([...path, 'id'], `duplicate rule id "${raw.id}" (first defined at ${first.file}:${first.line}:${first.column})`);
        return;
      }
      seen.set(raw.id, rule);
      rules.push(rule);
    });
  }
  const { masking, problems: maskProblems } = compileMasking(sources, new Set(seen.keys()));
  problems.push(...maskProblems);
  return { policy: { rules, defaultAction: defaultAction ?? 'deny', sources: sources.map((s) => s.file), masking }, problems };
}

type Report = (path: PathSegment[], message: string) => void;

function compileRule(raw: RawRule, index: number, path: PathSegment[], source: PolicySource, report: Report): CompiledRule {
  const pos = source.locate.value(path);
  const m = raw.match ?? {};
  const glob = <T>(field: PathSegment[], build: () => T): T | null => {
    try {
      return build();
    } catch (err) {
      if (err instanceof GlobError) {
        report([...path, ...field], err.message);
        return null;
      }
      throw err;
    }
  };

  checkActionFields(raw, path, report);

  const identity = m.identity === undefined ? null : glob(['match', 'identity'], () => identityMatcher(m.identity!));
  const target = m.target === undefined ? null : glob(['match', 'target'], () => targetMatcher(m.target!));

  const s = m.statement;
  let statement: StatementMatcher | null = null;
  let unparsable = false;
  if (s !== undefined) {
    const sp: PathSegment[] = [...path, 'match', 'statement'];
    if (s.unparsable) {
      unparsable = true;
      const others = Object.keys(s).filter((k) => k !== 'unparsable');
      if (others.length > 0) report([...sp, 'unparsable'], `cannot be combined with ${others.join(', ')}: an unparsable statement has no facts`);
    } else {
      statement = new StatementMatcher(
        s.kinds ? kindBits(s.kinds) : null,
        (s.flags ?? []).reduce((acc, f) => acc | flagBit(f), 0),
        s.writes ?? null,
        s.tables?.read ? tables(s.tables.read, [...sp, 'tables', 'read'], report) : null,
        s.tables?.write ? tables(s.tables.write, [...sp, 'tables', 'write'], report) : null,
        s.tables?.any ? tables(s.tables.any, [...sp, 'tables', 'any'], report) : null,
        s.columns ? columns(s.columns, [...sp, 'columns'], report) : null,
        s.functions ? functions(s.functions, [...sp, 'functions'], report) : null,
      );
    }
  }

  return {
    index, id: raw.id, action: raw.action, description: raw.description,
    file: source.file, line: pos.line, column: pos.column,
    restrictive: raw.action !== 'allow',
    allows: raw.action === 'allow' || raw.action === 'limit_rows',
    message: raw.message,
    approvers: raw.approvers ?? [],
    ttlSec: raw.ttl === undefined ? DEFAULT_TTL_SEC : ttlSeconds(raw.ttl),
    approval: {
      mode: raw.mode ?? 'wait', required: raw.approvals ?? 1,
      timeoutSec: raw.timeout === undefined ? DEFAULT_TIMEOUT_SEC : ttlSeconds(raw.timeout), grant: raw.grant ?? 'once',
    },
    rows: raw.rows ?? 0,
    identity, target, statement, unparsable, raw, path, source,
  };
}

/** The identity condition of a rule; throws GlobError for a bad glob. */
export function identityMatcher(id: RawIdentityMatch): IdentityMatcher {
  return new IdentityMatcher(
    id.users ?? null,
    id.groups ? globsRegex(id.groups) : null,
    id.kind === undefined ? null : new Set([id.kind].flat()),
    id.claims ? Object.entries(id.claims).map(([p, v]) => new ClaimMatcher(p, [v].flat())) : null,
  );
}

/** The target condition of a rule; throws GlobError for a bad glob. */
export function targetMatcher(t: RawTargetMatch): TargetMatcher {
  return new TargetMatcher(
    t.name === undefined ? null : globsRegex([t.name].flat()),
    t.engine === undefined ? null : new Set([t.engine].flat()),
    t.environment === undefined ? null : globsRegex([t.environment].flat()),
    t.labels ? Object.entries(t.labels).map(([k, v]) => ({ key: k, re: globsRegex([v].flat()) })) : null,
  );
}

const ACTION_FIELDS: Record<string, RuleAction[]> = {
  message: ['deny', 'require_approval'],
  approvers: ['require_approval'],
  ttl: ['require_approval'],
  mode: ['require_approval'],
  approvals: ['require_approval'],
  timeout: ['require_approval'],
  grant: ['require_approval'],
  rows: ['limit_rows'],
};

// A field that does nothing under the rule's action is a misunderstanding worth stopping
// for (e.g. rows on a deny rule, or a message on an allow rule that nobody will see).
function checkActionFields(raw: RawRule, path: PathSegment[], report: Report): void {
  for (const [field, actions] of Object.entries(ACTION_FIELDS)) {
    if ((raw as unknown as Record<string, unknown>)[field] !== undefined && !actions.includes(raw.action)) {
      report([...path, field], `only used with action ${actions.join(' or ')}, not ${raw.action}`);
    }
  }
}

/** Seconds in a ttl written as an integer or a duration such as 15m. */
export function ttlSeconds(ttl: number | string): number {
  if (typeof ttl === 'number') return ttl;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[ttl.slice(-1) as 's' | 'm' | 'h' | 'd'];
  return Number(ttl.slice(0, -1)) * unit;
}

/** Splits a dotted pattern into parts, checking the count; null (reported) when it does not fit. */
function parts(pattern: string, min: number, max: number, what: string, at: PathSegment[], report: Report): NamePart[] | null {
  let p: NamePart[];
  try {
    p = splitName(pattern);
    // Compiling each part here reports bad globs against the pattern they are in.
    for (const x of p) partSource(x, false);
  } catch (err) {
    if (err instanceof GlobError) {
      report(at, err.message);
      return null;
    }
    throw err;
  }
  if (p.length < min || p.length > max) {
    report(at, `"${pattern}": ${what}`);
    return null;
  }
  return p;
}

const ANY: NamePart = { text: '*', quoted: false };

// Table patterns match the analyzer's printed `schema.table` candidates; see names.ts
// for the printed form and the unknown `*` (deny-side: any; allow-side: only `*`).
function tables(patterns: string[], at: PathSegment[], report: Report): TablePatterns | null {
  const r: string[] = [];
  const a: string[] = [];
  patterns.forEach((pattern, i) => {
    const p = parts(pattern, 1, 2, 'a table pattern is table or schema.table', [...at, i], report);
    if (!p) return;
    const [schema, table] = p.length === 1 ? [ANY, p[0]!] : [p[0]!, p[1]!];
    r.push(`${partSource(schema, true)}\\.${partSource(table, true)}`);
    a.push(`${partSource(schema, false)}\\.${partSource(table, false)}`);
  });
  if (r.length === 0) return null;
  return new TablePatterns(new RegExp(`^(?:${r.join('|')})$`), new RegExp(`^(?:${a.join('|')})$`));
}

function columns(patterns: string[], at: PathSegment[], report: Report): ColumnPatterns | null {
  const list: ColumnPatterns['patterns'][number][] = [];
  patterns.forEach((pattern, i) => {
    const p = parts(pattern, 1, 3, 'a column pattern is column, table.column or schema.table.column', [...at, i], report);
    if (!p) return;
    const [schema, table, column] = p.length === 3 ? [p[0]!, p[1]!, p[2]!] : p.length === 2 ? [ANY, p[0]!, p[1]!] : [ANY, ANY, p[0]!];
    list.push({
      tableR: new RegExp(`^${partSource(schema, true)}\\.${partSource(table, true)}$`),
      tableA: new RegExp(`^${partSource(schema, false)}\\.${partSource(table, false)}$`),
      // `*` as a column (SELECT *) may be any column: deny-side patterns always accept it.
      columnR: new RegExp(`^${partSource(column, true)}$`),
      columnA: new RegExp(`^${partSource(column, false)}$`),
      anyTable: isWildcard(schema) && isWildcard(table),
    });
  });
  return list.length === 0 ? null : new ColumnPatterns(list);
}

function functions(patterns: string[], at: PathSegment[], report: Report): FunctionPatterns | null {
  const oid: string[] = [];
  const r: string[] = [];
  const a: string[] = [];
  patterns.forEach((pattern, i) => {
    if (pattern.startsWith('oid:')) {
      if (!/^oid:(\*|[1-9][0-9]*)$/.test(pattern)) report([...at, i], `"${pattern}": a fast-path pattern is oid:* or oid:<number>`);
      else oid.push(pattern === 'oid:*' ? 'oid:[0-9]+' : pattern);
      return;
    }
    const p = parts(pattern, 1, 2, 'a function pattern is name or schema.name', [...at, i], report);
    if (!p) return;
    const [schema, name] = p.length === 1 ? [ANY, p[0]!] : [p[0]!, p[1]!];
    const n = partSource(name, false);
    if (isWildcard(schema)) {
      // Deny-side: any qualification at all; allow-side: at most a schema.
      r.push(`(?:[\\s\\S]*\\.)?${n}`);
      a.push(`(?:${ANY_IDENT}\\.)?${n}`);
    } else {
      // An unqualified call may resolve to this schema: deny-side counts it, allow-side does not.
      const sch = partSource(schema, false);
      r.push(`(?:${sch}\\.)?${n}`);
      a.push(`${sch}\\.${n}`);
    }
  });
  if (oid.length === 0 && r.length === 0) return null;
  const re = (list: string[]): RegExp | null => (list.length === 0 ? null : new RegExp(`^(?:${list.join('|')})$`));
  return new FunctionPatterns(re(oid), re(r), re(a));
}

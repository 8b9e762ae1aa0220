// Compiled conditions and how they meet facts. Each condition matches in one of two
// modes, chosen by the rule's action:
//   restrictive (deny, require_approval, limit_rows' cap): any evidence is enough,
//     unknowns count as matching. A deny is never missed for lack of certainty.
//   allowing (allow, limit_rows' allowance): the whole statement must be covered,
//     unknowns count as not matching. An allow never reaches further than written.
// Statement matching uses indexed loops on purpose: it runs per statement on the hot
// path and must not allocate (closures passed to .some() would, and so do for-of
// iterators wherever V8 does not optimize them away, e.g. in polymorphic code).

import type { StatementFacts, TableRef } from '../analysis/facts.js';
import type { SessionIdentity } from '../identity/types.js';
import type { TargetInfo } from '../proxy/session.js';
import { globsRegex } from './glob.js';
import { STATEMENT_FLAGS, STATEMENT_KINDS } from './types.js';

const KIND_INDEX = new Map<string, number>(STATEMENT_KINDS.map((k, i) => [k, i]));
const FLAG_INDEX = new Map<string, number>(STATEMENT_FLAGS.map((f, i) => [f, i]));
const OTHER_KIND = KIND_INDEX.get('other')!;

/** Bit of a flag name (0 for a name the policy vocabulary does not know). */
export function flagBit(flag: string): number {
  const i = FLAG_INDEX.get(flag);
  return i === undefined ? 0 : 1 << i;
}

/** Kinds as two 32-bit masks (there are more than 32 kinds). */
export function kindBits(kinds: readonly string[]): { lo: number; hi: number } {
  let lo = 0;
  let hi = 0;
  for (const k of kinds) {
    const i = KIND_INDEX.get(k) ?? OTHER_KIND;
    if (i < 32) lo |= 1 << i;
    else hi |= 1 << (i - 32);
  }
  return { lo, hi };
}

const bits = (...flags: string[]): number => flags.reduce((a, f) => a | flagBit(f), 0);
/** Certainly changes data, schema or privileges. */
const DEFINITE_WRITE = bits('writes', 'ddl', 'dcl');
/** Might: code or SQL text the analyzer cannot see into, server programs and files. */
const MAYBE_WRITE = DEFINITE_WRITE | bits('dynamic_sql', 'anonymous_code', 'server_program', 'server_file_access');
// CALL runs a procedure, a fast-path call a function: either may write.
const MAYBE_WRITE_KINDS = kindBits(['call', 'do']);

/** The facts of one statement as bits; one instance is reused for every statement. */
export class FactsView {
  kindLo = 0;
  kindHi = 0;
  flags = 0;
  definiteWrite = false;
  mayWrite = false;
  /** Carries an `oid:N` function: a protocol-level FunctionCall, allowed only explicitly. */
  fastPath = false;
  facts: StatementFacts | null = null;

  /** Points the view at `s`. */
  load(s: StatementFacts): this {
    this.facts = s;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < s.kinds.length; i++) {
      const k = KIND_INDEX.get(s.kinds[i]!) ?? OTHER_KIND;
      if (k < 32) lo |= 1 << k;
      else hi |= 1 << (k - 32);
    }
    let flags = 0;
    for (let i = 0; i < s.flags.length; i++) flags |= flagBit(s.flags[i]!);
    let fastPath = false;
    for (let i = 0; i < s.functions.length; i++) if (isOid(s.functions[i]!)) fastPath = true;
    this.kindLo = lo;
    this.kindHi = hi;
    this.flags = flags;
    this.fastPath = fastPath;
    this.definiteWrite = (flags & DEFINITE_WRITE) !== 0 || s.writes.length > 0;
    this.mayWrite = this.definiteWrite || (flags & MAYBE_WRITE) !== 0 || fastPath
      || (lo & MAYBE_WRITE_KINDS.lo) !== 0 || (hi & MAYBE_WRITE_KINDS.hi) !== 0;
    return this;
  }
}

function isOid(fn: string): boolean {
  return fn.startsWith('oid:');
}

/** A claim condition: the claim at a dotted path holds one of the accepted values. */
export class ClaimMatcher {
  private readonly segments: string[];
  private readonly re: RegExp;

  constructor(readonly path: string, values: (string | number | boolean)[]) {
    this.segments = path.split('.');
    // Numbers and booleans compare by their text, so 3 matches the claim "3" and 3.
    this.re = globsRegex(values.map((v) => (typeof v === 'string' ? v : String(v).replace(/[*?{}\\]/g, '\\$&'))));
  }

  /** True when the claim exists and it (or, for a list, any element) matches. */
  matches(claims: Record<string, unknown>): boolean {
    const v = this.resolve(claims);
    if (Array.isArray(v)) {
      for (const el of v) if (this.scalar(el)) return true;
      return false;
    }
    return this.scalar(v);
  }

  // A key that itself holds dots (URL-style claim names) is looked up whole first.
  private resolve(claims: Record<string, unknown>): unknown {
    if (Object.hasOwn(claims, this.path)) return claims[this.path];
    let v: unknown = claims;
    for (const seg of this.segments) {
      if (v === null || typeof v !== 'object' || !Object.hasOwn(v, seg)) return undefined;
      v = (v as Record<string, unknown>)[seg];
    }
    return v;
  }

  private scalar(v: unknown): boolean {
    if (typeof v === 'string') return this.re.test(v);
    if (typeof v === 'number' || typeof v === 'boolean') return this.re.test(String(v));
    return false;
  }
}

/** Identity conditions. */
export class IdentityMatcher {
  private readonly usersCs: RegExp | null;
  private readonly usersCi: RegExp | null;

  constructor(
    readonly users: readonly string[] | null,
    readonly groups: RegExp | null,
    readonly kinds: ReadonlySet<string> | null,
    readonly claims: readonly ClaimMatcher[] | null,
  ) {
    // Emails compare case-insensitively (mail systems treat them so, and issuers vary the case).
    const ci = users?.filter((u) => u.includes('@')) ?? [];
    const cs = users?.filter((u) => !u.includes('@')) ?? [];
    this.usersCi = ci.length ? globsRegex(ci, 'i') : null;
    this.usersCs = cs.length ? globsRegex(cs) : null;
  }

  /**
   * True when the identity matches. An unverified session has only a claimed user
   * name: its groups, kind and claims are unknown, so they match restrictive rules
   * and never allowing ones.
   */
  matches(identity: SessionIdentity, restrictive: boolean): boolean {
    if (this.users && !(this.user(identity.user) || (identity.verified && identity.email !== undefined && this.user(identity.email)))) return false;
    if (!identity.verified) return this.groups === null && this.kinds === null && this.claims === null ? true : restrictive;
    if (this.groups) {
      let any = false;
      for (const g of identity.groups) if (this.groups.test(g)) { any = true; break; }
      if (!any) return false;
    }
    if (this.kinds && !this.kinds.has(identity.kind)) return false;
    if (this.claims) for (const c of this.claims) if (!c.matches(identity.claims)) return false;
    return true;
  }

  private user(name: string): boolean {
    return (this.usersCs !== null && this.usersCs.test(name)) || (this.usersCi !== null && this.usersCi.test(name));
  }
}

/** Target conditions; targets come from dbward.yaml, so nothing about them is unknown. */
export class TargetMatcher {
  constructor(
    readonly name: RegExp | null,
    readonly engines: ReadonlySet<string> | null,
    readonly environment: RegExp | null,
    readonly labels: readonly { key: string; re: RegExp }[] | null,
  ) {}

  /** True when the target matches every condition. */
  matches(t: TargetInfo): boolean {
    if (this.name && !this.name.test(t.name)) return false;
    if (this.engines && !this.engines.has(t.engine)) return false;
    if (this.environment && !this.environment.test(t.environment)) return false;
    if (this.labels) {
      for (const l of this.labels) {
        const v = Object.hasOwn(t.labels, l.key) ? t.labels[l.key] : undefined;
        if (v === undefined || !l.re.test(v)) return false;
      }
    }
    return true;
  }
}

/** Table patterns against TableRef candidates. */
export class TablePatterns {
  constructor(
    /** Accepts the unknown schema `*` for any schema part. */
    readonly restrictive: RegExp,
    readonly allowing: RegExp,
  ) {}

  /** Some candidate of some ref matches (a ref with no candidates could be anything). */
  anyRef(refs: readonly TableRef[]): boolean {
    for (let i = 0; i < refs.length; i++) {
      const cs = refs[i]!.candidates;
      if (cs.length === 0) return true;
      for (let j = 0; j < cs.length; j++) if (this.restrictive.test(cs[j]!)) return true;
    }
    return false;
  }

  /** Every candidate of every ref matches (true for no refs: callers require some). */
  allRefs(refs: readonly TableRef[]): boolean {
    for (let i = 0; i < refs.length; i++) {
      const cs = refs[i]!.candidates;
      if (cs.length === 0) return false;
      for (let j = 0; j < cs.length; j++) if (!this.allowing.test(cs[j]!)) return false;
    }
    return true;
  }
}

interface ColumnPattern {
  tableR: RegExp;
  tableA: RegExp;
  columnR: RegExp;
  columnA: RegExp;
  /** Schema and table are both `*`: the pattern holds whatever table the column is in. */
  anyTable: boolean;
}

/** Column patterns against ColumnRefs, resolved through the statement's TableRefs. */
export class ColumnPatterns {
  constructor(readonly patterns: readonly ColumnPattern[]) {}

  /** Some column reference may be one the patterns name. */
  anyMatch(f: StatementFacts): boolean {
    for (let i = 0; i < f.columns.length; i++) {
      const col = f.columns[i]!;
      for (let j = 0; j < this.patterns.length; j++) {
        const p = this.patterns[j]!;
        if (p.columnR.test(col.column) && tableR(f, col.table, p.tableR)) return true;
      }
    }
    return false;
  }

  /** Every column reference is certainly one the patterns name (and there is one). */
  allMatch(f: StatementFacts): boolean {
    if (f.columns.length === 0) return false;
    for (let i = 0; i < f.columns.length; i++) {
      const col = f.columns[i]!;
      let ok = false;
      for (let j = 0; j < this.patterns.length; j++) {
        const p = this.patterns[j]!;
        if (p.columnA.test(col.column) && (p.anyTable || tableA(f, col.table, p.tableA))) { ok = true; break; }
      }
      if (!ok) return false;
    }
    return true;
  }
}

function findRef(f: StatementFacts, name: string | null): TableRef | null {
  if (name === null) return null;
  for (let i = 0; i < f.reads.length; i++) if (f.reads[i]!.name === name) return f.reads[i]!;
  for (let i = 0; i < f.writes.length; i++) if (f.writes[i]!.name === name) return f.writes[i]!;
  return null;
}

// A column whose table is unknown (or not a table, e.g. a CTE) may come from any table
// of the statement: restrictive patterns accept any of them, allowing ones need all.
function tableR(f: StatementFacts, name: string | null, re: RegExp): boolean {
  const ref = findRef(f, name);
  if (ref) {
    if (ref.candidates.length === 0) return true;
    return someCandidate(ref, re);
  }
  if (f.reads.length === 0 && f.writes.length === 0) return true;
  for (let i = 0; i < f.reads.length; i++) if (someCandidate(f.reads[i]!, re)) return true;
  for (let i = 0; i < f.writes.length; i++) if (someCandidate(f.writes[i]!, re)) return true;
  return false;
}

function tableA(f: StatementFacts, name: string | null, re: RegExp): boolean {
  const ref = findRef(f, name);
  if (ref) return ref.candidates.length > 0 && allCandidates(ref, re);
  if (f.reads.length === 0 && f.writes.length === 0) return false;
  for (let i = 0; i < f.reads.length; i++) if (f.reads[i]!.candidates.length === 0 || !allCandidates(f.reads[i]!, re)) return false;
  for (let i = 0; i < f.writes.length; i++) if (f.writes[i]!.candidates.length === 0 || !allCandidates(f.writes[i]!, re)) return false;
  return true;
}

function allCandidates(ref: TableRef, re: RegExp): boolean {
  for (let i = 0; i < ref.candidates.length; i++) if (!re.test(ref.candidates[i]!)) return false;
  return true;
}

function someCandidate(ref: TableRef, re: RegExp): boolean {
  for (let i = 0; i < ref.candidates.length; i++) if (re.test(ref.candidates[i]!)) return true;
  return false;
}

/** Function patterns; `oid:` names (fast-path calls) only ever meet `oid:` patterns. */
export class FunctionPatterns {
  constructor(
    readonly oid: RegExp | null,
    readonly restrictive: RegExp | null,
    readonly allowing: RegExp | null,
  ) {}

  /** Some called function may be one the patterns name. */
  anyMatch(fns: readonly string[]): boolean {
    for (let i = 0; i < fns.length; i++) {
      const fn = fns[i]!;
      const re = isOid(fn) ? this.oid : this.restrictive;
      if (re !== null && re.test(fn)) return true;
    }
    return false;
  }

  /** Every called function is certainly one the patterns name (and there is one). */
  allMatch(fns: readonly string[]): boolean {
    if (fns.length === 0) return false;
    for (let i = 0; i < fns.length; i++) {
      const fn = fns[i]!;
      const re = isOid(fn) ? this.oid : this.allowing;
      if (re === null || !re.test(fn)) return false;
    }
    return true;
  }
}

/** Statement conditions. */
export class StatementMatcher {
  readonly hasKinds: boolean;
  readonly kindLo: number;
  readonly kindHi: number;

  constructor(
    kinds: { lo: number; hi: number } | null,
    readonly flags: number,
    readonly writes: boolean | null,
    readonly read: TablePatterns | null,
    readonly write: TablePatterns | null,
    readonly any: TablePatterns | null,
    readonly columns: ColumnPatterns | null,
    readonly functions: FunctionPatterns | null,
  ) {
    this.hasKinds = kinds !== null;
    this.kindLo = kinds?.lo ?? 0;
    this.kindHi = kinds?.hi ?? 0;
  }

  /** Any evidence: some kind listed, some flag, some table, column or function matching. */
  matchesRestrictive(v: FactsView): boolean {
    const f = v.facts!;
    if (this.hasKinds && (v.kindLo & this.kindLo) === 0 && (v.kindHi & this.kindHi) === 0) return false;
    if (this.flags !== 0 && (v.flags & this.flags) === 0) return false;
    if (this.writes !== null && (this.writes ? !v.mayWrite : v.definiteWrite)) return false;
    if (this.read && !this.read.anyRef(f.reads)) return false;
    if (this.write && !this.write.anyRef(f.writes)) return false;
    if (this.any && !(this.any.anyRef(f.reads) || this.any.anyRef(f.writes))) return false;
    if (this.columns && !this.columns.anyMatch(f)) return false;
    if (this.functions && !this.functions.anyMatch(f.functions)) return false;
    return true;
  }

  /** Full coverage: every kind listed, every table (all candidates), column and function matching. */
  matchesAllowing(v: FactsView): boolean {
    const f = v.facts!;
    if (v.fastPath && (this.functions === null || this.functions.oid === null)) return false;
    if (this.hasKinds && ((v.kindLo | v.kindHi) === 0 || (v.kindLo & ~this.kindLo) !== 0 || (v.kindHi & ~this.kindHi) !== 0)) return false;
    if (this.flags !== 0 && (v.flags & this.flags) === 0) return false;
    if (this.writes !== null && (this.writes ? !v.definiteWrite : v.mayWrite)) return false;
    if (this.read && (f.reads.length === 0 || !this.read.allRefs(f.reads))) return false;
    if (this.write && (f.writes.length === 0 || !this.write.allRefs(f.writes))) return false;
    if (this.any && (f.reads.length + f.writes.length === 0 || !this.any.allRefs(f.reads) || !this.any.allRefs(f.writes))) return false;
    if (this.columns && !this.columns.allMatch(f)) return false;
    if (this.functions && !this.functions.allMatch(f.functions)) return false;
    return true;
  }
}

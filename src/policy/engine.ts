// decide(): the compiled policy against one analyzed SQL string. Per session, the
// rules whose identity and target conditions hold are worked out once (cached on
// the identity object); per statement, only statement conditions run. Decisions are
// frozen and cached per combination of deciding rules, so a call allocates nothing
// once its combination has been seen (parse-error denials, which quote the error,
// are the exception).

import type { Analysis, StatementFacts } from '../analysis/facts.js';
import type { SessionIdentity } from '../identity/types.js';
import type { TargetInfo } from '../proxy/session.js';
import type { ApprovalTerms, Decision, PolicyEngine } from './decide.js';
import type { CompiledMasking } from '../masking/policy.js';
import type { CompiledPolicy, CompiledRule } from './compile.js';
import { FactsView } from './match.js';

const R = 1; // matched restrictively (deny, require_approval, limit_rows cap)
const A = 2; // matched allowingly (allow, limit_rows allowance)

const ALLOW = 0;
const APPROVAL = 1;
const DENY = 2;
const LEVEL_ACTION = ['allow', 'require_approval', 'deny'] as const;

const NO_RULE_MESSAGE = 'no policy rule allows this statement (default: deny)';
const FAST_PATH_MESSAGE = 'fast-path function calls are denied unless a rule allows their oid (functions: ["oid:<oid>"])';
const EMPTY_LIST: readonly string[] = Object.freeze([]);
/** Bound on cached decisions (trie nodes); past it, new combinations get fresh objects. */
const MAX_CACHED_DECISIONS = 10_000;

/** The rules that may apply to one session: indices into the policy, with the modes their identity and target allow. */
interface Candidates {
  target: TargetInfo;
  rules: CompiledRule[];
  modes: Uint8Array;
}

interface Node {
  next: Map<number, Node> | null;
  decision: Decision | null;
}

/** How one statement was decided, for explain. */
export interface StatementExplanation {
  /** Null for a string the parser could not read. */
  facts: StatementFacts | null;
  /** Rules whose conditions all held, with how they matched. */
  matched: { rule: CompiledRule; restrictive: boolean; allowing: boolean }[];
  action: Decision['action'];
  /** No rule decided this statement; the policy default (or fail-closed default) did. */
  byDefault: boolean;
}

/** Why a SQL string got its decision. */
export interface Explanation {
  /** Rules whose identity and target conditions hold for this session. */
  applicable: CompiledRule[];
  statements: StatementExplanation[];
  parseError: string | null;
  decision: Decision;
}

/** A compiled policy that decides statements. */
export class CompiledPolicyEngine implements PolicyEngine {
  readonly ruleCount: number;
  readonly sources: string[];
  readonly defaultAction: 'allow' | 'deny';
  readonly rules: readonly CompiledRule[];
  readonly masking: CompiledMasking;

  private readonly sessions = new WeakMap<object, Candidates>();
  private readonly view = new FactsView();
  private readonly results: Uint8Array;
  private readonly marks: Int32Array[];
  private readonly capMark: Int32Array;
  private epoch = 0;
  private readonly roots = new Map<number, Node>();
  private nodes = 0;

  constructor(policy: CompiledPolicy) {
    this.rules = policy.rules;
    this.ruleCount = policy.rules.length;
    this.sources = policy.sources;
    this.defaultAction = policy.defaultAction;
    this.masking = policy.masking;
    const n = policy.rules.length;
    this.results = new Uint8Array(n);
    this.marks = [new Int32Array(n), new Int32Array(n), new Int32Array(n)];
    this.capMark = new Int32Array(n);
  }

  /** The decision for all statements of `analysis` together: the strictest per-statement result wins. */
  decide(identity: SessionIdentity, target: TargetInfo, analysis: Analysis): Decision {
    const c = this.candidates(identity, target);
    const epoch = this.nextEpoch();
    if (!analysis.ok) {
      const level = this.matchUnparsable(c);
      if (level < 0) return parseDenial(analysis.error);
      this.mark(c, level, epoch);
      return this.decision(c, level, epoch, false, false);
    }
    if (analysis.statements.length === 0) return this.decision(c, this.defaultAction === 'deny' ? DENY : ALLOW, epoch, true, false);
    let top = -1;
    let defaultAtTop = false;
    let fastPathDefault = false;
    const statements = analysis.statements;
    for (let i = 0; i < statements.length; i++) {
      this.view.load(statements[i]!);
      let level = this.matchStatement(c, this.view);
      const byDefault = level < 0;
      if (byDefault) level = this.view.fastPath || this.defaultAction === 'deny' ? DENY : ALLOW;
      else this.mark(c, level, epoch);
      if (level > top) {
        top = level;
        defaultAtTop = byDefault;
        fastPathDefault = byDefault && this.view.fastPath;
      } else if (level === top && byDefault) {
        if (!defaultAtTop) fastPathDefault = this.view.fastPath;
        defaultAtTop = true;
      }
    }
    return this.decision(c, top, epoch, defaultAtTop, fastPathDefault);
  }

  /** What decide() does, step by step (slow: for `dbward policy explain` and tests). */
  explain(identity: SessionIdentity, target: TargetInfo, analysis: Analysis): Explanation {
    const c = this.candidates(identity, target);
    const decision = this.decide(identity, target, analysis);
    const statements: StatementExplanation[] = [];
    const collect = (): StatementExplanation['matched'] =>
      c.rules.flatMap((rule, k) => (this.results[k] ? [{ rule, restrictive: (this.results[k]! & R) !== 0, allowing: (this.results[k]! & A) !== 0 }] : []));
    if (!analysis.ok) {
      const level = this.matchUnparsable(c);
      statements.push({ facts: null, matched: collect(), action: level < 0 ? 'deny' : LEVEL_ACTION[level]!, byDefault: level < 0 });
    } else {
      for (const s of analysis.statements) {
        const view = new FactsView().load(s);
        const level = this.matchStatement(c, view);
        const fallback = view.fastPath || this.defaultAction === 'deny' ? 'deny' : 'allow';
        statements.push({ facts: s, matched: collect(), action: level < 0 ? fallback : LEVEL_ACTION[level]!, byDefault: level < 0 });
      }
    }
    return { applicable: c.rules, statements, parseError: analysis.ok ? null : analysis.error, decision };
  }

  // Identity and target conditions do not change during a session: evaluate them once per
  // (identity object, target), keeping only rules that can still match.
  private candidates(identity: SessionIdentity, target: TargetInfo): Candidates {
    const cached = this.sessions.get(identity);
    if (cached && cached.target === target) return cached;
    const rules: CompiledRule[] = [];
    const modes: number[] = [];
    for (const rule of this.rules) {
      if (rule.target && !rule.target.matches(target)) continue;
      let mode = 0;
      if (rule.restrictive && (!rule.identity || rule.identity.matches(identity, true))) mode |= R;
      if (rule.allows && (!rule.identity || rule.identity.matches(identity, false))) mode |= A;
      if (mode === 0) continue;
      rules.push(rule);
      modes.push(mode);
    }
    const entry: Candidates = { target, rules, modes: Uint8Array.from(modes) };
    this.sessions.set(identity, entry);
    return entry;
  }

  /** Fills results[] for one statement; returns its level, or -1 when no rule matched. */
  private matchStatement(c: Candidates, v: FactsView): number {
    let level = -1;
    for (let k = 0; k < c.rules.length; k++) {
      const rule = c.rules[k]!;
      const mode = c.modes[k]!;
      let res = 0;
      if (!rule.unparsable) {
        const st = rule.statement;
        if ((mode & R) !== 0 && (st === null || st.matchesRestrictive(v))) res |= R;
        // With no statement conditions an allow rule covers everything except fast-path calls.
        if ((mode & A) !== 0 && (st === null ? !v.fastPath : st.matchesAllowing(v))) res |= A;
      }
      this.results[k] = res;
      level = Math.max(level, ruleLevel(rule, res));
    }
    return level;
  }

  private matchUnparsable(c: Candidates): number {
    let level = -1;
    for (let k = 0; k < c.rules.length; k++) {
      const rule = c.rules[k]!;
      const res = rule.unparsable ? c.modes[k]! : 0;
      this.results[k] = res;
      level = Math.max(level, ruleLevel(rule, res));
    }
    return level;
  }

  /** Records which rules of the current statement contributed to its level. */
  private mark(c: Candidates, level: number, epoch: number): void {
    const marks = this.marks[level]!;
    for (let k = 0; k < c.rules.length; k++) {
      const res = this.results[k]!;
      if (res === 0) continue;
      const rule = c.rules[k]!;
      if (ruleLevel(rule, res) === level) marks[rule.index] = epoch;
      if (rule.action === 'limit_rows' && (res & R) !== 0) this.capMark[rule.index] = epoch;
    }
  }

  private nextEpoch(): number {
    if (this.epoch === 0x7fffffff) {
      for (const m of this.marks) m.fill(0);
      this.capMark.fill(0);
      this.epoch = 0;
    }
    return ++this.epoch;
  }

  // Walks a trie keyed by the contributing rules (in policy order) to the cached Decision.
  private decision(c: Candidates, level: number, epoch: number, byDefault: boolean, fastPath: boolean): Decision {
    const key = level * 4 + (byDefault ? 2 : 0) + (fastPath ? 1 : 0);
    let node = this.roots.get(key);
    if (!node) this.roots.set(key, (node = { next: null, decision: null }));
    const marks = this.marks[level]!;
    for (let k = 0; k < c.rules.length; k++) {
      const i = c.rules[k]!.index;
      if (marks[i] !== epoch && !(level === ALLOW && this.capMark[i] === epoch)) continue;
      node.next ??= new Map();
      let child = node.next.get(i);
      if (!child) {
        // Combinations are few in practice, but statements are the client's to choose.
        if (this.nodes >= MAX_CACHED_DECISIONS) return this.newDecision(c, level, epoch, byDefault, fastPath);
        node.next.set(i, (child = { next: null, decision: null }));
        this.nodes++;
      }
      node = child;
    }
    return node.decision ?? (node.decision = this.newDecision(c, level, epoch, byDefault, fastPath));
  }

  // Kept out of decision(): a closure there would make V8 allocate a context on every call.
  private newDecision(c: Candidates, level: number, epoch: number, byDefault: boolean, fastPath: boolean): Decision {
    const marks = this.marks[level]!;
    const contributing = c.rules.filter((r) => marks[r.index] === epoch || (level === ALLOW && this.capMark[r.index] === epoch));
    return buildDecision(level, contributing, byDefault, fastPath);
  }
}

/** The level a rule's match puts a statement at, or -1. */
function ruleLevel(rule: CompiledRule, res: number): number {
  if (res === 0) return -1;
  if (rule.action === 'deny') return (res & R) !== 0 ? DENY : -1;
  if (rule.action === 'require_approval') return (res & R) !== 0 ? APPROVAL : -1;
  // allow, limit_rows: only the allowing match allows; a limit_rows cap alone decides nothing.
  return (res & A) !== 0 ? ALLOW : -1;
}

function buildDecision(level: number, rules: CompiledRule[], byDefault: boolean, fastPath: boolean): Decision {
  const ruleIds = Object.freeze(rules.map((r) => r.id)) as string[];
  if (level === DENY) {
    const first = rules.find((r) => r.action === 'deny');
    const message = first?.message ?? (first ? `denied by policy rule "${first.id}"` : fastPath ? FAST_PATH_MESSAGE : NO_RULE_MESSAGE);
    return Object.freeze({ action: 'deny', ruleIds, default: byDefault, message });
  }
  if (level === APPROVAL) {
    // Every matching rule must be satisfied, so only groups all of them name may approve.
    let approvers = rules[0]!.approvers;
    for (const r of rules) approvers = approvers.filter((g) => r.approvers.includes(g));
    const ttlSec = Math.min(...rules.map((r) => r.ttlSec));
    if (approvers.length === 0) {
      const message = `rules ${rules.map((r) => `"${r.id}"`).join(', ')} require approval from groups that have no member in common, so no one can approve`;
      return Object.freeze({ action: 'deny', ruleIds, default: false, message });
    }
    const message = rules.find((r) => r.message !== undefined)?.message
      ?? `requires approval by ${approvers.join(', ')} (policy rule "${rules[0]!.id}")`;
    // Every rule must be satisfied: the most approvers, the shortest windows, single use if any says so;
    // the client waits unless every rule lets it retry.
    return Object.freeze({
      action: 'require_approval', ruleIds, default: false, message,
      approval: Object.freeze({
        approvers: Object.freeze([...approvers]) as string[], ttlSec,
        required: Math.max(...rules.map((r) => r.approval.required)),
        timeoutSec: Math.min(...rules.map((r) => r.approval.timeoutSec)),
        mode: rules.every((r) => r.approval.mode === 'retry') ? 'retry' : 'wait',
        grant: rules.some((r) => r.approval.grant === 'once') ? 'once' : 'window',
      } satisfies ApprovalTerms),
    });
  }
  const caps = rules.filter((r) => r.action === 'limit_rows').map((r) => r.rows);
  const d: Decision = { action: 'allow', ruleIds: rules.length ? ruleIds : (EMPTY_LIST as string[]), default: byDefault };
  if (caps.length > 0) d.limitRows = Math.min(...caps);
  return Object.freeze(d);
}

function parseDenial(error: string): Decision {
  return Object.freeze({ action: 'deny', ruleIds: EMPTY_LIST as string[], default: false, message: `statement could not be parsed: ${error}` });
}

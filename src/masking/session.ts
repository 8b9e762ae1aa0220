// Masking for one session: which of the policy's masking rules apply to its
// identity and target, and, against a catalog snapshot, which result columns
// they mask. A column is masked when a rule names it (by name or classification),
// when it is a view column whose origin is masked, or when it is computed from a
// masked column (the statement's own column references decide, conservatively:
// any masked column the statement reads into its output taints every computed
// output column).

import type { Analysis, StatementFacts } from '../analysis/facts.js';
import { callsOf, columnCandidates, UNKNOWN_PREFIX, FLOW_USES, relationsNamed, type CatalogSnapshot, type ColumnInfo, type RelationInfo, type TargetCatalog } from './catalog.js';
import { copyOptions } from './copy-options.js';
import { compileDetectors } from './detectors.js';
import type { CompiledMaskRule } from './policy.js';
import { derivedSpec } from './strategies.js';
import type { DetectorName, MaskSpec } from './types.js';

/** Column uses that let a query infer a value without returning it (strict mode denies them). */
const INFER_USES = new Set(['predicate', 'order', 'group', 'join']);
const MAX_DEPTH = 32;
const REFRESH_MS = 2000;
/** Flags of statements that write, or may: a masked value that flows into one is copied into the database. */
const COPY_FLAGS: ReadonlySet<string> = new Set(['writes', 'ddl', 'anonymous_code', 'dynamic_sql', 'server_program']);
const UNKNOWN_CURSOR: MaskSpec = Object.freeze({ strategy: 'redact', rule: 'masking.cursor' }) as MaskSpec;
/** For outputs of code dbward cannot read (a user-defined function, DO, SQL run from a string). */
const OPAQUE: MaskSpec = Object.freeze({ strategy: 'redact', rule: 'masking.opaque' }) as MaskSpec;

/** What a statement does with masked columns. */
export interface StatementTaint {
  /** A masked column whose value may reach a computed output column; null when none. */
  flow: MaskSpec | null;
  /** Masked columns (printed) used to filter, sort, group or join. */
  inferred: string[];
  /** The statement names a relation with masked columns: its errors may quote values. */
  sensitive: boolean;
  /** A masked value is read other than by RETURNING (into a write, this copies it). */
  copied: boolean;
}

/** The taint of a statement that reads nothing masked. */
export const CLEAN: StatementTaint = Object.freeze({ flow: null, inferred: [], sensitive: false, copied: false }) as StatementTaint;

/** A refusal by the masking options (strict mode, derived: deny, data copied out of masked columns). */
export interface MaskRefusal {
  rule: string;
  message: string;
}

/** The masking rules of one session against its target's catalog. */
export class SessionMasking {
  private cacheVersion = -1;
  private readonly specs = new Map<number, MaskSpec | null>();
  // undefined: no DECLARE seen; null: only clean ones; else the first masked input of one.
  private cursorTaint: MaskSpec | null | undefined = undefined;
  // Whether the snapshot of that version has a column masked for this session.
  private maskedVersion = -1;
  private masksAny = false;
  private refreshedAt = 0;
  readonly detect: ((value: Buffer) => DetectorName | null) | null;
  readonly detectSpec: MaskSpec | null;

  constructor(
    readonly rules: readonly CompiledMaskRule[],
    readonly options: { strict: boolean; derived: 'mask' | 'deny'; trusted?: RegExp | null },
    readonly catalog: TargetCatalog,
    readonly hashKey: Buffer | null,
  ) {
    const detecting = rules.find((r) => r.detect.length > 0);
    this.detect = detecting ? compileDetectors([...new Set(rules.flatMap((r) => r.detect))]) : null;
    this.detectSpec = detecting ? detecting.spec : null;
  }

  /** The mask for column `att` of relation `rel` (0: the whole row), or null; undefined when the snapshot does not know the relation. */
  spec(s: CatalogSnapshot, rel: number, att: number): MaskSpec | null | undefined {
    if (this.cacheVersion !== s.version) {
      this.specs.clear();
      this.cacheVersion = s.version;
    }
    const key = rel * 2048 + att;
    if (this.specs.has(key)) return this.specs.get(key)!;
    const r = s.relations.get(rel);
    if (!r) return undefined;
    const spec = att === 0 ? this.anyMasked(s, r, 0) : this.columnSpec(s, r.columns.get(att), 0);
    this.specs.set(key, spec);
    return spec;
  }

  private anyMasked(s: CatalogSnapshot, r: RelationInfo, depth: number): MaskSpec | null {
    for (const c of r.columns.values()) {
      const m = this.columnSpec(s, c, depth);
      if (m) return derivedSpec(m);
    }
    return null;
  }

  private columnSpec(s: CatalogSnapshot, c: ColumnInfo | undefined, depth: number): MaskSpec | null {
    if (!c) return null;
    for (const rule of this.rules) {
      if (rule.columns?.test(c.printed) || (rule.classes && c.tags.some((t) => rule.classes!.test(t)))) return rule.spec;
    }
    if (!c.lineage || depth > MAX_DEPTH) return null;
    if ('rel' in c.lineage) {
      const o = s.relations.get(c.lineage.rel);
      if (!o) return null;
      return c.lineage.att === 0 ? this.anyMasked(s, o, depth + 1) : this.columnSpec(s, o.columns.get(c.lineage.att), depth + 1);
    }
    for (const src of c.lineage.sources) {
      const m = this.sourceSpec(s, src.rel, src.column, depth + 1);
      if (m) return derivedSpec(m);
    }
    return this.untrusted(c.lineage.calls) && this.masksSomething(s) ? OPAQUE : null;
  }

  /**
   * A name the snapshot does not know (a relation or a function, perhaps created
   * since): marks the catalog stale, at most every REFRESH_MS per session, so what
   * comes next is judged on a fresh reading; false when it was marked too recently.
   * A name that stays unknown (created in a transaction not yet committed) does not
   * make every statement read the catalog again.
   */
  missed(): boolean {
    const now = Date.now();
    if (now - this.refreshedAt < REFRESH_MS) return false;
    this.refreshedAt = now;
    this.catalog.invalidate();
    return true;
  }

  /** Some of the code (from callsOf) is not among the policy's trusted functions. */
  private untrusted(calls: readonly string[]): boolean {
    const trusted = this.options.trusted ?? null;
    return calls.some((q) => trusted === null || !trusted.test(q));
  }

  /** Some column of the snapshot is masked for this session: only then can opaque code leak one. */
  private masksSomething(s: CatalogSnapshot): boolean {
    if (this.maskedVersion !== s.version) {
      this.maskedVersion = s.version;
      this.masksAny = false;
      for (const r of s.relations.values()) {
        if (this.anyMasked(s, r, 0)) {
          this.masksAny = true;
          break;
        }
      }
    }
    return this.masksAny;
  }

  private sourceSpec(s: CatalogSnapshot, rel: number, column: string, depth: number): MaskSpec | null {
    const r = s.relations.get(rel);
    if (!r) return null;
    if (column === '*') return this.anyMasked(s, r, depth);
    return this.columnSpec(s, r.byName.get(column), depth);
  }

  /** What the statements do with masked columns, judged by name against the snapshot. */
  taint(s: CatalogSnapshot, statements: readonly StatementFacts[]): StatementTaint {
    let flow: MaskSpec | null = null;
    const inferred: string[] = [];
    let sensitive = false;
    let copied = false;
    for (const f of statements) {
      for (const t of f.reads) {
        for (const r of relationsNamed(s, t.candidates)) if (this.anyMasked(s, r, 0)) sensitive = true;
      }
      for (const c of f.columns) {
        const rels = [...relationsNamed(s, columnCandidates(f, c))];
        // A name no relation has as a column may be a whole-row reference (`SELECT u::text FROM users u`).
        const whole = c.column === '*' || !rels.some((r) => r.byName.has(c.column));
        for (const r of rels) {
          const m = whole ? this.anyMasked(s, r, 0) : this.columnSpec(s, r.byName.get(c.column), 0);
          if (!m) continue;
          sensitive = true;
          if (FLOW_USES.has(c.use)) {
            flow ??= m;
            if (c.use !== 'returning') copied = true;
          }
          else if (INFER_USES.has(c.use) && !whole) inferred.push(r.byName.get(c.column)?.printed ?? `${r.printed}.${c.column}`);
        }
      }
    }
    // Code dbward cannot read may return (or raise, in a message) any masked value it reads.
    const calls = callsOf(s, statements);
    if (calls.some((q) => q.startsWith(UNKNOWN_PREFIX))) this.missed();
    if (this.untrusted(calls) && this.masksSomething(s)) {
      if (flow?.strategy !== 'null') flow = OPAQUE;
      sensitive = true;
      // What such code returns may be a masked value: written into the database, the next reader sees it.
      copied = true;
    }
    return flow || sensitive || inferred.length ? { flow, inferred, sensitive, copied } : CLEAN;
  }

  /** Remembers what cursors were declared over (a FETCH result has no statement of its own to judge). */
  noteDeclare(statements: readonly StatementFacts[], t: StatementTaint): void {
    if (!statements.some((f) => f.kinds[0] === 'declare')) return;
    if (t.flow) this.cursorTaint ??= t.flow;
    else if (this.cursorTaint === undefined) this.cursorTaint = null;
  }

  /** The mask for computed columns of FETCH results: clean only when every cursor declared in the session was. */
  get cursorSpec(): MaskSpec | null {
    if (this.cursorTaint === undefined) return UNKNOWN_CURSOR; // declared where dbward could not see (a function)
    return this.cursorTaint && derivedSpec(this.cursorTaint);
  }

  /** A refusal for statements the masking options forbid (judged on their taint), else null. */
  check(analysis: Analysis, t: StatementTaint): MaskRefusal | null {
    if (!analysis.ok || t === CLEAN) return null;
    for (const f of analysis.statements) {
      if (f.kinds[0] !== 'copy' || !t.sensitive) continue;
      const copy = copyOptions(f.text);
      if (copy?.direction === 'from') continue;
      // Binary rows (and rows in an encoding whose bytes can hide a delimiter) cannot be rewritten field by field.
      if (!copy || copy.format.kind === 'binary' || (copy.encoding !== null && !/^utf-?8$/i.test(copy.encoding))) {
        return { rule: t.flow?.rule ?? 'masking', message: 'COPY of masked columns must use text or csv format in UTF8 so dbward can mask it' };
      }
      // Rows written to a server file or program never pass through dbward to be masked.
      if (copy.target === 'file' || copy.target === 'program') {
        return { rule: t.flow?.rule ?? 'masking', message: 'COPY of masked columns to a server file or program is refused: dbward could not mask the rows' };
      }
    }
    if (this.options.strict && t.inferred.length > 0) {
      return { rule: 'masking.strict', message: `masked column ${t.inferred[0]} may not be used to filter, sort, group or join (masking strict mode)` };
    }
    if (t.flow && t.copied) {
      for (const f of analysis.statements) {
        // Copying masked values into a table, a view or a function's reach would unmask them for the next reader.
        // Code dbward cannot read (DO, SQL in a string) may write too.
        if (f.flags.some((fl) => COPY_FLAGS.has(fl))) {
          if (t.flow === OPAQUE) {
            return { rule: OPAQUE.rule, message: 'statement may write what code dbward cannot read returns (a user-defined function, DO, SQL in a string), which may be a masked value; list functions that read no masked column in masking.trusted_functions' };
          }
          return { rule: t.flow.rule, message: `statement copies values of masked columns (rule ${t.flow.rule}) into the database` };
        }
      }
    }
    return null;
  }
}


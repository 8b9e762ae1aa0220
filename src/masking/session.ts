// Masking for one session: which of the policy's masking rules apply to its
// identity and target, and, against a catalog snapshot, which result columns
// they mask. A column is masked when a rule names it (by name or classification),
// when it is a view column whose origin is masked, or when it is computed from a
// masked column (the statement's own column references decide, conservatively:
// any masked column the statement reads into its output taints every computed
// output column). Statements that would move masked values where masking cannot
// follow them (into a notification or a setting, the planner's statistics, a
// renamed column) are refused.

import type { Analysis, StatementFacts } from '../analysis/facts.js';
import { analyzePg } from '../analysis/pg/analyze.js';
import {
  callsOf, columnCandidates, commentTags, inheritanceLine, statisticsCatalog, UNKNOWN_PREFIX, FLOW_USES, relationsNamed,
  type CatalogSnapshot, type ColumnInfo, type RelationInfo, type TargetCatalog,
} from './catalog.js';
import { copyOptions } from './copy-options.js';
import { ddlChanges, sqlFunctionBody, type DdlChange } from './ddl.js';
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
/** For view columns over the planner's statistics (sample values of every column). */
const STATISTICS: MaskSpec = Object.freeze({ strategy: 'redact', rule: 'masking.statistics' }) as MaskSpec;

/**
 * Functions that send or keep a value outside the statement's result (a notification,
 * a setting, which SHOW, current_setting and ParameterStatus give back, a large object,
 * a WAL message, a server file, another server): a masked value given to one would
 * leave unmasked. Keyed on the function's own name, whatever schema it is called through.
 */
const SINKS: ReadonlySet<string> = new Set([
  'pg_notify', 'set_config', 'setval', 'pg_logical_emit_message',
  'lo_from_bytea', 'lo_put', 'lowrite', 'lo_import', 'lo_export', 'lo_create', 'lo_truncate', 'lo_truncate64',
  'pg_file_write', 'pg_file_rename', 'pg_create_restore_point',
  'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot',
  'pg_copy_physical_replication_slot', 'pg_copy_logical_replication_slot',
]);
const SINK_PREFIXES = ['dblink', 'pg_replication_origin_', 'pg_background_'];

/** The sink (SINKS) a function name as written calls, or null. */
function sinkOf(fn: string): string | null {
  const name = fn.slice(fn.lastIndexOf('.') + 1);
  return SINKS.has(name) || SINK_PREFIXES.some((p) => name.startsWith(p)) ? name : null;
}

/** Names and classification tags a DDL statement would give columns: what the rules would see afterwards. */
interface WhatIf {
  printed: Map<ColumnInfo, string>;
  tags: Map<ColumnInfo, string[]>;
}

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
  /** The statement would move masked values where masking cannot follow them (see SessionMasking.taint). */
  refusal?: MaskRefusal;
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

  private anyMasked(s: CatalogSnapshot, r: RelationInfo, depth: number, w: WhatIf | null = null): MaskSpec | null {
    for (const c of r.columns.values()) {
      const m = this.columnSpec(s, c, depth, w);
      if (m) return derivedSpec(m);
    }
    return null;
  }

  // `w`: judged as if a DDL statement had renamed or re-tagged some columns.
  private columnSpec(s: CatalogSnapshot, c: ColumnInfo | undefined, depth: number, w: WhatIf | null = null): MaskSpec | null {
    if (!c) return null;
    for (const rule of this.rules) {
      if (named(rule, c, w) || c.related?.some((k) => named(rule, k, w))) return rule.spec;
    }
    if (!c.lineage || depth > MAX_DEPTH) return null;
    if ('rel' in c.lineage) {
      const o = s.relations.get(c.lineage.rel);
      if (!o) return s.statistics?.has(c.lineage.rel) ? STATISTICS : null;
      return c.lineage.att === 0 ? this.anyMasked(s, o, depth + 1, w) : this.columnSpec(s, o.columns.get(c.lineage.att), depth + 1, w);
    }
    for (const src of c.lineage.sources) {
      const m = this.sourceSpec(s, src.rel, src.column, depth + 1, w);
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

  private sourceSpec(s: CatalogSnapshot, rel: number, column: string, depth: number, w: WhatIf | null): MaskSpec | null {
    const r = s.relations.get(rel);
    if (!r) return s.statistics?.has(rel) ? STATISTICS : null;
    if (column === '*') return this.anyMasked(s, r, depth, w);
    return this.columnSpec(s, r.byName.get(column), depth, w);
  }

  /**
   * What the statements do with masked columns, judged by name against the snapshot;
   * with a refusal when one reads the planner's statistics, gives a masked value to a
   * function that sends or keeps it outside the result (SINKS), or is DDL that would
   * copy, rename or re-classify masked columns out of the rules' reach.
   */
  taint(s: CatalogSnapshot, statements: readonly StatementFacts[]): StatementTaint {
    let flow: MaskSpec | null = null;
    const inferred: string[] = [];
    let sensitive = false;
    let copied = false;
    let refusal: MaskRefusal | null = null;
    for (const f of statements) {
      // Any masked column the statement references, however used (a WHERE clause calls functions too).
      let reached: MaskSpec | null = null;
      for (const t of f.reads) {
        for (const r of relationsNamed(s, t.candidates)) if (this.anyMasked(s, r, 0)) sensitive = true;
        const stats = statisticsCatalog(t.candidates);
        // Once ANALYZE has run, they hold sample values of every column: refused whatever is masked.
        if (stats) refusal ??= { rule: STATISTICS.rule, message: `${stats} holds sample values of every column, masked ones included: it may not be read in sessions with masking rules` };
      }
      for (const c of f.columns) {
        const rels = [...relationsNamed(s, columnCandidates(f, c))];
        // A name no relation has as a column may be a whole-row reference (`SELECT u::text FROM users u`).
        const whole = c.column === '*' || !rels.some((r) => r.byName.has(c.column));
        for (const r of rels) {
          const m = whole ? this.anyMasked(s, r, 0) : this.columnSpec(s, r.byName.get(c.column), 0);
          if (!m) continue;
          sensitive = true;
          reached ??= m;
          if (FLOW_USES.has(c.use)) {
            flow ??= m;
            if (c.use !== 'returning') copied = true;
          }
          // A whole row used to filter, sort or join (`WHERE u.to_jsonb->>'ssn' LIKE ...`, a renamed column) infers too;
          // an unqualified name no table has is a subquery's output, judged by what it is computed from.
          else if (INFER_USES.has(c.use) && (!whole || c.column === '*' || c.table !== null)) inferred.push(r.byName.get(c.column)?.printed ?? `${r.printed}.${c.column}`);
        }
      }
      refusal ??= this.sinkRefusal(s, f, reached) ?? this.ddlRefusal(s, f);
    }
    // Code dbward cannot read may return (or raise, in a message) any masked value it reads.
    const judged = statements.some((f) => f.kinds[0] === 'create_function')
      ? statements.map((f) => (this.harmlessFunction(s, f) ? { ...f, flags: f.flags.filter((fl) => fl !== 'anonymous_code') } : f))
      : statements;
    const calls = callsOf(s, judged);
    if (calls.some((q) => q.startsWith(UNKNOWN_PREFIX))) this.missed();
    if (this.untrusted(calls) && this.masksSomething(s)) {
      if (flow?.strategy !== 'null') flow = OPAQUE;
      sensitive = true;
      // What such code returns may be a masked value: written into the database, the next reader sees it.
      copied = true;
    }
    if (refusal) return { flow, inferred, sensitive, copied, refusal };
    return flow || sensitive || inferred.length ? { flow, inferred, sensitive, copied } : CLEAN;
  }

  /**
   * A statement that calls a function in SINKS and references a masked column anywhere
   * (or runs code dbward cannot read) may hand it a masked value: which argument gets
   * which value is not followed, so the whole statement is refused.
   */
  private sinkRefusal(s: CatalogSnapshot, f: StatementFacts, reached: MaskSpec | null): MaskRefusal | null {
    let sink: string | null = null;
    for (const fn of f.functions) sink ??= sinkOf(fn);
    if (sink === null) return null;
    const spec = reached ?? (this.untrusted(callsOf(s, [f])) && this.masksSomething(s) ? OPAQUE : null);
    if (!spec) return null;
    return { rule: spec.rule, message: `statement may pass values of masked columns (rule ${spec.rule}) to ${sink}(), which sends or keeps them outside the result, where dbward cannot mask them` };
  }

  /**
   * A CREATE FUNCTION in SQL whose body dbward can read and finds harmless: plain SELECTs
   * of nothing masked, calling only built-in functions, with no side effect. Other code a
   * masked session creates may copy masked values when called (into a table, a setting),
   * out of sight; calls of any user-defined function are judged as code dbward cannot read.
   */
  private harmlessFunction(s: CatalogSnapshot, f: StatementFacts): boolean {
    if (f.kinds.length !== 1 || f.kinds[0] !== 'create_function') return false;
    const body = sqlFunctionBody(f.text);
    if (body === null) return false;
    // Its names resolve under the caller's search_path: any schema.
    const a = analyzePg(body, { searchPath: ['*'], user: '' });
    if (!a.ok) return false;
    for (const g of a.statements) {
      if (g.kinds.length !== 1 || g.kinds[0] !== 'select' || g.flags.some((fl) => fl !== 'no_limit')) return false;
      if (g.functions.some((fn) => sinkOf(fn) !== null || s.routines.has(fn) || !s.builtins.has(fn))) return false;
      if ((g.operators ?? []).some((op) => s.operators.has(op))) return false;
    }
    const t = this.taint(s, a.statements);
    return !t.sensitive && !t.flow && !t.refusal;
  }

  /** A refusal for DDL that would take masked values out of the rules' reach (see ddl.ts), else null. */
  private ddlRefusal(s: CatalogSnapshot, f: StatementFacts): MaskRefusal | null {
    if (f.kinds[0] !== 'alter' && f.kinds[0] !== 'comment') return null;
    const changes = ddlChanges(f.text);
    if (changes === null) return { rule: 'masking', message: 'statement could not be read to check what it does to masked columns' };
    for (const ch of changes) {
      const r = this.judgeChange(s, f, ch);
      if (r) return r;
    }
    return null;
  }

  private judgeChange(s: CatalogSnapshot, f: StatementFacts, ch: DdlChange): MaskRefusal | null {
    if (ch.kind === 'rename_schema') {
      const w: WhatIf = { printed: new Map(), tags: new Map() };
      for (const r of s.relations.values()) {
        const [schema, table] = printedParts(r.printed);
        if (schema === ch.schema) for (const c of r.columns.values()) w.printed.set(c, `${ch.to}.${table}.${c.name}`);
      }
      return this.keepsMasks(s, w);
    }
    const names = ch.kind === 'inheritance' ? ch.relations : [ch.relation];
    for (const name of names) {
      const rels = this.named(s, f, name);
      if (rels === null) return this.unknown(name);
      for (const r of rels) {
        const refused = this.judgeOn(s, r, ch);
        if (refused) return refused;
      }
    }
    return null;
  }

  // One relation the change may be made to.
  private judgeOn(s: CatalogSnapshot, r: RelationInfo, ch: Exclude<DdlChange, { kind: 'rename_schema' }>): MaskRefusal | null {
    const w: WhatIf = { printed: new Map(), tags: new Map() };
    const [schema, table] = printedParts(r.printed);
    switch (ch.kind) {
      case 'expression':
        for (const ref of ch.refs) {
          const col = ref.length > 0 ? r.byName.get(ref[ref.length - 1]!) : undefined;
          // A column's own value, under its own name (ALTER COLUMN email TYPE ... USING email::varchar).
          if (col && col.name === ch.target) continue;
          // Not a column: a whole-row reference, or a name dbward does not know.
          const m = col ? this.columnSpec(s, col, 0) : this.anyMasked(s, r, 0);
          if (m) return { rule: m.rule, message: `statement copies values of masked columns (rule ${m.rule}) into the database` };
        }
        return null;
      case 'inheritance': {
        // Rows of a child are read through its parents: the rules of one then mask the other, which
        // the catalog reading sees only once the change is committed (and DETACH leaves a child unmasked).
        const m = this.anyMasked(s, r, 0);
        return m && { rule: m.rule, message: `statement changes the inheritance or partitioning of ${r.printed}, which has masked columns (rule ${m.rule}); refused in sessions with masking rules` };
      }
      case 'comment': {
        const col = r.byName.get(ch.column);
        if (col) w.tags.set(col, commentTags(ch.comment));
        break;
      }
      case 'rename':
        if (ch.column === null) {
          for (const c of r.columns.values()) w.printed.set(c, `${schema}.${ch.to}.${c.name}`);
          break;
        }
        // PostgreSQL renames the column in every descendant too.
        for (const d of [r, ...inheritanceLine(s, r, 'children')]) {
          const col = d.byName.get(ch.column);
          if (col) w.printed.set(col, `${d.printed}.${ch.to}`);
        }
        break;
      case 'set_schema':
        for (const c of r.columns.values()) w.printed.set(c, `${ch.schema}.${table}.${c.name}`);
        break;
    }
    return this.keepsMasks(s, w);
  }

  /** A refusal when some column masked now would not be masked by the same rule under `w`. */
  private keepsMasks(s: CatalogSnapshot, w: WhatIf): MaskRefusal | null {
    const touched = (c: ColumnInfo) => w.printed.has(c) || w.tags.has(c);
    for (const r of s.relations.values()) {
      for (const c of r.columns.values()) {
        if (!touched(c) && !c.related?.some(touched)) continue;
        const before = this.columnSpec(s, c, 0);
        if (!before || this.columnSpec(s, c, 0, w)?.rule === before.rule) continue;
        return {
          rule: before.rule,
          message: `statement would leave masked column ${c.printed} (rule ${before.rule}) under a name or classification the masking rules do not mask alike; renaming, moving or re-classifying it is refused in sessions with masking rules`,
        };
      }
    }
    return null;
  }

  /** The relations of the snapshot a relation named in statement `f` may be; null when none. */
  private named(s: CatalogSnapshot, f: StatementFacts, name: string): RelationInfo[] | null {
    const ref = f.writes.find((t) => t.name === name) ?? f.reads.find((t) => t.name === name);
    const rels = [...relationsNamed(s, ref?.candidates ?? [name.includes('.') ? name : `*.${name}`])];
    return rels.length > 0 ? rels : null;
  }

  // A relation the snapshot does not know (created since it was read, or not yet committed)
  // may hold masked columns under a rule: refused until a reading knows it.
  private unknown(name: string): MaskRefusal {
    if (this.missed()) this.catalog.load().catch(() => undefined); // so that a retry is judged on a fresh reading
    return {
      rule: 'masking.unknown_relation',
      message: `relation ${name} is not in dbward's reading of the catalog yet (created since, or not committed): renaming, moving, re-classifying or copying its columns is refused in sessions with masking rules until it is`,
    };
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
    if (t.refusal) return t.refusal;
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


/** Whether `rule` names column `c` (by printed name or classification tag), as `w` would leave it. */
function named(rule: CompiledMaskRule, c: ColumnInfo, w: WhatIf | null): boolean {
  const printed = w?.printed.get(c) ?? c.printed;
  const tags = w?.tags.get(c) ?? c.tags;
  return rule.columns?.test(printed) === true || (rule.classes !== null && tags.some((t) => rule.classes!.test(t)));
}

/** The parts of a printed dotted name (`public."a.b"` is `public` and `"a.b"`), each still printed. */
function printedParts(printed: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < printed.length; i++) {
    if (printed[i] === '"') quoted = !quoted;
    else if (printed[i] === '.' && !quoted) {
      parts.push(printed.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(printed.slice(start));
  return parts;
}

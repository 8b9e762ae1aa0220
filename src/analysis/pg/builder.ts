// Accumulates the facts of one statement as the walk finds them, without
// duplicates, and turns them into a StatementFacts at the end.

import type { ColumnRef, ColumnUse, StatementFacts, StatementFlag, StatementKind, TableRef } from '../facts.js';

/** A column a value may be computed from: its table (TableRef.name, null when unknown) and name (`*`: any). */
export interface ColumnSource {
  readonly table: string | null;
  readonly column: string;
}

/** Column sources without duplicates, keyed by table and column. */
export type Sources = Map<string, ColumnSource>;

/** Adds `src` to `into`. */
export function addSource(into: Sources, table: string | null, column: string): void {
  // \u0001 cannot start a TableRef name, so a null table never collides with a real one.
  const key = `${table ?? '\u0001'}\u0000${column}`;
  if (!into.has(key)) into.set(key, { table, column });
}

// What a statement does only when it runs: EXPLAIN without ANALYZE plans it and drops these.
const EXECUTION_FLAGS: ReadonlySet<StatementFlag> = new Set(['writes', 'no_where', 'no_limit', 'ddl']);

/** The facts of one statement, collected during its walk. */
export class FactsBuilder {
  readonly kinds: StatementKind[] = [];
  readonly flags = new Set<StatementFlag>();
  private readonly reads = new Map<string, TableRef>();
  private readonly writes = new Map<string, TableRef>();
  private readonly columns = new Map<string, ColumnRef>();
  private readonly functions = new Set<string>();
  private readonly operators = new Set<string>();
  /** Depth of EXPLAIN without ANALYZE: what is under it is planned, not run. */
  planOnly = 0;
  /** A SELECT whose rows reach the client has no LIMIT; `no_limit` if it also reads a table. */
  private unlimited = false;
  prepared: string | undefined;
  setting: string | undefined;
  values: string[] | undefined;
  /** The statement's text carries a credential. */
  secret = false;
  /** ...given by an expression normalization leaves in place: the names in the facts may spell it. */
  secretNames = false;
  /** Open taps: each also receives every column recorded (what an output column is computed from). */
  private readonly taps: Sources[] = [];

  /** Adds a kind (the first added is the top-level kind). */
  kind(k: StatementKind): void {
    if (!this.kinds.includes(k)) this.kinds.push(k);
  }

  /** Raises a flag, unless it only applies to running and the statement is only planned. */
  flag(f: StatementFlag): void {
    if (this.planOnly > 0 && EXECUTION_FLAGS.has(f)) return;
    this.flags.add(f);
  }

  /** Records a table read. */
  read(ref: TableRef): void {
    merge(this.reads, ref);
  }

  /** Records a table written (read, when only planned). */
  write(ref: TableRef): void {
    merge(this.planOnly > 0 ? this.reads : this.writes, ref);
    // UPDATE pg_settings is set_config by another name.
    if (this.planOnly === 0 && ref.candidates.some((c) => c === 'pg_catalog.pg_settings' || c === '*.pg_settings')) this.flags.add('parse_hazard');
  }

  /** Records a column reference. */
  column(table: string | null, column: string, use: ColumnUse): void {
    const key = `${table ?? ''}\u0000${column}\u0000${use}`;
    if (!this.columns.has(key)) this.columns.set(key, { table, column, use });
    for (let i = 0; i < this.taps.length; i++) addSource(this.taps[i]!, table, column);
  }

  /** Runs `fn` with every column it records also collected into `into` (nested taps all collect). */
  tap(into: Sources, fn: () => void): void {
    this.taps.push(into);
    try {
      fn();
    } finally {
      this.taps.pop();
    }
  }

  /** Records a function called, as written. */
  fn(name: string): void {
    this.functions.add(name);
  }

  /** Records an operator used, by its bare name. */
  op(name: string): void {
    this.operators.add(name);
  }

  /** Marks that the client gets a SELECT's rows without LIMIT. */
  noLimit(): void {
    if (this.planOnly === 0) this.unlimited = true;
  }

  /**
   * Everything another statement's facts say (EXECUTE of a prepared statement),
   * `secret` included: the EXECUTE's arguments fill what the PREPARE left as
   * parameters, which may be a credential (`set_config('app.password', $1, ...)`).
   */
  absorb(f: StatementFacts, rebase: (ref: TableRef) => TableRef): void {
    for (let i = 0; i < f.kinds.length; i++) {
      // The stored facts are those of the PREPARE; what runs is what it prepared.
      if (i === 0 && f.kinds[0] === 'prepare') continue;
      this.kind(f.kinds[i]!);
    }
    for (const r of f.reads) this.read(rebase(r));
    for (const w of f.writes) this.write(rebase(w));
    for (const c of f.columns) this.column(c.table, c.column, c.use);
    for (const fn of f.functions) this.fn(fn);
    for (const op of f.operators ?? []) this.op(op);
    for (const fl of f.flags) this.flag(fl);
    if (f.secret) this.secret = true;
    if (f.secretNames) this.secretNames = true;
  }

  /** The collected facts, for the statement text `text`. */
  build(text: string): StatementFacts {
    if (this.unlimited && this.reads.size > 0) this.flags.add('no_limit');
    const facts: StatementFacts = {
      text,
      kinds: this.kinds,
      reads: [...this.reads.values()],
      writes: [...this.writes.values()],
      columns: [...this.columns.values()],
      functions: [...this.functions],
      flags: [...this.flags],
    };
    if (this.operators.size > 0) facts.operators = [...this.operators];
    if (this.prepared !== undefined) facts.prepared = this.prepared;
    if (this.setting !== undefined) facts.setting = this.setting;
    if (this.values !== undefined) facts.values = this.values;
    if (this.secret) facts.secret = true;
    if (this.secretNames) facts.secretNames = true;
    return facts;
  }
}

function merge(into: Map<string, TableRef>, ref: TableRef): void {
  const had = into.get(ref.name);
  if (!had) {
    into.set(ref.name, { name: ref.name, candidates: [...ref.candidates] });
    return;
  }
  for (const c of ref.candidates) if (!had.candidates.includes(c)) had.candidates.push(c);
}

// The per-session state that changes what a statement means: which schemas an
// unqualified name may resolve to, and what SQL-level prepared statements hold.
// Updated from the facts of statements as they are admitted, and for prepared
// names once the server says they ran. It only ever over-approximates: a
// search_path once set stays a candidate for the session, and a name whose fate
// is not known is treated as unknown.

import type { Analysis, AnalysisContext, StatementFacts } from './facts.js';
import { splitSearchPath } from './search-path.js';

/** Bound on SQL PREPAREs remembered per session (a client could otherwise grow it without end). */
const MAX_PREPARED = 1000;

/** Prepared names a statement string changes, held until the server says whether it ran. */
export interface PreparedChange {
  /** Statements in the string. */
  statements: number;
  steps: { name: string; facts: StatementFacts | null; before: StatementFacts | null }[];
}

/** Search path and prepared statements of one session, as analysis needs them. */
export class SqlSessionState implements AnalysisContext {
  searchPath: string[];
  readonly prepared = new Map<string, StatementFacts>();
  /** Names a string in flight prepares or deallocates, by the latest such string. */
  private readonly doubt = new Map<string, PreparedChange>();
  /** Bumped on every change, so per-session decision caches know to drop entries. */
  version = 0;

  constructor(searchPath: string, readonly user: string) {
    this.searchPath = splitSearchPath(searchPath);
  }

  /** Sets the search_path the server reported after login (before any statement is analyzed). */
  setSearchPath(value: string): void {
    this.searchPath = splitSearchPath(value);
    this.version++;
  }

  /**
   * Folds in the effects of an admitted statement string. Names it prepares or
   * deallocates are forgotten until the server says whether it ran (`settle`):
   * PREPARE and DEALLOCATE take effect only when they succeed, and a rollback does
   * not undo them, so until then an EXECUTE of such a name is judged as unknown.
   * Returns what `settle` needs, or null when the string changes no name.
   */
  apply(analysis: Analysis): PreparedChange | null {
    if (!analysis.ok) return null;
    let change: PreparedChange | null = null;
    for (const s of analysis.statements) {
      if (s.flags.includes('search_path_change')) this.widen(s);
      const kind = s.kinds[0];
      if (kind !== 'prepare' && kind !== 'deallocate' && kind !== 'discard') continue;
      change ??= { statements: analysis.statements.length, steps: [] };
      if (s.prepared !== undefined && kind !== 'discard') {
        change.steps.push({ name: s.prepared, facts: kind === 'prepare' ? s : null, before: this.prepared.get(s.prepared) ?? null });
        this.prepared.delete(s.prepared);
        this.doubt.set(s.prepared, change);
      } else {
        // DEALLOCATE ALL, DISCARD ALL (or any DISCARD): everything is forgotten, whether or not it runs.
        this.prepared.clear();
        this.doubt.clear();
      }
      this.version++;
    }
    return change;
  }

  /**
   * The server answered a string `apply` saw: what succeeded takes effect. A lone
   * statement that did not run leaves the names as they were; in a string of
   * several that failed, which ones ran is not certain, so their names stay unknown.
   */
  settle(change: PreparedChange, status: 'ok' | 'error' | 'skipped' | 'lost'): void {
    if (status === 'lost') return;
    const ran = status === 'ok';
    const certain = ran || change.statements === 1;
    const mine = change.steps.filter((step) => this.doubt.get(step.name) === change);
    for (const step of mine) this.doubt.delete(step.name);
    // In order: `PREPARE p AS a; DEALLOCATE p; PREPARE p AS b` leaves b.
    for (const step of mine) {
      const value = !certain ? null : ran ? step.facts : step.before;
      if (value === null) this.prepared.delete(step.name);
      else if (this.prepared.size < MAX_PREPARED || this.prepared.has(step.name)) this.prepared.set(step.name, value);
    }
    this.version++;
  }

  /**
   * Records a statement prepared by the protocol's Parse message: it shares the
   * server's namespace with SQL PREPARE, so a later SQL `EXECUTE name` runs it and
   * must be judged by its facts. `analysis` null forgets the name (Close, or a Parse refused).
   */
  protocolPrepared(name: string, analysis: Analysis | null): void {
    if (name === '') return; // the unnamed statement cannot be EXECUTEd from SQL
    const facts = analysis?.ok && analysis.statements.length === 1 ? analysis.statements[0]! : null;
    if (facts === null) {
      if (this.prepared.delete(name)) this.version++;
      return;
    }
    if (this.prepared.size >= MAX_PREPARED && !this.prepared.has(name)) return;
    this.prepared.set(name, { ...facts, kinds: ['prepare', ...facts.kinds.filter((k) => k !== 'prepare')], prepared: name });
    this.version++;
  }

  private widen(s: StatementFacts): void {
    // SET adds its literal schemas; RESET, SET ... DEFAULT and DISCARD ALL return to the
    // login value, already a candidate; anything else (set_config, possibly computed)
    // makes every schema a candidate.
    const added = s.setting === 'search_path' ? s.values ?? [] : s.kinds[0] === 'discard' ? [] : ['*'];
    const next = [...this.searchPath];
    for (const v of added) if (!next.includes(v)) next.push(v);
    if (next.length !== this.searchPath.length) {
      this.searchPath = next;
      this.version++;
    }
  }
}

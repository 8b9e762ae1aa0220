// The per-session state that changes what a statement means: which schemas an
// unqualified name may resolve to, and what SQL-level prepared statements hold.
// Updated from the facts of statements as they are admitted. It only ever
// over-approximates: a search_path once set stays a candidate for the session.

import type { Analysis, AnalysisContext, StatementFacts } from './facts.js';
import { splitSearchPath } from './search-path.js';

/** Bound on SQL PREPAREs remembered per session (a client could otherwise grow it without end). */
const MAX_PREPARED = 1000;

/** Search path and prepared statements of one session, as analysis needs them. */
export class SqlSessionState implements AnalysisContext {
  searchPath: string[];
  readonly prepared = new Map<string, StatementFacts>();
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

  /** Folds in the effects of an admitted statement string. */
  apply(analysis: Analysis): void {
    if (!analysis.ok) return;
    for (const s of analysis.statements) {
      if (s.flags.includes('search_path_change')) this.widen(s);
      if (s.kinds[0] === 'prepare' && s.prepared !== undefined) {
        if (this.prepared.size >= MAX_PREPARED && !this.prepared.has(s.prepared)) continue;
        this.prepared.set(s.prepared, s);
        this.version++;
      } else if (s.kinds[0] === 'deallocate' || s.kinds[0] === 'discard') {
        // DEALLOCATE name forgets one; DEALLOCATE ALL and DISCARD ALL forget all. An
        // EXECUTE of a forgotten name is then judged as unknown dynamic SQL.
        if (s.kinds[0] === 'deallocate' && s.prepared !== undefined) this.prepared.delete(s.prepared);
        else this.prepared.clear();
        this.version++;
      }
    }
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

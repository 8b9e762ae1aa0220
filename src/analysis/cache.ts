// Parsing costs tens of microseconds; a repeated statement must cost a map
// lookup. Analyses are cached by search_path and text, shared by all sessions of
// a daemon (facts depend on nothing else), in least-recently-used order.
//
// Statements that differ only in integer literals (`... WHERE aid = 12345`, as
// ORMs and pgbench send them) share one entry, but only where that is sound: the
// text holds no quote, dollar, backslash or comment (so every digit run outside an
// identifier is a number token, whatever the lexer), and the facts were checked to
// depend on no literal (no SET, set_config, role or search_path change).

import type { Analysis, AnalysisContext, StatementFacts } from './facts.js';

/** Turns SQL text into facts (the engine's analyzer). */
export type AnalyzeFn = (sql: string, ctx: AnalysisContext) => Analysis;

/** Texts longer than this are analyzed every time: caching them would let one client fill memory. */
const MAX_CACHED_TEXT = 16 * 1024;

/** An LRU cache in front of an analyzer. */
export class AnalysisCache {
  private readonly entries = new Map<string, Analysis>();
  /** Analyses by text with integer literals blanked, for texts where that is sound. */
  private readonly shapes = new Map<string, Analysis>();
  hits = 0;
  misses = 0;

  constructor(private readonly analyze: AnalyzeFn, private readonly maxEntries = 10_000) {}

  /** The analysis of `sql` in `ctx`, from the cache when possible. */
  get(sql: string, ctx: AnalysisContext): Analysis {
    if (sql.length > MAX_CACHED_TEXT) {
      this.misses++;
      return this.analyze(sql, ctx);
    }
    const prefix = `${ctx.searchPath.join(',')}\u0000${ctx.user}\u0000`;
    const key = prefix + sql;
    const hit = this.entries.get(key);
    if (hit) {
      this.hits++;
      // Re-insert to mark it most recently used (Map keeps insertion order).
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const shapeKey = shapeOf(sql);
    const shaped = shapeKey === null ? undefined : this.shapes.get(prefix + shapeKey);
    if (shaped) {
      this.hits++;
      return shaped;
    }
    this.misses++;
    const analysis = this.analyze(sql, ctx);
    // EXECUTE's facts come from the session's prepared statements, not the text alone.
    if (!(analysis.ok && analysis.statements.some(dependsOnSession))) {
      remember(this.entries, key, analysis, this.maxEntries);
      if (shapeKey !== null && analysis.ok && analysis.statements.every(literalFree)) remember(this.shapes, prefix + shapeKey, analysis, this.maxEntries);
    }
    return analysis;
  }

  /** Entries held now. */
  get size(): number {
    return this.entries.size;
  }
}

/** Whether a statement's facts come from the session (EXECUTE of a prepared name), not from its text alone. */
export function dependsOnSession(s: StatementFacts): boolean {
  return s.kinds.includes('execute');
}

function remember(map: Map<string, Analysis>, key: string, analysis: Analysis, max: number): void {
  map.set(key, analysis);
  if (map.size > max) map.delete(map.keys().next().value!);
}

/** Quotes, dollar signs (dollar quotes, parameters), backslashes and comments: where digits may not be number tokens. */
const NOT_PLAIN = /['"$\\\u0000\u0001]|--|\/\*/;
/** An integer token: digits not touching an identifier character or a dot (so not part of a name, a float, or 1e5). */
const INTEGER = /(?<![\w$.\u0080-\uffff])\d+(?![\w$.\u0080-\uffff])/g;

/** The text with integer literals blanked, or null when the text is not plain enough to tell them apart safely. */
export function shapeOf(sql: string): string | null {
  if (NOT_PLAIN.test(sql)) return null;
  // \u0001 cannot occur in a plain text (NOT_PLAIN), so no shape equals another text's shape by accident.
  const shape = sql.replace(INTEGER, '\u0001');
  return shape === sql ? null : shape;
}

/** Facts that no literal in the text can change. */
function literalFree(s: StatementFacts): boolean {
  return s.setting === undefined && s.values === undefined && s.prepared === undefined
    && !s.flags.some((f) => f === 'set_config' || f === 'role_change' || f === 'search_path_change' || f === 'parse_hazard');
}

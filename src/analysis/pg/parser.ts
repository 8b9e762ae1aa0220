// libpg-query (PostgreSQL's own parser in WASM) behind a guard. A parse that fails
// with anything but a PostgreSQL syntax error (the JS stack exhausted inside WASM by a
// deeply nested expression, memory) can leave the WASM instance's stack pointer and
// heap corrupt, after which it may fail or, worse, answer wrongly. Such an instance
// is dropped for a fresh one, prepared ahead of time so that parsing never waits. An
// instance costs ~10 MB resident and ~20 ms to load; two spares absorb a burst.

import { createRequire } from 'node:module';

interface PgQuery {
  loadModule(): Promise<void>;
  parseSync(sql: string): unknown;
}

/** A parse result: the JSON tree, or PostgreSQL's error with its 0-based offset in code points. */
export type ParseOutcome =
  | { ok: true; tree: unknown }
  | { ok: false; error: string; offset?: number };

const require = createRequire(import.meta.url);
const ENTRY = require.resolve('libpg-query');

// Each evaluation of the package's entry module instantiates its own WASM module.
async function freshInstance(): Promise<PgQuery> {
  delete require.cache[ENTRY];
  const mod = require(ENTRY) as PgQuery;
  await mod.loadModule();
  return mod;
}

function isSyntaxError(e: unknown): e is Error & { sqlDetails?: { cursorPosition?: unknown } } {
  return e instanceof Error && e.name === 'SqlError';
}

const SPARES = 2;

/** The parser instance in use and its replacements. */
class ParserPool {
  private active: PgQuery | null = null;
  private readonly spares: PgQuery[] = [];
  private pending: Promise<void> | null = null;
  private lastError: unknown = null;
  private started = false;

  get loaded(): boolean {
    return this.started;
  }

  /** Resolves when an instance is ready to parse; rejects if the WASM module cannot load. */
  async ready(): Promise<void> {
    this.started = true;
    while (!this.active) {
      this.refill();
      await this.pending;
      if (!this.active && this.lastError !== null) throw this.lastError;
    }
    this.refill();
  }

  parse(sql: string): ParseOutcome {
    const parser = this.active;
    if (!parser) return { ok: false, error: 'the SQL parser is restarting; try again' };
    try {
      return { ok: true, tree: parser.parseSync(sql) };
    } catch (e) {
      if (isSyntaxError(e)) {
        const pos = e.sqlDetails?.cursorPosition;
        return typeof pos === 'number' ? { ok: false, error: e.message, offset: pos } : { ok: false, error: e.message };
      }
      this.retire();
      return { ok: false, error: `statement could not be parsed safely (${e instanceof Error ? e.message : String(e)})` };
    }
  }

  private retire(): void {
    this.active = this.spares.shift() ?? null;
    this.refill();
  }

  // Keeps one instance active and SPARES ready; a failed load is retried after a pause.
  private refill(): void {
    if (this.pending || (this.active && this.spares.length >= SPARES)) return;
    this.pending = freshInstance()
      .then(
        (p) => {
          if (!this.active) this.active = p;
          else this.spares.push(p);
          this.lastError = null;
        },
        (e: unknown) => {
          this.lastError = e ?? new Error('libpg-query failed to load');
        },
      )
      .finally(() => {
        this.pending = null;
        if (this.lastError === null) this.refill();
        else setTimeout(() => this.refill(), 1000).unref();
      });
  }
}

const pool = new ParserPool();

/** Loads the PostgreSQL parser; analyzePg may be called once this resolves. */
export async function loadPgParser(): Promise<void> {
  await pool.ready();
}

/** Whether loadPgParser() was ever called. */
export function pgParserLoaded(): boolean {
  return pool.loaded;
}

/** Parses `sql` with libpg-query; never throws. */
export function parsePg(sql: string): ParseOutcome {
  return pool.parse(sql);
}

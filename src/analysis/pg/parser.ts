// libpg_query (PostgreSQL's own parser in WASM, the @libpg-query/parser build that
// also fingerprints and normalizes) behind a guard. A call that fails with anything
// but an error libpg_query reported itself (the JS stack exhausted inside WASM by a
// deeply nested expression, memory) can leave the WASM instance's stack pointer and
// heap corrupt, after which it may fail or, worse, answer wrongly. Such an instance
// is dropped for a fresh one, prepared ahead of time so that parsing never waits. An
// instance costs ~5 MB resident and ~25 ms to load (the first one ~150 ms more: the
// package's 5 MB protobuf schema, read once); two spares absorb a burst.

import { createRequire } from 'node:module';

interface PgQuery {
  loadModule(): Promise<void>;
  parseSync(sql: string): unknown;
  fingerprintSync(sql: string): string;
  normalizeSync(sql: string): string;
}

/** A parse result: the JSON tree, or PostgreSQL's error with its 0-based offset in code points. */
export type ParseOutcome =
  | { ok: true; tree: unknown }
  | { ok: false; error: string; offset?: number };

const require = createRequire(import.meta.url);
const ENTRY = require.resolve('@libpg-query/parser');

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

// fingerprintSync and normalizeSync throw libpg_query's own error text as a plain Error
// when it starts like this, and return it as their result otherwise.
const REPORTED = /^(?:syntax error|deparse error|ERROR)/;

function isReportedError(e: unknown): boolean {
  return e instanceof Error && e.constructor === Error && REPORTED.test(e.message);
}

const FINGERPRINT = /^[0-9a-f]{16}$/;

const SPARES = 2;

/** The parser instance in use and its replacements. */
class ParserPool {
  private active: PgQuery | null = null;
  private readonly spares: PgQuery[] = [];
  private pending: Promise<void> | null = null;
  private lastError: unknown = null;
  private started = false;
  /** The last text fingerprinted: it parses, so it may be normalized. */
  private parses: string | null = null;

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

  /** libpg_query's fingerprint of `sql`, or null when it does not parse. */
  fingerprint(sql: string): string | null {
    const fp = this.call((p) => p.fingerprintSync(sql));
    // Anything else is an error message passed off as a result.
    if (fp === null || !FINGERPRINT.test(fp)) return null;
    this.parses = sql;
    return fp;
  }

  /** libpg_query's normalized `sql`, or null when it does not parse. */
  normalize(sql: string): string | null {
    // normalizeSync returns some errors (an unterminated literal, with the text after
    // it) as if they were the normalized text: only a text known to parse is normalized.
    if (sql !== this.parses && this.fingerprint(sql) === null) return null;
    return this.call((p) => p.normalizeSync(sql));
  }

  private call(op: (p: PgQuery) => string): string | null {
    const parser = this.active;
    if (!parser) return null;
    try {
      return op(parser);
    } catch (e) {
      if (!isReportedError(e)) this.retire();
      return null;
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
          this.lastError = e ?? new Error('@libpg-query/parser failed to load');
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

/** Parses `sql` with libpg_query; never throws. */
export function parsePg(sql: string): ParseOutcome {
  return pool.parse(sql);
}

/** libpg_query's fingerprint of `sql` (16 hex digits); null when it does not parse or the parser is restarting. */
export function pgFingerprint(sql: string): string | null {
  return pool.fingerprint(sql);
}

/** libpg_query's normalization of `sql` (constants as $n); null when it does not parse or the parser is restarting. */
export function pgNormalize(sql: string): string | null {
  return pool.normalize(sql);
}

// SQL text to StatementFacts with PostgreSQL's own grammar (libpg_query). One entry
// per statement of a multi-statement string; what one statement does to the session
// (search_path, role, PREPARE/DEALLOCATE) is carried to the statements after it, as
// PostgreSQL analyses each only once the previous one has run. Anything the parser
// rejects, or the analyzer cannot finish, is { ok: false }: the caller denies it.

import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { Analysis, AnalysisContext, StatementFacts } from '../facts.js';
import { isObj, items } from './ast.js';
import { FactsBuilder } from './builder.js';
import { HANDLERS } from './handlers.js';
import { parsePg, pgParserLoaded } from './parser.js';
import { Resolver } from './tables.js';
import { NestingError, Walker, type SessionEffects, type WalkEnv } from './walk.js';

export { loadPgParser } from './parser.js';

const PG_WHITESPACE = /^[ \t\n\r\f\v]*$/;
// With the u flag only unpaired surrogates match: text no UTF-8 encoder can represent.
const LONE_SURROGATE = /\p{Surrogate}/u;
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Facts about every statement in `sql`, as PostgreSQL would parse it in a session
 * described by `ctx`. Never throws on any input; throws only when called before
 * loadPgParser() has been awaited.
 */
export function analyzePg(sql: string, ctx: AnalysisContext): Analysis {
  if (!pgParserLoaded()) throw new Error('analyzePg called before the PostgreSQL parser was loaded: await loadPgParser() first');
  try {
    return analyze(sql, ctx);
  } catch (e) {
    if (e instanceof NestingError) return { ok: false, error: e.message, tooComplex: true };
    // The JS stack exhausted by a deep tree: a limit of dbward's, told apart from a refusal by policy.
    if (e instanceof RangeError && /call stack/i.test(e.message)) return { ok: false, error: 'statement is nested too deeply to analyze', tooComplex: true };
    // A bug: refuse rather than pass something unread.
    return { ok: false, error: `statement could not be analyzed (${e instanceof Error ? e.message : String(e)})` };
  }
}

function analyze(sql: string, ctx: AnalysisContext): Analysis {
  if (typeof sql !== 'string') return { ok: false, error: 'statement text is not a string' };
  // The parser reads a C string: text after a NUL would reach the server unread.
  const nul = sql.indexOf('\0');
  if (nul >= 0) return { ok: false, error: 'statement text contains a NUL character', position: position(sql, nul) };
  const bad = LONE_SURROGATE.exec(sql);
  if (bad) return { ok: false, error: 'statement text is not valid Unicode', position: position(sql, bad.index) };
  if (sql.trim() === '') {
    if (PG_WHITESPACE.test(sql)) return { ok: true, statements: [] };
    // Spaces JavaScript trims but PostgreSQL does not (NBSP, U+2028...): not SQL.
    const at = sql.search(/[^ \t\n\r\f\v]/);
    return { ok: false, error: 'syntax error: unexpected character', position: position(sql, at) };
  }

  const parsed = parsePg(sql);
  if (!parsed.ok) {
    const fail: Analysis = { ok: false, error: parsed.error };
    // PostgreSQL counts the position in characters (code points), 0-based here.
    if (parsed.offset !== undefined) fail.position = parsed.offset + 1;
    return fail;
  }
  const slice = slicer(sql);
  const session = new Session(ctx);
  const statements: StatementFacts[] = [];
  for (const raw of items(isObj(parsed.tree) ? parsed.tree.stmts : undefined)) {
    const r = isObj(raw) ? raw : {};
    const builder = new FactsBuilder();
    const walker = new Walker(builder, session, HANDLERS);
    walker.root(r.stmt);
    const facts = builder.build(slice(num(r.stmt_location), num(r.stmt_len)));
    session.after(facts, walker.effects);
    statements.push(facts);
  }
  return { ok: true, statements, fingerprint: treeFingerprint(parsed.tree) };
}

/**
 * A hash of the parse tree without what varies between texts of one shape:
 * positions, constants, and option values (DefElem args, which also hold role
 * passwords and connection strings: a fingerprint must not let anyone test a
 * guess at a secret). libpg_query has its own fingerprint, but calling it means
 * a second parse, and its first call grows the WASM instance by ~80 MB.
 */
function treeFingerprint(tree: unknown): string {
  const canonical = JSON.stringify(tree, function (this: Record<string, unknown>, key, value: unknown) {
    if (key === 'location' || key === 'stmt_location' || key === 'stmt_len') return undefined;
    if (key === 'A_Const' || (key === 'arg' && 'defname' in this)) return '?';
    return value;
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

function num(x: unknown): number {
  return typeof x === 'number' && x > 0 ? x : 0;
}

// libpg_query locations are byte offsets into the UTF-8 text; a length of 0 means "to the end".
function slicer(sql: string): (start: number, len: number) => string {
  if (!NON_ASCII.test(sql)) return (start, len) => sql.slice(start, len > 0 ? start + len : undefined).trim();
  const bytes = Buffer.from(sql, 'utf8');
  return (start, len) => bytes.toString('utf8', start, len > 0 ? start + len : bytes.length).trim();
}

/** 1-based position, in code points as PostgreSQL counts them, of the UTF-16 index `at`. */
function position(sql: string, at: number): number {
  let n = 1;
  for (let i = 0; i < at; i++) {
    const c = sql.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < at && (sql.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
    n++;
  }
  return n;
}

/** The session as seen by the statements of one string, changing as they run. */
class Session implements WalkEnv {
  private path: string[];
  private users: string[];
  private cached: Resolver | null = null;
  // PREPAREd (facts) or DEALLOCATEd (null) earlier in this string.
  private readonly overlay = new Map<string, StatementFacts | null>();
  private deallocatedAll = false;

  constructor(private readonly ctx: AnalysisContext) {
    this.path = [...ctx.searchPath];
    this.users = [ctx.user];
  }

  get resolver(): Resolver {
    return (this.cached ??= new Resolver(this.path, this.users));
  }

  prepared(name: string): StatementFacts | undefined {
    if (this.overlay.has(name)) return this.overlay.get(name) ?? undefined;
    return this.deallocatedAll ? undefined : this.ctx.prepared?.get(name);
  }

  /** Carries what statement `f` did to the session over to the statements after it. */
  after(f: StatementFacts, e: SessionEffects): void {
    const top = f.kinds[0];
    if (top === 'prepare' && f.prepared !== undefined) this.overlay.set(f.prepared, f);
    else if (top === 'deallocate') {
      if (f.prepared !== undefined) this.overlay.set(f.prepared, null);
      else {
        this.overlay.clear();
        this.deallocatedAll = true;
      }
    }
    // Code the analyzer cannot read may have changed search_path or the role.
    const opaque = f.flags.includes('dynamic_sql') || f.kinds.includes('do') || f.kinds.includes('call');
    if (e.pathLiteral) this.setPath([...e.pathLiteral, ...this.path]);
    else if ((f.flags.includes('search_path_change') && !e.pathDefault) || opaque) this.setPath([...this.path, '*']);
    if (e.roleLiteral !== null) this.setUsers([...this.users, e.roleLiteral]);
    else if (f.flags.includes('role_change') || opaque) this.setUsers([...this.users, '*']);
  }

  private setPath(path: string[]): void {
    this.path = [...new Set(path)];
    this.cached = null;
  }

  private setUsers(users: string[]): void {
    this.users = [...new Set(users)];
    this.cached = null;
  }
}

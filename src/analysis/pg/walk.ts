// The AST visitor. Every object and array of a statement's tree is visited: node
// types with a handler get their fields in context (which column use, which table
// role, which names are CTEs), every other node has all its fields visited. So a
// function call, table or nested statement is found wherever the grammar allows it,
// including places this file never names.

import type { ColumnUse, StatementFacts, TableRef } from '../facts.js';
import { items, nodeType, type Obj } from './ast.js';
import type { FactsBuilder, Sources } from './builder.js';
import { FILE_VIEWS } from './flags.js';
import type { Outputs } from './outputs.js';
import { STATEMENTS, flagsOf, kindOf, type StatementInfo } from './kinds.js';
import type { Resolver } from './tables.js';

/** A node handler: visits `b` (the node's body) with the right context. */
export type Handler = (w: Walker, b: Obj) => void;

/** What the walk needs from the session. */
export interface WalkEnv {
  resolver: Resolver;
  /** Facts of a statement prepared under `name`, if known. */
  prepared(name: string): StatementFacts | undefined;
}

/** What a top-level statement does to the session's name resolution, as far as the AST says. */
export interface SessionEffects {
  /** SET search_path to these schemas. */
  pathLiteral: string[] | null;
  /** search_path back to its default (RESET, SET ... DEFAULT, RESET ALL, DISCARD ALL). */
  pathDefault: boolean;
  /** SET ROLE / SET SESSION AUTHORIZATION to this role. */
  roleLiteral: string | null;
}

/** Thrown when a tree is too deep to walk: the statement is refused, not half-read. */
export class NestingError extends Error {
  constructor() {
    super('statement is nested too deeply to analyze');
  }
}

// Deeper than any statement libpg_query returns in practice (its own JSON output fails
// first at a few thousand levels), and shallow enough for Node's default stack.
const MAX_DEPTH = 2500;

const NO_SKIP: ReadonlySet<string> = new Set();

/** A FROM name: the table it is (TableRef.name; null when not a table) and, when renamed or derived, its outputs. */
export interface FromEntry {
  table: string | null;
  out: Outputs | null;
}

/** One query level's FROM names (alias, or table name) and CTEs. */
class Scope {
  readonly names = new Map<string, FromEntry>();
  ctes: Map<string, Outputs> | null = null;
  constructor(readonly parent: Scope | null) {}
}

/** Walks one statement's tree into a FactsBuilder, keeping the context handlers need. */
export class Walker {
  /** How column references met now are used. */
  use: ColumnUse = 'other';
  /** Use for the select list of the next SELECT: that of the expression holding a subquery. */
  sublinkUse: ColumnUse | null = null;
  /** Whether a RangeVar met outside FROM is read or written (DDL targets are written). */
  relRole: 'read' | 'write' = 'read';
  resolver: Resolver;
  readonly effects: SessionEffects = { pathLiteral: null, pathDefault: false, roleLiteral: null };
  /** Statement nodes entered and not yet left: 1 while in the top-level statement itself. */
  stmtDepth = 0;
  /** The outputs of the SELECT walked last (read by the FROM item or CTE that holds it). */
  outputs: Outputs | null = null;
  private scope: Scope | null = null;
  private anon = 0;
  private depth = 0;
  private innerNext = false;
  private limitNext = false;
  private limitCheck = false;

  constructor(
    readonly b: FactsBuilder,
    private readonly env: WalkEnv,
    private readonly handlers: ReadonlyMap<string, Handler>,
  ) {
    this.resolver = env.resolver;
  }

  /** Walks one top-level statement node. */
  root(node: unknown): void {
    const type = nodeType(node);
    if (type === null || !STATEMENTS.has(type)) this.b.kind('other');
    this.innerNext = true;
    this.limitNext = true;
    this.visit(node);
  }

  /** Visits any node, wrapped or bare, or an array of them. */
  visit(node: unknown): void {
    if (typeof node !== 'object' || node === null) return;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) this.visit(node[i]);
      return;
    }
    if (++this.depth > MAX_DEPTH) throw new NestingError();
    try {
      const type = nodeType(node);
      if (type !== null) this.typed(type, (node as Obj)[type] as Obj);
      else this.bare(node as Obj);
    } finally {
      this.depth--;
    }
  }

  /** Visits `node` with column references counted as `use`. */
  visitAs(node: unknown, use: ColumnUse): void {
    if (typeof node !== 'object' || node === null) return;
    const saved = this.use;
    this.use = use;
    try {
      this.visit(node);
    } finally {
      this.use = saved;
    }
  }

  /** Visits `node` with RangeVars outside FROM counted as `role`. */
  visitRole(node: unknown, role: 'read' | 'write'): void {
    const saved = this.relRole;
    this.relRole = role;
    try {
      this.visit(node);
    } finally {
      this.relRole = saved;
    }
  }

  /**
   * Visits a statement that runs as part of this one (under EXPLAIN, PREPARE, COPY,
   * CREATE RULE, ...): a SELECT there adds its kind, and `limit` says whether its rows
   * reach the client (for `no_limit`).
   */
  visitInner(node: unknown, limit: boolean): void {
    const list = items(node);
    if (list.length > 0 || Array.isArray(node)) {
      for (const n of list) this.visitInner(n, limit);
      return;
    }
    const type = nodeType(node);
    if (type !== null && STATEMENTS.has(type)) {
      this.innerNext = true;
      this.limitNext = limit;
    }
    this.visit(node);
  }

  /** Counts one level of a recursion that does not go through visit(). */
  enter(): void {
    if (++this.depth > MAX_DEPTH) throw new NestingError();
  }

  /** Ends a level counted by enter(). */
  leave(): void {
    this.depth--;
  }

  /** Visits every field of `b` except those in `skip`. */
  rest(b: Obj, skip: ReadonlySet<string>): void {
    for (const k in b) {
      if (skip.has(k)) continue;
      const v = b[k];
      if (typeof v === 'object' && v !== null) this.visit(v);
    }
  }

  /** Takes the `no_limit` duty of the SELECT being entered (true only for rows the client gets). */
  takeLimitCheck(): boolean {
    const c = this.limitCheck;
    this.limitCheck = false;
    return c;
  }

  /** Records a table from a RangeVar; null when the node has no name. */
  table(rv: unknown, role: 'read' | 'write'): TableRef | null {
    const ref = this.resolver.rangeVar(rv);
    if (!ref) return null;
    this.tableRef(ref, role);
    return ref;
  }

  /** Records a table read or written. */
  tableRef(ref: TableRef, role: 'read' | 'write'): void {
    if (role === 'write') this.b.write(ref);
    else this.b.read(ref);
    for (const c of ref.candidates) if (FILE_VIEWS.has(c)) this.b.flag('server_file_access');
  }

  /** Facts of a prepared statement, if known. */
  prepared(name: string): StatementFacts | undefined {
    return this.env.prepared(name);
  }

  // --- scopes -------------------------------------------------------------

  /** Opens a query level (its FROM names and CTEs). */
  pushScope(): void {
    this.scope = new Scope(this.scope);
  }

  /** Closes the innermost query level. */
  popScope(): void {
    if (this.scope) this.scope = this.scope.parent;
  }

  /** Declares a FROM name (`null`: not a table, e.g. a subquery or CTE), with its outputs when renamed or derived. */
  declare(name: string, table: string | null, out: Outputs | null = null): void {
    if (this.scope && !this.scope.names.has(name)) this.scope.names.set(name, { table, out });
  }

  /** Declares a CTE name with its outputs, visible to FROM items of this query level and those nested in it. */
  declareCte(name: string, out: Outputs): void {
    if (!this.scope) return;
    (this.scope.ctes ??= new Map()).set(name, out);
  }

  /** The outputs of the CTE `name` in scope, undefined when there is none. */
  cte(name: string): Outputs | undefined {
    for (let s = this.scope; s; s = s.parent) if (s.ctes?.has(name)) return s.ctes.get(name);
    return undefined;
  }

  /** A FROM name's table: TableRef.name, null when not a table, undefined when not in scope. */
  lookup(name: string): string | null | undefined {
    return this.entry(name)?.table;
  }

  /** A FROM name's entry, undefined when not in scope. */
  entry(name: string): FromEntry | undefined {
    for (let s = this.scope; s; s = s.parent) {
      const e = s.names.get(name);
      if (e !== undefined) return e;
    }
    return undefined;
  }

  /** The outputs of this query level's renamed and derived FROM items (what a star passes on). */
  levelOutputs(): Outputs[] {
    const out = new Set<Outputs>();
    for (const e of this.scope?.names.values() ?? []) if (e.out) out.add(e.out);
    return [...out];
  }

  /** Records what the columns called `name` of the renamed and derived FROM items in scope may be, used as `use`. */
  renamed(name: string, use: ColumnUse = this.use): void {
    const into: Sources = new Map();
    const seen = new Set<Outputs>();
    for (let s = this.scope; s; s = s.parent) for (const e of s.names.values()) e.out?.named(name, use, into, seen);
    this.replay(into, use);
  }

  /** A FROM name no SQL name can equal, for items whose columns are visible without one (an unaliased subquery). */
  anonymous(): string {
    return `\u0001${++this.anon}`;
  }

  /** Records each of `from` as a column reference used as `use`. */
  replay(from: Sources, use: ColumnUse): void {
    for (const c of from.values()) this.b.column(c.table, c.column, use);
  }

  /** Completes a placeholder read before its query was walked (a recursive CTE), replaying the uses it was read with. */
  settle(placeholder: Outputs, real: Outputs | null): void {
    const uses = placeholder.pending;
    placeholder.pending = null;
    if (real) placeholder.inner.push(real);
    for (const use of uses ?? []) {
      const into: Sources = new Map();
      placeholder.all(use, into);
      this.replay(into, use);
    }
  }

  // --- nodes ----------------------------------------------------------------

  private typed(type: string, body: Obj): void {
    const info = STATEMENTS.get(type);
    if (info) {
      this.statement(type, body, info);
      return;
    }
    const h = this.handlers.get(type);
    if (h) h(this, body);
    else this.rest(body, NO_SKIP);
  }

  private bare(o: Obj): void {
    // Struct-typed fields come unwrapped; recognise the ones that matter by shape.
    if (typeof o.relname === 'string') this.table(o, this.relRole);
    else if (Array.isArray(o.funcname) && typeof o.funcformat === 'string') this.typed('FuncCall', o);
    else if (typeof o.kind === 'string' && o.kind.startsWith('VAR_')) this.typed('VariableSetStmt', o);
    else this.rest(o, NO_SKIP);
  }

  private statement(type: string, body: Obj, info: StatementInfo): void {
    const top = this.stmtDepth === 0;
    const inner = this.innerNext;
    const limit = this.limitNext;
    this.innerNext = false;
    this.limitNext = false;
    // A plain subquery is part of its statement; a SELECT that runs on its own account
    // (top level, under EXPLAIN/PREPARE/COPY/...) is a kind of its own.
    if ((top || !info.topOnly) && (type !== 'SelectStmt' || inner)) this.b.kind(kindOf(info, body));
    for (const f of flagsOf(info, body)) this.b.flag(f);
    const use = this.use;
    const role = this.relRole;
    const check = this.limitCheck;
    this.use = 'other';
    this.relRole = 'read';
    this.limitCheck = limit;
    this.stmtDepth++;
    try {
      const h = this.handlers.get(type);
      if (h) h(this, body);
      else this.rest(body, NO_SKIP);
    } finally {
      this.stmtDepth--;
      this.use = use;
      this.relRole = role;
      this.limitCheck = check;
    }
  }
}

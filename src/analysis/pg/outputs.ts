// What the columns of a query, and of the FROM items built on one, are computed from,
// so that a column reached under another name (`ssn AS a`, `users t(a, b)`, `ORDER BY 2`)
// is recorded as the columns behind it. Names follow PostgreSQL's own naming of
// select-list columns (FigureColname); where a name or position is in doubt, every
// column it may be counts.

import type { ColumnUse } from '../facts.js';
import { bodyOf, isObj, items, names, nodeType, sval, unwrap, type Obj } from './ast.js';
import type { Sources } from './builder.js';

/** One column of a SELECT list or VALUES row. */
export interface OutputColumn {
  /** The name PostgreSQL gives it; null when the analyzer cannot tell (it may be any). */
  name: string | null;
  /** `*` or `t.*`: any number of columns, under the names they had. */
  star: boolean;
  /** The columns its value is computed from. */
  from: Sources;
}

function merge(into: Sources, from: Sources): void {
  for (const [k, v] of from) if (!into.has(k)) into.set(k, v);
}

/**
 * What the columns of a FROM item other than a plain table are computed from: a
 * subquery, a CTE, a function, a join under an alias, or a table renamed by a column
 * list. A reference to one of its columns is recorded as the columns it came from too,
 * with the reference's own use, so that a new name hides nothing (`SELECT 1 FROM
 * (SELECT ssn AS a FROM users) s WHERE a LIKE '1%'` filters on ssn). Where the analyzer
 * cannot tell which column a name is, it takes every one it may be.
 */
export class Outputs {
  /** Select lists, one per SELECT (or VALUES) of a set operation, the leftmost (which names the columns) first. */
  readonly arms: OutputColumn[][] = [];
  /** Names a column list gave (`AS s(a, b)`): to a position of the columns, or null for any column. */
  readonly aliases = new Map<string, number | null>();
  /** Every column may be computed from these, whatever its name (a function's arguments). */
  readonly anyName: Sources = new Map();
  /** Read only through a whole-row reference or a renamed column (a renamed table's `*`). */
  readonly rows: Sources = new Map();
  /** FROM items whose columns pass through under their own names (under a star, a join alias). */
  readonly inner: Outputs[] = [];
  /** Still being computed (a recursive CTE read from its own body): the uses it was read with. */
  pending: Set<ColumnUse> | null = null;

  /** `base`: the outputs a column list renames (positions of `aliases` are its positions). */
  constructor(readonly base: Outputs | null = null) {}

  /** Adds what a column called `name` may be computed from, read with `use`. */
  named(name: string, use: ColumnUse, into: Sources, seen = new Set<Outputs>()): void {
    if (seen.has(this)) return;
    seen.add(this);
    this.pending?.add(use);
    const alias = this.aliases.get(name);
    if (alias === null) this.all(use, into, new Set());
    else if (alias !== undefined) this.at(alias, use, into);
    merge(into, this.anyName);
    const first = this.arms[0] ?? [];
    let star = false;
    for (let k = 0; k < first.length; k++) {
      const c = first[k]!;
      if (c.star) star = true;
      else if (c.name === null || c.name === name) {
        // After a star the column's position is unknown: in the other arms it may be any column.
        if (star) for (const arm of this.arms) for (const o of arm) merge(into, o.from);
        else this.at(k, use, into);
      }
    }
    this.base?.named(name, use, into, seen);
    for (const o of this.inner) o.named(name, use, into, seen);
  }

  /** Adds what the column at 0-based position `k` may be computed from (in every arm of a set operation). */
  at(k: number, use: ColumnUse, into: Sources): void {
    this.pending?.add(use);
    if (this.arms.length === 0) {
      if (this.base) this.base.at(k, use, into);
      // A renamed table, a function, a join: which column is at k is not known.
      else this.all(use, into, new Set());
      return;
    }
    for (const arm of this.arms) {
      const star = arm.findIndex((c) => c.star);
      if (star < 0 || k < star) {
        const c = arm[k];
        if (c) merge(into, c.from);
      } else for (let j = star; j < arm.length; j++) merge(into, arm[j]!.from);
    }
  }

  /** Adds what any column may be computed from (a whole-row reference reads them all). */
  all(use: ColumnUse, into: Sources, seen = new Set<Outputs>()): void {
    if (seen.has(this)) return;
    seen.add(this);
    this.pending?.add(use);
    for (const arm of this.arms) for (const c of arm) merge(into, c.from);
    merge(into, this.anyName);
    merge(into, this.rows);
    this.base?.all(use, into, seen);
    for (const o of this.inner) o.all(use, into, seen);
  }
}

/**
 * The name PostgreSQL gives a select-list expression written without AS (its
 * FigureColname), or null when the analyzer does not know the node: the name may
 * then be any, and is matched by every name.
 */
export function outputName(node: unknown): string | null {
  const r = figure(node);
  return r === null ? null : r[1] === 0 ? '?column?' : r[0];
}

// [name, strength]: 2 a name of its own, 1 a fallback (a type name, `case`), 0 none.
function figure(node: unknown): [string, number] | null {
  const type = nodeType(node);
  if (type === null) return ['', 0];
  const b = (node as Obj)[type] as Obj;
  switch (type) {
    case 'ColumnRef':
    case 'A_Indirection': {
      let name: string | null = null;
      for (const f of items(type === 'ColumnRef' ? b.fields : b.indirection)) name = sval(f) ?? name;
      if (name !== null) return [name, 2];
      return type === 'A_Indirection' ? figure(b.arg) : ['', 0];
    }
    case 'FuncCall': {
      const parts = names(b.funcname);
      return parts && parts.length > 0 ? [parts[parts.length - 1]!, 2] : null;
    }
    case 'A_Expr':
      return b.kind === 'AEXPR_NULLIF' ? ['nullif', 2] : ['', 0];
    case 'TypeCast': {
      const r = figure(b.arg);
      if (r === null || r[1] > 1) return r;
      const t = names(bodyOf(b.typeName, 'TypeName')?.names);
      return t && t.length > 0 ? [t[t.length - 1]!, 1] : r;
    }
    case 'CollateClause':
      return figure(b.arg);
    case 'CaseExpr': {
      const r = isObj(b.defresult) ? figure(b.defresult) : ['', 0] as [string, number];
      if (r === null || r[1] > 1) return r;
      return ['case', 1];
    }
    case 'SubLink':
      if (b.subLinkType === 'EXISTS_SUBLINK') return ['exists', 2];
      if (b.subLinkType === 'ARRAY_SUBLINK') return ['array', 2];
      // A scalar subquery is named after its own column: not worked out here.
      return b.subLinkType === 'EXPR_SUBLINK' ? null : ['', 0];
    case 'GroupingFunc':
      return ['grouping', 2];
    case 'A_ArrayExpr':
      return ['array', 2];
    case 'RowExpr':
      return ['row', 2];
    case 'CoalesceExpr':
      return ['coalesce', 2];
    case 'MinMaxExpr':
      return [b.op === 'IS_LEAST' ? 'least' : 'greatest', 2];
    case 'A_Const':
    case 'ParamRef':
    case 'BoolExpr':
    case 'NullTest':
    case 'BooleanTest':
      return ['', 0];
    default:
      return null;
  }
}

/** A bare integer constant in ORDER BY / GROUP BY: a 1-based output position (the JSON omits a zero), else null. */
export function position(node: unknown): number | null {
  const c = unwrap(node, 'A_Const');
  if (!c || !isObj(c.ival)) return null;
  const k = typeof c.ival.ival === 'number' ? c.ival.ival : 0;
  return k >= 1 ? k : null;
}

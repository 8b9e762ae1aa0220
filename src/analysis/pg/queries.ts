// Handlers for queries and DML: FROM items and their aliases, CTE scoping, and the
// column use of every clause. A CTE name hides a table only where PostgreSQL looks
// CTEs up (FROM items, unqualified); a DML target is always a table.

import type { ColumnUse, TableRef } from '../facts.js';
import { bodyOf, isObj, items, names, nodeType, str, unwrap, type Obj } from './ast.js';
import { ident } from './names.js';
import type { Handler, Walker } from './walk.js';

const SELECT_SKIP: ReadonlySet<string> = new Set([
  'withClause', 'larg', 'rarg', 'fromClause', 'targetList', 'whereClause', 'havingClause', 'groupClause',
  'sortClause', 'distinctClause', 'windowClause', 'valuesLists', 'limitCount', 'limitOffset', 'intoClause',
  // FOR UPDATE OF names FROM items, not tables.
  'lockingClause',
]);

function selectStmt(w: Walker, b: Obj): void {
  const out = w.sublinkUse ?? 'select';
  const check = w.takeLimitCheck();
  const saved = w.sublinkUse;
  w.sublinkUse = null;
  w.pushScope();
  try {
    withClause(w, b.withClause);
    for (const arm of [b.larg, b.rarg]) {
      if (!isObj(arm)) continue;
      w.sublinkUse = out;
      w.visit({ SelectStmt: arm });
    }
    for (const item of items(b.fromClause)) fromItem(w, item);
    w.visitAs(b.targetList, out);
    w.visitAs(b.whereClause, 'predicate');
    w.visitAs(b.havingClause, 'predicate');
    w.visitAs(b.groupClause, 'group');
    w.visitAs(b.distinctClause, 'group');
    w.visitAs(b.sortClause, 'order');
    w.visitAs(b.windowClause, 'other');
    w.visitAs(b.valuesLists, 'other');
    w.visitAs(b.limitCount, 'other');
    w.visitAs(b.limitOffset, 'other');
    if (isObj(b.intoClause)) {
      // SELECT INTO is CREATE TABLE AS.
      w.b.kind('create');
      w.b.flag('writes');
      w.b.flag('ddl');
      w.visitRole(b.intoClause, 'write');
    }
    w.rest(b, SELECT_SKIP);
  } finally {
    w.popScope();
    w.sublinkUse = saved;
  }
  // SELECT INTO keeps its rows in the table it creates.
  if (check && !hasLimit(b) && !isObj(b.intoClause)) w.b.noLimit();
}

function hasLimit(b: Obj): boolean {
  if (!isObj(b.limitCount)) return false;
  const c = unwrap(b.limitCount, 'A_Const');
  // LIMIT ALL and LIMIT NULL arrive as a null constant.
  return !(c && c.isnull === true);
}

const CTE_SKIP: ReadonlySet<string> = new Set(['ctequery']);

// Non-recursive CTEs see the ones before them; recursive ones see all of their WITH.
function withClause(w: Walker, node: unknown): void {
  const wc = bodyOf(node, 'WithClause');
  if (!wc) return;
  const ctes = items(wc.ctes);
  const recursive = wc.recursive === true;
  if (recursive) for (const c of ctes) declareCte(w, c);
  for (const c of ctes) {
    const cte = unwrap(c, 'CommonTableExpr');
    if (!cte) {
      w.visit(c);
      continue;
    }
    w.visit(cte.ctequery);
    w.rest(cte, CTE_SKIP);
    if (!recursive) declareCte(w, c);
  }
}

function declareCte(w: Walker, c: unknown): void {
  const name = str(unwrap(c, 'CommonTableExpr')?.ctename);
  if (name !== null) w.declareCte(name);
}

function aliasName(a: unknown): string | null {
  return isObj(a) ? str(a.aliasname) : null;
}

const JOIN_SKIP: ReadonlySet<string> = new Set(['larg', 'rarg', 'usingClause', 'quals']);
const SUBSELECT_SKIP: ReadonlySet<string> = new Set(['subquery']);
const FUNCTION_SKIP: ReadonlySet<string> = new Set(['functions']);
const SAMPLE_SKIP: ReadonlySet<string> = new Set(['relation']);

/** A FROM item: declares its name in the current scope and walks it. */
function fromItem(w: Walker, node: unknown): void {
  const type = nodeType(node);
  if (type === null) {
    w.visit(node);
    return;
  }
  const b = (node as Obj)[type] as Obj;
  w.enter();
  try {
    switch (type) {
      case 'RangeVar':
        fromRangeVar(w, b);
        return;
      case 'JoinExpr': {
        fromItem(w, b.larg);
        fromItem(w, b.rarg);
        for (const col of names(b.usingClause) ?? []) w.b.column(null, ident(col), 'join');
        w.visitAs(b.quals, 'join');
        const alias = aliasName(b.alias) ?? aliasName(b.join_using_alias);
        if (alias !== null) w.declare(alias, null);
        w.rest(b, JOIN_SKIP);
        return;
      }
      case 'RangeSubselect':
        w.visit(b.subquery);
        declareAlias(w, b);
        w.rest(b, SUBSELECT_SKIP);
        return;
      case 'RangeFunction':
        w.visit(b.functions);
        declareAlias(w, b);
        if (aliasName(b.alias) === null) {
          // Unaliased, a function in FROM is named after itself.
          for (const f of items(b.functions)) {
            const parts = names(unwrap(items(f)[0], 'FuncCall')?.funcname);
            if (parts && parts.length > 0) w.declare(parts[parts.length - 1]!, null);
          }
        }
        w.rest(b, FUNCTION_SKIP);
        return;
      case 'RangeTableSample':
        fromItem(w, b.relation);
        w.rest(b, SAMPLE_SKIP);
        return;
      default:
        // XMLTABLE, JSON_TABLE and anything newer: walked whole, named if aliased.
        declareAlias(w, b);
        w.visit(node);
    }
  } finally {
    w.leave();
  }
}

function declareAlias(w: Walker, b: Obj): void {
  const alias = aliasName(b.alias);
  if (alias !== null) w.declare(alias, null);
}

function fromRangeVar(w: Walker, rv: Obj): void {
  const rel = str(rv.relname);
  if (rel === null) return;
  const alias = aliasName(rv.alias);
  const schema = str(rv.schemaname);
  if (!schema && w.isCte(rel)) {
    w.declare(alias ?? rel, null);
    return;
  }
  const ref = w.table(rv, 'read');
  if (!ref) return;
  w.declare(alias ?? rel, ref.name);
  if (alias === null && schema) w.declare(`${schema}\u0000${rel}`, ref.name);
}

/** A DML target: always a table (never a CTE), declared under its alias or name. */
function dmlTarget(w: Walker, relation: unknown): TableRef | null {
  const rv = bodyOf(relation, 'RangeVar');
  const ref = w.table(relation, 'write');
  if (!rv || !ref) return ref;
  const rel = str(rv.relname)!;
  const alias = aliasName(rv.alias);
  w.declare(alias ?? rel, ref.name);
  const schema = str(rv.schemaname);
  if (alias === null && schema) w.declare(`${schema}\u0000${rel}`, ref.name);
  return ref;
}

/** SET / INSERT column lists: each ResTarget's name is a column of `table`. */
function targets(w: Walker, list: unknown, table: string | null, use: ColumnUse): number {
  let n = 0;
  for (const t of items(list)) {
    const rt = unwrap(t, 'ResTarget');
    if (!rt) {
      w.visitAs(t, use);
      continue;
    }
    const name = str(rt.name);
    if (name !== null) {
      w.b.column(table, ident(name), use);
      n++;
    }
    w.visitAs(rt.indirection, use);
    // The value assigned is read, not written: `SET name = email` copies email.
    w.visitAs(rt.val, use === 'set' ? 'other' : use);
  }
  return n;
}

const INSERT_SKIP: ReadonlySet<string> = new Set(['withClause', 'relation', 'cols', 'selectStmt', 'onConflictClause', 'returningList']);

function insertStmt(w: Walker, b: Obj): void {
  w.pushScope();
  try {
    withClause(w, b.withClause);
    const target = dmlTarget(w, b.relation);
    const name = target?.name ?? null;
    if (name !== null) w.declare('excluded', name);
    if (targets(w, b.cols, name, 'insert') === 0) w.b.column(name, '*', 'insert');
    w.visit(b.selectStmt);
    const oc = bodyOf(b.onConflictClause, 'OnConflictClause');
    if (oc) {
      w.visitAs(oc.infer, 'other');
      targets(w, oc.targetList, name, 'set');
      w.visitAs(oc.whereClause, 'predicate');
      // DO UPDATE reads the conflicting row.
      if (target && oc.action === 'ONCONFLICT_UPDATE') w.tableRef(target, 'read');
    }
    const returning = items(b.returningList);
    if (target && returning.length > 0) w.tableRef(target, 'read');
    w.visitAs(returning, 'returning');
    w.rest(b, INSERT_SKIP);
  } finally {
    w.popScope();
  }
}

const UPDATE_SKIP: ReadonlySet<string> = new Set(['withClause', 'relation', 'fromClause', 'targetList', 'whereClause', 'returningList']);

function updateStmt(w: Walker, b: Obj): void {
  w.pushScope();
  try {
    withClause(w, b.withClause);
    const target = dmlTarget(w, b.relation);
    // UPDATE and DELETE read the rows they change (WHERE, RETURNING, the row count).
    if (target) w.tableRef(target, 'read');
    for (const item of items(b.fromClause)) fromItem(w, item);
    targets(w, b.targetList, target?.name ?? null, 'set');
    if (!isObj(b.whereClause)) w.b.flag('no_where');
    w.visitAs(b.whereClause, 'predicate');
    w.visitAs(b.returningList, 'returning');
    w.rest(b, UPDATE_SKIP);
  } finally {
    w.popScope();
  }
}

const DELETE_SKIP: ReadonlySet<string> = new Set(['withClause', 'relation', 'usingClause', 'whereClause', 'returningList']);

function deleteStmt(w: Walker, b: Obj): void {
  w.pushScope();
  try {
    withClause(w, b.withClause);
    const target = dmlTarget(w, b.relation);
    if (target) w.tableRef(target, 'read');
    for (const item of items(b.usingClause)) fromItem(w, item);
    if (!isObj(b.whereClause)) w.b.flag('no_where');
    w.visitAs(b.whereClause, 'predicate');
    w.visitAs(b.returningList, 'returning');
    w.rest(b, DELETE_SKIP);
  } finally {
    w.popScope();
  }
}

const MERGE_SKIP: ReadonlySet<string> = new Set(['withClause', 'relation', 'sourceRelation', 'joinCondition', 'mergeWhenClauses', 'returningList']);
const WHEN_SKIP: ReadonlySet<string> = new Set(['condition', 'targetList', 'values']);
const MERGE_COMMANDS: Record<string, 'insert' | 'update' | 'delete'> = { CMD_INSERT: 'insert', CMD_UPDATE: 'update', CMD_DELETE: 'delete' };

function mergeStmt(w: Walker, b: Obj): void {
  w.pushScope();
  try {
    withClause(w, b.withClause);
    const target = dmlTarget(w, b.relation);
    if (target) w.tableRef(target, 'read');
    const name = target?.name ?? null;
    fromItem(w, b.sourceRelation);
    w.visitAs(b.joinCondition, 'join');
    for (const c of items(b.mergeWhenClauses)) {
      const when = unwrap(c, 'MergeWhenClause');
      if (!when) {
        w.visit(c);
        continue;
      }
      const command = MERGE_COMMANDS[str(when.commandType) ?? ''];
      if (command) w.b.kind(command);
      w.visitAs(when.condition, 'predicate');
      if (command === 'insert') {
        if (targets(w, when.targetList, name, 'insert') === 0) w.b.column(name, '*', 'insert');
        w.visitAs(when.values, 'insert');
      } else targets(w, when.targetList, name, 'set');
      w.rest(when, WHEN_SKIP);
    }
    w.visitAs(b.returningList, 'returning');
    w.rest(b, MERGE_SKIP);
  } finally {
    w.popScope();
  }
}

/** Query and DML handlers by node type. */
export const QUERY_HANDLERS: readonly (readonly [string, Handler])[] = [
  ['SelectStmt', selectStmt],
  ['InsertStmt', insertStmt],
  ['UpdateStmt', updateStmt],
  ['DeleteStmt', deleteStmt],
  ['MergeStmt', mergeStmt],
];

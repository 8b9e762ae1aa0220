// Handlers for queries and DML: FROM items and their aliases, CTE scoping, and the
// column use of every clause. A CTE name hides a table only where PostgreSQL looks
// CTEs up (FROM items, unqualified); a DML target is always a table.

import type { ColumnUse, TableRef } from '../facts.js';
import { bodyOf, isObj, items, names, nodeType, str, sval, unwrap, type Obj } from './ast.js';
import { addSource, type Sources } from './builder.js';
import { ident } from './names.js';
import { Outputs, outputName, position, type OutputColumn } from './outputs.js';
import type { FromEntry, Handler, Walker } from './walk.js';

const SELECT_SKIP: ReadonlySet<string> = new Set([
  'withClause', 'larg', 'rarg', 'fromClause', 'targetList', 'whereClause', 'havingClause', 'groupClause',
  'sortClause', 'distinctClause', 'windowClause', 'valuesLists', 'limitCount', 'limitOffset', 'intoClause',
  // FOR UPDATE OF names FROM items, not tables.
  'lockingClause',
]);

function selectStmt(w: Walker, b: Obj): void {
  const use = w.sublinkUse ?? 'select';
  const check = w.takeLimitCheck();
  const saved = w.sublinkUse;
  const outputs = new Outputs();
  w.sublinkUse = null;
  w.pushScope();
  try {
    withClause(w, b.withClause);
    for (const arm of [b.larg, b.rarg]) {
      if (!isObj(arm)) continue;
      w.sublinkUse = use;
      // A set operation's columns are its arms' columns, position by position.
      const o = walkQuery(w, { SelectStmt: arm });
      outputs.arms.push(...o.arms);
      outputs.inner.push(...o.inner);
    }
    for (const item of items(b.fromClause)) fromItem(w, item);
    if (!isObj(b.larg)) outputs.arms.push(items(b.valuesLists).length > 0 ? valuesList(w, b.valuesLists) : selectList(w, b.targetList, use, outputs));
    w.visitAs(b.whereClause, 'predicate');
    w.visitAs(b.havingClause, 'predicate');
    w.visitAs(b.groupClause, 'group');
    byOutput(w, outputs, b.groupClause, 'group');
    w.visitAs(b.distinctClause, 'group');
    byOutput(w, outputs, b.distinctClause, 'group');
    w.visitAs(b.sortClause, 'order');
    byOutput(w, outputs, b.sortClause, 'order');
    w.visitAs(b.windowClause, 'other');
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
  w.outputs = outputs;
}

/**
 * Walks a query (a subquery, a CTE's, an arm of a set operation) and returns what its
 * columns are computed from. Not a SELECT (a data-modifying CTE's RETURNING): any
 * column may be computed from any column it reads.
 */
function walkQuery(w: Walker, node: unknown): Outputs {
  w.outputs = null;
  if (nodeType(node) === 'SelectStmt') {
    // Not tapped: a tap per level of a long UNION chain would cost its square.
    w.visit(node);
    const o = (w.outputs as Outputs | null) ?? new Outputs();
    w.outputs = null;
    return o;
  }
  const unknown = new Outputs();
  w.b.tap(unknown.anyName, () => w.visit(node));
  w.outputs = null;
  return unknown;
}

// The select list, column by column: what each is computed from and its name.
function selectList(w: Walker, list: unknown, use: ColumnUse, outputs: Outputs): OutputColumn[] {
  const cols: OutputColumn[] = [];
  for (const t of items(list)) {
    const rt = unwrap(t, 'ResTarget');
    const from: Sources = new Map();
    w.b.tap(from, () => w.visitAs(t, use));
    const star = rt !== null && isStar(rt.val);
    // A star passes on the columns its FROM items renamed, under their new names.
    if (star) outputs.inner.push(...w.levelOutputs());
    cols.push({ name: star || !rt ? null : (str(rt.name) ?? outputName(rt.val)), star, from });
  }
  return cols;
}

// VALUES rows: column k is named columnk and computed from the k-th value of every row.
function valuesList(w: Walker, rows: unknown): OutputColumn[] {
  const cols: OutputColumn[] = [];
  for (const row of items(rows)) {
    items(row).forEach((v, k) => {
      const col = (cols[k] ??= { name: `column${k + 1}`, star: false, from: new Map() });
      w.b.tap(col.from, () => w.visitAs(v, 'other'));
    });
  }
  return cols;
}

function isStar(node: unknown): boolean {
  return items(unwrap(node, 'ColumnRef')?.fields).some((f) => unwrap(f, 'A_Star') !== null);
}

/**
 * ORDER BY, GROUP BY and DISTINCT ON may name an output column by position (`ORDER BY
 * 2`) or by its output name (`ORDER BY a` for `ssn AS a`): what that column is computed
 * from is sorted or grouped on.
 */
function byOutput(w: Walker, outputs: Outputs, list: unknown, use: ColumnUse): void {
  for (const item of items(list)) {
    const node = unwrap(item, 'SortBy')?.node ?? item;
    const set = unwrap(node, 'GroupingSet');
    if (set) {
      byOutput(w, outputs, set.content, use);
      continue;
    }
    const into: Sources = new Map();
    const k = position(node);
    if (k !== null) outputs.at(k - 1, use, into);
    else {
      const fields = items(unwrap(node, 'ColumnRef')?.fields);
      const name = fields.length === 1 ? sval(fields[0]) : null;
      if (name !== null) outputs.named(name, use, into);
    }
    w.replay(into, use);
  }
}

function hasLimit(b: Obj): boolean {
  if (!isObj(b.limitCount)) return false;
  const c = unwrap(b.limitCount, 'A_Const');
  // LIMIT ALL and LIMIT NULL arrive as a null constant.
  return !(c && c.isnull === true);
}

const CTE_SKIP: ReadonlySet<string> = new Set(['ctequery']);

// Non-recursive CTEs see the ones before them; recursive ones see all of their WITH
// (read from its own body, a CTE's columns are not known yet: they are replayed once known).
function withClause(w: Walker, node: unknown): void {
  const wc = bodyOf(node, 'WithClause');
  if (!wc) return;
  const ctes = items(wc.ctes);
  const recursive = wc.recursive === true;
  const early = new Map<unknown, Outputs>();
  if (recursive) {
    for (const c of ctes) {
      const name = str(unwrap(c, 'CommonTableExpr')?.ctename);
      if (name === null) continue;
      const placeholder = new Outputs();
      placeholder.pending = new Set();
      early.set(c, placeholder);
      w.declareCte(name, placeholder);
    }
  }
  for (const c of ctes) {
    const cte = unwrap(c, 'CommonTableExpr');
    if (!cte) {
      w.visit(c);
      continue;
    }
    let out = walkQuery(w, cte.ctequery);
    w.rest(cte, CTE_SKIP);
    const cols = names(cte.aliascolnames) ?? [];
    if (cols.length > 0) out = renamedBy(out, cols);
    const placeholder = early.get(c);
    if (placeholder) w.settle(placeholder, out);
    else {
      const name = str(cte.ctename);
      if (name !== null) w.declareCte(name, out);
    }
  }
}

// Outputs whose first columns a column list renamed (`AS s(a, b)`, `WITH c(a, b)`).
function renamedBy(base: Outputs, cols: readonly string[]): Outputs {
  const o = new Outputs(base);
  cols.forEach((c, k) => o.aliases.set(c, k));
  return o;
}

function aliasName(a: unknown): string | null {
  return isObj(a) ? str(a.aliasname) : null;
}

// The column list of an alias (`t(a, b)`): names it gives columns in place of theirs.
function aliasColumns(a: unknown): string[] {
  return isObj(a) ? (names(a.colnames) ?? []) : [];
}

const JOIN_SKIP: ReadonlySet<string> = new Set(['larg', 'rarg', 'usingClause', 'quals']);
const SUBSELECT_SKIP: ReadonlySet<string> = new Set(['subquery']);
const FUNCTION_SKIP: ReadonlySet<string> = new Set(['functions']);
const SAMPLE_SKIP: ReadonlySet<string> = new Set(['relation']);

/** A FROM item: declares its name in the current scope and walks it; returns the entries it declared. */
function fromItem(w: Walker, node: unknown): FromEntry[] {
  const type = nodeType(node);
  if (type === null) {
    w.visit(node);
    return [];
  }
  const b = (node as Obj)[type] as Obj;
  w.enter();
  try {
    switch (type) {
      case 'RangeVar':
        return fromRangeVar(w, b);
      case 'JoinExpr':
        return fromJoin(w, b);
      case 'RangeSubselect': {
        let out = walkQuery(w, b.subquery);
        const cols = aliasColumns(b.alias);
        if (cols.length > 0) out = renamedBy(out, cols);
        // Unaliased (PostgreSQL 16+), its columns are still visible: declared under no name.
        w.declare(aliasName(b.alias) ?? w.anonymous(), null, out);
        w.rest(b, SUBSELECT_SKIP);
        return [{ table: null, out }];
      }
      case 'RangeFunction': {
        // Which columns a function returns, and under which names, only the catalog knows:
        // any of them may be computed from any column of its arguments (LATERAL).
        const out = new Outputs();
        w.b.tap(out.anyName, () => w.visit(b.functions));
        const alias = aliasName(b.alias);
        if (alias !== null) w.declare(alias, null, out);
        else {
          // Unaliased, a function in FROM is named after itself.
          for (const f of items(b.functions)) {
            const parts = names(unwrap(items(f)[0], 'FuncCall')?.funcname);
            if (parts && parts.length > 0) w.declare(parts[parts.length - 1]!, null, out);
          }
          w.declare(w.anonymous(), null, out);
        }
        w.rest(b, FUNCTION_SKIP);
        return [{ table: null, out }];
      }
      case 'RangeTableSample': {
        const entries = fromItem(w, b.relation);
        w.rest(b, SAMPLE_SKIP);
        return entries;
      }
      default: {
        // XMLTABLE, JSON_TABLE and anything newer: walked whole, any column from anything it reads.
        const out = new Outputs();
        w.b.tap(out.anyName, () => w.visit(node));
        w.declare(aliasName(b.alias) ?? w.anonymous(), null, out);
        return [{ table: null, out }];
      }
    }
  } finally {
    w.leave();
  }
}

// A join: USING and ON are join uses; NATURAL joins on every column name both sides
// share, which without the catalog may be any column of either. An alias hides the
// names inside, and its column list renames the join's columns.
function fromJoin(w: Walker, b: Obj): FromEntry[] {
  const inner = [...fromItem(w, b.larg), ...fromItem(w, b.rarg)];
  for (const col of names(b.usingClause) ?? []) {
    w.b.column(null, ident(col), 'join');
    w.renamed(col, 'join');
  }
  if (b.isNatural === true) {
    const into: Sources = new Map();
    for (const e of inner) {
      if (e.table !== null) addSource(into, e.table, '*');
      e.out?.all('join', into);
    }
    w.replay(into, 'join');
  }
  w.visitAs(b.quals, 'join');
  let entries = inner;
  for (const a of [b.alias, b.join_using_alias]) {
    const alias = aliasName(a);
    if (alias === null) continue;
    const out = new Outputs();
    for (const e of inner) {
      if (e.table !== null) addSource(out.rows, e.table, '*');
      if (e.out) out.inner.push(e.out);
    }
    // Which column of which side each name of the list renames is not known.
    for (const c of aliasColumns(a)) out.aliases.set(c, null);
    w.declare(alias, null, out);
    if (a === b.alias) entries = [{ table: null, out }];
  }
  w.rest(b, JOIN_SKIP);
  return entries;
}

function fromRangeVar(w: Walker, rv: Obj): FromEntry[] {
  const rel = str(rv.relname);
  if (rel === null) return [];
  const alias = aliasName(rv.alias);
  const cols = aliasColumns(rv.alias);
  const schema = str(rv.schemaname);
  const cte = schema ? undefined : w.cte(rel);
  if (cte) {
    let out = cte;
    if (cols.length > 0) out = renamedBy(out, cols);
    w.declare(alias ?? rel, null, out);
    return [{ table: null, out }];
  }
  const ref = w.table(rv, 'read');
  if (!ref) return [];
  let out: Outputs | null = null;
  if (cols.length > 0) {
    // `users t(a, b)`: a and b are the table's first columns, which only the catalog
    // names. A reference to them may be to any column.
    out = new Outputs();
    addSource(out.rows, ref.name, '*');
    for (const c of cols) out.aliases.set(c, null);
  }
  w.declare(alias ?? rel, ref.name, out);
  if (alias === null && schema) w.declare(`${schema}\u0000${rel}`, ref.name);
  return [{ table: ref.name, out }];
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
    const filtered = namesTarget(b.joinCondition, bodyOf(b.relation, 'RangeVar'));
    for (const c of items(b.mergeWhenClauses)) {
      const when = unwrap(c, 'MergeWhenClause');
      if (!when) {
        w.visit(c);
        continue;
      }
      const command = MERGE_COMMANDS[str(when.commandType) ?? ''];
      if (command) w.b.kind(command);
      // WHEN MATCHED (or NOT MATCHED BY SOURCE) UPDATE/DELETE with no AND of its own, under an
      // ON that does not name the target, changes every row of the target: as UPDATE/DELETE
      // without WHERE would.
      if ((command === 'update' || command === 'delete') && when.matchKind !== 'MERGE_WHEN_NOT_MATCHED_BY_TARGET' && !isObj(when.condition) && !filtered) {
        w.b.flag('no_where');
      }
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

/**
 * Whether a MERGE's ON condition names a column of the target, qualified by its alias,
 * or by its name when it has none. Unqualified names may be the source's, and subqueries
 * may rebind the name: neither counts, so that a doubtful ON reads as filtering nothing.
 */
function namesTarget(cond: unknown, rv: Obj | null): boolean {
  if (!rv) return false;
  const rel = str(rv.relname);
  const alias = aliasName(rv.alias);
  const schema = str(rv.schemaname);
  const stack: unknown[] = [cond];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x !== 'object' || x === null) continue;
    if (Array.isArray(x)) {
      stack.push(...x);
      continue;
    }
    const o = x as Obj;
    if (isObj(o.SelectStmt)) continue;
    const sub = unwrap(o, 'SubLink');
    if (sub) {
      stack.push(sub.testexpr);
      continue;
    }
    const ref = unwrap(o, 'ColumnRef');
    if (ref) {
      // A bare name may be a column of the source even when it spells the target's alias.
      const parts = items(ref.fields).map((f) => sval(f));
      if (parts.length >= 2 && (alias !== null ? parts[0] === alias : parts[0] === rel || (schema !== null && parts[0] === schema && parts[1] === rel))) return true;
      continue;
    }
    for (const k in o) stack.push(o[k]);
  }
  return false;
}

/** Query and DML handlers by node type. */
export const QUERY_HANDLERS: readonly (readonly [string, Handler])[] = [
  ['SelectStmt', selectStmt],
  ['InsertStmt', insertStmt],
  ['UpdateStmt', updateStmt],
  ['DeleteStmt', deleteStmt],
  ['MergeStmt', mergeStmt],
];

// Handlers for expression nodes: function calls (names and flags), column
// references (resolved through FROM aliases), subqueries inside expressions,
// window definitions and options that name server files or programs.

import { conninfoCredential, credentialName } from '../secrets.js';
import { constString, isObj, items, names, str, sval, unwrap, type Obj } from './ast.js';
import { ROLE_SETTINGS, functionFlags, readingHazard } from './flags.js';
import { dotted, ident } from './names.js';
import type { Sources } from './builder.js';
import type { FromEntry, Handler, Walker } from './walk.js';

const NAME_SKIP: ReadonlySet<string> = new Set(['name']);
const FUNC_SKIP: ReadonlySet<string> = new Set(['funcname', 'args', 'agg_order', 'agg_filter', 'over']);

/** A function call: its name as written, flags by its own name, then its arguments. */
function funcCall(w: Walker, b: Obj): void {
  const parts = names(b.funcname);
  if (parts && parts.length > 0) {
    let shown = parts.length > 2 ? parts.slice(-2) : parts;
    // EXTRACT(...), SUBSTRING(... FROM ...) and the like: the schema was not written.
    if (b.funcformat === 'COERCE_SQL_SYNTAX' && shown.length === 2 && shown[0] === 'pg_catalog') shown = shown.slice(1);
    w.b.fn(dotted(shown));
    functionByName(w, parts[parts.length - 1]!);
    if (parts[parts.length - 1]!.toLowerCase() === 'set_config') setConfig(w, b.args);
  }
  w.visit(b.args);
  w.visitAs(b.agg_order, 'order');
  w.visitAs(b.agg_filter, 'predicate');
  // OVER (...) comes as a bare WindowDef.
  if (isObj(b.over)) windowDef(w, unwrap(b.over, 'WindowDef') ?? b.over);
  w.rest(b, FUNC_SKIP);
}

/** Flags for a function named `name` (unqualified). */
export function functionByName(w: Walker, name: string): void {
  for (const f of functionFlags(name.toLowerCase())) w.b.flag(f);
}

// set_config(setting_name, new_value, is_local): the setting decides the flags; one
// the AST cannot read (an expression, a parameter) could be any of them.
function setConfig(w: Walker, args: unknown): void {
  w.b.flag('set_config');
  const list = items(args);
  let setting: unknown = list[0];
  if (unwrap(setting, 'NamedArgExpr')) {
    setting = undefined;
    for (const a of list) {
      const na = unwrap(a, 'NamedArgExpr');
      if (na && (str(na.name) ?? '').toLowerCase() === 'setting_name') setting = na.arg;
    }
  }
  const name = constString(setting)?.toLowerCase() ?? null;
  // A setting named by an expression may be any setting, a credential among them.
  if (name === null || credentialName(name)) {
    w.b.secret = true;
    // Normalization replaces constants and parameters; a value given as a name or an expression stays.
    if (list.some((a) => { const v = unwrap(a, 'NamedArgExpr')?.arg ?? a; return v !== setting && !unwrap(v, 'A_Const') && !unwrap(v, 'ParamRef'); })) {
      w.b.secretNames = true;
    }
  }
  if (name === null || ROLE_SETTINGS.has(name)) w.b.flag('role_change');
  if (name === null || name === 'search_path') w.b.flag('search_path_change');
  if (readingHazard(name, constString(list[1]) ?? null)) w.b.flag('parse_hazard');
}

// Built-in functions PostgreSQL also calls in column notation with the whole row as
// their one argument, and that return what is in it: `u.to_jsonb` is to_jsonb(u). A
// user-defined function can be called so too; only the catalog tells those from
// columns (masking reads it: a name that is no column of the table is the whole row).
const WHOLE_ROW_FUNCTIONS: ReadonlySet<string> = new Set([
  'to_json', 'to_jsonb', 'row_to_json', 'json_build_array', 'jsonb_build_array', 'json_build_object', 'jsonb_build_object',
  'json_agg', 'jsonb_agg', 'json_agg_strict', 'jsonb_agg_strict', 'array_agg', 'any_value', 'concat',
  'quote_literal', 'quote_nullable', 'record_out', 'record_send', 'hash_record', 'hstore', 'pg_column_size',
  'any_out', 'anyelement_out', 'anynonarray_out', 'anycompatible_out', 'anycompatiblenonarray_out',
]);

/**
 * A column reference, resolved through FROM aliases when qualified. A name a FROM item
 * renamed (a column list, a subquery's output) is also recorded as what it may be, and
 * a whole-row reference (`u`, `u.*`, `u.to_jsonb`) as every column of its FROM item.
 */
function columnRef(w: Walker, b: Obj): void {
  const parts: string[] = [];
  let star = false;
  for (const f of items(b.fields)) {
    const s = unwrap(f, 'String');
    if (s) parts.push(typeof s.sval === 'string' ? s.sval : '');
    else if (unwrap(f, 'A_Star')) star = true;
  }
  const n = parts.length;
  if (star) {
    w.b.column(n === 0 ? null : qualifier(w, parts), '*', w.use);
    if (n > 0) wholeRow(w, fromEntry(w, parts), null);
    return;
  }
  if (n === 0) return;
  if (n === 1) {
    w.b.column(null, ident(parts[0]!), w.use);
    // A bare name that is a FROM item is the whole row (`SELECT u FROM users u`).
    wholeRow(w, w.entry(parts[0]!), null);
    w.renamed(parts[0]!);
    return;
  }
  if (n >= 3) {
    // schema.table.column, or table.column.field when schema.table is not in FROM.
    const st = w.entry(`${parts[n - 3]}\u0000${parts[n - 2]}`);
    if (st !== undefined) {
      columnOf(w, st, null, parts[n - 1]!);
      return;
    }
    const t = w.entry(parts[0]!);
    if (t !== undefined) {
      columnOf(w, t, null, parts[1]!);
      return;
    }
    w.b.column(dotted(parts.slice(Math.max(0, n - 3), n - 1)), ident(parts[n - 1]!), w.use);
    return;
  }
  columnOf(w, w.entry(parts[0]!), ident(parts[0]!), parts[1]!);
}

type Entry = FromEntry | undefined;

// Column `name` of a FROM item (`written`: the qualifier as written when no FROM item has that name).
function columnOf(w: Walker, e: Entry, written: string | null, name: string): void {
  const table = e === undefined ? written : e.table;
  w.b.column(table, ident(name), w.use);
  if (e?.out) {
    const into: Sources = new Map();
    e.out.named(name, w.use, into);
    w.replay(into, w.use);
  }
  // `u.to_jsonb` may be to_jsonb(u): the whole row, with this reference's use.
  if (WHOLE_ROW_FUNCTIONS.has(name)) wholeRow(w, e, written);
}

// Every column of a FROM item, with the current use.
function wholeRow(w: Walker, e: Entry, written: string | null): void {
  if (e === undefined) {
    if (written !== null) w.b.column(written, '*', w.use);
    return;
  }
  if (e.table !== null) w.b.column(e.table, '*', w.use);
  if (e.out) {
    const into: Sources = new Map();
    e.out.all(w.use, into);
    w.replay(into, w.use);
  }
}

// The FROM entry a star's qualifier names (`t.*`, `s.t.*`).
function fromEntry(w: Walker, parts: string[]): Entry {
  const n = parts.length;
  if (n >= 2) return w.entry(`${parts[n - 2]}\u0000${parts[n - 1]}`);
  return w.entry(parts[0]!);
}

// The table a qualifier names: the TableRef.name of a FROM alias, null for a FROM item
// that is not a table, or the qualifier as written when no FROM item has that name.
function qualifier(w: Walker, parts: string[]): string | null {
  const n = parts.length;
  if (n >= 2) {
    const st = w.lookup(`${parts[n - 2]}\u0000${parts[n - 1]}`);
    if (st !== undefined) return st;
    return dotted(parts.slice(-2));
  }
  const t = w.lookup(parts[0]!);
  return t === undefined ? ident(parts[0]!) : t;
}

const SUBLINK_SKIP: ReadonlySet<string> = new Set(['testexpr', 'subselect']);

function subLink(w: Walker, b: Obj): void {
  operator(w, b.operName);
  w.visit(b.testexpr);
  const saved = w.sublinkUse;
  w.sublinkUse = w.use;
  try {
    w.visit(b.subselect);
  } finally {
    w.sublinkUse = saved;
  }
  w.rest(b, SUBLINK_SKIP);
}

/** An operator's name as written (`=`, `OPERATOR(public.===)` as `===`): user-defined ones run functions. */
function operator(w: Walker, name: unknown): void {
  const parts = names(name);
  if (parts && parts.length > 0) w.b.op(parts[parts.length - 1]!);
}

const WINDOW_SKIP: ReadonlySet<string> = new Set(['partitionClause', 'orderClause']);

function windowDef(w: Walker, b: Obj): void {
  w.visitAs(b.partitionClause, 'group');
  w.visitAs(b.orderClause, 'order');
  w.rest(b, WINDOW_SKIP);
}

// Options that point a foreign table or server at a server file or program (file_fdw),
// or a function at a shared library; options that hold a credential (a role's PASSWORD,
// a user mapping's or server's password, a DSN with one).
function defElem(w: Walker, b: Obj): void {
  const name = (str(b.defname) ?? '').toLowerCase();
  const value = sval(b.arg);
  if ((isObj(b.arg) && credentialName(name)) || (value !== null && conninfoCredential(value))) w.b.secret = true;
  if (name === 'program') {
    w.b.flag('server_program');
    w.b.flag('server_file_access');
  } else if (name === 'filename') w.b.flag('server_file_access');
  else if (name === 'language') {
    const lang = unwrap(b.arg, 'String');
    if (lang && typeof lang.sval === 'string' && lang.sval.toLowerCase() === 'c') w.b.flag('server_file_access');
  }
  w.visit(b.arg);
}

/** Expression node handlers by node type. */
export const EXPRESSION_HANDLERS: readonly (readonly [string, Handler])[] = [
  ['FuncCall', funcCall],
  ['A_Expr', (w, b) => {
    operator(w, b.name);
    w.rest(b, NAME_SKIP);
  }],
  ['ColumnRef', columnRef],
  ['SubLink', subLink],
  ['WindowDef', windowDef],
  ['DefElem', defElem],
  // Any string constant with a connection string's password: dblink*('... password=...'), and functions wrapping it.
  ['A_Const', (w, b) => {
    if (isObj(b.sval) && typeof b.sval.sval === 'string' && conninfoCredential(b.sval.sval)) w.b.secret = true;
  }],
  ['RangeVar', (w, b) => void w.table(b, w.relRole)],
];

// Handlers for expression nodes: function calls (names and flags), column
// references (resolved through FROM aliases), subqueries inside expressions,
// window definitions and options that name server files or programs.

import { conninfoCredential, credentialName } from '../secrets.js';
import { constString, isObj, items, names, str, sval, unwrap, type Obj } from './ast.js';
import { ROLE_SETTINGS, functionFlags, readingHazard } from './flags.js';
import { dotted, ident } from './names.js';
import type { Handler, Walker } from './walk.js';

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
  if (name !== null && credentialName(name)) w.b.secret = true;
  if (name === null || ROLE_SETTINGS.has(name)) w.b.flag('role_change');
  if (name === null || name === 'search_path') w.b.flag('search_path_change');
  if (readingHazard(name, constString(list[1]) ?? null)) w.b.flag('parse_hazard');
}

/** A column reference, resolved through FROM aliases when qualified. */
function columnRef(w: Walker, b: Obj): void {
  const parts: string[] = [];
  let star = false;
  for (const f of items(b.fields)) {
    const s = unwrap(f, 'String');
    if (s) parts.push(typeof s.sval === 'string' ? s.sval : '');
    else if (unwrap(f, 'A_Star')) star = true;
  }
  if (star) {
    w.b.column(parts.length === 0 ? null : qualifier(w, parts), '*', w.use);
    return;
  }
  const n = parts.length;
  if (n === 0) return;
  if (n === 1) {
    w.b.column(null, ident(parts[0]!), w.use);
    // A bare name that is a FROM item is the whole row (`SELECT u FROM users u`).
    const whole = w.lookup(parts[0]!);
    if (whole) w.b.column(whole, '*', w.use);
    return;
  }
  if (n >= 3) {
    // schema.table.column, or table.column.field when schema.table is not in FROM.
    const st = w.lookup(`${parts[n - 3]}\u0000${parts[n - 2]}`);
    if (st !== undefined) {
      w.b.column(st, ident(parts[n - 1]!), w.use);
      return;
    }
    const t = w.lookup(parts[0]!);
    if (t !== undefined) {
      w.b.column(t, ident(parts[1]!), w.use);
      return;
    }
    w.b.column(dotted(parts.slice(Math.max(0, n - 3), n - 1)), ident(parts[n - 1]!), w.use);
    return;
  }
  w.b.column(qualifier(w, parts.slice(0, 1)), ident(parts[1]!), w.use);
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

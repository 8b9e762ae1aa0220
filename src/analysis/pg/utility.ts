// Handlers for utility statements: SET/RESET, COPY, EXPLAIN, PREPARE/EXECUTE,
// statements that carry other statements (CREATE RULE, CREATE FUNCTION ... BEGIN
// ATOMIC, CREATE SCHEMA, CREATE TABLE AS, DECLARE), and DDL whose targets are
// written rather than read.

import { conninfoCredential, credentialName, mentionsCredential } from '../secrets.js';
import { constText, isObj, items, names, str, sval, unwrap, type Obj } from './ast.js';
import { functionByName } from './expressions.js';
import { ROLE_SETTINGS, readingHazard } from './flags.js';
import { dotted, ident, truncateName } from './names.js';
import { schemaWide } from './tables.js';
import type { Handler, Walker } from './walk.js';

const NO_SKIP: ReadonlySet<string> = new Set();

/** SET / RESET / SET ROLE / SET SESSION AUTHORIZATION, top level or configuring something else. */
function setStmt(w: Walker, b: Obj): void {
  const top = w.stmtDepth === 1;
  // GUC names are case-insensitive: SET "ROLE" TO x is SET ROLE x.
  const name = (str(b.name) ?? '').toLowerCase();
  const kind = str(b.kind) ?? '';
  const role = ROLE_SETTINGS.has(name);
  const path = name === 'search_path' || kind === 'VAR_RESET_ALL';
  if (role) w.b.flag('role_change');
  if (path) w.b.flag('search_path_change');
  if (kind === 'VAR_SET_VALUE' && credentialName(name)) w.b.secret = true;
  if (top) {
    w.b.setting = kind === 'VAR_RESET_ALL' ? 'all' : name;
    // The values let the session follow settings that change how later SQL reads
    // (search_path, client_encoding, standard_conforming_strings); `*` is not a literal.
    if (kind === 'VAR_SET_VALUE') w.b.values = items(b.args).map(path ? schemaName : (a) => constText(a) ?? '*');
    if (kind === 'VAR_SET_VALUE' && readingHazard(name, w.b.values?.[0] ?? null)) w.b.flag('parse_hazard');
    if (path) {
      if (kind === 'VAR_SET_VALUE') w.effects.pathLiteral = items(b.args).map(schemaName);
      else w.effects.pathDefault = true;
    }
    if (role && kind === 'VAR_SET_VALUE') {
      const value = constText(items(b.args)[0]);
      if (value !== null && value !== 'none') w.effects.roleLiteral = truncateName(value);
    }
  }
  w.visit(b.args);
}

// A search_path entry as SET wrote it; one that is not a literal could be any schema.
function schemaName(arg: unknown): string {
  const v = constText(arg);
  return v === null ? '*' : truncateName(v);
}

function showStmt(w: Walker, b: Obj): void {
  if (w.stmtDepth === 1) w.b.setting = (str(b.name) ?? '').toLowerCase();
}

function discardStmt(w: Walker, b: Obj): void {
  // DISCARD ALL includes RESET ALL: search_path goes back to its default.
  if (w.stmtDepth === 1 && b.target === 'DISCARD_ALL') w.effects.pathDefault = true;
}

const COPY_SKIP: ReadonlySet<string> = new Set(['relation', 'attlist', 'query', 'whereClause']);

function copyStmt(w: Walker, b: Obj): void {
  const from = b.is_from === true;
  w.pushScope();
  try {
    if (isObj(b.relation)) {
      const ref = w.table(b.relation, from ? 'write' : 'read');
      const rel = str(b.relation.relname);
      if (ref && rel !== null) {
        w.declare(rel, ref.name);
        const cols = names(b.attlist) ?? [];
        const use = from ? 'insert' : 'select';
        if (cols.length === 0) w.b.column(ref.name, '*', use);
        for (const c of cols) w.b.column(ref.name, ident(c), use);
      }
    }
    w.visitInner(b.query, true);
    // No filename means STDIN/STDOUT, which go through the client connection.
    if (b.is_program === true) {
      w.b.flag('server_program');
      w.b.flag('server_file_access');
    } else if (typeof b.filename === 'string') w.b.flag('server_file_access');
    // PROGRAM 'PGPASSWORD=x psql ...', 'curl https://user:x@host/...'
    if (typeof b.filename === 'string' && conninfoCredential(b.filename)) w.b.secret = true;
    w.visitAs(b.whereClause, 'predicate');
    w.rest(b, COPY_SKIP);
  } finally {
    w.popScope();
  }
}

// EXPLAIN runs its statement only with ANALYZE. Anything but a plain false/off/0 counts
// as ANALYZE: PostgreSQL rejects other values, and a guess must err towards running.
function explainAnalyzes(options: unknown): boolean {
  let analyze = false;
  for (const o of items(options)) {
    const d = unwrap(o, 'DefElem');
    if (!d || (str(d.defname) ?? '').toLowerCase() !== 'analyze') continue;
    if (!isFalse(d.arg)) analyze = true;
  }
  return analyze;
}

function isFalse(arg: unknown): boolean {
  const s = sval(arg);
  if (s !== null) return s.toLowerCase() === 'false' || s.toLowerCase() === 'off';
  const i = unwrap(arg, 'Integer');
  if (i) return i.ival === undefined || i.ival === 0;
  const bool = unwrap(arg, 'Boolean');
  if (bool) return bool.boolval !== true;
  const c = unwrap(arg, 'A_Const');
  if (c && isObj(c.boolval)) return c.boolval.boolval !== true;
  return false;
}

const QUERY_SKIP: ReadonlySet<string> = new Set(['query']);

function explainStmt(w: Walker, b: Obj): void {
  const plan = !explainAnalyzes(b.options);
  if (plan) w.b.planOnly++;
  try {
    w.visitInner(b.query, true);
  } finally {
    if (plan) w.b.planOnly--;
  }
  w.rest(b, QUERY_SKIP);
}

function prepareStmt(w: Walker, b: Obj): void {
  if (w.stmtDepth === 1 && typeof b.name === 'string') w.b.prepared = b.name;
  w.visitInner(b.query, true);
  w.rest(b, QUERY_SKIP);
}

const PARAMS_SKIP: ReadonlySet<string> = new Set(['params']);

// EXECUTE runs what was prepared: its facts, with unqualified names resolved again
// under the current search_path. A name the session never prepared could be anything.
function executeStmt(w: Walker, b: Obj): void {
  const name = str(b.name) ?? '';
  if (w.stmtDepth === 1) w.b.prepared = name;
  const stored = w.prepared(name);
  if (stored) w.b.absorb(stored, (r) => w.resolver.rebase(r));
  else w.b.flag('dynamic_sql');
  w.visitAs(b.params, 'other');
  w.rest(b, PARAMS_SKIP);
}

function deallocateStmt(w: Walker, b: Obj): void {
  if (w.stmtDepth === 1 && typeof b.name === 'string') w.b.prepared = b.name;
}

function declareCursorStmt(w: Walker, b: Obj): void {
  w.visitInner(b.query, false);
  w.rest(b, QUERY_SKIP);
}

const CTAS_SKIP: ReadonlySet<string> = new Set(['query', 'into']);

function createTableAsStmt(w: Walker, b: Obj): void {
  w.visitRole(b.into, 'write');
  w.visitInner(b.query, false);
  w.rest(b, CTAS_SKIP);
}

const RULE_SKIP: ReadonlySet<string> = new Set(['relation', 'whereClause', 'actions']);

// A rule's actions run later, in place of or beside each matching statement.
function ruleStmt(w: Walker, b: Obj): void {
  w.visitRole(b.relation, 'write');
  w.visitAs(b.whereClause, 'predicate');
  w.visitInner(b.actions, false);
  w.rest(b, RULE_SKIP);
}

const FUNCTION_SKIP: ReadonlySet<string> = new Set(['sql_body', 'funcname']);

// A BEGIN ATOMIC / RETURN body is parsed now and runs later; a string body stays opaque.
function createFunctionStmt(w: Walker, b: Obj): void {
  if (bodyMentionsCredential(b.options)) w.b.secret = true;
  w.visitInner(b.sql_body, false);
  w.rest(b, FUNCTION_SKIP);
}

function doStmt(w: Walker, b: Obj): void {
  if (bodyMentionsCredential(b.args)) w.b.secret = true;
  w.rest(b, NO_SKIP);
}

// Code the analyzer cannot read may build a credential out of its literals
// (EXECUTE format('ALTER ROLE %I PASSWORD %L', ...)): any mention of one counts.
function bodyMentionsCredential(options: unknown): boolean {
  for (const o of items(options)) {
    const d = unwrap(o, 'DefElem');
    if (!d || d.defname !== 'as') continue;
    const parts = sval(d.arg) !== null ? [d.arg] : items(d.arg);
    if (parts.some((p) => mentionsCredential(sval(p) ?? ''))) return true;
  }
  return false;
}

// A subscription's CONNECTION string is not a constant node: read it here.
function subscriptionStmt(w: Walker, b: Obj): void {
  if (typeof b.conninfo === 'string' && conninfoCredential(b.conninfo)) w.b.secret = true;
  w.rest(b, NO_SKIP);
}

const TRIGGER_SKIP: ReadonlySet<string> = new Set(['relation', 'funcname', 'whenClause']);

function triggerFunction(w: Walker, funcname: unknown): void {
  const parts = names(funcname);
  if (!parts || parts.length === 0) return;
  w.b.fn(dotted(parts.length > 2 ? parts.slice(-2) : parts));
  functionByName(w, parts[parts.length - 1]!);
}

function createTrigStmt(w: Walker, b: Obj): void {
  w.visitRole(b.relation, 'write');
  triggerFunction(w, b.funcname);
  w.visitAs(b.whenClause, 'predicate');
  w.rest(b, TRIGGER_SKIP);
}

const EVENT_TRIGGER_SKIP: ReadonlySet<string> = new Set(['funcname']);

function createEventTrigStmt(w: Walker, b: Obj): void {
  triggerFunction(w, b.funcname);
  w.rest(b, EVENT_TRIGGER_SKIP);
}

// Object types whose name is a relation, and those named `relation.name` (DROP TRIGGER t ON rel).
const RELATION_OBJECTS = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE', 'OBJECT_SEQUENCE', 'OBJECT_INDEX',
]);
const RELATION_MEMBERS = new Set(['OBJECT_COLUMN', 'OBJECT_TRIGGER', 'OBJECT_RULE', 'OBJECT_POLICY', 'OBJECT_TABCONSTRAINT']);

/** The table an object name of `objtype` names or belongs to, written. */
function objectTarget(w: Walker, objtype: string, object: unknown): void {
  let parts = names(object);
  if (parts === null || parts.length === 0) {
    const s = sval(object);
    parts = s === null ? [] : [s];
  }
  if (objtype === 'OBJECT_SCHEMA') {
    if (parts.length === 1) w.tableRef(schemaWide(parts[0]!), 'write');
    return;
  }
  const rel = RELATION_OBJECTS.has(objtype) ? parts : RELATION_MEMBERS.has(objtype) ? parts.slice(0, -1) : null;
  if (rel === null) return;
  const ref = w.resolver.ref(rel);
  if (ref) w.tableRef(ref, 'write');
}

function dropStmt(w: Walker, b: Obj): void {
  const type = str(b.removeType) ?? '';
  for (const o of items(b.objects)) objectTarget(w, type, o);
  w.rest(b, NO_SKIP);
}

function commentStmt(w: Walker, b: Obj): void {
  objectTarget(w, str(b.objtype) ?? '', b.object);
  w.rest(b, NO_SKIP);
}

const OBJECTS_SKIP: ReadonlySet<string> = new Set(['objects']);

function grantStmt(w: Walker, b: Obj): void {
  const relations = b.objtype === 'OBJECT_TABLE' || b.objtype === 'OBJECT_SEQUENCE';
  if (relations && b.targtype === 'ACL_TARGET_ALL_IN_SCHEMA') {
    for (const o of items(b.objects)) {
      const s = sval(o);
      if (s !== null) w.tableRef(schemaWide(s), 'write');
    }
  } else w.visitRole(b.objects, 'write');
  w.rest(b, OBJECTS_SKIP);
}

const SCHEMA_SKIP: ReadonlySet<string> = new Set(['schemaElts']);

// The elements of CREATE SCHEMA s ... are created in s, which is searched first meanwhile.
function createSchemaStmt(w: Walker, b: Obj): void {
  const schema = str(b.schemaname) ?? (isObj(b.authrole) ? str(b.authrole.rolename) : null);
  const saved = w.resolver;
  if (schema) w.resolver = saved.withFirst(schema);
  try {
    w.visit(b.schemaElts);
  } finally {
    w.resolver = saved;
  }
  w.rest(b, SCHEMA_SKIP);
}

function importForeignSchemaStmt(w: Walker, b: Obj): void {
  const local = str(b.local_schema);
  if (local) w.tableRef(schemaWide(local), 'write');
  w.rest(b, NO_SKIP);
}

/** Visits `b` with the RangeVars of `fields` written (the objects a DDL statement changes). */
function writesTo(fields: readonly string[]): Handler {
  const set = new Set(fields);
  return (w, b) => {
    for (const k in b) {
      const v = b[k];
      if (typeof v !== 'object' || v === null) continue;
      if (set.has(k)) w.visitRole(v, 'write');
      else w.visit(v);
    }
  };
}

const createStmt = writesTo(['relation', 'inhRelations']);
const BASE_SKIP: ReadonlySet<string> = new Set(['base']);

/** Utility statement handlers by node type. */
export const UTILITY_HANDLERS: readonly (readonly [string, Handler])[] = [
  ['VariableSetStmt', setStmt],
  ['VariableShowStmt', showStmt],
  ['DiscardStmt', discardStmt],
  ['CopyStmt', copyStmt],
  ['ExplainStmt', explainStmt],
  ['PrepareStmt', prepareStmt],
  ['ExecuteStmt', executeStmt],
  ['DeallocateStmt', deallocateStmt],
  ['DeclareCursorStmt', declareCursorStmt],
  ['CreateTableAsStmt', createTableAsStmt],
  ['RuleStmt', ruleStmt],
  ['CreateFunctionStmt', createFunctionStmt],
  ['DoStmt', doStmt],
  ['CreateSubscriptionStmt', subscriptionStmt],
  ['AlterSubscriptionStmt', subscriptionStmt],
  ['CreateTrigStmt', createTrigStmt],
  ['CreateEventTrigStmt', createEventTrigStmt],
  ['DropStmt', dropStmt],
  ['CommentStmt', commentStmt],
  ['SecLabelStmt', commentStmt],
  ['GrantStmt', grantStmt],
  ['CreateSchemaStmt', createSchemaStmt],
  ['ImportForeignSchemaStmt', importForeignSchemaStmt],
  ['CreateStmt', createStmt],
  ['CreateForeignTableStmt', (w, b) => {
    if (isObj(b.base)) createStmt(w, b.base);
    w.rest(b, BASE_SKIP);
  }],
  ['AlterTableStmt', writesTo(['relation'])],
  ['IndexStmt', writesTo(['relation'])],
  ['ViewStmt', writesTo(['view'])],
  ['CreateSeqStmt', writesTo(['sequence'])],
  ['AlterSeqStmt', writesTo(['sequence'])],
  ['RenameStmt', writesTo(['relation'])],
  ['AlterObjectDependsStmt', writesTo(['relation'])],
  ['AlterObjectSchemaStmt', writesTo(['relation'])],
  ['AlterOwnerStmt', writesTo(['relation'])],
  ['CompositeTypeStmt', writesTo(['typevar'])],
  ['RefreshMatViewStmt', writesTo(['relation'])],
  ['TruncateStmt', writesTo(['relations'])],
  ['CreatePolicyStmt', writesTo(['table'])],
  ['AlterPolicyStmt', writesTo(['table'])],
];

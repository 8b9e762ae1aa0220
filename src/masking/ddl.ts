// What a DDL statement does that could take masked values out of the masking rules'
// reach, read from libpg_query's AST (the statement facts say only which relations
// it changes): renames (of a column, a table, a schema), moves to another schema,
// column comments (classification tags), expressions that copy columns into
// another one (ALTER TYPE ... USING, generated columns, defaults), and changes of
// inheritance or partitioning. SessionMasking judges them against the catalog.
// Also the body of a CREATE FUNCTION in SQL, which dbward can read.

import { bodyOf, isObj, items, names, nodeType, str, sval, unwrap, type Obj } from '../analysis/pg/ast.js';
import { parsePg } from '../analysis/pg/parser.js';
import { dotted, ident } from '../analysis/pg/names.js';

/**
 * One change. Relations are named as statement facts name them (TableRef.name: the
 * name as written, printed); columns and schemas are printed identifiers.
 */
export type DdlChange =
  /** RENAME COLUMN (column set) or RENAME TO of a table, view or foreign table. */
  | { kind: 'rename'; relation: string; column: string | null; to: string }
  | { kind: 'set_schema'; relation: string; schema: string }
  | { kind: 'rename_schema'; schema: string; to: string }
  /** COMMENT ON COLUMN: the comment (null: removed) decides the column's classification tags. */
  | { kind: 'comment'; relation: string; column: string; comment: string | null }
  /**
   * An expression over the relation's rows whose value is stored in `target` (a new
   * generated column, a column's new type USING, a default): each reference as its
   * printed parts, [] for `*`.
   */
  | { kind: 'expression'; relation: string; target: string | null; refs: string[][] }
  /** INHERIT, NO INHERIT, ATTACH PARTITION, DETACH PARTITION: the relations whose rows then read through each other, or no longer. */
  | { kind: 'inheritance'; relations: string[] };

const RELATIONS = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE']);
const INHERITANCE = new Set(['AT_AddInherit', 'AT_DropInherit', 'AT_AttachPartition', 'AT_DetachPartition', 'AT_DetachPartitionFinalize']);
const EXPRESSIONS = new Set(['AT_AddColumn', 'AT_AlterColumnType', 'AT_ColumnDefault', 'AT_SetExpression', 'AT_CookedColumnDefault']);

/** The changes of `sql`, a single statement; [] when it makes none of these; null when it does not parse. */
export function ddlChanges(sql: string): DdlChange[] | null {
  const parsed = parsePg(sql);
  if (!parsed.ok || !isObj(parsed.tree)) return null;
  const out: DdlChange[] = [];
  for (const raw of items(parsed.tree.stmts)) {
    const stmt = isObj(raw) ? raw.stmt : undefined;
    const type = nodeType(stmt);
    const b = type === null ? null : unwrap(stmt, type);
    if (!b) continue;
    if (type === 'RenameStmt') rename(b, out);
    else if (type === 'AlterObjectSchemaStmt') setSchema(b, out);
    else if (type === 'CommentStmt') comment(b, out);
    else if (type === 'AlterTableStmt') alterTable(b, out);
  }
  return out;
}

/** A RangeVar's name as the facts print it (Resolver.ref: a database qualifier adds nothing). */
function relationName(node: unknown): string | null {
  const rv = bodyOf(node, 'RangeVar');
  const rel = rv && str(rv.relname);
  if (!rv || rel === null) return null;
  const schema = str(rv.schemaname);
  return schema ? dotted([schema, rel]) : ident(rel);
}

function rename(b: Obj, out: DdlChange[]): void {
  const to = str(b.newname);
  if (to === null) return;
  if (b.renameType === 'OBJECT_SCHEMA') {
    const from = str(b.subname);
    if (from !== null) out.push({ kind: 'rename_schema', schema: ident(from), to: ident(to) });
    return;
  }
  const relation = relationName(b.relation);
  if (relation === null) return;
  if (b.renameType === 'OBJECT_COLUMN' && RELATIONS.has(str(b.relationType) ?? '')) {
    const from = str(b.subname);
    if (from !== null) out.push({ kind: 'rename', relation, column: ident(from), to: ident(to) });
  } else if (RELATIONS.has(str(b.renameType) ?? '')) {
    out.push({ kind: 'rename', relation, column: null, to: ident(to) });
  }
}

function setSchema(b: Obj, out: DdlChange[]): void {
  const relation = relationName(b.relation);
  const schema = str(b.newschema);
  if (RELATIONS.has(str(b.objectType) ?? '') && relation !== null && schema !== null) out.push({ kind: 'set_schema', relation, schema: ident(schema) });
}

function comment(b: Obj, out: DdlChange[]): void {
  if (b.objtype !== 'OBJECT_COLUMN') return;
  const parts = names(b.object);
  if (!parts || parts.length < 2) return;
  const rel = parts.slice(0, -1);
  const relation = rel.length >= 2 ? dotted(rel.slice(-2)) : ident(rel[0]!);
  out.push({ kind: 'comment', relation, column: ident(parts[parts.length - 1]!), comment: str(b.comment) });
}

function alterTable(b: Obj, out: DdlChange[]): void {
  const relation = relationName(b.relation);
  // ALTER INDEX ... ATTACH PARTITION moves no rows.
  if (relation === null || !RELATIONS.has(str(b.objtype) ?? '')) return;
  for (const item of items(b.cmds)) {
    const cmd = unwrap(item, 'AlterTableCmd');
    const subtype = cmd ? str(cmd.subtype) ?? '' : '';
    if (!cmd) continue;
    if (INHERITANCE.has(subtype)) {
      const partition = unwrap(cmd.def, 'PartitionCmd');
      const other = relationName(partition ? partition.name : cmd.def);
      out.push({ kind: 'inheritance', relations: other === null ? [relation] : [relation, other] });
    } else if (EXPRESSIONS.has(subtype)) {
      const def = unwrap(cmd.def, 'ColumnDef');
      // ADD COLUMN names its column in the definition; ALTER COLUMN in the command.
      const name = str(cmd.name) ?? (def ? str(def.colname) : null);
      const refs: string[][] = [];
      columnRefs(cmd.def, refs, 0);
      if (refs.length > 0) out.push({ kind: 'expression', relation, target: name === null ? null : ident(name), refs });
    }
  }
}

// Deeper than any expression PostgreSQL accepts in these places (no subqueries there).
const MAX_DEPTH = 1000;

/** Every column reference in a tree, as its printed parts ([] for `*`, or a part that is `*`). */
function columnRefs(node: unknown, out: string[][], depth: number): void {
  if (typeof node !== 'object' || node === null) return;
  if (depth > MAX_DEPTH) {
    out.push([]); // unread: count it as every column
    return;
  }
  if (Array.isArray(node)) {
    for (const n of node) columnRefs(n, out, depth + 1);
    return;
  }
  const ref = unwrap(node, 'ColumnRef');
  if (ref) {
    const parts: string[] = [];
    let star = false;
    for (const f of items(ref.fields)) {
      const s = unwrap(f, 'String');
      if (s) parts.push(ident(typeof s.sval === 'string' ? s.sval : ''));
      else star = true;
    }
    out.push(star ? [] : parts);
    return;
  }
  for (const k in node as Obj) columnRefs((node as Obj)[k], out, depth + 1);
}

/** The body of `sql` when it is one CREATE FUNCTION or PROCEDURE in LANGUAGE sql with a string body; else null. */
export function sqlFunctionBody(sql: string): string | null {
  const parsed = parsePg(sql);
  if (!parsed.ok || !isObj(parsed.tree)) return null;
  const stmts = items(parsed.tree.stmts);
  const b = stmts.length === 1 && isObj(stmts[0]) ? unwrap(stmts[0].stmt, 'CreateFunctionStmt') : null;
  if (!b || b.sql_body !== undefined) return null;
  let language: string | null = null;
  let body: string | null = null;
  for (const o of items(b.options)) {
    const d = unwrap(o, 'DefElem');
    if (d?.defname === 'language') language = sval(d.arg)?.toLowerCase() ?? null;
    else if (d?.defname === 'as') {
      const parts = items(d.arg);
      body = parts.length === 1 ? sval(parts[0]) : null;
    }
  }
  return language === 'sql' ? body : null;
}

// Reading the libpg_query JSON AST. A node is either a wrapper `{ TypeName: body }`
// (fields typed `Node`) or a bare struct (fields typed with one struct, e.g.
// DeleteStmt.relation is a bare RangeVar). Default values (false, 0, "") are
// omitted from the JSON, so every accessor tolerates a missing field.

/** A JSON object of the AST. */
export type Obj = { [key: string]: unknown };

/** A plain JSON object (not null, not an array). */
export function isObj(x: unknown): x is Obj {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The node type of a `{ Type: {...} }` wrapper, or null for a bare struct or a non-object. */
export function nodeType(x: unknown): string | null {
  if (!isObj(x)) return null;
  let type: string | null = null;
  for (const k in x) {
    if (type !== null) return null;
    type = k;
  }
  if (type === null) return null;
  // Node type names start with a capital; struct fields never do.
  const c = type.charCodeAt(0);
  return c >= 65 && c <= 90 && isObj(x[type]) ? type : null;
}

/** The body of `x` when it is a `type` wrapper, else null. */
export function unwrap(x: unknown, type: string): Obj | null {
  if (!isObj(x)) return null;
  const body = x[type];
  return isObj(body) ? body : null;
}

/** A node that may come wrapped or bare (e.g. RangeVar): the body either way. */
export function bodyOf(x: unknown, type: string): Obj | null {
  return unwrap(x, type) ?? (isObj(x) ? x : null);
}

const EMPTY: readonly unknown[] = [];

/** Items of an array or of a `{ List: { items } }` node; empty for anything else. */
export function items(x: unknown): readonly unknown[] {
  if (Array.isArray(x)) return x;
  const l = unwrap(x, 'List');
  return l && Array.isArray(l.items) ? l.items : EMPTY;
}

/** `x` when it is a string, else null. */
export function str(x: unknown): string | null {
  return typeof x === 'string' ? x : null;
}

/** The value of a `String` node ('' when the JSON omitted an empty sval), else null. */
export function sval(x: unknown): string | null {
  const s = unwrap(x, 'String');
  if (!s) return null;
  return typeof s.sval === 'string' ? s.sval : '';
}

/** The values of a list of `String` nodes, or null when any item is something else. */
export function names(x: unknown): string[] | null {
  const out: string[] = [];
  for (const item of items(x)) {
    const s = sval(item);
    if (s === null) return null;
    out.push(s);
  }
  return out;
}

/** The text of a string literal (`A_Const` sval), else null. */
export function constString(x: unknown): string | null {
  const c = unwrap(x, 'A_Const');
  if (!c || !isObj(c.sval)) return null;
  return typeof c.sval.sval === 'string' ? c.sval.sval : '';
}

/** A literal's value as PostgreSQL would print it (strings, numbers, booleans), else null. */
export function constText(x: unknown): string | null {
  const c = unwrap(x, 'A_Const');
  if (!c) return null;
  if (isObj(c.sval)) return typeof c.sval.sval === 'string' ? c.sval.sval : '';
  if (isObj(c.ival)) return String(typeof c.ival.ival === 'number' ? c.ival.ival : 0);
  if (isObj(c.fval)) return typeof c.fval.fval === 'string' ? c.fval.fval : null;
  if (isObj(c.boolval)) return c.boolval.boolval === true ? 'true' : 'false';
  return null;
}

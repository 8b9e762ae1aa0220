// Table names to TableRefs: a qualified name is itself, an unqualified one gets a
// candidate per schema PostgreSQL may find it in. PostgreSQL searches pg_temp, then
// pg_catalog, then search_path, except that a schema listed in the path is searched
// at its listed place instead (namespace.c, recomputeNamespacePath).

import type { TableRef } from '../facts.js';
import { bodyOf, str, type Obj } from './ast.js';
import { dotted, ident } from './names.js';

/** Resolves table names under one view of the session's search_path. */
export class Resolver {
  /** Printed schema prefixes, e.g. `pg_temp.`, `public.`, `*.`. */
  private readonly prefixes: string[];

  /**
   * `path` is search_path as raw schema names (`$user` and the unknown `*` allowed);
   * `users` are the names `$user` may stand for (`*` when unknown).
   */
  constructor(readonly path: readonly string[], readonly users: readonly string[]) {
    const out = new Set<string>();
    if (!path.includes('pg_temp')) out.add('pg_temp.');
    if (!path.includes('pg_catalog')) out.add('pg_catalog.');
    for (const p of path) {
      if (p === '$user') {
        for (const u of users) if (u !== '') out.add(u === '*' ? '*.' : `${ident(u)}.`);
      } else if (p === '*') out.add('*.');
      else if (p !== '') out.add(`${ident(p)}.`);
    }
    this.prefixes = [...out];
  }

  /** The same session view with `schema` searched first (CREATE SCHEMA ... elements). */
  withFirst(schema: string): Resolver {
    return new Resolver([schema, ...this.path], this.users);
  }

  /** A table named by parts as written: `[table]`, `[schema, table]` or `[db, schema, table]`. */
  ref(parts: readonly string[], temp = false): TableRef | null {
    const n = parts.length;
    if (n === 0) return null;
    const table = parts[n - 1]!;
    if (n >= 2) {
      // A database qualifier can only name the current database; it adds nothing.
      const name = dotted([parts[n - 2]!, table]);
      return { name, candidates: [name] };
    }
    const name = ident(table);
    if (temp) return { name, candidates: [`pg_temp.${name}`] };
    const candidates = new Array<string>(this.prefixes.length);
    for (let i = 0; i < this.prefixes.length; i++) candidates[i] = this.prefixes[i] + name;
    return { name, candidates };
  }

  /** A RangeVar (wrapped or bare) as a TableRef. */
  rangeVar(node: unknown): TableRef | null {
    const rv = bodyOf(node, 'RangeVar');
    if (!rv) return null;
    const rel = str(rv.relname);
    if (rel === null) return null;
    return this.ref(qualifiedParts(rv, rel), rv.relpersistence === 't');
  }

  /**
   * A TableRef analysed under another search_path (a prepared statement run now):
   * an unqualified name gets this path's candidates too, since PostgreSQL re-plans a
   * cached statement when search_path changes.
   */
  rebase(ref: TableRef): TableRef {
    if (ref.candidates.length === 1 && ref.candidates[0] === ref.name) return ref;
    const fresh = this.ref([unprint(ref.name)]);
    if (!fresh) return ref;
    return { name: ref.name, candidates: [...new Set([...ref.candidates, ...fresh.candidates])] };
  }
}

function qualifiedParts(rv: Obj, rel: string): string[] {
  const schema = str(rv.schemaname);
  if (schema === null || schema === '') return [rel];
  const catalog = str(rv.catalogname);
  return catalog ? [catalog, schema, rel] : [schema, rel];
}

// Inverse of ident() for one unqualified name (the only kind rebase() re-resolves).
function unprint(name: string): string {
  return name.startsWith('"') && name.endsWith('"') && name.length >= 2 ? name.slice(1, -1).replaceAll('""', '"') : name;
}

/** Every table in a schema (GRANT ... ON ALL TABLES IN SCHEMA s, DROP SCHEMA s). */
export function schemaWide(schema: string): TableRef {
  const name = `${ident(schema)}.*`;
  return { name, candidates: [name] };
}

// Where result columns come from, per upstream. PostgreSQL's RowDescription names
// each column's table OID and attribute number; this resolves them to printed
// `schema.table.column` names, with column comments (classification tags) and,
// for views, each view column's own origin, asked of PostgreSQL itself by
// describing the view's definition, and for tables in an inheritance tree (or
// partitions), the same column in their ancestors and descendants, whose rows are
// read through each other. Loaded once per target, reloaded after DDL and when a
// result names a relation the snapshot does not know.

import pg from 'pg';
import type { Logger } from 'pino';
import { analyzePg } from '../analysis/pg/analyze.js';
import { dotted } from '../analysis/pg/names.js';
import type { ColumnRef, ColumnUse, StatementFacts, StatementFlag } from '../analysis/facts.js';
import { functionFlags } from '../analysis/pg/flags.js';
import type { UpstreamEndpoint } from '../proxy/postgres/upstream.js';

/** Background readings missed before the snapshot counts as stale and masked results wait for a fresh one. */
const STALE_AGES = 3;

/** OIDs below this were assigned by initdb: system catalogs and information_schema, never masked. */
export const FIRST_USER_OID = 16384;

/**
 * A view column's origin: a column of another relation, or an expression over some
 * columns, and the code it calls that dbward cannot read (see `callsOf`).
 */
export type Lineage = { rel: number; att: number } | { sources: SourceRef[]; calls: string[] };

/** A column an expression reads: `*` for any column of the relation (SELECT *, a whole-row reference). */
export interface SourceRef {
  rel: number;
  column: string;
}

export interface ColumnInfo {
  att: number;
  name: string;
  /** `schema.table.column`, each part printed as PostgreSQL prints identifiers. */
  printed: string;
  typeOid: number;
  /** Classification tags from the column comment (`dbward:pii`). */
  tags: string[];
  /** For view columns. */
  lineage?: Lineage;
  /**
   * The column of the same name in the relation's ancestors and descendants (table
   * inheritance, partitions): a rule naming one of them masks this one too, since
   * reading a parent returns its children's rows and a child's rows are a parent's.
   */
  related?: ColumnInfo[];
}

export interface RelationInfo {
  oid: number;
  kind: string;
  /** `schema.table`, printed. */
  printed: string;
  columns: Map<number, ColumnInfo>;
  byName: Map<string, ColumnInfo>;
  /** OIDs of the relations it inherits from, or is a partition of (pg_inherits). */
  parents?: number[];
  /** OIDs of the relations that inherit from it, or are its partitions. */
  children?: number[];
}

/** One reading of the catalog. */
export interface CatalogSnapshot {
  version: number;
  relations: Map<number, RelationInfo>;
  byName: Map<string, RelationInfo>;
  /**
   * User-defined functions and procedures (not created by initdb), by printed name,
   * unqualified and `schema.name`, to the `schema.name` of each they may be.
   */
  routines: Map<string, string[]>;
  /** Operators created after initdb whose function is user-defined or runs SQL text, by name, to that function's `schema.name`. */
  operators: Map<string, string[]>;
  /** Functions created by initdb, by printed name, unqualified and `schema.name`. */
  builtins: Set<string>;
  /** The planner statistics catalogs (STATISTICS_CATALOGS) this server has: OID to printed name. */
  statistics?: Map<number, string>;
}

/**
 * Catalogs that hold sample values of every column (most common values, histogram
 * bounds), masked ones included, once ANALYZE has run: reading them is refused in
 * masked sessions, and a view column over them is masked.
 */
export const STATISTICS_CATALOGS: ReadonlySet<string> = new Set([
  'pg_catalog.pg_stats', 'pg_catalog.pg_stats_ext', 'pg_catalog.pg_stats_ext_exprs', 'pg_catalog.pg_statistic', 'pg_catalog.pg_statistic_ext_data',
]);

/** The statistics catalog (STATISTICS_CATALOGS) a table name's candidates may be, or null; `*.pg_stats` may be. */
export function statisticsCatalog(candidates: readonly string[]): string | null {
  for (const c of candidates) {
    const name = c.startsWith('*.') ? `pg_catalog${c.slice(1)}` : c;
    if (STATISTICS_CATALOGS.has(name)) return name;
  }
  return null;
}

/** In `callsOf`: code no name describes (DO, dynamic SQL, a server file or program). */
export const UNNAMED_CODE = '*';
/** In `callsOf`, before a function name the snapshot does not know (created since it was read, perhaps). */
export const UNKNOWN_PREFIX = '?';

const RELATIONS_SQL = `
SELECT c.oid::int8 AS oid, n.nspname, c.relname, c.relkind, a.attnum, a.attname, a.atttypid::int8 AS typ,
       col_description(c.oid, a.attnum) AS comment
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND c.oid >= ${FIRST_USER_OID}
 ORDER BY c.oid, a.attnum`;

// A function an extension installed (citext, hstore, PostGIS) is packaged code, like the
// built-in ones: it reads its arguments. Extensions that run SQL (dblink) are flagged by name.
const USER_DEFINED = `p.oid >= ${FIRST_USER_OID} AND NOT EXISTS (SELECT 1 FROM pg_depend d
  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`;

const ROUTINES_SQL = `
SELECT DISTINCT n.nspname, p.proname, ${USER_DEFINED} AS user_defined
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace`;

const OPERATORS_SQL = `
SELECT o.oprname, n.nspname, p.proname, ${USER_DEFINED} AS user_defined FROM pg_operator o
  JOIN pg_proc p ON p.oid = o.oprcode JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE o.oid >= ${FIRST_USER_OID}`;

const INHERITS_SQL = `SELECT inhrelid::int8 AS child, inhparent::int8 AS parent FROM pg_inherits`;

const STATISTICS_SQL = `
SELECT c.oid::int8 AS oid, c.relname FROM pg_class c
 WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relname = ANY ($1::text[])`;

/** Flags of code whose reads dbward cannot see. */
const OPAQUE_FLAGS: readonly StatementFlag[] = ['dynamic_sql', 'anonymous_code', 'server_file_access', 'server_program'];

const TAG = /dbward:([A-Za-z0-9_.-]+)/g;
/** Column uses that carry a value into a statement's output. */
export const FLOW_USES: ReadonlySet<ColumnUse> = new Set(['select', 'returning', 'other']);

/** The catalog of one target, shared by its sessions. */
export class TargetCatalog {
  private snapshot: CatalogSnapshot | null = null;
  private loading: Promise<CatalogSnapshot> | null = null;
  private stale = true;
  private version = 0;
  /** When the read that made the snapshot started: a change made while it ran may be missed by it. */
  private readAt = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Background ticks since a session last looked at the snapshot. */
  private idleTicks = 0;

  constructor(private readonly endpoint: UpstreamEndpoint, private readonly log: Logger, private readonly maxAgeMs = 30_000) {}

  /** The last snapshot read, possibly stale; null before the first load. */
  get current(): CatalogSnapshot | null {
    this.idleTicks = 0;
    return this.snapshot;
  }

  /**
   * True when DDL may have changed the catalog since the snapshot was read, or when
   * the background readings (every maxAgeMs while the catalog is in use) have failed
   * for so long that the snapshot is no longer to be trusted.
   */
  get isStale(): boolean {
    return this.stale || this.snapshot === null || Date.now() - this.readAt > STALE_AGES * this.maxAgeMs;
  }

  /** Marks the snapshot stale: the next load() reads the catalog again. */
  invalidate(): void {
    this.stale = true;
  }

  /** A fresh snapshot (reads the catalog when stale; concurrent callers share one read). */
  load(): Promise<CatalogSnapshot> {
    if (!this.isStale) return Promise.resolve(this.snapshot!);
    if (this.loading) return this.loading;
    this.stale = false;
    return this.start().catch((err: unknown) => {
      this.stale = true;
      throw err;
    });
  }

  /** Stops the background readings. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private start(): Promise<CatalogSnapshot> {
    const started = Date.now();
    this.loading = this.read().then((s) => {
      this.snapshot = s;
      this.readAt = started;
      // Changes made around dbward (CREATE OR REPLACE VIEW from another client) are seen
      // within maxAgeMs: read again in the background while sessions use the catalog.
      this.timer ??= setInterval(() => this.tick(), this.maxAgeMs).unref();
      return s;
    }).finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  // While in use, read again every tick; idle longer, the snapshot ages past STALE_AGES
  // and the next masked result waits for a fresh reading instead.
  private tick(): void {
    if (this.idleTicks++ >= STALE_AGES || this.loading) return;
    this.start().catch((err: unknown) => this.log.warn({ err }, 'catalog could not be read again; masking goes on with the last reading'));
  }

  private async read(): Promise<CatalogSnapshot> {
    const e = this.endpoint;
    const client = new pg.Client({
      host: e.host, port: e.port, database: e.database, user: e.user, password: e.password,
      ssl: e.tlsMode === 'disable' ? false : e.tlsMode === 'require' ? { rejectUnauthorized: false } : { rejectUnauthorized: true, ...(e.ca && { ca: e.ca }) },
      connectionTimeoutMillis: e.connectTimeoutMs, application_name: 'dbward-catalog', statement_timeout: 10_000,
    });
    client.on('error', (err) => this.log.warn({ err }, 'catalog connection failed'));
    await client.connect();
    try {
      // Read-only, and every name printed qualified (pg_get_viewdef qualifies what the path does not show).
      await client.query("SET default_transaction_read_only = on; SET search_path = pg_catalog");
      const snapshot: CatalogSnapshot = {
        version: ++this.version, relations: new Map(), byName: new Map(), routines: new Map(), operators: new Map(), builtins: new Set(),
      };
      for (const r of (await client.query<{ nspname: string; proname: string; user_defined: boolean }>(ROUTINES_SQL)).rows) {
        const qualified = dotted([r.nspname, r.proname]);
        if (r.user_defined) {
          addTo(snapshot.routines, dotted([r.proname]), qualified);
          addTo(snapshot.routines, qualified, qualified);
        } else {
          snapshot.builtins.add(qualified).add(dotted([r.proname]));
        }
      }
      for (const r of (await client.query<{ oprname: string; nspname: string; proname: string; user_defined: boolean }>(OPERATORS_SQL)).rows) {
        // An operator over packaged code reads its operands, unless that code runs SQL text or files.
        if (r.user_defined || functionFlags(r.proname).length > 0) addTo(snapshot.operators, r.oprname, dotted([r.nspname, r.proname]));
      }
      const rows = (await client.query<{ oid: string; nspname: string; relname: string; relkind: string; attnum: number; attname: string; typ: string; comment: string | null }>(RELATIONS_SQL)).rows;
      for (const r of rows) {
        const oid = Number(r.oid);
        let rel = snapshot.relations.get(oid);
        if (!rel) {
          rel = { oid, kind: r.relkind, printed: dotted([r.nspname, r.relname]), columns: new Map(), byName: new Map() };
          snapshot.relations.set(oid, rel);
          snapshot.byName.set(rel.printed, rel);
        }
        const col: ColumnInfo = {
          att: r.attnum, name: dotted([r.attname]), printed: dotted([r.nspname, r.relname, r.attname]), typeOid: Number(r.typ),
          tags: commentTags(r.comment),
        };
        rel.columns.set(col.att, col);
        rel.byName.set(col.name, col);
      }
      for (const r of (await client.query<{ child: string; parent: string }>(INHERITS_SQL)).rows) {
        // Partitioned indexes are in pg_inherits too; only relations with columns matter.
        const child = snapshot.relations.get(Number(r.child));
        const parent = snapshot.relations.get(Number(r.parent));
        if (!child || !parent) continue;
        (child.parents ??= []).push(parent.oid);
        (parent.children ??= []).push(child.oid);
      }
      relateInherited(snapshot);
      const names = [...STATISTICS_CATALOGS].map((n) => n.slice('pg_catalog.'.length));
      snapshot.statistics = new Map();
      for (const r of (await client.query<{ oid: string; relname: string }>(STATISTICS_SQL, [names])).rows) {
        snapshot.statistics.set(Number(r.oid), dotted(['pg_catalog', r.relname]));
      }
      for (const rel of snapshot.relations.values()) {
        if (rel.kind === 'v' || rel.kind === 'm') await this.viewLineage(client, snapshot, rel);
      }
      return snapshot;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  // PostgreSQL reports a view column's origin as the view itself; asking it to
  // describe the view's definition gives each column's origin one level down.
  private async viewLineage(client: pg.Client, snapshot: CatalogSnapshot, rel: RelationInfo): Promise<void> {
    const def = (await client.query<{ def: string | null }>('SELECT pg_get_viewdef($1::oid) AS def', [rel.oid])).rows[0]?.def;
    if (!def) return;
    const body = def.trim().replace(/;$/, '');
    let lineage: { sources: SourceRef[]; calls: string[] } | null = null;
    let fields: { tableID: number; columnID: number }[] = [];
    try {
      fields = (await client.query(`SELECT * FROM (${body}) AS dbward_view WHERE false`)).fields;
    } catch (err) {
      this.log.warn({ err, view: rel.printed }, 'could not describe a view; its columns count as derived from everything it reads');
    }
    for (const col of rel.columns.values()) {
      const f = fields[col.att - 1];
      if (f && f.tableID !== 0 && f.columnID > 0) col.lineage = { rel: f.tableID, att: f.columnID };
      else col.lineage = (lineage ??= computedLineage(body, snapshot));
    }
  }
}

/** Gives each column of a relation in an inheritance tree the same column of its ancestors and descendants (`related`). */
export function relateInherited(s: CatalogSnapshot): void {
  for (const rel of s.relations.values()) {
    if (!rel.parents && !rel.children) continue;
    const kin = family(s, rel);
    for (const col of rel.columns.values()) {
      const related = kin.flatMap((k) => k.byName.get(col.name) ?? []);
      if (related.length > 0) col.related = related;
    }
  }
}

/** The relations `rel` inherits from and those that inherit from it, at any depth (not `rel`, not its siblings). */
export function family(s: CatalogSnapshot, rel: RelationInfo): RelationInfo[] {
  return [...inheritanceLine(s, rel, 'parents'), ...inheritanceLine(s, rel, 'children')];
}

/** The ancestors (`parents`) or descendants (`children`) of `rel`, at any depth. */
export function inheritanceLine(s: CatalogSnapshot, rel: RelationInfo, dir: 'parents' | 'children'): RelationInfo[] {
  const out: RelationInfo[] = [];
  const seen = new Set([rel.oid]);
  const queue = [...(rel[dir] ?? [])];
  while (queue.length > 0) {
    const oid = queue.pop()!;
    const r = s.relations.get(oid);
    if (!r || seen.has(oid)) continue;
    seen.add(oid);
    out.push(r);
    queue.push(...(r[dir] ?? []));
  }
  return out;
}

/** Classification tags (`dbward:<name>`) in a column comment. */
export function commentTags(comment: string | null): string[] {
  return comment ? [...comment.matchAll(TAG)].map((m) => m[1]!.toLowerCase()) : [];
}

/** Every column a query's output may carry, and the code it calls that dbward cannot read, resolved against the snapshot. */
export function computedLineage(sql: string, snapshot: CatalogSnapshot): { sources: SourceRef[]; calls: string[] } {
  const analysis = analyzePg(sql, { searchPath: ['pg_catalog'], user: '' });
  // Unreadable: treat it as reading everything a view could read, i.e. all of every relation it names.
  if (!analysis.ok) return { sources: [...snapshot.relations.keys()].map((rel) => ({ rel, column: '*' })), calls: [UNNAMED_CODE] };
  const sources: SourceRef[] = [];
  for (const f of analysis.statements) {
    // A view over the planner's statistics shows sample values of masked columns.
    for (const t of f.reads) {
      const stats = statisticsCatalog(t.candidates);
      for (const [oid, printed] of snapshot.statistics ?? []) if (printed === stats) sources.push({ rel: oid, column: '*' });
    }
    for (const c of f.columns) {
      if (!FLOW_USES.has(c.use)) continue;
      for (const rel of relationsNamed(snapshot, columnCandidates(f, c))) sources.push({ rel: rel.oid, column: c.column });
    }
  }
  return { sources, calls: callsOf(snapshot, analysis.statements) };
}

/**
 * The code a statement runs whose reads dbward cannot see: each user-defined function
 * (or procedure, or operator's function) it may call, as `schema.name`; UNNAMED_CODE
 * for DO blocks, SQL run from a string (query_to_xml, ts_stat) and server files or
 * programs; UNKNOWN_PREFIX and the name as written for a function the snapshot does
 * not know. Built-in functions read only their arguments.
 */
export function callsOf(s: CatalogSnapshot, statements: readonly StatementFacts[]): string[] {
  const out = new Set<string>();
  for (const f of statements) {
    if (f.kinds.includes('do') || f.flags.some((fl) => OPAQUE_FLAGS.includes(fl))) out.add(UNNAMED_CODE);
    for (const fn of f.functions) {
      const user = s.routines.get(fn);
      if (user) for (const q of user) out.add(q);
      else if (!s.builtins.has(fn)) out.add(UNKNOWN_PREFIX + fn);
    }
    for (const op of f.operators ?? []) for (const q of s.operators.get(op) ?? []) out.add(q);
  }
  return [...out];
}

function addTo(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (!list) map.set(key, [value]);
  else if (!list.includes(value)) list.push(value);
}

/** The `schema.table` names a column reference may belong to: its table's candidates, or every table the statement reads. */
export function columnCandidates(f: StatementFacts, c: ColumnRef): readonly string[] {
  if (c.table === null) return f.reads.flatMap((t) => t.candidates);
  return (f.reads.find((t) => t.name === c.table) ?? f.writes.find((t) => t.name === c.table))?.candidates ?? [];
}

/** The relations of the snapshot that printed names (in search_path order) may be; `*.name` is that name in any schema. */
export function* relationsNamed(s: CatalogSnapshot, names: readonly string[]): Iterable<RelationInfo> {
  for (const n of names) {
    if (n.startsWith('*.')) {
      const tail = n.slice(1);
      for (const [printed, r] of s.byName) if (printed.endsWith(tail)) yield r;
      continue;
    }
    const r = s.byName.get(n);
    if (r) yield r;
  }
}

// What statement analysis tells policy about SQL text. Engine-neutral: the
// PostgreSQL analyzer (libpg_query) fills it today, the MySQL one later. Kept
// free of runtime imports so policy code can depend on it without the parser.

/**
 * Command kinds, lower case. One per top-level statement, plus the kinds of any
 * nested data-modifying statement (a DELETE inside a CTE, the statement under
 * EXPLAIN ANALYZE, what a PREPARE or a CREATE RULE would run).
 */
export type StatementKind =
  | 'select' | 'insert' | 'update' | 'delete' | 'merge' | 'truncate' | 'copy'
  | 'create' | 'alter' | 'drop' | 'comment' | 'security_label' | 'reindex' | 'cluster' | 'vacuum' | 'analyze' | 'refresh'
  | 'grant' | 'revoke' | 'create_role' | 'alter_role' | 'drop_role'
  | 'create_function' | 'create_trigger' | 'create_rule' | 'create_extension'
  | 'do' | 'call' | 'prepare' | 'execute' | 'deallocate'
  | 'set' | 'reset' | 'show' | 'set_role' | 'set_session_authorization' | 'discard'
  | 'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'prepare_transaction' | 'commit_prepared' | 'rollback_prepared'
  | 'lock' | 'listen' | 'notify' | 'unlisten' | 'declare' | 'fetch' | 'move' | 'close' | 'explain' | 'load' | 'checkpoint' | 'other';

/** Properties of a statement that policies commonly key on. */
export type StatementFlag =
  /** UPDATE or DELETE (anywhere in the statement) without a WHERE clause, or a MERGE whose unconditioned WHEN MATCHED (or NOT MATCHED BY SOURCE) UPDATE/DELETE runs under an ON that names no column of the target. */
  | 'no_where'
  /** A SELECT that reads a table and has no LIMIT/FETCH FIRST. */
  | 'no_limit'
  /** Writes data: INSERT/UPDATE/DELETE/MERGE/TRUNCATE/COPY FROM, or SELECT INTO. */
  | 'writes'
  /** Schema change: CREATE/ALTER/DROP of any object, TRUNCATE, COMMENT... */
  | 'ddl'
  /** Privilege or role change: GRANT/REVOKE, CREATE/ALTER/DROP ROLE, ALTER DEFAULT PRIVILEGES. */
  | 'dcl'
  /** COPY in either direction. */
  | 'copy'
  /** Runs a program on the server: COPY ... TO/FROM PROGRAM, a file_fdw `program` option. */
  | 'server_program'
  /** Reads or writes server files: pg_read_file, pg_ls_dir, lo_import/lo_export, COPY to/from a server file or program, adminpack, LOAD... */
  | 'server_file_access'
  /** Runs SQL text the analyzer cannot see: EXECUTE in PL/pgSQL (DO), dblink*, query_to_xml, PREPARE of dynamic text... */
  | 'dynamic_sql'
  /** DO blocks and CREATE FUNCTION/PROCEDURE bodies (code that runs later or in a language). */
  | 'anonymous_code'
  /** SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION, set_config('role'|'session_authorization', ...). */
  | 'role_change'
  /** set_config() with any setting (a function call that changes session state). */
  | 'set_config'
  /** SET/RESET of search_path (changes how unqualified names resolve). */
  | 'search_path_change'
  /** Signals or terminates other backends: pg_terminate_backend, pg_cancel_backend, pg_reload_conf... */
  | 'server_control'
  /** Transaction control: BEGIN, COMMIT, ROLLBACK, SAVEPOINT... */
  | 'transaction_control'
  /**
   * Changes how the server reads later SQL text, so dbward's parser would no longer
   * see what the server runs: standard_conforming_strings off, a client_encoding
   * whose multibyte characters can hide a quote (SJIS, BIG5, GBK...), either set
   * by SET, set_config (or a set_config whose setting is not a literal) or a write
   * to pg_settings. dbward refuses these whatever the policy says.
   */
  | 'parse_hazard';

/** Where in a statement a column is referenced. */
export type ColumnUse = 'select' | 'predicate' | 'order' | 'group' | 'set' | 'insert' | 'returning' | 'join' | 'other';

/**
 * A table as written in the statement, with every schema it may resolve to.
 * A qualified name has one candidate; an unqualified one has one per schema
 * that could hold it under the session's search_path (pg_temp and pg_catalog
 * included, as PostgreSQL searches them). Names are lower-cased unless quoted.
 * Each part is printed as PostgreSQL prints identifiers: bare when plain lower case,
 * else double-quoted (`public."Users"`, `"a.b"`), so distinct names never print alike.
 * `schema.*` stands for every table of a schema (GRANT ... ON ALL TABLES IN SCHEMA,
 * DROP SCHEMA).
 */
export interface TableRef {
  /** As written, e.g. `users` or `public.users`. */
  name: string;
  /** Qualified `schema.table` candidates, e.g. `["pg_temp.users", "pg_catalog.users", "public.users"]`. */
  candidates: string[];
}

/** A column reference; `table` is the TableRef.name it belongs to when known, else null. */
export interface ColumnRef {
  table: string | null;
  column: string;
  use: ColumnUse;
}

/** Facts about one statement of a (possibly multi-statement) SQL string. */
export interface StatementFacts {
  /** The statement's own text (the slice of the input). */
  text: string;
  /** Top-level kind first, then nested kinds; no duplicates. */
  kinds: StatementKind[];
  reads: TableRef[];
  writes: TableRef[];
  columns: ColumnRef[];
  /** Functions called, as written, lower-cased (`set_config`, `pg_catalog.set_config`, `public.f`). */
  functions: string[];
  /** Operators used, by bare name (`=`, `~~`, `===`); absent when none. */
  operators?: string[];
  flags: StatementFlag[];
  /**
   * For EXECUTE name: the prepared statement's name (facts are those of what was prepared).
   * PREPARE name: its name (store these facts under it for a later EXECUTE). DEALLOCATE
   * name: its name; absent for DEALLOCATE ALL.
   */
  prepared?: string;
  /** For SET/RESET: the setting's name (lower case), e.g. `search_path`, `role`. */
  setting?: string;
  /** For SET name TO literal, ...: the values, unquoted (identifiers folded); absent for RESET, DEFAULT or computed values. */
  values?: string[];
  /**
   * The text carries a credential (a role password, a user-mapping or server password
   * option, a connection string with password=); the audit trail records its normalized
   * text. `PASSWORD NULL` carries none. Facts of the statement itself: EXECUTE of a
   * prepared statement that held one does not (its text names the statement only).
   */
  secret?: true;
  /**
   * The credential is given by an expression normalization cannot replace
   * (`set_config('app.password', hunter2, false)`, a name PostgreSQL reads as a column):
   * the names the facts hold may spell it, so the trail records them as `***` and no
   * fingerprint (which hashes names).
   */
  secretNames?: true;
}

/** What the analyzer made of a SQL string: facts per statement, or why it could not parse it. */
export type Analysis =
  | {
    ok: true;
    statements: StatementFacts[];
    /**
     * 16 hex digits shared by texts whose parse trees differ only in constants,
     * option values and layout (white space, comments, keyword case): the audit
     * trail's grouping key. Computed from the tree the analyzer already has.
     */
    fingerprint?: string;
  }
  | {
    ok: false; error: string;
    /** 1-based character (code point) position of the error, as PostgreSQL reports it, when known. */
    position?: number;
    /** The statement is beyond what dbward can analyze (too deep to walk), not wrong: PostgreSQL's 54001. */
    tooComplex?: true;
  };

/** The session state analysis needs. */
export interface AnalysisContext {
  /**
   * Every schema an unqualified name may resolve to in this session, in order
   * (e.g. `["$user", "public"]`): the search_path at login plus any set since.
   * `*` means "unknown" (set_config with a computed value): an unqualified name
   * then gets the candidate `*.name`, which policy treats as any schema.
   */
  searchPath: string[];
  /** The session's current user (for `$user` in search_path). */
  user: string;
  /** Facts of statements prepared with SQL PREPARE in this session, by name (for EXECUTE). */
  prepared?: ReadonlyMap<string, StatementFacts>;
}

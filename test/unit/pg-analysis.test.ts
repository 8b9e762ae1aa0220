// The PostgreSQL statement analyzer: a table of everyday statements and the hostile
// table shared with integration tests, each checked against the facts it must yield.

import { beforeAll, describe, expect, it } from 'vitest';
import type { AnalysisContext } from '../../src/analysis/facts.js';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { PG_HOSTILE_STATEMENTS } from '../fixtures/pg-hostile-statements.js';
import { DEFAULT_CTX, caseMismatches, unqualified as U, type AnalyzerCase } from '../fixtures/pg-statements.js';

const EVERYDAY: AnalyzerCase[] = [
  // --- reads ----------------------------------------------------------------------------
  { name: 'constant', sql: 'SELECT 1', statements: [{ kinds: ['select'], reads: [], writes: [], functions: [], noFlags: ['no_limit'] }] },
  { name: 'unqualified table', sql: 'SELECT id FROM users', statements: [{ kinds: ['select'], reads: ['users'], candidates: { users: U('users') }, flags: ['no_limit'], columns: [[null, 'id', 'select']] }] },
  { name: 'qualified table', sql: 'SELECT id FROM public.users LIMIT 10', statements: [{ reads: ['public.users'], candidates: { 'public.users': ['public.users'] }, noFlags: ['no_limit'] }] },
  { name: 'pg_catalog table', sql: 'SELECT relname FROM pg_class WHERE relkind = $1 LIMIT 1', statements: [{ reads: ['pg_class'], candidates: { pg_class: U('pg_class') } }] },
  { name: 'LIMIT ALL is no limit', sql: 'SELECT * FROM t LIMIT ALL', statements: [{ flags: ['no_limit'] }] },
  { name: 'LIMIT NULL is no limit', sql: 'SELECT * FROM t LIMIT NULL', statements: [{ flags: ['no_limit'] }] },
  { name: 'FETCH FIRST', sql: 'SELECT * FROM t FETCH FIRST 3 ROWS ONLY', statements: [{ noFlags: ['no_limit'] }] },
  { name: 'OFFSET alone', sql: 'SELECT * FROM t OFFSET 3', statements: [{ flags: ['no_limit'] }] },
  { name: 'LIMIT with a parameter', sql: 'SELECT * FROM t LIMIT $1', statements: [{ noFlags: ['no_limit'] }] },
  { name: 'UNION with an outer LIMIT', sql: '(SELECT a FROM t) UNION (SELECT a FROM u) LIMIT 5', statements: [{ reads: ['t', 'u'], noFlags: ['no_limit'] }] },
  { name: 'UNION without LIMIT', sql: 'SELECT a FROM t UNION ALL SELECT a FROM u', statements: [{ kinds: ['select'], reads: ['t', 'u'], flags: ['no_limit'] }] },
  { name: 'INTERSECT/EXCEPT', sql: 'SELECT a FROM t INTERSECT SELECT a FROM u EXCEPT SELECT a FROM v LIMIT 1', statements: [{ reads: ['t', 'u', 'v'] }] },
  { name: 'LIMIT inside only', sql: 'SELECT * FROM (SELECT * FROM t LIMIT 1) s', statements: [{ flags: ['no_limit'] }] },
  { name: 'SELECT without FROM calls', sql: 'SELECT now(), version()', statements: [{ functions: ['now', 'version'], reads: [], noFlags: ['no_limit'] }] },
  { name: 'set-returning function only', sql: 'SELECT * FROM generate_series(1, 10) g', statements: [{ reads: [], functions: ['generate_series'], noFlags: ['no_limit'] }] },
  { name: 'join with aliases', sql: 'SELECT u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 10 ORDER BY o.total DESC LIMIT 20', statements: [{ reads: ['users', 'orders'], columns: [['users', 'email', 'select'], ['orders', 'total', 'select'], ['orders', 'user_id', 'join'], ['users', 'id', 'join'], ['orders', 'total', 'predicate'], ['orders', 'total', 'order']] }] },
  { name: 'join USING', sql: 'SELECT * FROM a JOIN b USING (id) LIMIT 1', statements: [{ reads: ['a', 'b'], columns: [[null, 'id', 'join'], [null, '*', 'select']] }] },
  { name: 'LEFT JOIN and NATURAL JOIN', sql: 'SELECT 1 FROM a LEFT JOIN b ON a.x = b.x NATURAL JOIN c', statements: [{ reads: ['a', 'b', 'c'], columns: [['a', 'x', 'join'], ['b', 'x', 'join']] }] },
  { name: 'qualified alias resolution', sql: 'SELECT s.name FROM public.staff s', statements: [{ columns: [['public.staff', 'name', 'select']] }] },
  { name: 'schema.table.column', sql: 'SELECT public.t.a FROM public.t', statements: [{ columns: [['public.t', 'a', 'select']] }] },
  { name: 'table.* ', sql: 'SELECT t.* FROM public.t', statements: [{ columns: [['public.t', '*', 'select']] }] },
  { name: 'SELECT *', sql: 'SELECT * FROM t', statements: [{ columns: [[null, '*', 'select']] }] },
  { name: 'whole-row reference', sql: 'SELECT u FROM users u', statements: [{ columns: [[null, 'u', 'select'], ['users', '*', 'select']] }] },
  { name: 'whole row in a function', sql: 'SELECT row_to_json(u) FROM users u', statements: [{ functions: ['row_to_json'], columns: [['users', '*', 'select']] }] },
  { name: 'column of a subquery alias', sql: 'SELECT s.x FROM (SELECT a AS x FROM t) s', statements: [{ reads: ['t'], columns: [[null, 'x', 'select'], [null, 'a', 'select']] }] },
  { name: 'column of a CTE', sql: 'WITH c AS (SELECT a FROM t) SELECT c.a FROM c', statements: [{ reads: ['t'], columns: [[null, 'a', 'select']] }] },
  { name: 'unknown qualifier kept as written', sql: 'SELECT nope.a FROM t', statements: [{ columns: [['nope', 'a', 'select']] }] },
  { name: 'WHERE / GROUP BY / HAVING / ORDER BY', sql: 'SELECT dept, count(*) FROM emp WHERE salary > 10 GROUP BY dept HAVING max(age) > 30 ORDER BY dept', statements: [{ functions: ['count', 'max'], columns: [[null, 'dept', 'select'], [null, 'salary', 'predicate'], [null, 'dept', 'group'], [null, 'age', 'predicate'], [null, 'dept', 'order']] }] },
  { name: 'subquery in WHERE counts as predicate', sql: 'SELECT * FROM t WHERE x IN (SELECT ssn FROM u)', statements: [{ reads: ['t', 'u'], columns: [[null, 'ssn', 'predicate'], [null, 'x', 'predicate']] }] },
  { name: 'EXISTS correlated', sql: 'SELECT 1 FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)', statements: [{ reads: ['t', 'u'], columns: [['u', 'a', 'predicate'], ['t', 'a', 'predicate']] }] },
  { name: 'scalar subquery in the select list', sql: 'SELECT (SELECT max(v) FROM u) FROM t', statements: [{ reads: ['t', 'u'], columns: [[null, 'v', 'select']] }] },
  { name: 'window function', sql: 'SELECT rank() OVER (PARTITION BY a ORDER BY b) FROM t', statements: [{ functions: ['rank'], columns: [[null, 'a', 'group'], [null, 'b', 'order']] }] },
  { name: 'named window', sql: 'SELECT sum(x) OVER w FROM t WINDOW w AS (PARTITION BY y)', statements: [{ functions: ['sum'], columns: [[null, 'y', 'group']] }] },
  { name: 'DISTINCT ON', sql: 'SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b', statements: [{ columns: [[null, 'a', 'group']] }] },
  { name: 'LATERAL subquery', sql: 'SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id) x', statements: [{ reads: ['t', 'u'], columns: [['t', 'id', 'predicate']] }] },
  { name: 'ROWS FROM', sql: 'SELECT * FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY[1])) AS r(a, b)', statements: [{ functions: ['generate_series', 'unnest'], reads: [] }] },
  { name: 'VALUES', sql: 'VALUES (1, 2), (3, 4)', statements: [{ kinds: ['select'], reads: [] }] },
  { name: 'SQL-syntax functions keep the written name', sql: "SELECT extract(year FROM now()), substring('abc' FROM 2), trim(both ' ' FROM 'x')", statements: [{ functions: ['extract', 'now', 'substring', 'btrim'] }] },
  { name: 'COALESCE / GREATEST / CASE are not calls', sql: 'SELECT coalesce(a, 1), greatest(a, b), CASE WHEN a THEN b END FROM t', statements: [{ functions: [] }] },
  { name: 'user function qualified', sql: 'SELECT app.score(id) FROM users', statements: [{ functions: ['app.score'], noFlags: ['dynamic_sql', 'server_file_access'] }] },
  { name: 'cast of a string', sql: "SELECT 'users'::regclass", statements: [{ reads: [], functions: [] }] },
  { name: 'FOR UPDATE OF names an alias', sql: 'SELECT * FROM users u FOR UPDATE OF u', statements: [{ reads: ['users'] }] },
  { name: 'TABLESAMPLE', sql: 'SELECT * FROM big TABLESAMPLE SYSTEM (1) LIMIT 10', statements: [{ reads: ['big'] }] },
  { name: 'ONLY', sql: 'SELECT * FROM ONLY parent LIMIT 1', statements: [{ reads: ['parent'] }] },
  { name: 'TABLE command', sql: 'TABLE users', statements: [{ kinds: ['select'], reads: ['users'], flags: ['no_limit'] }] },
  { name: 'non-ASCII text is sliced by character', sql: "SELECT 'é€😀' AS x; SELECT 2", statements: [{ kinds: ['select'] }, { kinds: ['select'] }] },
  { name: 'current_user is not a function call', sql: 'SELECT current_user, session_user', statements: [{ functions: [] }] },
  { name: 'JSON operators', sql: "SELECT data->>'a' FROM docs WHERE data @> '{}' LIMIT 1", statements: [{ reads: ['docs'], columns: [[null, 'data', 'select'], [null, 'data', 'predicate']] }] },

  // --- writes -----------------------------------------------------------------------------
  { name: 'INSERT VALUES with columns', sql: "INSERT INTO users (email, name) VALUES ('a@b', 'a')", statements: [{ kinds: ['insert'], writes: ['users'], reads: [], flags: ['writes'], columns: [['users', 'email', 'insert'], ['users', 'name', 'insert']] }] },
  { name: 'INSERT without a column list', sql: 'INSERT INTO public.users VALUES (1)', statements: [{ writes: ['public.users'], columns: [['public.users', '*', 'insert']] }] },
  { name: 'INSERT SELECT', sql: 'INSERT INTO archive SELECT * FROM events WHERE at < now()', statements: [{ kinds: ['insert'], writes: ['archive'], reads: ['events'], noFlags: ['no_limit'] }] },
  { name: 'INSERT RETURNING reads its target', sql: 'INSERT INTO t (a) VALUES (1) RETURNING id', statements: [{ writes: ['t'], reads: ['t'], columns: [[null, 'id', 'returning']] }] },
  { name: 'INSERT ON CONFLICT DO NOTHING', sql: 'INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING', statements: [{ writes: ['t'], reads: [] }] },
  { name: 'upsert', sql: 'INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b WHERE t.c > 0', statements: [{ writes: ['t'], reads: ['t'], columns: [['t', 'b', 'set'], ['t', 'c', 'predicate']] }] },
  { name: 'INSERT DEFAULT VALUES', sql: 'INSERT INTO t DEFAULT VALUES', statements: [{ kinds: ['insert'], writes: ['t'] }] },
  { name: 'UPDATE with WHERE', sql: "UPDATE users SET email = 'x' WHERE id = 1 RETURNING ssn", statements: [{ kinds: ['update'], writes: ['users'], reads: ['users'], noFlags: ['no_where'], columns: [['users', 'email', 'set'], [null, 'id', 'predicate'], [null, 'ssn', 'returning']] }] },
  { name: 'UPDATE FROM', sql: 'UPDATE t SET a = u.a FROM u WHERE t.id = u.id', statements: [{ writes: ['t'], reads: ['t', 'u'], columns: [['t', 'a', 'set'], ['u', 'a', 'other'], ['t', 'id', 'predicate']] }] },
  { name: 'UPDATE with an alias', sql: 'UPDATE public.users AS x SET a = 1 WHERE x.id = 2', statements: [{ writes: ['public.users'], columns: [['public.users', 'id', 'predicate'], ['public.users', 'a', 'set']] }] },
  { name: 'UPDATE multiple assignment', sql: 'UPDATE t SET (a, b) = (SELECT x, y FROM u LIMIT 1) WHERE id = 1', statements: [{ reads: ['t', 'u'], columns: [['t', 'a', 'set'], ['t', 'b', 'set']] }] },
  { name: 'DELETE with WHERE', sql: 'DELETE FROM sessions WHERE expires < now()', statements: [{ kinds: ['delete'], writes: ['sessions'], functions: ['now'], noFlags: ['no_where'] }] },
  { name: 'DELETE USING', sql: 'DELETE FROM a USING b WHERE a.id = b.id', statements: [{ writes: ['a'], reads: ['a', 'b'] }] },
  { name: 'MERGE', sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)', statements: [{ kinds: ['merge', 'update', 'insert'], writes: ['t'], reads: ['t', 's'], columns: [['t', 'id', 'join'], ['s', 'x', 'predicate'], ['t', 'v', 'set'], ['t', 'id', 'insert'], ['s', 'v', 'insert']] }] },
  { name: 'MERGE DO NOTHING', sql: 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING', statements: [{ kinds: ['merge'] }] },
  { name: 'COPY FROM STDIN with columns', sql: 'COPY users (email, name) FROM STDIN', statements: [{ kinds: ['copy'], writes: ['users'], flags: ['copy', 'writes'], noFlags: ['server_file_access'], columns: [['users', 'email', 'insert']] }] },
  { name: 'COPY TO STDOUT', sql: 'COPY users TO STDOUT WITH (FORMAT csv, HEADER)', statements: [{ kinds: ['copy'], reads: ['users'], noFlags: ['writes', 'server_file_access'], columns: [['users', '*', 'select']] }] },
  { name: 'COPY (query) TO STDOUT', sql: 'COPY (SELECT a FROM t LIMIT 5) TO STDOUT', statements: [{ kinds: ['copy', 'select'], reads: ['t'], noFlags: ['no_limit'] }] },
  { name: 'REFRESH MATERIALIZED VIEW', sql: 'REFRESH MATERIALIZED VIEW CONCURRENTLY mv', statements: [{ kinds: ['refresh'], writes: ['mv'], flags: ['writes'] }] },

  // --- DDL ------------------------------------------------------------------------------------
  { name: 'CREATE TABLE', sql: 'CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL)', statements: [{ kinds: ['create'], writes: ['t'], flags: ['ddl'], noFlags: ['writes'] }] },
  { name: 'CREATE TEMP TABLE', sql: 'CREATE TEMP TABLE tt (a int)', statements: [{ writes: ['tt'], candidates: { tt: ['pg_temp.tt'] } }] },
  { name: 'CREATE TABLE with a foreign key', sql: 'CREATE TABLE o (u int REFERENCES users (id))', statements: [{ writes: ['o'], reads: ['users'] }] },
  { name: 'CREATE TABLE LIKE', sql: 'CREATE TABLE c (LIKE secrets INCLUDING ALL)', statements: [{ writes: ['c'], reads: ['secrets'] }] },
  { name: 'CREATE TABLE PARTITION OF', sql: 'CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)', statements: [{ writes: ['p1', 'p'] }] },
  { name: 'ALTER TABLE ADD COLUMN', sql: 'ALTER TABLE users ADD COLUMN age int', statements: [{ kinds: ['alter'], writes: ['users'], flags: ['ddl'], noFlags: ['dcl'] }] },
  { name: 'ALTER TABLE RENAME', sql: 'ALTER TABLE users RENAME TO people', statements: [{ kinds: ['alter'], writes: ['users'], flags: ['ddl'] }] },
  { name: 'ALTER TABLE SET SCHEMA', sql: 'ALTER TABLE users SET SCHEMA archive', statements: [{ kinds: ['alter'], writes: ['users'] }] },
  { name: 'DROP TABLE', sql: 'DROP TABLE IF EXISTS a, s.b CASCADE', statements: [{ kinds: ['drop'], writes: ['a', 's.b'], flags: ['ddl'] }] },
  { name: 'DROP FUNCTION is not a call', sql: 'DROP FUNCTION pg_temp.f(int)', statements: [{ kinds: ['drop'], writes: [], functions: [] }] },
  { name: 'DROP INDEX', sql: 'DROP INDEX CONCURRENTLY idx', statements: [{ kinds: ['drop'], writes: ['idx'] }] },
  { name: 'CREATE INDEX', sql: 'CREATE INDEX CONCURRENTLY i ON t (lower(email)) WHERE active', statements: [{ kinds: ['create'], writes: ['t'], functions: ['lower'] }] },
  { name: 'CREATE VIEW', sql: 'CREATE OR REPLACE VIEW v AS SELECT a FROM t', statements: [{ kinds: ['create'], writes: ['v'], reads: ['t'], noFlags: ['no_limit'] }] },
  { name: 'CREATE SEQUENCE', sql: 'CREATE SEQUENCE s START 1', statements: [{ kinds: ['create'], writes: ['s'] }] },
  { name: 'CREATE TYPE enum', sql: "CREATE TYPE mood AS ENUM ('sad', 'ok')", statements: [{ kinds: ['create'], flags: ['ddl'] }] },
  { name: 'CREATE DOMAIN', sql: 'CREATE DOMAIN posint AS int CHECK (VALUE > 0)', statements: [{ kinds: ['create'] }] },
  { name: 'CREATE SCHEMA', sql: 'CREATE SCHEMA IF NOT EXISTS app', statements: [{ kinds: ['create'], flags: ['ddl'] }] },
  { name: 'CREATE DATABASE', sql: 'CREATE DATABASE app2', statements: [{ kinds: ['create'], flags: ['ddl'] }] },
  { name: 'COMMENT ON TABLE', sql: "COMMENT ON TABLE s.t IS 'x'", statements: [{ kinds: ['comment'], writes: ['s.t'] }] },
  { name: 'SECURITY LABEL', sql: "SECURITY LABEL ON TABLE t IS 'x'", statements: [{ kinds: ['security_label'], writes: ['t'] }] },
  { name: 'plain SQL function', sql: "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'select a + b'", statements: [{ kinds: ['create_function'], flags: ['anonymous_code', 'ddl'], noFlags: ['server_file_access'] }] },
  { name: 'ALTER FUNCTION', sql: 'ALTER FUNCTION f(int) SECURITY DEFINER', statements: [{ kinds: ['alter'], flags: ['ddl'] }] },
  { name: 'ALTER EXTENSION UPDATE', sql: 'ALTER EXTENSION hstore UPDATE', statements: [{ kinds: ['alter'], flags: ['anonymous_code'] }] },

  // --- maintenance and session -------------------------------------------------------------
  { name: 'VACUUM', sql: 'VACUUM (ANALYZE) t', statements: [{ kinds: ['vacuum'], reads: ['t'] }] },
  { name: 'ANALYZE', sql: 'ANALYZE t', statements: [{ kinds: ['analyze'], reads: ['t'] }] },
  { name: 'CLUSTER', sql: 'CLUSTER t USING i', statements: [{ kinds: ['cluster'], reads: ['t'] }] },
  { name: 'REINDEX', sql: 'REINDEX TABLE t', statements: [{ kinds: ['reindex'], reads: ['t'] }] },
  { name: 'LOCK', sql: 'LOCK TABLE t IN SHARE MODE', statements: [{ kinds: ['lock'], reads: ['t'] }] },
  { name: 'BEGIN', sql: 'BEGIN ISOLATION LEVEL SERIALIZABLE', statements: [{ kinds: ['begin'], flags: ['transaction_control'] }] },
  { name: 'START TRANSACTION', sql: 'START TRANSACTION READ ONLY', statements: [{ kinds: ['begin'] }] },
  { name: 'COMMIT', sql: 'COMMIT', statements: [{ kinds: ['commit'], flags: ['transaction_control'] }] },
  { name: 'ROLLBACK', sql: 'ROLLBACK', statements: [{ kinds: ['rollback'] }] },
  { name: 'SAVEPOINT', sql: 'SAVEPOINT s1', statements: [{ kinds: ['savepoint'] }] },
  { name: 'ROLLBACK TO SAVEPOINT', sql: 'ROLLBACK TO SAVEPOINT s1', statements: [{ kinds: ['rollback'] }] },
  { name: 'RELEASE', sql: 'RELEASE SAVEPOINT s1', statements: [{ kinds: ['release'] }] },
  { name: 'PREPARE TRANSACTION', sql: "PREPARE TRANSACTION 'x'", statements: [{ kinds: ['prepare_transaction'] }] },
  { name: 'COMMIT PREPARED', sql: "COMMIT PREPARED 'x'", statements: [{ kinds: ['commit_prepared'] }] },
  { name: 'ROLLBACK PREPARED', sql: "ROLLBACK PREPARED 'x'", statements: [{ kinds: ['rollback_prepared'] }] },
  { name: 'SET a setting', sql: "SET statement_timeout = '5s'", statements: [{ kinds: ['set'], setting: 'statement_timeout', noFlags: ['role_change', 'search_path_change'] }] },
  { name: 'SET TIME ZONE', sql: "SET TIME ZONE 'UTC'", statements: [{ kinds: ['set'], setting: 'timezone' }] },
  { name: 'SET TRANSACTION', sql: 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', statements: [{ kinds: ['set'], setting: 'transaction' }] },
  { name: 'RESET a setting', sql: 'RESET statement_timeout', statements: [{ kinds: ['reset'], setting: 'statement_timeout' }] },
  { name: 'SHOW', sql: 'SHOW search_path', statements: [{ kinds: ['show'], setting: 'search_path', noFlags: ['search_path_change'] }] },
  { name: 'SET CONSTRAINTS', sql: 'SET CONSTRAINTS ALL DEFERRED', statements: [{ kinds: ['set'] }] },
  { name: 'DISCARD PLANS', sql: 'DISCARD PLANS', statements: [{ kinds: ['discard'], noFlags: ['role_change'] }] },
  { name: 'LISTEN / NOTIFY / UNLISTEN', sql: "LISTEN c; NOTIFY c, 'x'; UNLISTEN *", statements: [{ kinds: ['listen'] }, { kinds: ['notify'] }, { kinds: ['unlisten'] }] },
  { name: 'DECLARE / FETCH / MOVE / CLOSE', sql: 'DECLARE c CURSOR FOR SELECT * FROM t; FETCH 10 FROM c; MOVE 5 IN c; CLOSE c', statements: [{ kinds: ['declare', 'select'], reads: ['t'], noFlags: ['no_limit'] }, { kinds: ['fetch'] }, { kinds: ['move'] }, { kinds: ['close'] }] },
  { name: 'PREPARE', sql: 'PREPARE q(int) AS SELECT * FROM t WHERE id = $1', statements: [{ kinds: ['prepare', 'select'], prepared: 'q', reads: ['t'] }] },
  { name: 'DEALLOCATE', sql: 'DEALLOCATE PREPARE q', statements: [{ kinds: ['deallocate'], prepared: 'q' }] },
  { name: 'CALL a procedure', sql: 'CALL app.refresh(1)', statements: [{ kinds: ['call'], functions: ['app.refresh'] }] },
  { name: 'EXPLAIN SELECT', sql: 'EXPLAIN SELECT * FROM t', statements: [{ kinds: ['explain', 'select'], reads: ['t'], noFlags: ['no_limit'] }] },
  { name: 'EXPLAIN ANALYZE SELECT', sql: 'EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t', statements: [{ kinds: ['explain', 'select'], flags: ['no_limit'] }] },
  { name: 'CREATE ROLE is dcl only', sql: 'CREATE ROLE reader NOLOGIN', statements: [{ kinds: ['create_role'], flags: ['dcl'], noFlags: ['ddl', 'role_change'] }] },
  { name: 'DROP ROLE', sql: 'DROP ROLE reader', statements: [{ kinds: ['drop_role'], flags: ['dcl'] }] },
  { name: 'ALTER ROLE RENAME', sql: 'ALTER ROLE a RENAME TO b', statements: [{ kinds: ['alter_role'], flags: ['dcl'] }] },
  { name: 'GRANT a role', sql: 'GRANT reader TO bob', statements: [{ kinds: ['grant'], flags: ['dcl'] }] },
  { name: 'REVOKE on a table', sql: 'REVOKE INSERT ON t FROM bob', statements: [{ kinds: ['revoke'], writes: ['t'], flags: ['dcl'] }] },
  { name: 'GRANT EXECUTE is not a call', sql: 'GRANT EXECUTE ON FUNCTION pg_read_file(text) TO bob', statements: [{ kinds: ['grant'], functions: [], noFlags: ['server_file_access'] }] },
  { name: 'custom search_path', sql: 'SELECT * FROM t LIMIT 1', ctx: { searchPath: ['app', 'public'], user: 'bob' }, statements: [{ candidates: { t: ['pg_temp.t', 'pg_catalog.t', 'app.t', 'public.t'] } }] },
  { name: '$user with a quoted name', sql: 'SELECT * FROM t LIMIT 1', ctx: { searchPath: ['$user'], user: 'Bob.Smith' }, statements: [{ candidates: { t: ['pg_temp.t', 'pg_catalog.t', '"Bob.Smith".t'] } }] },
  { name: 'pg_temp listed explicitly', sql: 'SELECT * FROM t LIMIT 1', ctx: { searchPath: ['public', 'pg_temp'] }, statements: [{ candidates: { t: ['pg_catalog.t', 'public.t', 'pg_temp.t'] } }] },
];

const ALL: AnalyzerCase[] = [...EVERYDAY, ...PG_HOSTILE_STATEMENTS];

function ctxOf(c: AnalyzerCase): AnalysisContext {
  return { ...DEFAULT_CTX, ...c.ctx };
}

beforeAll(async () => {
  await loadPgParser();
});

describe('analyzePg: everyday statements', () => {
  it.each(EVERYDAY.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(caseMismatches(analyzePg(c.sql, ctxOf(c)), c)).toEqual([]);
  });
});

describe('analyzePg: hostile statements', () => {
  it.each(PG_HOSTILE_STATEMENTS.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(caseMismatches(analyzePg(c.sql, ctxOf(c)), c)).toEqual([]);
  });
});

describe('analyzePg: the tables', () => {
  it('hold at least 200 statements, names unique', () => {
    const statements = ALL.reduce((n, c) => n + Math.max(1, c.statements?.length ?? 1), 0);
    expect(statements).toBeGreaterThanOrEqual(200);
    expect(new Set(ALL.map((c) => c.name)).size).toBe(ALL.length);
  });
});

describe('analyzePg: a statement reads the same alone and among others', () => {
  // Neighbours that change nothing about the session, so facts must be identical.
  const accepted = ALL.filter((c) => !c.rejected && (c.statements?.length ?? 0) > 0);
  it.each(accepted.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const ctx = ctxOf(c);
    const alone = analyzePg(c.sql, ctx);
    const among = analyzePg(`SELECT 1;\n${c.sql}\n;\nSELECT 2`, ctx);
    expect(alone.ok && among.ok).toBe(true);
    if (!alone.ok || !among.ok) return;
    expect(among.statements.slice(1, -1)).toEqual(alone.statements);
  });
});

describe('caseMismatches', () => {
  it('reports every kind of difference', () => {
    const a = analyzePg("SELECT email FROM users WHERE set_config('role', 'x', false) = ''", DEFAULT_CTX);
    const wrong: AnalyzerCase = {
      name: 'wrong',
      sql: '',
      statements: [{
        kinds: ['update'], flags: ['dcl'], noFlags: ['role_change'], reads: ['orders'], writes: ['users'],
        candidates: { users: ['public.users'] }, someCandidates: { users: ['evil.users'] }, functions: ['now'],
        columns: [['users', 'email', 'select']], prepared: 'p', setting: 'role',
      }],
    };
    expect(caseMismatches(a, wrong)).toHaveLength(11);
    expect(caseMismatches(a, { name: 'n', sql: '', rejected: true })).toHaveLength(1);
    expect(caseMismatches(a, { name: 'n', sql: '', statements: [{}, {}] })).toHaveLength(1);
  });
});

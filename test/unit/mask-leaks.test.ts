// Ways masked values could leave other than in result rows, judged against a
// hand-made catalog snapshot: functions that send or keep values (pg_notify,
// set_config...), the planner's statistics, DDL that copies, renames or
// re-classifies masked columns, and inheritance (the real catalog and server are
// covered by test/integration/pg-masking-leaks.test.ts).

import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import type { StatementFacts } from '../../src/analysis/facts.js';
import { relateInherited, TargetCatalog, type CatalogSnapshot, type ColumnInfo, type RelationInfo } from '../../src/masking/catalog.js';
import { ddlChanges, sqlFunctionBody } from '../../src/masking/ddl.js';
import { rulesFor } from '../../src/masking/policy.js';
import { SessionMasking } from '../../src/masking/session.js';
import { specTarget } from '../../src/policy/cases.js';
import { policyFromTexts } from '../../src/policy/load.js';

const POLICY = `default: allow
masking:
  rules:
    - id: email
      columns: ["*.*.email"]
      strategy: email
    - id: card
      columns: ["*.*.card"]
      strategy: partial
      keep_last: 4
    - id: phone
      columns: [public.users.phone, public.pusers.phone]
      strategy: redact
    - id: tagged
      classifications: [pii]
      strategy: redact
`;

const PG_STATS = 12000;

function rel(oid: number, printed: string, cols: string[], kind = 'r'): RelationInfo {
  const columns = new Map<number, ColumnInfo>();
  cols.forEach((name, i) => columns.set(i + 1, { att: i + 1, name, printed: `${printed}.${name}`, typeOid: 25, tags: name === 'notes' ? ['pii'] : [] }));
  return { oid, kind, printed, columns, byName: new Map([...columns.values()].map((c) => [c.name, c])) };
}

function snapshot(): CatalogSnapshot {
  const users = rel(20000, 'public.users', ['id', 'name', 'email', 'card', 'phone', 'notes']);
  const u2 = rel(20001, 'public.u2', ['id', 'name', 'email']);
  const parent = rel(20002, 'public.ph_parent', ['phone']);
  const pusers = rel(20003, 'public.pusers', ['id', 'phone'], 'p');
  const p1 = rel(20004, 'public.pusers_p1', ['id', 'phone']);
  const p2 = rel(20005, 'public.pusers_p2', ['id', 'phone']);
  const other = rel(20006, 'public.other', ['id', 'phone']);
  const stats = rel(20007, 'public.stats_view', ['attname', 'common'], 'v');
  stats.columns.get(1)!.lineage = { rel: PG_STATS, att: 3 };
  stats.columns.get(2)!.lineage = { sources: [{ rel: PG_STATS, column: '*' }], calls: [] };
  const quoted = rel(20008, '"My Schema"."T.x"', ['email']);
  users.parents = [parent.oid];
  parent.children = [users.oid];
  pusers.children = [p1.oid, p2.oid];
  p1.parents = [pusers.oid];
  p2.parents = [pusers.oid];
  const relations = new Map([users, u2, parent, pusers, p1, p2, other, stats, quoted].map((r) => [r.oid, r]));
  const s: CatalogSnapshot = {
    version: 1, relations, byName: new Map([...relations.values()].map((r) => [r.printed, r])),
    routines: new Map([['get_email', ['public.get_email']], ['public.get_email', ['public.get_email']]]),
    operators: new Map(),
    builtins: new Set(['count', 'quote_literal', 'lower', 'upper', 'pg_notify', 'pg_catalog.pg_notify', 'set_config', 'lo_from_bytea', 'convert_to', 'dblink_exec', 'string_agg']),
    statistics: new Map([[PG_STATS, 'pg_catalog.pg_stats']]),
  };
  relateInherited(s);
  return s;
}

const facts = (sql: string): StatementFacts[] => {
  const a = analyzePg(sql, { searchPath: ['public'], user: 'u' });
  if (!a.ok) throw new Error(a.error);
  return a.statements;
};

let loads = 0;
function masking(): SessionMasking {
  const m = policyFromTexts([{ file: 'p.yaml', text: POLICY }]).masking;
  // A catalog that reads nothing: counts the readings a refusal asks for.
  const catalog = Object.assign(new TargetCatalog({} as never, pino({ level: 'silent' })), { load: () => { loads++; return Promise.resolve(snapshot()); } });
  return new SessionMasking(rulesFor(m, { user: 'alice', verified: false }, specTarget({})), m, catalog, null);
}

beforeAll(loadPgParser);

describe('masking beyond result rows', () => {
  const s = snapshot();
  const check = (m: SessionMasking, sql: string) => {
    const f = facts(sql);
    return m.check({ ok: true, statements: f }, m.taint(s, f));
  };

  it('masks columns through inheritance and partitions, and view columns over the statistics', () => {
    const m = masking();
    expect(m.spec(s, 20002, 1)).toMatchObject({ rule: 'phone' }); // a parent of users
    expect(m.spec(s, 20004, 2)).toMatchObject({ rule: 'phone' }); // partitions of pusers
    expect(m.spec(s, 20005, 2)).toMatchObject({ rule: 'phone' });
    expect(m.spec(s, 20004, 1)).toBeNull();
    expect(m.spec(s, 20006, 2)).toBeNull(); // no kin of a masked table
    expect(m.spec(s, 20007, 1)).toMatchObject({ rule: 'masking.statistics', strategy: 'redact' });
    expect(m.spec(s, 20007, 2)).toMatchObject({ rule: 'masking.statistics' });
    expect(m.taint(s, facts('SELECT lower(phone) FROM ph_parent')).flow).toMatchObject({ rule: 'phone' });
  });

  it('refuses giving masked values to functions that send or keep them outside the result', () => {
    const m = masking();
    for (const sql of [
      "SELECT pg_notify('c', email || ' / ' || card) FROM users",
      "SELECT 1 FROM users WHERE pg_notify('c', email) IS NULL",
      "SELECT pg_catalog.pg_notify('c', u::text) FROM users u",
      "SELECT set_config('hunt.v', string_agg(email, ';'), false) FROM users",
      "SELECT set_config('application_name', email, false) FROM users WHERE id = 1",
      "SELECT lo_from_bytea(0, convert_to(card, 'UTF8')) FROM users",
      "SELECT dblink_exec('dbname=x', 'INSERT INTO t VALUES (' || quote_literal(email) || ')') FROM users",
      "SELECT pg_notify('c', phone) FROM ph_parent",
      "SELECT pg_notify('c', (SELECT email FROM users LIMIT 1))",
    ]) {
      expect(check(m, sql)?.message, sql).toMatch(/may pass values of masked columns \(rule \w+\) to \w+\(\), which sends or keeps them outside the result/);
    }
    expect(check(m, "SELECT set_config('a', get_email(1), false)")).toMatchObject({ rule: 'masking.opaque' });
    expect(check(m, "SELECT pg_notify('c', email) FROM users")).toMatchObject({ rule: 'email' });
    for (const sql of ["SELECT pg_notify('c', name) FROM users", "SELECT set_config('search_path', 'public', false)", "SELECT pg_notify('c', phone) FROM other"]) {
      expect(check(m, sql), sql).toBeNull();
    }
  });

  it('refuses reading the planner statistics, however named', () => {
    const m = masking();
    for (const sql of ['SELECT * FROM pg_stats', 'SELECT most_common_vals FROM pg_catalog.pg_stats', 'SELECT stavalues1 FROM pg_statistic',
      'SELECT * FROM pg_stats_ext_exprs', 'SELECT * FROM pg_statistic_ext_data', 'SELECT (SELECT count(*) FROM pg_stats_ext)',
      'CREATE VIEW s AS SELECT * FROM pg_stats']) {
      expect(check(m, sql), sql).toMatchObject({ rule: 'masking.statistics', message: expect.stringMatching(/holds sample values of every column/) });
    }
    const unknownPath = analyzePg('SELECT * FROM pg_stats', { searchPath: ['*'], user: 'u' });
    expect(unknownPath.ok && m.taint(s, unknownPath.statements).refusal).toMatchObject({ rule: 'masking.statistics' });
    // A user table of that name in another schema, and catalogs without values.
    expect(check(m, 'SELECT * FROM public.pg_stats')).toBeNull();
    expect(check(m, 'SELECT * FROM pg_statistic_ext')).toBeNull();
  });

  it('refuses DDL that copies a masked column into another', () => {
    const m = masking();
    for (const sql of [
      'ALTER TABLE users ADD COLUMN e2 text GENERATED ALWAYS AS (email) STORED',
      'ALTER TABLE users ALTER COLUMN name TYPE text USING email',
      'ALTER TABLE users ALTER COLUMN name TYPE text USING users.card',
      'ALTER TABLE users ALTER COLUMN card TYPE text USING email',
      'ALTER TABLE users ALTER COLUMN name TYPE text USING users::text',
      'ALTER TABLE users ALTER COLUMN name SET EXPRESSION AS (lower(notes))',
      'ALTER TABLE ph_parent ALTER COLUMN phone TYPE varchar USING phone, ADD COLUMN x text GENERATED ALWAYS AS (phone) STORED',
    ]) {
      expect(check(m, sql)?.message, sql).toMatch(/copies values of masked columns \(rule \w+\) into the database/);
    }
    for (const sql of [
      'ALTER TABLE users ALTER COLUMN email TYPE varchar(200) USING email::varchar(200)',
      'ALTER TABLE users ADD COLUMN n2 text GENERATED ALWAYS AS (upper(name)) STORED',
      'ALTER TABLE other ALTER COLUMN phone TYPE text USING phone || id',
      'ALTER TABLE users ADD COLUMN z int, ALTER COLUMN name SET NOT NULL',
    ]) {
      expect(check(m, sql), sql).toBeNull();
    }
  });

  it('refuses renaming, moving or re-classifying a masked column out of its rule', () => {
    const m = masking();
    const leaves = /would leave masked column (\S+) \(rule (\w+)\) under a name or classification the masking rules do not mask alike/;
    expect(check(m, 'ALTER TABLE u2 RENAME COLUMN email TO contact')?.message).toMatch(leaves);
    expect(check(m, 'ALTER TABLE u2 RENAME COLUMN email TO contact')).toMatchObject({ rule: 'email' });
    expect(check(m, 'ALTER TABLE users RENAME COLUMN card TO email')?.message).toMatch(/public\.users\.card \(rule card\)/); // another rule, another mask
    expect(check(m, 'ALTER TABLE users RENAME TO people')?.message).toMatch(/public\.users\.phone \(rule phone\)/);
    expect(check(m, 'ALTER TABLE users SET SCHEMA archive')?.message).toMatch(leaves);
    expect(check(m, 'ALTER SCHEMA public RENAME TO old')?.message).toMatch(leaves);
    expect(check(m, 'ALTER TABLE pusers RENAME COLUMN phone TO tel')?.message).toMatch(leaves); // partitions too
    expect(check(m, 'ALTER TABLE pusers RENAME TO p')?.message).toMatch(/pusers_p1\.phone|pusers\.phone/);
    expect(check(m, "COMMENT ON COLUMN users.notes IS 'free text'")?.message).toMatch(/public\.users\.notes \(rule tagged\)/);
    expect(check(m, 'COMMENT ON COLUMN users.notes IS NULL')).toMatchObject({ rule: 'tagged' });
    expect(check(m, 'ALTER TABLE "My Schema"."T.x" RENAME COLUMN email TO e')).toMatchObject({ rule: 'email' });
    for (const sql of [
      'ALTER TABLE u2 RENAME TO u9', // *.*.email still names it
      'ALTER TABLE u2 SET SCHEMA archive',
      'ALTER TABLE users RENAME COLUMN name TO full_name',
      'ALTER TABLE pusers_p1 RENAME TO pusers_one', // still a partition of pusers
      'ALTER TABLE ph_parent RENAME TO phones', // masked through users, whose name stays
      'ALTER TABLE "My Schema"."T.x" RENAME TO y',
      "COMMENT ON COLUMN users.notes IS 'dbward:pii, free text'",
      "COMMENT ON COLUMN users.name IS 'dbward:pii'",
      'ALTER SCHEMA archive RENAME TO old',
      'ALTER INDEX users_pkey RENAME TO users_key',
    ]) {
      expect(check(m, sql), sql).toBeNull();
    }
  });

  it('refuses changing the inheritance of tables with masked columns', () => {
    const m = masking();
    const changes = /changes the inheritance or partitioning of public\.\w+, which has masked columns/;
    for (const sql of ['ALTER TABLE users NO INHERIT ph_parent', 'ALTER TABLE other INHERIT ph_parent', 'ALTER TABLE pusers DETACH PARTITION pusers_p1',
      'ALTER TABLE pusers ATTACH PARTITION other FOR VALUES IN (3)']) {
      expect(check(m, sql)?.message, sql).toMatch(changes);
    }
    expect(check(m, 'ALTER TABLE other INHERIT other')).toBeNull();
    expect(check(m, 'ALTER INDEX a ATTACH PARTITION b')).toBeNull();
  });

  it('refuses such DDL on a relation the catalog reading does not know, and reads it again', () => {
    const m = masking();
    const before = loads;
    expect(check(m, 'ALTER TABLE fresh RENAME COLUMN a TO b')).toMatchObject({ rule: 'masking.unknown_relation', message: expect.stringMatching(/relation fresh is not in dbward's reading/) });
    expect(loads).toBe(before + 1);
    expect(check(m, 'ALTER TABLE fresh ADD COLUMN b int')).toBeNull();
  });

  it('lets a masked session create SQL functions whose body it can read and finds harmless', () => {
    const m = masking();
    for (const sql of ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", "CREATE OR REPLACE FUNCTION f(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) $$",
      "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM other'"]) {
      expect(check(m, sql), sql).toBeNull();
    }
    for (const sql of [
      "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT email FROM users LIMIT 1'",
      "CREATE FUNCTION f(t text) RETURNS void LANGUAGE sql AS 'INSERT INTO other (phone) VALUES (t)'",
      "CREATE FUNCTION f(t text) RETURNS void LANGUAGE sql AS $$ SELECT pg_notify('c', t) $$",
      "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT get_email(1)'",
      "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'begin return 1; end'",
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT nextval(''s'')::int'",
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END',
    ]) {
      expect(check(m, sql), sql).toMatchObject({ rule: 'masking.opaque' });
    }
  });

  it('reads DDL statements into the changes it judges', () => {
    expect(ddlChanges('ALTER TABLE s.u RENAME COLUMN "E" TO e2')).toEqual([{ kind: 'rename', relation: 's.u', column: '"E"', to: 'e2' }]);
    expect(ddlChanges('ALTER VIEW v RENAME TO "V"')).toEqual([{ kind: 'rename', relation: 'v', column: null, to: '"V"' }]);
    expect(ddlChanges('ALTER MATERIALIZED VIEW m SET SCHEMA x')).toEqual([{ kind: 'set_schema', relation: 'm', schema: 'x' }]);
    expect(ddlChanges('ALTER SCHEMA a RENAME TO b')).toEqual([{ kind: 'rename_schema', schema: 'a', to: 'b' }]);
    expect(ddlChanges("COMMENT ON COLUMN db.s.t.c IS 'x'")).toEqual([{ kind: 'comment', relation: 's.t', column: 'c', comment: 'x' }]);
    expect(ddlChanges('ALTER TABLE t ALTER COLUMN a TYPE int USING length(t.b) + c, ADD COLUMN g text GENERATED ALWAYS AS (d) STORED')).toEqual([
      { kind: 'expression', relation: 't', target: 'a', refs: [['t', 'b'], ['c']] },
      { kind: 'expression', relation: 't', target: 'g', refs: [['d']] },
    ]);
    expect(ddlChanges('ALTER TABLE p ATTACH PARTITION s.c FOR VALUES IN (1)')).toEqual([{ kind: 'inheritance', relations: ['p', 's.c'] }]);
    expect(ddlChanges('ALTER TABLE t ADD COLUMN a int, DROP COLUMN b')).toEqual([]);
    expect(ddlChanges('ALTER TABLE (')).toBeNull();
    expect(sqlFunctionBody("CREATE FUNCTION f() RETURNS int LANGUAGE SQL AS 'select 1'")).toBe('select 1');
    expect(sqlFunctionBody("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'begin return 1; end'")).toBeNull();
  });
});

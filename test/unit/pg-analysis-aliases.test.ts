// Columns reached under another name: a FROM alias's column list, a subquery's or CTE's
// output names, a function in column notation (`u.to_jsonb`), an ORDER BY / GROUP BY
// position or output name, a NATURAL join. Each must reach policy and masking as the
// column (or, when only the catalog could tell which, every column) behind it, with
// the use it is put to; and a MERGE that changes every target row is `no_where`.

import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Analysis, AnalysisContext, StatementFacts } from '../../src/analysis/facts.js';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import type { Identity } from '../../src/identity/types.js';
import { TargetCatalog, type CatalogSnapshot, type ColumnInfo, type RelationInfo } from '../../src/masking/catalog.js';
import { rulesFor } from '../../src/masking/policy.js';
import { SessionMasking } from '../../src/masking/session.js';
import { specTarget } from '../../src/policy/cases.js';
import { policyFromTexts } from '../../src/policy/load.js';
import type { TargetInfo } from '../../src/proxy/session.js';
import { DEFAULT_CTX, caseMismatches, type AnalyzerCase } from '../fixtures/pg-statements.js';

const CTX: AnalysisContext = DEFAULT_CTX;

beforeAll(async () => {
  await loadPgParser();
});

const analyze = (sql: string): Analysis => analyzePg(sql, CTX);

function facts(sql: string): StatementFacts[] {
  const a = analyze(sql);
  if (!a.ok) throw new Error(a.error);
  return a.statements;
}

/** [table, column, use] of every column reference of the only statement of `sql`. */
function columns(sql: string): [string | null, string, string][] {
  return facts(sql)[0]!.columns.map((c) => [c.table, c.column, c.use]);
}

const CASES: AnalyzerCase[] = [
  // --- FROM alias column lists ---------------------------------------------------------
  { name: 'a table renamed by a column list, read', sql: 'SELECT x FROM users t(a, b, c, d, x)', statements: [{ columns: [[null, 'x', 'select'], ['users', '*', 'select']] }] },
  { name: 'a renamed column filtered on', sql: "SELECT i FROM users t(i, e) WHERE e LIKE 'alice%'", statements: [{ columns: [['users', '*', 'predicate']] }] },
  { name: 'a renamed column qualified', sql: "SELECT 1 FROM users t(i, e) WHERE t.e LIKE 'alice%'", statements: [{ columns: [['users', 'e', 'predicate'], ['users', '*', 'predicate']] }] },
  { name: 'a renamed column joined on', sql: 'SELECT t.i FROM users t(i, e) JOIN probe p ON p.v = t.e', statements: [{ columns: [['users', '*', 'join'], ['probe', 'v', 'join']] }] },
  { name: 'a renamed column sorted and grouped on', sql: 'SELECT e FROM users t(i, e) GROUP BY e ORDER BY e', statements: [{ columns: [['users', '*', 'group'], ['users', '*', 'order']] }] },
  { name: 'a renamed column in JOIN USING', sql: 'SELECT 1 FROM users t(a, b) JOIN probe USING (b)', statements: [{ columns: [[null, 'b', 'join'], ['users', '*', 'join']] }] },
  { name: 'a renamed table in UPDATE FROM', sql: "UPDATE t SET a = 1 FROM users u(x, y) WHERE y LIKE '1%'", statements: [{ columns: [['users', '*', 'predicate']] }] },
  { name: 'a join alias column list', sql: 'SELECT 1 FROM (users u JOIN orders o ON u.id = o.user_id) j(a, b) WHERE j.b = 1', statements: [{ columns: [['users', '*', 'predicate'], ['orders', '*', 'predicate']] }] },
  { name: 'a subquery column list, by position', sql: "SELECT 1 FROM (SELECT id, ssn FROM users) s(a, b) WHERE b LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'a subquery column list over a star', sql: "SELECT 1 FROM (SELECT * FROM users) s(a, b) WHERE s.b LIKE '1%'", statements: [{ columns: [[null, '*', 'predicate']] }] },
  { name: 'a function column list over a lateral column', sql: "SELECT 1 FROM users u, unnest(ARRAY[u.ssn]) f(x) WHERE x LIKE '1%'", statements: [{ columns: [['users', 'ssn', 'predicate']] }] },
  { name: 'a function named after itself', sql: "SELECT 1 FROM users u, unnest(ARRAY[u.ssn]) WHERE unnest LIKE '1%'", statements: [{ columns: [['users', 'ssn', 'predicate']] }] },
  { name: 'a CTE column list', sql: "WITH c(q) AS (SELECT ssn FROM users) SELECT 1 FROM c WHERE q LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'a CTE renamed again where read', sql: "WITH c AS (SELECT id, ssn FROM users) SELECT 1 FROM c x(a, b) WHERE x.b LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },

  // --- output names of subqueries and CTEs ----------------------------------------------
  { name: 'a subquery output alias filtered on', sql: "SELECT s.id FROM (SELECT id, ssn AS a FROM users) s WHERE s.a LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'an unaliased subquery (PostgreSQL 16)', sql: "SELECT 1 FROM (SELECT ssn AS a FROM users) WHERE a LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'a computed output named after its function', sql: "SELECT 1 FROM (SELECT lower(ssn) FROM users) s WHERE s.lower = 'x'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'an output alias through a star', sql: "SELECT 1 FROM (SELECT * FROM (SELECT ssn AS a FROM users) x) s WHERE s.a LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'a set operation named by its first arm', sql: "SELECT 1 FROM (SELECT id AS a FROM t UNION SELECT ssn FROM users) s WHERE s.a LIKE '1%'", statements: [{ columns: [[null, 'id', 'predicate'], [null, 'ssn', 'predicate']] }] },
  { name: 'a CTE joined on', sql: 'WITH c AS (SELECT ssn AS k FROM users) SELECT 1 FROM probe p JOIN c ON c.k = p.v', statements: [{ columns: [[null, 'ssn', 'join']] }] },
  { name: 'a lateral subquery output', sql: "SELECT 1 FROM users u, LATERAL (SELECT u.ssn AS q) s WHERE q LIKE '1%'", statements: [{ columns: [['users', 'ssn', 'predicate']] }] },
  { name: 'a recursive CTE read from its own body', sql: "WITH RECURSIVE c(n, a) AS (SELECT 1, ssn FROM users UNION ALL SELECT n + 1, c.a FROM c WHERE c.a LIKE '1%') SELECT n FROM c", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'a data-modifying CTE RETURNING', sql: "WITH m AS (UPDATE users SET name = name RETURNING ssn AS a) SELECT 1 FROM m WHERE a LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },
  { name: 'a whole row of a subquery', sql: "SELECT 1 FROM (SELECT ssn FROM users) s WHERE s::text LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },

  // --- functions in column notation: the whole row --------------------------------------
  { name: 'u.to_jsonb filtered on', sql: "SELECT id FROM users u WHERE u.to_jsonb->>'ssn' LIKE '123-45-67%'", statements: [{ columns: [['users', 'to_jsonb', 'predicate'], ['users', '*', 'predicate']] }] },
  { name: 'u.row_to_json filtered on', sql: "SELECT id FROM users u WHERE u.row_to_json::text LIKE '%123-45-67%'", statements: [{ columns: [['users', '*', 'predicate']] }] },
  { name: 'u.to_jsonb read', sql: 'SELECT u.to_jsonb FROM users u', statements: [{ columns: [['users', '*', 'select']] }] },
  { name: 'schema.table.record_out sorted on', sql: 'SELECT id FROM public.users ORDER BY public.users.record_out', statements: [{ columns: [['public.users', '*', 'order']] }] },
  { name: 'column notation on a subquery', sql: "SELECT 1 FROM (SELECT ssn AS a FROM users) s WHERE s.to_jsonb->>'a' LIKE '1%'", statements: [{ columns: [[null, 'ssn', 'predicate']] }] },

  // --- output positions and names in ORDER BY, GROUP BY, DISTINCT ON ----------------------
  { name: 'ORDER BY a position', sql: 'SELECT id, ssn FROM users ORDER BY 2', statements: [{ columns: [[null, 'ssn', 'order']] }] },
  { name: 'GROUP BY a position', sql: 'SELECT id, ssn FROM users GROUP BY 2, 1', statements: [{ columns: [[null, 'ssn', 'group'], [null, 'id', 'group']] }] },
  { name: 'DISTINCT ON a position', sql: 'SELECT DISTINCT ON (2) id, ssn FROM users', statements: [{ columns: [[null, 'ssn', 'group']] }] },
  { name: 'ROLLUP of positions', sql: 'SELECT id, ssn FROM users GROUP BY ROLLUP (1, 2)', statements: [{ columns: [[null, 'ssn', 'group']] }] },
  { name: 'a position of a computed column', sql: 'SELECT id, lower(ssn) FROM users ORDER BY 2 DESC', statements: [{ columns: [[null, 'ssn', 'order']] }] },
  { name: 'a position after a star', sql: 'SELECT * FROM users ORDER BY 3', statements: [{ columns: [[null, '*', 'order']] }] },
  { name: 'a position of a set operation', sql: 'SELECT a FROM t UNION SELECT ssn FROM users ORDER BY 1', statements: [{ columns: [[null, 'a', 'order'], [null, 'ssn', 'order']] }] },
  { name: 'ORDER BY an output alias hiding a column name', sql: 'SELECT id AS x, ssn AS id FROM users ORDER BY id', statements: [{ columns: [[null, 'ssn', 'order']] }] },
  { name: 'GROUP BY an output alias', sql: 'SELECT ssn AS q, count(*) FROM users GROUP BY q', statements: [{ columns: [[null, 'ssn', 'group']] }] },
  { name: 'ORDER BY the name of a computed column', sql: 'SELECT lower(ssn) FROM users ORDER BY lower', statements: [{ columns: [[null, 'ssn', 'order']] }] },
  { name: 'a position in a subquery', sql: 'SELECT 1 FROM t WHERE x IN (SELECT id FROM users ORDER BY ssn, 1 LIMIT 1)', statements: [{ columns: [[null, 'ssn', 'order'], [null, 'id', 'order']] }] },

  // --- NATURAL JOIN: on every name both sides share -------------------------------------
  { name: 'NATURAL JOIN', sql: 'SELECT 1 FROM users NATURAL JOIN probe', statements: [{ columns: [['users', '*', 'join'], ['probe', '*', 'join']] }] },

  // --- MERGE that changes every target row -----------------------------------------------
  { name: 'MERGE ON true WHEN MATCHED DELETE', sql: 'MERGE INTO victim USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE', statements: [{ kinds: ['merge', 'delete'], flags: ['writes', 'no_where'] }] },
  { name: 'MERGE ON 1 = 1 WHEN MATCHED UPDATE', sql: 'MERGE INTO victim v USING s ON 1 = 1 WHEN MATCHED THEN UPDATE SET a = 1', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE ON a source column only', sql: 'MERGE INTO victim v USING s ON s.id = 1 WHEN MATCHED THEN DELETE', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE ON an unqualified name', sql: 'MERGE INTO victim v USING s ON id = s.id WHEN MATCHED THEN DELETE', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE ON a subquery that rebinds the alias', sql: 'MERGE INTO victim v USING s ON EXISTS (SELECT 1 FROM x v WHERE v.id = 1) WHEN MATCHED THEN DELETE', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE with one unconditioned WHEN among conditioned ones', sql: 'MERGE INTO victim v USING s ON true WHEN MATCHED AND v.x > 1 THEN DELETE WHEN MATCHED THEN UPDATE SET a = 1', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE WHEN NOT MATCHED BY SOURCE DELETE', sql: 'MERGE INTO victim v USING s ON false WHEN NOT MATCHED BY SOURCE THEN DELETE', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE in a CTE ON true', sql: 'WITH m AS (MERGE INTO victim USING s ON true WHEN MATCHED THEN DELETE RETURNING 1) SELECT * FROM m', statements: [{ flags: ['no_where'] }] },
  { name: 'MERGE ON the target alias', sql: 'MERGE INTO victim v USING s ON v.id = s.id WHEN MATCHED THEN DELETE', statements: [{ flags: ['writes'], noFlags: ['no_where'] }] },
  { name: 'MERGE ON the target name', sql: 'MERGE INTO public.victim USING s ON public.victim.id = s.id WHEN MATCHED THEN UPDATE SET a = 1', statements: [{ noFlags: ['no_where'] }] },
  { name: 'MERGE ON true with a WHEN condition', sql: 'MERGE INTO victim v USING s ON true WHEN MATCHED AND v.x > 1 THEN DELETE', statements: [{ noFlags: ['no_where'] }] },
  { name: 'MERGE ON true that only inserts', sql: 'MERGE INTO victim v USING s ON true WHEN NOT MATCHED THEN INSERT DEFAULT VALUES', statements: [{ noFlags: ['no_where'] }] },
  { name: 'MERGE ON true that does nothing', sql: 'MERGE INTO victim v USING s ON true WHEN MATCHED THEN DO NOTHING', statements: [{ noFlags: ['no_where'] }] },
  { name: 'EXPLAIN of an unconditioned MERGE only plans it', sql: 'EXPLAIN MERGE INTO victim USING s ON true WHEN MATCHED THEN DELETE', statements: [{ noFlags: ['no_where'] }] },
];

describe('analyzePg: columns reached under another name', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(caseMismatches(analyzePg(c.sql, { ...CTX, ...c.ctx }), c)).toEqual([]);
  });

  it('the same statements read the same alone and among others', () => {
    for (const c of CASES) {
      const alone = analyze(c.sql);
      const among = analyze(`SELECT 1;\n${c.sql}\n;\nSELECT 2`);
      expect(alone.ok && among.ok && among.statements.slice(1, -1)).toEqual(alone.ok && alone.statements);
    }
  });

  it('stays precise where the name or position is known', () => {
    // Not renamed: no whole row.
    expect(columns('SELECT u.id, u.name FROM users u WHERE u.id = 1')).not.toContainEqual(['users', '*', 'predicate']);
    expect(columns('SELECT u.id FROM users u')).toEqual([['users', 'id', 'select']]);
    // A column list renames its first columns only.
    expect(columns('SELECT x FROM users t(a)')).toEqual([[null, 'x', 'select']]);
    // A position names its own column, not its neighbours.
    expect(columns('SELECT id, ssn FROM users ORDER BY 1')).not.toContainEqual([null, 'ssn', 'order']);
    expect(columns('SELECT s.id FROM (SELECT id, ssn AS a FROM users) s WHERE s.id = 1')).not.toContainEqual([null, 'ssn', 'predicate']);
    // ORDER BY an expression is not a position.
    expect(columns('SELECT id, ssn FROM users ORDER BY 2 + 0')).not.toContainEqual([null, 'ssn', 'order']);
  });
});

const POLICY = `default: allow
rules:
  - { id: no-ssn, match: { statement: { columns: [users.ssn] } }, action: deny }
  - { id: no-unbounded-writes, match: { statement: { kinds: [delete, update], flags: [no_where] } }, action: deny }
`;

const who: Identity = {
  subject: 'sub-1', user: 'alice@example.com', email: 'alice@example.com', groups: [], kind: 'human',
  issuer: 'https://issuer.test', claims: {}, expiresAt: 4102444800, verified: true,
};
const target: TargetInfo = { name: 'app', engine: 'postgres', database: 'app', environment: 'production', labels: {} };

describe('policy: a deny on a column or on no_where is not bypassed by a new name', () => {
  const p = policyFromTexts([{ file: 'p.yaml', text: POLICY }]);
  const decide = (sql: string) => p.decide(who, target, analyze(sql));

  it.each([
    'SELECT x FROM users t(a, b, c, d, x)',
    'SELECT t.x FROM users AS t(a, b, c, d, x) LIMIT 1',
    'SELECT b FROM (users JOIN probe ON true) j(a, b)',
    'SELECT u.to_jsonb FROM users u',
    "SELECT id FROM users u WHERE u.row_to_json::text LIKE '%123-45%'",
    'SELECT id FROM public.users ORDER BY public.users.record_out',
  ])('denies %s', (sql) => {
    expect(decide(sql)).toMatchObject({ action: 'deny', ruleIds: ['no-ssn'] });
  });

  it('still allows what names no ssn', () => {
    expect(decide('SELECT u.id, u.name FROM users u WHERE u.id = 1').action).toBe('allow');
    expect(decide('SELECT x FROM users t(a)').action).toBe('allow');
    expect(decide('SELECT i FROM orders t(i, e)').action).toBe('allow');
  });

  it('denies a MERGE that deletes or updates every row, as DELETE/UPDATE without WHERE', () => {
    expect(decide('MERGE INTO victim USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE')).toMatchObject({ action: 'deny', ruleIds: ['no-unbounded-writes'] });
    expect(decide('MERGE INTO victim v USING s ON 1 = 1 WHEN MATCHED THEN UPDATE SET a = 1').action).toBe('deny');
    expect(decide('MERGE INTO victim v USING s ON v.id = s.id WHEN MATCHED THEN DELETE').action).toBe('allow');
    expect(decide('MERGE INTO victim v USING s ON true WHEN MATCHED AND v.stale THEN DELETE').action).toBe('allow');
  });
});

const MASKING = `default: allow
masking:
  strict: true
  rules:
    - id: ssn
      columns: ["*.ssn"]
      strategy: redact
`;

function rel(oid: number, printed: string, cols: string[]): RelationInfo {
  const columns = new Map<number, ColumnInfo>();
  cols.forEach((name, i) => columns.set(i + 1, { att: i + 1, name, printed: `${printed}.${name}`, typeOid: 25, tags: [] }));
  return { oid, kind: 'r', printed, columns, byName: new Map([...columns.values()].map((c) => [c.name, c])) };
}

function snapshot(): CatalogSnapshot {
  const relations = new Map([[1, rel(1, 'public.users', ['id', 'email', 'ssn', 'name'])], [2, rel(2, 'public.probe', ['v'])], [3, rel(3, 'public.t', ['a'])]]);
  return {
    version: 1, relations, byName: new Map([...relations.values()].map((r) => [r.printed, r])), routines: new Map(), operators: new Map(),
    builtins: new Set(['lower', 'unnest', 'count', 'to_jsonb', 'row_to_json']),
  };
}

describe('masking strict mode: no filtering, sorting, grouping or joining on a masked column under another name', () => {
  const m = policyFromTexts([{ file: 'p.yaml', text: MASKING }]).masking;
  const masking = new SessionMasking(rulesFor(m, { user: 'alice', verified: false }, specTarget({ environment: 'prod' })), m,
    new TargetCatalog({} as never, pino({ level: 'silent' })), null);
  const s = snapshot();
  const refusal = (sql: string): string | null => {
    const f = analyzePg(sql, { searchPath: ['public'], user: 'alice' });
    if (!f.ok) throw new Error(f.error);
    return masking.check(f, masking.taint(s, f.statements))?.message ?? null;
  };

  it.each([
    'SELECT id, ssn FROM users ORDER BY 2',
    'SELECT ssn, count(*) FROM users GROUP BY 1',
    'SELECT DISTINCT ON (2) id, ssn FROM users',
    'SELECT id AS x, ssn AS id FROM users ORDER BY id',
    "SELECT s.id FROM (SELECT id, ssn AS a FROM users) s WHERE s.a LIKE '123-45%'",
    "SELECT 1 FROM (SELECT id, ssn FROM users) s(i, e) WHERE e LIKE '123-45%'",
    "WITH c(q) AS (SELECT ssn FROM users) SELECT 1 FROM c WHERE q LIKE '123-45%'",
    'WITH c AS (SELECT id, ssn AS k FROM users) SELECT c.id FROM c JOIN probe p ON p.v = c.k',
    "SELECT u.id FROM users u, unnest(ARRAY[u.ssn]) f(x) WHERE x LIKE '123-45%'",
  ])('refuses %s', (sql) => {
    expect(refusal(sql)).toMatch(/public\.users\.ssn may not be used .* strict mode/);
  });

  it('allows what uses no masked column', () => {
    expect(refusal('SELECT id, ssn FROM users ORDER BY 1')).toBeNull();
    expect(refusal('SELECT s.id FROM (SELECT id, ssn AS a FROM users) s WHERE s.id = 1')).toBeNull();
    expect(refusal('SELECT ssn AS email FROM users ORDER BY name')).toBeNull();
  });

  // A renamed table column (`users t(i, e)`) or a function in column notation (`u.to_jsonb`)
  // may be any column: the facts record the table's `*` with the reference's use, and
  // strict mode counts such whole-row uses as filtering, sorting or joining.
  it.each([
    "SELECT i FROM users t(i, e) WHERE e LIKE 'alice%'",
    'SELECT t.i FROM users t(i, e) JOIN probe p ON p.v = t.e',
    'SELECT i FROM users t(i, e) ORDER BY e',
    "SELECT id FROM users u WHERE u.to_jsonb->>'ssn' LIKE '123-45-67%'",
    "SELECT id FROM users u WHERE u.row_to_json::text LIKE '%123-45-67%'",
    'SELECT 1 FROM users NATURAL JOIN probe',
  ])('refuses %s', (sql) => {
    expect(refusal(sql)).toMatch(/strict mode/);
  });
});

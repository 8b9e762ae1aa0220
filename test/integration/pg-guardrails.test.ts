// Guardrails against the real PostgreSQL: every hostile statement of the shared
// fixture goes through dbward by psql (simple Query), node-postgres (simple and
// extended protocol), and the decision each gets is the one the policy engine
// gives offline; refusals come back as 42501 naming the rule, the session stays
// usable, and afterwards the database is exactly as it was.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { decideWithBuiltins } from '../../src/policy/builtin.js';
import { loadPolicy } from '../../src/policy/load.js';
import { pgTarget, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { PG_HOSTILE_STATEMENTS } from '../fixtures/pg-hostile-statements.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const DB = 'dbward_guardrails';
const root = path.resolve(import.meta.dirname, '../..');

// Default allow, so what stops a statement below is a rule, never the default.
const POLICY = `default: allow
rules:
  - id: no-ddl
    match: { statement: { flags: [ddl] } }
    action: deny
    message: schema changes are not allowed here
  - id: no-dcl
    match: { statement: { flags: [dcl] } }
    action: deny
  - id: no-writes
    match: { statement: { writes: true } }
    action: deny
    message: this target is read-only
  - id: no-code
    match: { statement: { kinds: [do, call, create_function, create_trigger, create_rule, load] } }
    action: deny
  - id: unparsable
    match: { statement: { unparsable: true } }
    action: deny
    message: dbward could not parse this
  - id: lo-fast-path
    match: { statement: { functions: ["oid:*"] } }
    action: deny
`;

async function admin(sql: string, db: string = PG.database): Promise<unknown[]> {
  const c = new pg.Client({ ...PG, database: db });
  await c.connect();
  try { return (await c.query(sql)).rows; } finally { await c.end(); }
}

/** A fingerprint of everything a hostile statement could change in the guardrails database and the cluster's roles. */
async function snapshot(): Promise<string> {
  const rows = await admin(`
    SELECT md5(string_agg(x, E'\\n' ORDER BY x)) AS h FROM (
      SELECT format('rel %s.%s %s %s', n.nspname, c.relname, c.relkind, c.relacl) AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
      UNION ALL SELECT format('ns %s %s', nspname, nspacl) FROM pg_namespace
      UNION ALL SELECT format('fn %s', p.oid::regprocedure) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      UNION ALL SELECT format('role %s %s', rolname, rolsuper) FROM pg_roles WHERE rolname NOT LIKE 'dbward\\_%'
      UNION ALL SELECT format('db %s', datname) FROM pg_database
      UNION ALL SELECT format('lo %s', oid) FROM pg_largeobject_metadata
      UNION ALL SELECT 'users ' || md5(string_agg(u::text, ',' ORDER BY u.id)) FROM public.users u
      UNION ALL SELECT 'secrets ' || md5(string_agg(s::text, ',' ORDER BY s.id)) FROM public.secrets s
      UNION ALL SELECT 'accounts ' || md5(string_agg(a::text, ',' ORDER BY a.id)) FROM public.accounts a
    ) s`, DB);
  return (rows[0] as { h: string }).h;
}

let d: TestDaemon;
let before: string;
const policyFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-gr-')), 'policy.yaml');
fs.writeFileSync(policyFile, POLICY);
const engine = loadPolicy([policyFile, path.join(root, 'examples/policies/baseline.yaml')]);
const target = pgTarget({ name: 'gr', database: DB });

/** Cases runnable by a client: not those needing a prepared context, nor text a libpq argument cannot carry. */
const CASES = PG_HOSTILE_STATEMENTS.filter((c) => !c.ctx && !c.sql.includes('\u0000') && !/[\uD800-\uDFFF]/.test(c.sql) && c.sql.trim() !== '');

function expected(sql: string): { action: string; ruleIds: string[] } {
  const analysis = analyzePg(sql, { searchPath: ['$user', 'public'], user: PG.user });
  const dec = decideWithBuiltins(engine, { user: 'alice', verified: false }, { name: 'gr', engine: 'postgres', database: DB, environment: 'test', labels: {} }, analysis);
  return { action: dec.action, ruleIds: dec.ruleIds };
}

beforeAll(async () => {
  await requirePostgres();
  await loadPgParser();
  if ((await admin(`SELECT 1 FROM pg_database WHERE datname = '${DB}'`)).length === 0) await admin(`CREATE DATABASE ${DB}`);
  await admin(`
    DROP TABLE IF EXISTS public.users, public.secrets, public.accounts;
    CREATE TABLE public.users (id int PRIMARY KEY, email text, ssn text, name text);
    CREATE TABLE public.secrets (id int PRIMARY KEY, v text);
    CREATE TABLE public.accounts (id int PRIMARY KEY, balance int);
    INSERT INTO public.users VALUES (1, 'a@example.com', '123-45-6789', 'A'), (2, 'b@example.com', '987-65-4321', 'B');
    INSERT INTO public.secrets VALUES (1, 'top'), (2, 'secret');
    INSERT INTO public.accounts VALUES (1, 100), (2, 200);`, DB);
  // The daemon loads the same two files, as an operator would.
  d = await startTestDaemon({ targets: [target], policyPaths: [policyFile, path.join(root, 'examples/policies/baseline.yaml')] });
  before = await snapshot();
}, 60_000);

afterAll(async () => {
  await d?.stop();
});

it('the fixture holds enough hostile statements, and the policy denies most of them', () => {
  expect(CASES.length).toBeGreaterThan(200);
  expect(CASES.filter((c) => expected(c.sql).action === 'deny').length).toBeGreaterThan(150);
});

describe('psql (simple Query)', () => {
  it('each statement gets the offline decision; refusals are 42501 with the rule id', async () => {
    const wrong: string[] = [];
    for (const c of CASES) {
      const want = expected(c.sql);
      const r = await psql(`host=127.0.0.1 port=${d.port} dbname=gr user=alice sslmode=disable`, ['-v', 'VERBOSITY=verbose', '-c', c.sql]);
      const refused = /ERROR:\s+42501:/.test(r.stderr);
      if ((want.action !== 'allow') !== refused) wrong.push(`${c.name}: expected ${want.action}, psql said ${r.stderr.split('\n')[0] || 'ok'}`);
      else if (refused && want.ruleIds.length > 0 && !want.ruleIds.some((id) => r.stderr.includes(id))) wrong.push(`${c.name}: rule id missing in ${r.stderr}`);
    }
    expect(wrong).toEqual([]);
  }, 120_000);
});

describe('node-postgres', () => {
  it('simple and extended protocol: the same decisions, and the session stays usable after each refusal', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'gr', user: 'alice' });
    await c.connect();
    const wrong: string[] = [];
    try {
      for (const [i, k] of CASES.entries()) {
        const want = expected(k.sql);
        for (const extended of [false, true]) {
          // A named statement makes node-postgres use Parse/Bind/Execute.
          const err = await c.query(extended ? { text: k.sql, name: `s${i}` } : k.sql).then(() => null, (e: Error & { code?: string }) => e);
          const refused = err?.code === '42501';
          if ((want.action !== 'allow') !== refused) wrong.push(`${k.name} (${extended ? 'extended' : 'simple'}): expected ${want.action}, got ${err?.code ?? 'ok'} ${err?.message ?? ''}`);
          await c.query('ROLLBACK').catch(() => undefined);
        }
      }
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await c.end().catch(() => undefined);
    }
    expect(wrong).toEqual([]);
  }, 120_000);

  it('a refused Parse poisons nothing: Bind/Execute of the refused name is refused too, then Sync recovers', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'gr', user: 'alice' });
    await c.connect();
    try {
      const e1 = await c.query({ text: 'DELETE FROM secrets', name: 'wipe' }).catch((e: Error & { code?: string }) => e);
      expect((e1 as { code?: string }).code).toBe('42501');
      const e2 = await c.query({ text: 'DELETE FROM secrets', name: 'wipe' }).catch((e: Error & { code?: string }) => e);
      expect((e2 as { code?: string }).code).toBe('42501');
      expect((await c.query({ text: 'SELECT count(*)::int AS n FROM secrets', name: 'count' })).rows).toEqual([{ n: 2 }]);
      // Protocol-level names share the server's namespace with SQL EXECUTE, which is judged by what was prepared.
      expect((await c.query('EXECUTE count')).rows).toEqual([{ n: 2 }]);
      const e3 = await c.query('EXECUTE wipe').catch((e: Error & { code?: string }) => e);
      expect((e3 as { code?: string }).code).toBe('42501');
    } finally {
      await c.end();
    }
  });
});

it('the database is exactly as it was, and every refusal is in the audit trail with its rule', async () => {
  expect(await snapshot()).toBe(before);
  const denied = d.audit().filter((e) => e.type === 'statement' && e.decision.action === 'deny');
  expect(denied.length).toBeGreaterThan(300);
  expect(denied.every((e) => e.decision.rules.length > 0)).toBe(true);
});

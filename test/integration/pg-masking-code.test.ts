// Masking against code dbward cannot read, on the real PostgreSQL: user-defined
// functions, procedures and operators, DO blocks and SQL run from a string return or
// raise masked values only masked; COPY to a server file is refused; a prepared
// statement is judged again once the catalog changes; and a view replaced around
// dbward is seen once the catalog reading ages out.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { startTap, type Tap } from '../helpers/tap.js';

const SSN = ['123-45-6789', '234-56-7890'];
const S = 'dbward_mask_code';

const POLICY = `default: allow
masking:
  trusted_functions: [${S}.shout]
  rules:
    - id: mask-ssn
      columns: [${S}.users.ssn]
      strategy: redact
      exempt: { identity: { users: [officer] } }
    - id: tagged
      classifications: [pii]
      strategy: redact
`;

let d: TestDaemon;
let tap: Tap;
let admin: pg.Client;

beforeAll(async () => {
  await requirePostgres();
  admin = new pg.Client({ ...PG });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${S} CASCADE; CREATE SCHEMA ${S};
    CREATE TABLE ${S}.users (id int PRIMARY KEY, name text, ssn text, note text);
    INSERT INTO ${S}.users VALUES (1, 'Alice', '${SSN[0]}', 'hello'), (2, 'Bob', '${SSN[1]}', 'there');
    CREATE FUNCTION ${S}.get_ssn(int) RETURNS text LANGUAGE sql AS 'SELECT ssn FROM ${S}.users WHERE id = $1';
    CREATE FUNCTION ${S}.all_users() RETURNS SETOF ${S}.users LANGUAGE sql AS 'SELECT * FROM ${S}.users';
    CREATE FUNCTION ${S}.shout(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT upper($1)';
    CREATE OPERATOR ${S}.### (RIGHTARG = int, FUNCTION = ${S}.get_ssn);
    CREATE PROCEDURE ${S}.leak(INOUT s text) LANGUAGE plpgsql AS $$ BEGIN SELECT ssn INTO s FROM ${S}.users WHERE id = 1; END $$;
    CREATE FUNCTION ${S}.noisy() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'found %', (SELECT ssn FROM ${S}.users WHERE id = 1); RETURN 1; END $$;
    CREATE TABLE ${S}.leak (v text);
    CREATE EXTENSION citext SCHEMA ${S};
    CREATE TABLE ${S}.tags (id int, tag ${S}.citext);
    INSERT INTO ${S}.tags VALUES (1, 'Red');
    CREATE VIEW ${S}.fn_view AS SELECT id, ${S}.get_ssn(id) AS s FROM ${S}.users;
    CREATE VIEW ${S}.swap AS SELECT id, name AS v FROM ${S}.users;`);
  d = await startTestDaemon({ policy: POLICY, catalogMaxAgeMs: 1000 });
  tap = await startTap(d.port);
});

afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${S} CASCADE`).catch(() => undefined);
  await admin?.end();
  await tap?.close();
  await d?.stop();
});

// Through the tap, except for identities that see clear values.
const client = async (user = 'alice') => {
  const c = new pg.Client({ host: '127.0.0.1', port: user === 'officer' ? d.port : tap.port, database: 'test', user });
  await c.connect();
  return c;
};

const leaked = () => tap.seen(SSN);

describe('code dbward cannot read', () => {
  it('masks what user functions, procedures, operators and SQL in strings return', async () => {
    const c = await client();
    try {
      const q = async (sql: string) => (await c.query({ text: sql, rowMode: 'array' })).rows;
      expect(await q(`SELECT ${S}.get_ssn(1)`)).toEqual([['****']]);
      expect(await q(`SELECT * FROM ${S}.all_users() WHERE id = 1`)).toEqual([['****', '****', '****', '****']]);
      expect(await q(`SELECT OPERATOR(${S}.###) 2`)).toEqual([['****']]);
      expect(await q(`CALL ${S}.leak(NULL)`)).toEqual([['****']]);
      // SQL run from a string may write as well as read: refused outright.
      await expect(q(`SELECT query_to_xml('SELECT ssn FROM ${S}.users', true, false, '')`)).rejects.toThrow(/may write/);
      // A view column computed by such a function; its plain column keeps its origin.
      expect(await q(`SELECT id, s FROM ${S}.fn_view WHERE id = 1`)).toEqual([[1, '****']]);
      // Unqualified, through the search_path; extended protocol too.
      await c.query(`SET search_path = ${S}, public`);
      expect((await c.query({ text: 'SELECT get_ssn($1) AS s', values: [2] })).rows).toEqual([{ s: '****' }]);
      // An extension's operators and functions are packaged code, like built-in ones.
      expect(await q(`SELECT count(*), max(id) FROM ${S}.tags WHERE tag = 'RED'`)).toEqual([['1', 1]]);
      // Trusted and built-in functions pass their results as they are.
      expect(await q(`SELECT ${S}.shout(name), upper(name), 1 + 1 FROM ${S}.users WHERE id = 1`)).toEqual([['ALICE', 'ALICE', 2]]);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('withholds messages such code raises, and refuses writing what it returns or COPY to a server file', async () => {
    const c = await client();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    try {
      await c.query(`SELECT ${S}.noisy()`);
      expect(notices).toHaveLength(1);
      expect(notices[0]).not.toContain(SSN[0]);
      // Written into the database, what such code returns would reach the next reader unmasked.
      for (const sql of [`INSERT INTO ${S}.leak SELECT ${S}.get_ssn(1)`, `DO $$ BEGIN INSERT INTO ${S}.leak SELECT ssn FROM ${S}.users; END $$`]) {
        await expect(c.query(sql)).rejects.toThrow(/may write what code dbward cannot read returns/);
      }
      expect((await admin.query(`SELECT count(*)::int AS n FROM ${S}.leak`)).rows[0].n).toBe(0);
      const err = await c.query(`SELECT ${S}.get_ssn(1)::int`).catch((e: pg.DatabaseError) => e);
      expect((err as pg.DatabaseError).code).toBe('22P02');
      expect((err as pg.DatabaseError).message).toMatch(/message withheld/);
      const copy = await c.query(`COPY ${S}.users TO '/tmp/dbward-mask-code.csv'`).catch((e: pg.DatabaseError) => e);
      expect((copy as pg.DatabaseError).message).toMatch(/server file or program is refused/);
      expect((copy as pg.DatabaseError).code).toBe('42501');
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('passes such code through for a session nothing is masked for', async () => {
    const c = await client('officer');
    try {
      expect((await c.query({ text: `SELECT ${S}.get_ssn(1)`, rowMode: 'array' })).rows).toEqual([[SSN[0]]]);
    } finally {
      await c.end();
    }
  });

  it('judges a prepared statement again after DDL through dbward changes what is masked', async () => {
    const c = await client();
    try {
      const prepared = { name: 'upper_note', text: `SELECT upper(note) AS n FROM ${S}.users WHERE id = 1` };
      expect((await c.query(prepared)).rows).toEqual([{ n: 'HELLO' }]);
      // The comment puts the column in a masked classification: the same prepared statement now reads a masked column.
      await c.query(`COMMENT ON COLUMN ${S}.users.note IS 'dbward:pii'`);
      expect((await c.query(prepared)).rows).toEqual([{ n: '****' }]);
    } finally {
      await c.end();
      await admin.query(`COMMENT ON COLUMN ${S}.users.note IS NULL`);
    }
  });

  it('sees a view replaced around dbward once the catalog reading ages out', async () => {
    const c = await client();
    try {
      expect((await c.query({ text: `SELECT v FROM ${S}.swap WHERE id = 1`, rowMode: 'array' })).rows).toEqual([['Alice']]);
      await admin.query(`CREATE OR REPLACE VIEW ${S}.swap AS SELECT id, ssn AS v FROM ${S}.users`);
      // masking.catalog_max_age_ms is 1 s here: the catalog is read again in the background that often.
      await new Promise((r) => setTimeout(r, 2500));
      expect((await c.query({ text: `SELECT v FROM ${S}.swap WHERE id = 1`, rowMode: 'array' })).rows).toEqual([['****']]);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });
});

// Ways masked values could leave other than in result rows, against the real
// PostgreSQL through a real dbward: notifications, session settings (SHOW,
// current_setting, ParameterStatus), the planner's statistics, DDL that copies or
// renames masked columns, and tables that read each other's rows through
// inheritance or partitioning. Each is refused (42501, with the rule) or masked,
// and the raw bytes dbward sent never hold a seeded clear value.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { startTap, type Tap } from '../helpers/tap.js';

const S = 'dbward_mask_leaks';
const SEED = [
  { id: 1, name: 'Alice', email: 'alice.leak@example.com', card: '4111111111111111', phone: '+1 415 555 0101' },
  { id: 2, name: 'Bob', email: 'bob.leak@example.org', card: '5500005555555559', phone: '+1 415 555 0202' },
];
const CLEAR = SEED.flatMap((r) => [r.email, r.email.split('@')[0]!, r.card.slice(0, 12), r.phone]);

const POLICY = `default: allow
rules:
  - id: copies-need-approval
    match:
      statement:
        tables: { write: [${S}.approved_copies] }
    action: require_approval
    approvers: [privacy-officers]
masking:
  rules:
    - id: mask-email
      columns: ["*.*.email"]
      strategy: email
      exempt: { identity: { users: [officer] } }
    - id: mask-card
      columns: ["*.*.card"]
      strategy: partial
      keep_last: 4
      exempt: { identity: { users: [officer] } }
    - id: mask-phone
      columns: [${S}.users.phone, ${S}.pusers.phone]
      strategy: redact
      exempt: { identity: { users: [officer] } }
`;

let d: TestDaemon;
let tap: Tap;
let admin: pg.Client;

const values = SEED.map((r) => `(${r.id}, '${r.name}', '${r.email}', '${r.card}', '${r.phone}')`).join(', ');

beforeAll(async () => {
  await requirePostgres();
  admin = new pg.Client({ ...PG });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS ${S} CASCADE; DROP SCHEMA IF EXISTS ${S}_moved CASCADE; CREATE SCHEMA ${S}; CREATE SCHEMA ${S}_moved;
    CREATE TABLE ${S}.users (id int PRIMARY KEY, name text, email text, card text, phone text);
    INSERT INTO ${S}.users VALUES ${values};
    CREATE TABLE ${S}.u2 AS SELECT * FROM ${S}.users;
    CREATE TABLE ${S}.approved_copies (email text);
    CREATE TABLE ${S}.u3 AS SELECT * FROM ${S}.users;
    CREATE TABLE ${S}.u4 AS SELECT * FROM ${S}.users;
    CREATE TABLE ${S}.ph_parent (phone text);
    ALTER TABLE ${S}.users INHERIT ${S}.ph_parent;
    CREATE TABLE ${S}.other_parent (phone text);
    CREATE TABLE ${S}.pusers (id int, phone text) PARTITION BY LIST (id);
    CREATE TABLE ${S}.pusers_p1 PARTITION OF ${S}.pusers FOR VALUES IN (1);
    CREATE TABLE ${S}.pusers_p2 PARTITION OF ${S}.pusers FOR VALUES IN (2);
    INSERT INTO ${S}.pusers SELECT id, phone FROM ${S}.users;
    ANALYZE ${S}.users;
    CREATE VIEW ${S}.stats_view AS SELECT attname, concat(most_common_vals::text, histogram_bounds::text) AS common FROM pg_stats WHERE schemaname = '${S}';`);
  d = await startTestDaemon({ policy: POLICY });
  tap = await startTap(d.port);
});

afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${S} CASCADE; DROP SCHEMA IF EXISTS ${S}_moved CASCADE`).catch(() => undefined);
  await admin?.end();
  await tap?.close();
  await d?.stop();
});

// Through the tap, except for the exempt identity.
const client = async (user = 'alice') => {
  const c = new pg.Client({ host: '127.0.0.1', port: user === 'officer' ? d.port : tap.port, database: 'test', user });
  await c.connect();
  return c;
};

const leaked = () => tap.seen(CLEAR);

/** The error a statement is refused with. */
async function refusal(c: pg.Client, sql: string): Promise<pg.DatabaseError> {
  const err = await c.query(sql).then(() => null, (e: unknown) => e);
  expect(err, sql).toBeInstanceOf(pg.DatabaseError);
  expect((err as pg.DatabaseError).code, sql).toBe('42501');
  return err as pg.DatabaseError;
}

const rows = async (c: pg.Client, sql: string) => (await c.query({ text: sql, rowMode: 'array' })).rows;

describe('values sent outside the result', () => {
  it('refuses pg_notify of masked values: no notification carries them', async () => {
    const listener = await client();
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(n.payload ?? ''));
    const c = await client();
    try {
      await listener.query('LISTEN c');
      await c.query('LISTEN c');
      expect((await refusal(c, `SELECT pg_notify('c', email || ' / ' || card) FROM ${S}.users`)).message)
        .toMatch(/values of masked columns \(rule mask-email\) to pg_notify\(\)/);
      // A masked column used only in WHERE reaches the call all the same.
      await refusal(c, `SELECT 1 FROM ${S}.users WHERE pg_notify('c', email) IS NULL`);
      await refusal(c, `SELECT pg_catalog.pg_notify('c', x::text) FROM ${S}.users x`);
      // A column no rule masks still notifies.
      await c.query(`SELECT pg_notify('c', name) FROM ${S}.users WHERE id = 1`);
      await expect.poll(() => notes).toEqual(['Alice']);
    } finally {
      await c.end();
      await listener.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('refuses set_config of masked values: SHOW, current_setting and ParameterStatus never see them', async () => {
    const c = await client();
    const statuses: string[] = [];
    (c as unknown as { connection: { on(e: string, f: (m: { parameterName: string; parameterValue: string }) => void): void } })
      .connection.on('parameterStatus', (m) => statuses.push(`${m.parameterName}=${m.parameterValue}`));
    try {
      expect((await refusal(c, `SELECT set_config('hunt.v', string_agg(email || '|' || card, ';'), false) FROM ${S}.users`)).message)
        .toMatch(/to set_config\(\)/);
      expect(await rows(c, "SELECT current_setting('hunt.v', true)")).toEqual([[null]]);
      await refusal(c, `SELECT set_config('application_name', email, false) FROM ${S}.users WHERE id = 1`);
      await refusal(c, `PREPARE p AS SELECT set_config('hunt.w', email, false) FROM ${S}.users`);
      expect(statuses.filter((s) => s.startsWith('application_name'))).toEqual([]);
      expect(await rows(c, 'SHOW application_name')).not.toContainEqual([expect.stringContaining('@')]);
      // Settings made of unmasked data (drivers and tools call set_config) are untouched.
      expect(await rows(c, `SELECT set_config('hunt.n', name, false) FROM ${S}.users WHERE id = 2`)).toEqual([['Bob']]);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('refuses reading the planner statistics; a view over them is masked', async () => {
    const c = await client();
    try {
      for (const sql of [
        `SELECT attname, histogram_bounds::text, most_common_vals::text FROM pg_stats WHERE tablename = 'users' AND schemaname = '${S}'`,
        `SELECT * FROM pg_catalog.pg_stats WHERE schemaname = '${S}'`,
        'SELECT stavalues1::text FROM pg_statistic',
        'SELECT * FROM pg_stats_ext',
        `WITH s AS (SELECT most_common_vals FROM pg_stats) SELECT count(*) FROM s`,
      ]) {
        expect((await refusal(c, sql)).message, sql).toMatch(/pg_catalog\.pg_stat\w* holds sample values of every column/);
      }
      const view = await rows(c, `SELECT attname, common FROM ${S}.stats_view WHERE attname = 'email' LIMIT 1`);
      expect(view).toEqual([['****', '****']]);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('leaves sessions without masking rules as they were', async () => {
    const c = await client('officer');
    try {
      const stats = await rows(c, `SELECT concat(most_common_vals::text, histogram_bounds::text) FROM pg_stats WHERE schemaname = '${S}' AND tablename = 'users' AND attname = 'email'`);
      expect(stats[0]![0]).toContain(SEED[0]!.email);
      expect(await rows(c, `SELECT set_config('hunt.v', email, false) FROM ${S}.users WHERE id = 1`)).toEqual([[SEED[0]!.email]]);
      await c.query(`ALTER TABLE ${S}.u4 RENAME COLUMN name TO name2`);
      await c.query(`ALTER TABLE ${S}.u4 RENAME COLUMN name2 TO name`);
    } finally {
      await c.end();
    }
  });
});

describe('DDL that copies or renames masked columns', () => {
  const columns = async (table: string) =>
    (await admin.query(`SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, [S, table])).rows.map((r) => r.column_name);

  it('refuses copying a masked column into another by a generated column or ALTER TYPE ... USING', async () => {
    const c = await client();
    try {
      expect((await refusal(c, `ALTER TABLE ${S}.u3 ADD COLUMN e2 text GENERATED ALWAYS AS (email) STORED`)).message).toMatch(/copies values of masked columns \(rule mask-email\)/);
      await expect(c.query(`SELECT e2 FROM ${S}.u3`)).rejects.toThrow(/e2/);
      await refusal(c, `ALTER TABLE ${S}.u4 ALTER COLUMN phone TYPE text USING email`);
      await refusal(c, `ALTER TABLE ${S}.u4 ADD COLUMN x text GENERATED ALWAYS AS (lower(card)) STORED, ALTER COLUMN name TYPE text`);
      // A masked column keeps its own value under its own name; columns no rule masks are free.
      await c.query(`ALTER TABLE ${S}.u4 ALTER COLUMN email TYPE varchar(200) USING email::varchar(200)`);
      await c.query(`ALTER TABLE ${S}.u4 ADD COLUMN n2 text GENERATED ALWAYS AS (upper(name)) STORED`);
      expect(await rows(c, `SELECT email, n2 FROM ${S}.u4 WHERE id = 1`)).toEqual([['****@example.com', 'ALICE']]);
    } finally {
      await c.end();
    }
    expect(await columns('u3')).toEqual(['id', 'name', 'email', 'card', 'phone']);
    // u4.phone, which no rule masks, still holds phones, not emails.
    expect((await admin.query(`SELECT phone FROM ${S}.u4 WHERE id = 1`)).rows).toEqual([{ phone: SEED[0]!.phone }]);
    expect(leaked()).toEqual([]);
  });

  it('refuses renaming or moving a masked column or table out of its rule', async () => {
    const c = await client();
    try {
      expect((await refusal(c, `ALTER TABLE ${S}.u2 RENAME COLUMN email TO contact`)).message)
        .toMatch(/masked column dbward_mask_leaks\.u2\.email \(rule mask-email\) under a name or classification the masking rules do not mask alike/);
      await expect(c.query(`SELECT contact FROM ${S}.u2`)).rejects.toThrow(/contact/);
      // A table-specific rule names the table: renaming or moving it would unmask users.phone.
      await refusal(c, `ALTER TABLE ${S}.users RENAME TO people`);
      await refusal(c, `ALTER TABLE ${S}.users SET SCHEMA ${S}_moved`);
      await refusal(c, `ALTER SCHEMA ${S} RENAME TO ${S}_2`);
      await c.query(`SET search_path = ${S}`);
      await refusal(c, 'ALTER TABLE users RENAME COLUMN phone TO tel');
      // Where the rule follows the new name (`*.*.email`), renaming is allowed.
      await c.query(`ALTER TABLE u2 RENAME TO u2b`);
      expect(await rows(c, 'SELECT email FROM u2b WHERE id = 2')).toEqual([['****@example.org']]);
      await c.query(`ALTER TABLE u2b RENAME TO u2`);
    } finally {
      await c.end();
    }
    expect(await columns('u2')).toEqual(['id', 'name', 'email', 'card', 'phone']);
    expect(await columns('users')).toEqual(['id', 'name', 'email', 'card', 'phone']);
    expect(leaked()).toEqual([]);
  });
});

describe('functions a masked session creates', () => {
  it('creates SQL functions whose body dbward reads as harmless, and no other', async () => {
    const c = await client();
    try {
      await c.query(`CREATE FUNCTION ${S}.one() RETURNS int LANGUAGE sql AS 'select 1'`);
      // Called, such code could pass on what it is given: pg_notify(f(email)) would not name pg_notify.
      expect((await refusal(c, `CREATE FUNCTION ${S}.tell(t text) RETURNS void LANGUAGE sql AS 'SELECT pg_notify(''c'', t)'`)).message)
        .toMatch(/code dbward cannot read/);
      await refusal(c, `CREATE FUNCTION ${S}.first_email() RETURNS text LANGUAGE sql AS 'SELECT email FROM ${S}.users LIMIT 1'`);
    } finally {
      await c.end();
    }
    expect((await admin.query(`SELECT proname FROM pg_proc WHERE pronamespace = '${S}'::regnamespace ORDER BY 1`)).rows).toEqual([{ proname: 'one' }]);
  });
});

describe('inheritance and partitions', () => {
  it('masks a parent by its children\'s rules and a partition by its parent\'s', async () => {
    const c = await client();
    try {
      // users INHERIT ph_parent: reading the parent returns users' phones.
      expect(await rows(c, `SELECT phone FROM ${S}.ph_parent ORDER BY 1`)).toEqual([['****'], ['****']]);
      expect(await rows(c, `SELECT lower(phone) FROM ${S}.ph_parent LIMIT 1`)).toEqual([['****']]);
      // pusers.phone is masked: so are its partitions' phones.
      expect(await rows(c, `SELECT phone FROM ${S}.pusers_p1`)).toEqual([['****']]);
      expect(await rows(c, `SELECT id, phone FROM ${S}.pusers_p2`)).toEqual([[2, '****']]);
      const copy = await psql(`host=127.0.0.1 port=${tap.port} dbname=test user=alice sslmode=disable`, ['-c', `COPY ${S}.pusers_p1 TO STDOUT`]);
      expect(copy.stdout).toBe('1\t****\n');
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('refuses changing the inheritance of tables with masked columns', async () => {
    const c = await client();
    try {
      await c.query('BEGIN');
      // Uncommitted, the change is out of sight of dbward's catalog reading: other_parent would read users' phones in clear.
      expect((await refusal(c, `ALTER TABLE ${S}.users INHERIT ${S}.other_parent`)).message).toMatch(/changes the inheritance or partitioning of dbward_mask_leaks\.users/);
      await c.query('ROLLBACK');
      await refusal(c, `ALTER TABLE ${S}.pusers DETACH PARTITION ${S}.pusers_p1`);
      await refusal(c, `ALTER TABLE ${S}.users NO INHERIT ${S}.ph_parent`);
    } finally {
      await c.end();
    }
    expect((await admin.query(`SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = '${S}.other_parent'::regclass`)).rows[0].n).toBe(0);
    expect(leaked()).toEqual([]);
  });
});

describe('statements that need approval', () => {
  it('are refused outright when they would copy masked values: an approval does not make the copy safe', async () => {
    const c = await client();
    try {
      const err = await refusal(c, `INSERT INTO ${S}.approved_copies SELECT email FROM ${S}.users`);
      expect(err.message).toMatch(/copies values of masked columns \(rule mask-email\)/);
    } finally {
      await c.end();
    }
    expect((await admin.query(`SELECT count(*)::int AS n FROM ${S}.approved_copies`)).rows[0].n).toBe(0);
  });
});

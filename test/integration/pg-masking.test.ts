// Masking against the real PostgreSQL, through psql and node-postgres: every way a
// masked column's value could leave (aliases, expressions, whole rows, CTEs, views,
// subqueries, UNION, RETURNING, COPY, cursors, binary results) reaches the client
// masked, and the raw bytes dbward sent never hold a seeded clear value.

import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import { Ajv } from 'ajv';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { startTap, type Tap } from '../helpers/tap.js';

const KEY = 'k'.repeat(40);
process.env.DBWARD_TEST_MASK_KEY = KEY;

const SEED = [
  { id: 1, name: 'Alice', email: 'alice.secret@example.com', phone: '+1 415 555 0101', ssn: '123-45-6789', card: '4111111111111111', notes: 'call me at alice.private@mailbox.org' },
  { id: 2, name: 'Bob', email: 'bob.hidden@example.org', phone: '+1 415 555 0202', ssn: '234-56-7890', card: '5500005555555559', notes: 'nothing here' },
];
const CLEAR = SEED.flatMap((r) => [r.email, r.email.split('@')[0]!, r.phone, r.ssn, r.card.slice(0, 12), 'alice.private@mailbox.org']);

const POLICY = `default: allow
masking:
  strict: true
  classifications:
    pci: [dbward_mask.users.card]
  rules:
    - id: mask-email
      columns: [dbward_mask.users.email]
      strategy: email
      exempt: { identity: { users: [officer] } }
    - id: mask-ssn
      columns: [dbward_mask.*.ssn]
      strategy: redact
      exempt: { identity: { users: [officer] } }
    - id: mask-card
      classifications: [pci]
      strategy: partial
      keep_last: 4
      exempt: { identity: { users: [officer] } }
    - id: mask-phone
      columns: [phone]
      strategy: hash
      exempt: { identity: { users: [officer] } }
    - id: detect-pii
      detect: [email]
      strategy: redact
      exempt: { identity: { users: [officer] } }
`;

let d: TestDaemon;
let tap: Tap;

const leaked = () => tap.seen(CLEAR);

beforeAll(async () => {
  await requirePostgres();
  const c = new pg.Client({ ...PG });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS dbward_mask CASCADE; CREATE SCHEMA dbward_mask;
    CREATE TABLE dbward_mask.users (id int PRIMARY KEY, name text, email text, phone text, ssn text, card text, notes text);
    CREATE TABLE dbward_mask.other (id int, label text);
    INSERT INTO dbward_mask.other VALUES (1, 'x');
    CREATE VIEW dbward_mask.user_view AS SELECT id, email AS contact, upper(ssn) AS tax_id, name FROM dbward_mask.users;`);
  for (const r of SEED) await c.query('INSERT INTO dbward_mask.users VALUES ($1, $2, $3, $4, $5, $6, $7)', [r.id, r.name, r.email, r.phone, r.ssn, r.card, r.notes]);
  await c.end();
  d = await startTestDaemon({ policy: POLICY, maskingHashKey: { env: 'DBWARD_TEST_MASK_KEY' } });
  tap = await startTap(d.port);
});

afterAll(async () => {
  await tap?.close();
  await d?.stop();
});

const client = async (user = 'alice') => {
  const c = new pg.Client({ host: '127.0.0.1', port: tap.port, database: 'test', user });
  await c.connect();
  return c;
};

const hash = (v: string) => createHmac('sha256', KEY).update(v).digest('hex').slice(0, 32);

describe('node-postgres', () => {
  it('masks columns by origin, whatever they are called', async () => {
    const c = await client();
    try {
      const r = await c.query('SELECT id, name, email AS e, ssn, card, phone FROM dbward_mask.users ORDER BY id');
      expect(r.rows[0]).toEqual({ id: 1, name: 'Alice', e: '****@example.com', ssn: '****', card: '************1111', phone: hash(SEED[0]!.phone) });
      // Hashes are stable: a join or GROUP BY on them still works.
      const again = await c.query('SELECT phone FROM dbward_mask.users WHERE id = 1');
      expect(again.rows[0].phone).toBe(hash(SEED[0]!.phone));
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('masks outputs computed from masked columns, whole rows, CTEs, views, subqueries, UNION and RETURNING', async () => {
    const c = await client();
    try {
      const r = await c.query(`SELECT email AS e, lower(email), email || '' AS cat, row_to_json(u) AS j, u, u::text AS t FROM dbward_mask.users u WHERE id = 1`);
      expect(r.rows[0]).toEqual({ e: '****@example.com', lower: '****', cat: '****', j: '****', u: '****', t: '****' });
      const q = async (sql: string) => (await c.query({ text: sql, rowMode: 'array' })).rows;
      expect(await q('WITH x AS (SELECT email FROM dbward_mask.users WHERE id = 1) SELECT * FROM x')).toEqual([['****@example.com']]);
      expect(await q('SELECT * FROM (SELECT ssn, name FROM dbward_mask.users WHERE id = 1) s')).toEqual([['****', 'Alice']]);
      expect(await q('SELECT id, contact, tax_id, name FROM dbward_mask.user_view WHERE id = 1')).toEqual([[1, '****@example.com', '****', 'Alice']]);
      expect(await q('SELECT name FROM dbward_mask.users WHERE id = 1 UNION ALL SELECT email FROM dbward_mask.users WHERE id = 1')).toEqual([['****'], ['****']]);
      expect(await q('SELECT (SELECT ssn FROM dbward_mask.users WHERE id = 2)')).toEqual([['****']]);
      expect(await q('UPDATE dbward_mask.users SET name = name WHERE id = 2 RETURNING id, email, card')).toEqual([[2, '****@example.org', '************5559']]);
      // A column no rule names passes as it is; a detector finds an email in free text.
      expect(await q('SELECT name, notes FROM dbward_mask.users ORDER BY id')).toEqual([['Alice', '****'], ['Bob', 'nothing here']]);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('masks binary-format results (extended protocol), re-described as text', async () => {
    const c = await client();
    try {
      // `binary` is a real node-postgres option (results in binary format) that its types leave out.
      const r = await c.query({ text: 'SELECT id, email, ssn FROM dbward_mask.users WHERE id = $1', values: [1], binary: true } as pg.QueryConfig);
      expect(r.fields.map((f) => f.dataTypeID)).toEqual([23, 25, 25]);
      expect(r.rows[0].email.toString()).toBe('****@example.com');
      expect(r.rows[0].ssn.toString()).toBe('****');
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('masks rows fetched from a cursor, and results of a view created mid-session', async () => {
    const c = await client();
    try {
      await c.query('BEGIN');
      await c.query('DECLARE cur CURSOR FOR SELECT id, email, lower(ssn) AS l FROM dbward_mask.users ORDER BY id');
      const f = await c.query({ text: 'FETCH 2 FROM cur', rowMode: 'array' });
      expect(f.rows).toEqual([[1, '****@example.com', '****'], [2, '****@example.org', '****']]);
      await c.query('COMMIT');
      const admin = new pg.Client({ ...PG });
      await admin.connect();
      await admin.query('CREATE OR REPLACE VIEW dbward_mask.late_view AS SELECT ssn AS s, name FROM dbward_mask.users');
      await admin.end();
      expect((await c.query({ text: 'SELECT s, name FROM dbward_mask.late_view WHERE name = $1', values: ['Bob'], rowMode: 'array' })).rows).toEqual([['****', 'Bob']]);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('refuses what would let a query infer or copy masked values (strict mode)', async () => {
    const c = await client();
    try {
      await expect(c.query("SELECT id FROM dbward_mask.users WHERE ssn LIKE '1%'")).rejects.toThrow(/masked column dbward_mask\.users\.ssn may not be used to filter/);
      await expect(c.query('SELECT id FROM dbward_mask.users ORDER BY email')).rejects.toThrow(/strict mode/);
      await expect(c.query('CREATE TABLE dbward_mask.copy AS SELECT email FROM dbward_mask.users')).rejects.toThrow(/copies values of masked columns/);
      await expect(c.query('INSERT INTO dbward_mask.other SELECT id, email FROM dbward_mask.users')).rejects.toThrow(/copies values of masked columns/);
      await expect(c.query('UPDATE dbward_mask.users SET name = ssn')).rejects.toThrow(/copies values of masked columns/);
      // Writing a masked column (not reading it) is allowed.
      await c.query("UPDATE dbward_mask.users SET notes = notes WHERE id = 2");
      // An error message that would quote a value is withheld; the SQLSTATE stays.
      const err = await c.query('SELECT email::int FROM dbward_mask.users').catch((e: pg.DatabaseError) => e);
      expect((err as pg.DatabaseError).code).toBe('22P02');
      expect((err as pg.DatabaseError).message).toMatch(/message withheld/);
    } finally {
      await c.end();
    }
    expect(leaked()).toEqual([]);
  });

  it('an exempt identity sees clear values', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'officer' });
    await c.connect();
    try {
      const r = await c.query('SELECT email, ssn FROM dbward_mask.users WHERE id = 1');
      expect(r.rows[0]).toEqual({ email: SEED[0]!.email, ssn: SEED[0]!.ssn });
    } finally {
      await c.end();
    }
  });
});

describe('psql', () => {
  const conn = () => `host=127.0.0.1 port=${tap.port} dbname=test user=alice sslmode=disable`;

  it('prints masked values, and COPY TO STDOUT (text and csv) is masked', async () => {
    const r = await psql(conn(), ['-At', '-c', "SELECT id, email, lower(email), card FROM dbward_mask.users ORDER BY id"]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['1|****@example.com|****|************1111', '2|****@example.org|****|************5559']);
    const text = await psql(conn(), ['-c', 'COPY dbward_mask.users TO STDOUT']);
    expect(text.stdout.split('\n')[0]).toBe(`1\tAlice\t****@example.com\t${hash(SEED[0]!.phone)}\t****\t************1111\t****`);
    const csv = await psql(conn(), ['-c', 'COPY dbward_mask.users (id, ssn, name) TO STDOUT WITH (FORMAT csv, HEADER)']);
    expect(csv.stdout.split('\n').slice(0, 2)).toEqual(['id,ssn,name', '1,****,Alice']);
    const query = await psql(conn(), ['-c', 'COPY (SELECT id, email FROM dbward_mask.users WHERE id = 1) TO STDOUT']);
    expect(query.stdout).toBe('****\t****\n');
    const binary = await psql(conn(), ['-c', 'COPY dbward_mask.users TO STDOUT WITH (FORMAT binary)']);
    expect(binary.stderr).toMatch(/COPY of masked columns must use text or csv/);
    expect(leaked()).toEqual([]);
  });

  it('records which columns were masked and how many cells, never the values', async () => {
    await psql(conn(), ['-c', 'SELECT email, ssn, name FROM dbward_mask.users -- audited']);
    // The outcome is appended once the reply is on its way; psql may exit first.
    const outcome = () => {
      const events = d.audit();
      const stmt = events.find((e) => e.type === 'statement' && e.statement.text.includes('-- audited'));
      return events.find((e) => e.type === 'statement_outcome' && e.statement_id === stmt?.id);
    };
    await expect.poll(outcome).toBeDefined();
    expect(outcome()!.outcome.masks).toEqual([
      { column: 'dbward_mask.users.email', rule: 'mask-email', strategy: 'email', cells: 2 },
      { column: 'dbward_mask.users.ssn', rule: 'mask-ssn', strategy: 'redact', cells: 2 },
    ]);
    const validate = new Ajv({ allErrors: true }).compile(JSON.parse(fs.readFileSync(new URL('../../schemas/audit-event.schema.json', import.meta.url), 'utf8')) as object);
    expect(validate(outcome()), JSON.stringify(validate.errors)).toBe(true);
    const trail = fs.readFileSync(d.auditPath, 'utf8');
    for (const v of SEED.flatMap((r) => [r.email, r.ssn, r.card])) expect(trail).not.toContain(v);
  });
});

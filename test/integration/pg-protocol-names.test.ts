// Prepared statement and portal names against the real PostgreSQL: what dbward
// judges a Bind or an Execute by is always what the server runs. A Parse or Bind
// the server refuses leaves the name as it was, SQL PREPARE/DEALLOCATE count only
// once they ran, and a Bind (which plans the statement and runs parameter checks)
// is recorded before it reaches the server, even with no Execute after it.

import fs from 'node:fs';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg, type Msg } from '../helpers/rawpg.js';
import { PG, requirePostgres } from '../helpers/services.js';

const SECRET = 'carol.clear@example.com';
const POLICY = `default: allow
masking:
  rules:
    - id: mask-email
      columns: [dbward_names.people.email]
      strategy: redact
`;

let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  const c = new pg.Client({ ...PG });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS dbward_names CASCADE; CREATE SCHEMA dbward_names;
    CREATE TABLE dbward_names.people (id int, email text);
    INSERT INTO dbward_names.people VALUES (1, '${SECRET}');
    CREATE SEQUENCE dbward_names.bound_calls;
    CREATE FUNCTION dbward_names.count_call(v int) RETURNS boolean LANGUAGE sql AS 'SELECT nextval(''dbward_names.bound_calls'') > 0';
    CREATE DOMAIN dbward_names.checked AS int CHECK (dbward_names.count_call(VALUE));`);
  await c.end();
  d = await startTestDaemon({ policy: POLICY });
});

afterAll(async () => {
  await d?.stop();
});

/** Every value of every DataRow and every error message the client got. */
function seen(msgs: Msg[]): string {
  return msgs.map((m) => (m.name === 'dataRow' ? (m.fields as (string | null)[]).join('|') : m.name === 'error' ? `${m.code} ${m.message}` : '')).join('\n');
}

async function sequence(c: RawPg, ...bufs: Buffer[]): Promise<Msg[]> {
  c.send(Buffer.concat([...bufs, serialize.sync()]));
  return c.until('readyForQuery');
}

async function query(c: RawPg, sql: string): Promise<Msg[]> {
  c.send(serialize.query(sql));
  return c.until('readyForQuery');
}

describe('prepared names follow the server', () => {
  it('a SQL PREPARE that replaces a protocol statement leaves no stale judgement behind: its Bind is refused', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    try {
      await sequence(c, serialize.parse({ name: 's1', text: "SELECT 'harmless'::text AS a" }));
      const swap = await query(c, 'DEALLOCATE s1; PREPARE s1 AS SELECT upper(email) AS a FROM dbward_names.people');
      expect(swap.some((m) => m.name === 'error')).toBe(false);
      const got = await sequence(c, serialize.bind({ statement: 's1' }), serialize.execute({}));
      expect(seen(got)).not.toContain(SECRET.toUpperCase());
      expect(got.find((m) => m.name === 'error')?.code).toBe('26000');
    } finally {
      c.end();
    }
  });

  it('a DEALLOCATE and PREPARE that failed in an aborted transaction do not change what EXECUTE is judged as', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    try {
      await query(c, 'PREPARE p AS SELECT upper(email) AS a FROM dbward_names.people');
      await query(c, 'BEGIN');
      await query(c, 'SELECT 1/0');
      expect((await query(c, 'DEALLOCATE p')).find((m) => m.name === 'error')?.code).toBe('25P02');
      expect((await query(c, "PREPARE p AS SELECT 'x'::text AS a")).find((m) => m.name === 'error')?.code).toBe('25P02');
      await query(c, 'ROLLBACK');
      const got = await query(c, 'EXECUTE p');
      // Judged as what the server kept: the masked upper(email), so it runs, masked.
      expect(got.some((m) => m.name === 'dataRow')).toBe(true);
      expect(seen(got)).not.toContain(SECRET.toUpperCase());
    } finally {
      c.end();
    }
  });

  it('after a failed string of several, whose PREPAREs ran is not known: EXECUTE of those names is judged as unknown SQL', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    try {
      await query(c, 'PREPARE q AS SELECT upper(email) AS a FROM dbward_names.people');
      await query(c, 'BEGIN');
      await query(c, 'SELECT 1/0');
      await query(c, "DEALLOCATE q; PREPARE q AS SELECT 'x'::text AS a");
      await query(c, 'ROLLBACK');
      const got = await query(c, 'EXECUTE q');
      expect(seen(got)).not.toContain(SECRET.toUpperCase());
      expect(got.some((m) => m.name === 'dataRow')).toBe(false);
      expect(got.find((m) => m.name === 'error')?.code).toBe('42501');
    } finally {
      c.end();
    }
  });

  it('a Parse the server refuses for a name in use leaves the name judged by the statement the server kept', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    try {
      const first = await sequence(c, serialize.parse({ name: 's2', text: 'SELECT email FROM dbward_names.people' }));
      expect(first.some((m) => m.name === 'error')).toBe(false);
      const clash = await sequence(c, serialize.parse({ name: 's2', text: "SELECT 'x'::text AS email" }));
      expect(clash.find((m) => m.name === 'error')?.code).toBe('42P05');
      const got = await sequence(c, serialize.bind({ portal: 'kept', statement: 's2' }), serialize.describe({ type: 'P', name: 'kept' }), serialize.execute({ portal: 'kept' }));
      expect(got.some((m) => m.name === 'dataRow')).toBe(true);
      expect(seen(got)).not.toContain(SECRET);
    } finally {
      c.end();
    }
    // The trail names what ran, not the text the server refused.
    await new Promise((r) => setTimeout(r, 300));
    const bound = d.audit().filter((e) => e.type === 'statement' && e.statement.portal === 'kept');
    expect(bound.map((e) => e.statement.text)).toEqual(['SELECT email FROM dbward_names.people']);
  });

  it('a portal ends with its transaction: a later Execute of its name is refused, not judged by the old statement', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    try {
      await sequence(c, serialize.parse({ name: 's3', text: "SELECT 'x'::text AS a" }), serialize.bind({ portal: 'p3', statement: 's3' }));
      const got = await sequence(c, serialize.execute({ portal: 'p3' }));
      expect(got.find((m) => m.name === 'error')?.code).toBe('34000'); // as PostgreSQL says it
    } finally {
      c.end();
    }
  });
});

describe('a prepared statement is judged by the policy in force when it is bound', () => {
  it('a policy reloaded after the Parse refuses the next Bind, and nothing runs', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    const policyFile = d.audit().find((e) => e.type === 'policy_reload' && e.trigger === 'start')!.files[0] as string;
    const original = fs.readFileSync(policyFile, 'utf8');
    try {
      const text = 'SELECT id FROM dbward_names.people WHERE id = $1';
      await sequence(c, serialize.parse({ name: 'later', text }));
      expect((await sequence(c, serialize.bind({ statement: 'later', values: ['1'] }), serialize.execute({}))).some((m) => m.name === 'dataRow')).toBe(true);
      fs.writeFileSync(policyFile, `${original}rules:\n  - id: no-people\n    match: { statement: { tables: { any: [dbward_names.people] } } }\n    action: deny\n`);
      expect(d.daemon.reloadPolicy()).toBe(true);
      const got = await sequence(c, serialize.bind({ statement: 'later', values: ['1'] }), serialize.execute({}));
      expect(got.some((m) => m.name === 'dataRow')).toBe(false);
      expect(got.find((m) => m.name === 'error')).toMatchObject({ code: '42501', message: expect.stringContaining('no-people') });
    } finally {
      fs.writeFileSync(policyFile, original);
      d.daemon.reloadPolicy();
      c.end();
    }
  });
});

describe('a Bind is recorded before it reaches the server', () => {
  it('a Bind with no Execute, whose parameter check runs a function, has its statement event and outcome', async () => {
    const before = await calls();
    const c = await RawPg.login(d.port, 'alice', 'test');
    try {
      const text = 'SELECT $1::dbward_names.checked AS v';
      const got = await sequence(c, serialize.parse({ name: '', text, types: [] }), serialize.bind({ values: ['7'] }));
      expect(got.some((m) => m.name === 'bindComplete')).toBe(true);
    } finally {
      c.end();
    }
    expect(await calls()).toBeGreaterThan(before); // the domain check ran on the server at Bind
    await new Promise((r) => setTimeout(r, 300));
    const events = d.audit();
    const stmt = events.find((e) => e.type === 'statement' && e.statement.text === 'SELECT $1::dbward_names.checked AS v');
    expect(stmt).toBeDefined();
    expect(stmt!.statement.portal).toBe('');
    const outcome = events.find((e) => e.type === 'statement_outcome' && e.statement_id === stmt!.id);
    expect(outcome?.outcome).toMatchObject({ status: 'ok', tags: [] });
  });

  it('a Bind and its Execute make one statement event, settled by the Execute', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: d.port, user: 'alice', database: 'test' });
    await c.connect();
    try {
      const text = 'SELECT $1::int + 1 AS one_event';
      await c.query({ text, values: [1] });
    } finally {
      await c.end();
    }
    await new Promise((r) => setTimeout(r, 300));
    const events = d.audit().filter((e) => e.type === 'statement' && e.statement.text === 'SELECT $1::int + 1 AS one_event');
    expect(events).toHaveLength(1);
    const outcome = d.audit().find((e) => e.type === 'statement_outcome' && e.statement_id === events[0]!.id);
    expect(outcome?.outcome).toMatchObject({ status: 'ok', tags: ['SELECT 1'], rows: 1 });
  });
});

async function calls(): Promise<number> {
  const c = new pg.Client({ ...PG });
  await c.connect();
  try {
    const r = await c.query("SELECT last_value, is_called FROM dbward_names.bound_calls");
    return r.rows[0].is_called ? Number(r.rows[0].last_value) : 0;
  } finally {
    await c.end();
  }
}

describe('a Terminate behind a statement', () => {
  it('gets the statement its reply, as from PostgreSQL, and records its outcome', async () => {
    const c = await RawPg.login(d.port, 'alice', 'test');
    c.send(Buffer.concat([serialize.query("SELECT 'before the end' AS last"), serialize.end()]));
    expect(await c.closedWithin(5000)).toBe(true);
    expect(c.messages.map((m) => m.name)).toEqual(['rowDescription', 'dataRow', 'commandComplete', 'readyForQuery']);
    await new Promise((r) => setTimeout(r, 300));
    const stmt = d.audit().find((e) => e.type === 'statement' && e.statement.text === "SELECT 'before the end' AS last")!;
    expect(d.audit().find((e) => e.type === 'statement_outcome' && e.statement_id === stmt.id)?.outcome).toMatchObject({ status: 'ok', tags: ['SELECT 1'] });
    expect(d.audit().find((e) => e.type === 'session_end' && e.session === stmt.session)?.reason).toBe('client_terminated');
  });
});

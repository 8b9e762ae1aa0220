// limit_rows against the real PostgreSQL: a capped statement's client gets at most
// N rows whatever protocol it uses (simple, extended, portal paging), a notice
// says how many were withheld, and cursors and COPY, whose rows would not pass
// the cap, are refused.

import pg from 'pg';
import Cursor from 'pg-cursor';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';

const POLICY = `default: allow
rules:
  - id: cap-rl
    match: { statement: { tables: { read: [dbward_rl] } } }
    action: limit_rows
    rows: 3
`;

let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  const c = new pg.Client({ ...PG });
  await c.connect();
  await c.query('DROP TABLE IF EXISTS dbward_rl; CREATE TABLE dbward_rl AS SELECT g AS x FROM generate_series(1, 10) g');
  await c.end();
  d = await startTestDaemon({ policy: POLICY });
});

afterAll(async () => {
  await d?.stop();
});

const client = async () => {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'alice' });
  await c.connect();
  return c;
};

it('simple and extended protocol: at most 3 rows, with a notice naming the rule', async () => {
  const c = await client();
  const notices: string[] = [];
  c.on('notice', (n) => notices.push(n.message ?? ''));
  try {
    expect((await c.query('SELECT x FROM dbward_rl ORDER BY x')).rows).toEqual([{ x: 1 }, { x: 2 }, { x: 3 }]);
    expect((await c.query({ text: 'SELECT x FROM dbward_rl WHERE x > $1 ORDER BY x', values: [5] })).rows).toEqual([{ x: 6 }, { x: 7 }, { x: 8 }]);
    // Other statements of the session are not capped.
    expect((await c.query('SELECT count(*)::int AS n FROM generate_series(1, 10)')).rows).toEqual([{ n: 10 }]);
    expect(notices).toEqual([
      'dbward withheld 7 row(s): at most 3 may be returned (rule cap-rl)',
      'dbward withheld 2 row(s): at most 3 may be returned (rule cap-rl)',
    ]);
  } finally {
    await c.end();
  }
});

it('paging a portal (Execute with a row count, again and again) cannot get past the cap', async () => {
  const c = await client();
  try {
    const cursor = c.query(new Cursor('SELECT x FROM dbward_rl ORDER BY x'));
    const seen: number[] = [];
    for (;;) {
      const rows = await cursor.read(2);
      if (rows.length === 0) break;
      seen.push(...rows.map((r: { x: number }) => r.x));
    }
    await cursor.close();
    expect(seen).toEqual([1, 2, 3]);
  } finally {
    await c.end();
  }
});

it('cursors and COPY of a capped table are refused, and the audit records the cap', async () => {
  const r = await psql(`host=127.0.0.1 port=${d.port} dbname=test user=alice sslmode=disable`, ['-v', 'VERBOSITY=verbose',
    '-c', 'BEGIN', '-c', 'DECLARE c CURSOR FOR SELECT x FROM dbward_rl', '-c', 'ROLLBACK']);
  expect(r.stderr).toMatch(/42501: .*cursors and COPY cannot be capped.*dbward\.row-limit/);
  const copy = await psql(`host=127.0.0.1 port=${d.port} dbname=test user=alice sslmode=disable`, ['-c', 'COPY (SELECT x FROM dbward_rl) TO STDOUT']);
  expect(copy.code).not.toBe(0);
  expect(copy.stdout).toBe('');
  await expect.poll(() => d.audit().filter((e) => e.type === 'statement' && e.decision.limit_rows === 3).length).toBeGreaterThanOrEqual(2);
});

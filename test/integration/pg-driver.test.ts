// node-postgres and pgbench through dbward to the real PostgreSQL: simple and
// extended protocol, parameters, named prepared statements, portals with row
// limits, pipelined batches; and the audit events the extended protocol leaves.

import { execFile } from 'node:child_process';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStartup } from '../../src/proxy/postgres/startup.js';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg } from '../helpers/rawpg.js';
import { requirePostgres } from '../helpers/services.js';

let d: TestDaemon;
const clients: pg.Client[] = [];

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'alice', ssl: false });
  await c.connect();
  clients.push(c);
  return c;
}

beforeAll(async () => {
  await requirePostgres();
  d = await startTestDaemon();
  const c = await client();
  await c.query('DROP SCHEMA IF EXISTS it_driver CASCADE; CREATE SCHEMA it_driver; CREATE TABLE it_driver.n AS SELECT g AS i FROM generate_series(1, 100) g');
});

afterAll(async () => {
  if (clients[0]) await clients[0].query('DROP SCHEMA IF EXISTS it_driver CASCADE').catch(() => undefined);
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await d?.stop();
});

describe('node-postgres through dbward', () => {
  it('runs simple-protocol queries, several statements in one string', async () => {
    const c = await client();
    const res = (await c.query('SELECT 1 AS a; SELECT 2 AS b')) as unknown as pg.QueryResult[];
    expect(res.map((r) => r.rows[0])).toEqual([{ a: 1 }, { b: 2 }]);
  });

  it('runs parameterized (extended protocol) queries with text and binary-safe values', async () => {
    const c = await client();
    const r = await c.query('SELECT $1::int + $2::int AS s, $3::text AS t, $4::bytea AS b', [40, 2, 'héllo', Buffer.from([0, 1, 255])]);
    expect(r.rows[0]).toEqual({ s: 42, t: 'héllo', b: Buffer.from([0, 1, 255]) });
  });

  it('reuses named prepared statements and records each execution', async () => {
    const c = await client();
    const before = d.audit().filter((e) => e.type === 'statement' && e.statement.text === 'SELECT i FROM it_driver.n WHERE i = $1').length;
    for (const v of [3, 5, 8]) {
      const r = await c.query({ name: 'by_i', text: 'SELECT i FROM it_driver.n WHERE i = $1', values: [v] });
      expect(r.rows).toEqual([{ i: v }]);
    }
    await expect.poll(() => d.audit().filter((e) => e.type === 'statement' && e.statement.text === 'SELECT i FROM it_driver.n WHERE i = $1').length).toBe(before + 3);
    const execs = d.audit().filter((e) => e.type === 'statement' && e.statement.text === 'SELECT i FROM it_driver.n WHERE i = $1');
    expect(execs.every((e) => e.protocol === 'extended')).toBe(true);
  });

  it('reads a portal in batches with a row limit (pg-cursor)', async () => {
    const c = await client();
    const cursor = c.query(new Cursor('SELECT i FROM it_driver.n ORDER BY i'));
    const first = await cursor.read(30);
    const second = await cursor.read(30);
    const rest = await cursor.read(1000);
    await cursor.close();
    expect(first.map((r) => r.i)).toEqual(Array.from({ length: 30 }, (_, k) => k + 1));
    expect(second[0].i).toBe(31);
    expect(rest.length).toBe(40);
  });

  it('carries messages larger than the socket buffers (5 MB bytea parameter and result)', async () => {
    const c = await client();
    const big = Buffer.alloc(5 * 1024 * 1024, 7);
    const r = await c.query('SELECT length($1::bytea) AS n, $1::bytea AS echo', [big]);
    expect(r.rows[0].n).toBe(big.length);
    expect(Buffer.compare(r.rows[0].echo, big)).toBe(0);
  });

  it('reports errors and recovers in the same session', async () => {
    const c = await client();
    await expect(c.query('SELECT * FROM it_driver.no_such_table')).rejects.toMatchObject({ code: '42P01' });
    await expect(c.query('SELECT $1::int AS v', ['x'])).rejects.toMatchObject({ code: '22P02' });
    expect((await c.query('SELECT 5 AS v')).rows[0].v).toBe(5);
  });

  it('serves concurrent sessions independently', async () => {
    const cs = await Promise.all(Array.from({ length: 8 }, () => client()));
    const results = await Promise.all(cs.map((c, k) => c.query('SELECT $1::int * 2 AS v, pg_sleep(0.1)', [k])));
    expect(results.map((r) => r.rows[0].v)).toEqual([0, 2, 4, 6, 8, 10, 12, 14]);
  });
});

describe('server-initiated messages through dbward', () => {
  it('relays notices and LISTEN/NOTIFY notifications between sessions', async () => {
    const listener = await client();
    const notifier = await client();
    const notices: string[] = [];
    listener.on('notice', (n) => notices.push(n.message ?? ''));
    await listener.query("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$");
    expect(notices).toContain('hello from the server');
    await listener.query('LISTEN dbward_it');
    const got = new Promise<pg.Notification>((r) => listener.once('notification', r));
    await notifier.query("NOTIFY dbward_it, 'payload-42'");
    expect(await got).toMatchObject({ channel: 'dbward_it', payload: 'payload-42' });
  });
});

describe('raw protocol through dbward', () => {
  it('runs a FunctionCall (fast-path) and records it', async () => {
    const c = await RawPg.login(d.port);
    try {
      // FunctionCall: OID of int4pl(int4, int4), two text-format arguments, text result.
      const oid = 177;
      const args = [Buffer.from('40'), Buffer.from('2')];
      const body = Buffer.concat([
        Buffer.from([0, 0, 0, oid]), Buffer.from([0, 1, 0, 0]), Buffer.from([0, 2]),
        ...args.flatMap((a) => [Buffer.from([0, 0, 0, a.length]), a]), Buffer.from([0, 0]),
      ]);
      const msg = Buffer.concat([Buffer.from('F'), Buffer.from([0, 0, 0, 0]), body]);
      msg.writeInt32BE(msg.length - 1, 1);
      const replies: Buffer[] = [];
      c.socket.prependListener('data', (b: Buffer) => replies.push(b));
      c.send(msg);
      await expect.poll(() => Buffer.concat(replies).includes(Buffer.from([0x5a, 0, 0, 0, 5]))).toBe(true);
      // FunctionCallResponse 'V': length 4+4+2, value length 2, "42".
      expect(Buffer.concat(replies).includes(Buffer.concat([Buffer.from('V'), Buffer.from([0, 0, 0, 10, 0, 0, 0, 2]), Buffer.from('42')]))).toBe(true);
      await expect.poll(() => d.audit().some((e) => e.type === 'statement' && e.protocol === 'function_call' && e.statement.function_oid === oid)).toBe(true);
    } finally {
      c.end();
    }
  });

  it('answers a protocol 3.2 startup with NegotiateProtocolVersion (3.0) and goes on', async () => {
    const c = await RawPg.connect(d.port);
    try {
      const replies: Buffer[] = [];
      c.socket.prependListener('data', (b: Buffer) => replies.push(b));
      c.send(encodeStartup({ user: 'alice', database: 'test', '_pq_.compression': 'on' }, 2));
      await expect.poll(() => Buffer.concat(replies).includes(Buffer.from([0x5a, 0, 0, 0, 5]))).toBe(true);
      const all = Buffer.concat(replies);
      expect(all[0]).toBe(0x76); // 'v' first
      expect(all.readInt32BE(5)).toBe(0); // newest minor supported: 3.0
      expect(all.toString('latin1')).toContain('_pq_.compression');
    } finally {
      c.end();
    }
  });
});

describe('raw extended protocol through dbward', () => {
  it('suspends a portal at its row limit and resumes it', async () => {
    const c = await RawPg.login(d.port);
    try {
      c.send(Buffer.concat([
        serialize.parse({ name: '', text: 'SELECT g FROM generate_series(1, 5) g' }),
        serialize.bind({ portal: 'p1' }),
        serialize.execute({ portal: 'p1', rows: 2 }),
        serialize.execute({ portal: 'p1', rows: 2 }),
        serialize.execute({ portal: 'p1', rows: 2 }),
        serialize.sync(),
      ]));
      const msgs = await c.until('readyForQuery');
      expect(msgs.map((m) => m.name)).toEqual([
        'parseComplete', 'bindComplete', 'dataRow', 'dataRow', 'portalSuspended',
        'dataRow', 'dataRow', 'portalSuspended', 'dataRow', 'commandComplete', 'readyForQuery',
      ]);
    } finally {
      c.end();
    }
  });

  it('skips to Sync after an error, as PostgreSQL does, and audits the skipped execution', async () => {
    const c = await RawPg.login(d.port);
    try {
      c.send(Buffer.concat([
        serialize.parse({ name: '', text: 'SELECT 1/(random()*0)::int' }), serialize.bind({}), serialize.execute({}),
        serialize.parse({ name: '', text: 'SELECT 12345 AS skipped_marker' }), serialize.bind({}), serialize.execute({}),
        serialize.sync(),
        serialize.query('SELECT 2'),
      ]));
      const first = await c.until('readyForQuery');
      expect(first.map((m) => m.name)).toEqual(['parseComplete', 'bindComplete', 'error', 'readyForQuery']);
      expect(first[2]!.code).toBe('22012');
      const second = await c.until('readyForQuery');
      expect(second.find((m) => m.name === 'dataRow')!.fields).toEqual(['2']);
      // Recorded before forwarding, then settled as skipped: the server never ran it.
      const outcomeOf = (text: string) => {
        const ev = d.audit().findLast((e) => e.type === 'statement' && e.statement.text === text);
        return ev && d.audit().find((e) => e.type === 'statement_outcome' && e.statement_id === ev.id)?.outcome;
      };
      await expect.poll(() => outcomeOf('SELECT 12345 AS skipped_marker')?.status).toBe('skipped');
      expect(outcomeOf('SELECT 1/(random()*0)::int')).toMatchObject({ status: 'error', sqlstate: '22012' });
    } finally {
      c.end();
    }
  });

  it('refuses Bind of a statement it did not see parsed (SQL-level PREPARE)', async () => {
    const c = await RawPg.login(d.port);
    try {
      c.send(serialize.query('PREPARE sneaky AS SELECT 99'));
      await c.until('readyForQuery');
      c.send(Buffer.concat([serialize.bind({ statement: 'sneaky' }), serialize.execute({}), serialize.sync()]));
      const msgs = await c.until('readyForQuery');
      const err = msgs.find((m) => m.name === 'error')!;
      expect(err.code).toBe('26000');
      expect(err.message).toContain('dbward');
      expect(msgs.some((m) => m.name === 'dataRow')).toBe(false);
    } finally {
      c.end();
    }
  });
});

describe('pgbench through dbward', () => {
  const bench = (args: string[]) => new Promise<{ code: number; out: string }>((resolve) => {
    execFile('pgbench', ['-h', '127.0.0.1', '-p', String(d.port), '-U', 'alice', ...args, 'test'],
      { env: { ...process.env, PGSSLMODE: 'disable' }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
  });

  it('initializes (DDL + COPY) and runs in simple, extended and prepared modes', async () => {
    const init = await bench(['-i', '-s', '1', '-q', '--init-steps=dtgvp']);
    expect(init.code, init.out).toBe(0);
    for (const mode of ['simple', 'extended', 'prepared']) {
      const r = await bench(['-M', mode, '-c', '2', '-t', '25', '-n']);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain('number of transactions actually processed: 50/50');
      expect(r.out).toMatch(/number of failed transactions: 0 /);
    }
    const updates = d.audit().filter((e) => e.type === 'statement' && /UPDATE pgbench_accounts/.test(e.statement.text));
    expect(updates.length).toBeGreaterThanOrEqual(150);
  }, 120_000);
});

// The embedded demo database, exercised through real clients: psql (libpq) and
// node-postgres, over TCP, exactly as dbward will reach it as an upstream.
import { execFile } from 'node:child_process';
import net from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDemoDatabase, type DemoDatabase } from '../../src/embedded/demo-db.js';
import { SEED_COUNTS } from '../../src/embedded/seed.js';

let db: DemoDatabase;
const clients = new Set<pg.Client>();
const unhandled: unknown[] = [];
const onUnhandled = (err: unknown) => unhandled.push(err);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  db = await startDemoDatabase({ port: 0, maxConnections: 16 });
}, 60_000);

afterEach(async () => {
  await Promise.all([...clients].map((c) => c.end().catch(() => undefined)));
  clients.clear();
});

afterAll(async () => {
  await db?.stop();
  process.off('unhandledRejection', onUnhandled);
});

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ host: db.host, port: db.port, user: db.user, database: db.database, connectionTimeoutMillis: 10_000 });
  c.on('error', () => undefined); // vanished-client tests kill sockets on purpose
  clients.add(c);
  await c.connect();
  return c;
}

function psql(sql: string, conninfo?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const info = conninfo ?? `host=${db.host} port=${db.port} user=${db.user} dbname=${db.database} sslmode=disable`;
  return new Promise((resolve) => {
    const child = execFile('psql', [info, '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout).trim(), stderr: String(stderr) }),
    );
    child.stdin?.end(); // psql skips stdin data after a failed COPY FROM STDIN
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(10)) if (Date.now() > end) throw new Error('waitFor timed out');
}
const settled = <T>(p: Promise<T>) => Promise.race([p.then(() => true, () => true), sleep(300).then(() => false)]);

function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

describe('embedded demo database', () => {
  it('listens on a real port and reports the role and database PGlite runs as', () => {
    expect(db.host).toBe('127.0.0.1');
    expect(db.port).toBeGreaterThan(0);
    expect(db.user).toBe('postgres');
    expect(db.database).toBe('postgres');
  });

  it('serves the seeded PII tables to psql', async () => {
    const counts = await psql('SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders), (SELECT count(*) FROM audit_notes)');
    expect(counts.stderr).toBe('');
    expect(counts.stdout).toBe(`${SEED_COUNTS.users}|${SEED_COUNTS.orders}|${SEED_COUNTS.audit_notes}`);

    const users = await psql('SELECT email, phone, card_number, ssn FROM users ORDER BY id');
    const rows = users.stdout.split('\n').map((l) => l.split('|'));
    expect(rows).toHaveLength(SEED_COUNTS.users);
    for (const [email, phone, card, ssn] of rows) {
      expect(email).toMatch(/^[a-z.]+@example\.(com|org|net)$/);
      expect(phone).toMatch(/^\+[1-9]\d{9,14}$/);
      expect(card).toMatch(/^\d{13,19}$/);
      expect(luhnValid(card!), card).toBe(true);
      expect(ssn).toMatch(/^9\d{2}-\d{2}-\d{4}$/);
    }
    expect(new Set(rows.map((r) => r[2])).size).toBe(SEED_COUNTS.users);

    const orphans = await psql('SELECT count(*) FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id IS NULL');
    expect(orphans.stdout).toBe('0');
  });

  it('accepts any user and dbname in the startup packet and ignores them', async () => {
    const r = await psql('SELECT current_user, current_database()', `host=${db.host} port=${db.port} user=alice dbname=anything sslmode=disable`);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('postgres|postgres');
  });

  it('keeps each transaction on its own connection while four clients run concurrently', async () => {
    const setup = await connect();
    await setup.query('CREATE TABLE tx_probe (client int NOT NULL); CREATE SEQUENCE tx_ticket');
    const cs = await Promise.all([0, 1, 2, 3].map(() => connect()));
    // 0 and 2 commit, 1 rolls back, 3 fails mid-transaction and rolls back.
    const outcomes = await Promise.all(
      cs.map(async (c, i) => {
        await c.query('BEGIN');
        // Sequences ignore transactions, so the ticket records the order in
        // which transactions actually ran.
        const ticket = Number((await c.query<{ t: string }>("SELECT nextval('tx_ticket') AS t")).rows[0]!.t);
        await c.query('INSERT INTO tx_probe VALUES ($1)', [i]);
        await sleep(40); // hold the transaction open while the others queue up
        let failedState: string | undefined;
        if (i === 3) {
          await c.query('SELECT 1/0').catch(() => undefined);
          failedState = await c.query('SELECT 1').then(() => 'ok', (e: { code?: string }) => e.code);
        }
        const seen = i === 3 ? [] : (await c.query<{ client: number }>('SELECT client FROM tx_probe ORDER BY client')).rows.map((r) => r.client);
        await c.query(i === 0 || i === 2 ? 'COMMIT' : 'ROLLBACK');
        return { i, ticket, seen, failedState };
      }),
    );

    expect(outcomes.map((o) => o.ticket).sort()).toEqual([1, 2, 3, 4]);
    for (const o of outcomes.filter((x) => x.i !== 3)) {
      // Exactly its own row plus rows of committers that ran before it: no
      // other client's uncommitted row, no rolled-back row, no lost commit.
      const expected = outcomes.filter((x) => (x.i === 0 || x.i === 2) && x.ticket < o.ticket).map((x) => x.i);
      expect(o.seen, `client ${o.i}`).toEqual([...expected, o.i].sort());
    }
    expect(outcomes[3]!.failedState).toBe('25P02'); // the aborted state stayed on client 3
    const final = await setup.query<{ client: number }>('SELECT client FROM tx_probe ORDER BY client');
    expect(final.rows.map((r) => r.client)).toEqual([0, 2]);
    await setup.query('DROP TABLE tx_probe; DROP SEQUENCE tx_ticket');
  });

  it('makes other clients, and new connections, wait while one is inside a transaction', async () => {
    const a = await connect();
    const b = await connect();
    await a.query('BEGIN');
    const bQuery = b.query('SELECT 1 AS v');
    const cConnect = connect();
    expect(await settled(bQuery)).toBe(false);
    expect(await settled(cConnect)).toBe(false);
    await a.query('COMMIT');
    expect((await bQuery).rows[0]).toEqual({ v: 1 });
    const c = await cConnect;
    expect((await c.query('SELECT 2 AS v')).rows[0]).toEqual({ v: 2 });
  });

  it('rolls back and unblocks everyone when a client vanishes mid-transaction', async () => {
    const setup = await connect();
    await setup.query('CREATE TABLE vanish_probe (note text)');
    const a = await connect();
    const b = await connect();
    await a.query('BEGIN');
    await a.query("INSERT INTO vanish_probe VALUES ('ghost')");
    const waiting = b.query<{ n: number }>('SELECT count(*)::int AS n FROM vanish_probe');
    expect(await settled(waiting)).toBe(false);

    (a as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();

    expect((await waiting).rows[0]!.n).toBe(0);
    const c = await connect();
    await c.query("INSERT INTO vanish_probe VALUES ('kept')");
    expect((await b.query('SELECT note FROM vanish_probe')).rows).toEqual([{ note: 'kept' }]);
    await setup.query('DROP TABLE vanish_probe');
  });

  it('rejects COPY FROM STDIN instead of letting it crash PGlite', async () => {
    const a = await connect();
    await expect(a.query('COPY audit_notes FROM STDIN')).rejects.toMatchObject({ code: '0A000' });
    await expect(a.query({ name: 'copy_in', text: 'COPY audit_notes FROM STDIN' })).rejects.toMatchObject({ code: '0A000' });
    const viaPsql = await psql(String.raw`\copy audit_notes FROM '/dev/null'`);
    expect(viaPsql.code).not.toBe(0);
    expect(viaPsql.stderr).toContain('not supported by the embedded demo database');
    // COPY TO STDOUT is fine and the database is still alive.
    expect((await psql('COPY (SELECT count(*) FROM users) TO STDOUT')).stdout).toBe(String(SEED_COUNTS.users));
    expect((await a.query('SELECT 1 AS v')).rows[0]).toEqual({ v: 1 });
  });

  it('answers an invalid message type with FATAL instead of hanging the process', async () => {
    const sock = net.connect(db.port, db.host);
    const received: Buffer[] = [];
    sock.on('data', (d: Buffer) => received.push(d));
    sock.on('error', () => undefined); // a refused/reset socket fails the assertions below instead
    await new Promise((r) => sock.once('connect', r));
    const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(196608, 4);
    params.copy(startup, 8);
    sock.write(startup);
    await waitFor(() => Buffer.concat(received).includes('Z\0\0\0\x05I', 0, 'latin1'));
    received.length = 0;
    sock.write(Buffer.from([0x70, 0, 0, 0, 4])); // 'p' outside authentication
    await waitFor(() => received.length > 0);
    sock.destroy();
    const reply = Buffer.concat(received).toString('latin1');
    expect(reply.startsWith('E')).toBe(true);
    expect(reply).toContain('08P01');
    expect((await psql('SELECT 42')).stdout).toBe('42');
  });

  it('resets session state once the last client has gone', async () => {
    const a = await connect();
    await a.query("SET search_path = pg_catalog; SET application_name = 'leaky'");
    await a.query('CREATE TEMP TABLE leak_probe (x int)');
    await a.end();
    clients.delete(a);
    await sleep(200);
    const b = await connect();
    const r = await b.query("SELECT current_setting('application_name') AS app, to_regclass('pg_temp.leak_probe') AS tmp, array_to_string(current_schemas(false), ',') AS schemas");
    expect(r.rows[0]).toEqual({ app: '', tmp: null, schemas: 'public' });
  });

  it('stops cleanly with a client mid-transaction and frees the port', async () => {
    const a = await connect();
    await a.query('BEGIN');
    await a.query('SELECT 1');
    const ended = new Promise((r) => a.once('end', r));
    await db.stop();
    await ended;
    await sleep(50);
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(db.port, db.host);
      s.once('connect', () => (s.destroy(), resolve('connected')));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(unhandled).toEqual([]);
  });
});

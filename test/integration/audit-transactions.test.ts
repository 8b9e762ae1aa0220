// Whether a statement's transaction committed or rolled back, as the trail
// tells it against the real PostgreSQL: outcomes carry the session's txn, and
// a transaction_end event closes every explicit block (and an implicit one
// whose commit failed). Also: the policy loads and reloads are recorded.

import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg } from '../helpers/rawpg.js';
import { PG, requirePostgres } from '../helpers/services.js';

type Event = Record<string, any>;

let d: TestDaemon;
const TABLE = `audit_tx_${process.pid}`;

beforeAll(async () => {
  await requirePostgres();
  const admin = new pg.Client({ ...PG });
  await admin.connect();
  await admin.query(`DROP TABLE IF EXISTS ${TABLE}_child, ${TABLE}`);
  await admin.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY)`);
  await admin.query(`CREATE TABLE ${TABLE}_child (parent int REFERENCES ${TABLE}(id) DEFERRABLE INITIALLY DEFERRED)`);
  await admin.end();
  d = await startTestDaemon();
});
afterAll(async () => {
  await d?.stop();
  const admin = new pg.Client({ ...PG });
  await admin.connect();
  await admin.query(`DROP TABLE IF EXISTS ${TABLE}_child, ${TABLE}`);
  await admin.end();
});

/** Runs `work` in its own session (application_name `app`) and returns that session's events once it ended. */
async function session(app: string, work: (c: pg.Client) => Promise<void>, end: 'close' | 'destroy' = 'close'): Promise<Event[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: PG.database, user: 'tx', application_name: app });
  await c.connect();
  await work(c);
  if (end === 'close') await c.end();
  else {
    c.on('error', () => undefined); // the point: the connection goes away mid-block
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  }
  let id = '';
  await expect.poll(() => {
    const start = d.audit().find((e) => e.type === 'session_start' && e.client.application === app);
    id = start?.session ?? '';
    return d.audit().some((e) => e.type === 'session_end' && e.session === id);
  }).toBe(true);
  return d.audit().filter((e) => e.session === id);
}

/** The txn of the outcome of the statement with `text`. */
function txnOf(events: Event[], text: string): number {
  const s = events.find((e) => e.type === 'statement' && e.statement.text === text);
  expect(s, text).toBeDefined();
  return events.find((e) => e.type === 'statement_outcome' && e.statement_id === s!.id)!.txn as number;
}

const ends = (events: Event[]): Event[] => events.filter((e) => e.type === 'transaction_end');

describe('transaction fate in the trail', () => {
  it('autocommit statements each get their own txn and no transaction_end', async () => {
    const ev = await session('tx-auto', async (c) => {
      await c.query(`INSERT INTO ${TABLE} VALUES (1)`);
      await c.query(`INSERT INTO ${TABLE} VALUES (2)`);
    });
    expect(txnOf(ev, `INSERT INTO ${TABLE} VALUES (2)`)).toBe(txnOf(ev, `INSERT INTO ${TABLE} VALUES (1)`) + 1);
    expect(ends(ev)).toEqual([]);
  });

  it('a committed block: one txn for its statements, transaction_end committed', async () => {
    const ev = await session('tx-commit', async (c) => {
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${TABLE} VALUES (10)`);
      await c.query('COMMIT');
    });
    const txn = txnOf(ev, 'BEGIN');
    expect(txnOf(ev, `INSERT INTO ${TABLE} VALUES (10)`)).toBe(txn);
    expect(txnOf(ev, 'COMMIT')).toBe(txn);
    expect(ends(ev)).toMatchObject([{ txn, result: 'committed', statements: 3 }]);
  });

  it('ROLLBACK, and COMMIT of a failed block, are rolled_back', async () => {
    const ev = await session('tx-rollback', async (c) => {
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${TABLE} VALUES (20)`);
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      await c.query('SELECT no_such_column').catch(() => undefined);
      await c.query('COMMIT');
    });
    expect(ends(ev).map((e) => e.result)).toEqual(['rolled_back', 'rolled_back']);
    expect(ends(ev)[0]!.txn).toBe(txnOf(ev, 'ROLLBACK'));
  });

  it('a block recovered with ROLLBACK TO SAVEPOINT commits', async () => {
    const ev = await session('tx-savepoint', async (c) => {
      await c.query('BEGIN');
      await c.query('SAVEPOINT s');
      await c.query('SELECT no_such_column').catch(() => undefined);
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query(`INSERT INTO ${TABLE} VALUES (30)`);
      await c.query('COMMIT');
    });
    expect(ends(ev)).toMatchObject([{ result: 'committed', statements: 6 }]);
  });

  it('an implicit commit that fails at Sync (deferred constraint) is rolled_back, though the statement itself completed', async () => {
    const text = `INSERT INTO ${TABLE}_child VALUES ($1)`;
    const ev = await session('tx-deferred', async (c) => {
      await expect(c.query(text, [999])).rejects.toThrow(/foreign key/);
    });
    const txn = txnOf(ev, text);
    expect(ends(ev)).toMatchObject([{ txn, result: 'rolled_back' }]);
  });

  it('a whole block inside one simple Query is recorded with its fate', async () => {
    const text = `BEGIN; INSERT INTO ${TABLE} VALUES (50); ROLLBACK`;
    const ev = await session('tx-one-query', async (c) => {
      await c.query(text);
    });
    expect(ends(ev)).toMatchObject([{ txn: txnOf(ev, text), result: 'rolled_back', statements: 1 }]);
  });

  it('a pipeline of Executes up to one Sync where a later one fails: the earlier, ok one is rolled back too', async () => {
    const raw = await RawPg.login(d.port, 'tx-pipeline', PG.database);
    const ok = `INSERT INTO ${TABLE} VALUES (60)`;
    const bad = `INSERT INTO ${TABLE} VALUES (60)`.replace('(60)', '(1)'); // id 1 exists: unique violation
    raw.send(Buffer.concat([
      serialize.parse({ text: ok }), serialize.bind({}), serialize.execute({}),
      serialize.parse({ text: bad }), serialize.bind({}), serialize.execute({}),
      serialize.sync(),
    ]));
    await raw.until('readyForQuery');
    raw.send(serialize.end());
    raw.end();
    let events: Event[] = [];
    await expect.poll(() => {
      const start = d.audit().find((e) => e.type === 'session_start' && e.identity.user === 'tx-pipeline');
      events = d.audit().filter((e) => e.session === start?.session);
      return events.some((e) => e.type === 'session_end');
    }).toBe(true);
    const outcomes = events.filter((e) => e.type === 'statement_outcome');
    expect(outcomes.map((o) => o.outcome.status)).toEqual(['ok', 'error']);
    expect(outcomes[0]!.txn).toBe(outcomes[1]!.txn);
    expect(ends(events)).toMatchObject([{ txn: outcomes[0]!.txn, result: 'rolled_back', statements: 2 }]);
    const check = new pg.Client({ ...PG });
    await check.connect();
    expect((await check.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id = 60`)).rows[0].n).toBe(0);
    await check.end();
  });

  it('a session that ends inside a block records it rolled_back', async () => {
    const ev = await session('tx-abandoned', async (c) => {
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${TABLE} VALUES (40)`);
    }, 'destroy');
    expect(ends(ev)).toMatchObject([{ result: 'rolled_back', statements: 2 }]);
    const check = new pg.Client({ ...PG });
    await check.connect();
    expect((await check.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id = 40`)).rows[0].n).toBe(0);
    await check.end();
  });
});

describe('policy loads in the trail', () => {
  it('records the policy in force at start and each reload, with a digest of its files', async () => {
    const start = d.audit().find((e) => e.type === 'policy_reload' && e.trigger === 'start')!;
    expect(start).toMatchObject({ session: '-', result: 'applied', rules: expect.any(Number) });
    expect(start.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(start.files.length).toBeGreaterThan(0);
    const policyFile = start.files[0] as string;
    const original = fs.readFileSync(policyFile, 'utf8');
    try {
      fs.writeFileSync(policyFile, 'rules: [ {');
      expect(d.daemon.reloadPolicy()).toBe(false);
      fs.writeFileSync(policyFile, `${original}\n# edited\n`);
      expect(d.daemon.reloadPolicy()).toBe(true);
    } finally {
      fs.writeFileSync(policyFile, original);
    }
    await expect.poll(() => d.audit().filter((e) => e.type === 'policy_reload' && e.trigger === 'SIGHUP').length).toBe(2);
    const [invalid, applied] = d.audit().filter((e) => e.type === 'policy_reload' && e.trigger === 'SIGHUP');
    expect(invalid).toMatchObject({ result: 'invalid', rules: start.rules, error: expect.any(String) });
    expect(invalid!.digest).toBeUndefined();
    expect(applied).toMatchObject({ result: 'applied' });
    expect(applied!.digest).not.toBe(start.digest);
  });
});

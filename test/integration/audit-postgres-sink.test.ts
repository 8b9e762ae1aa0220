// The PostgreSQL audit sink against a real PostgreSQL: the primary role (group
// commit, chain recovery, refusal and recovery when the table cannot be
// written) and the secondary role (idempotent redelivery, heads row, bounded
// queue). Every test ends by checking that each node's stored chain verifies.

import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Chain, GENESIS, macValid, unseal } from '../../src/audit/chain.js';
import { isoMicros, type SinkObserver } from '../../src/audit/events.js';
import { jsonbText, PostgresAuditSink, PostgresSecondarySink, readPostgresHead } from '../../src/audit/postgres-sink.js';
import type { PostgresAuditConfig } from '../../src/config/types.js';
import { PG, requirePostgres } from '../helpers/services.js';

const key = Buffer.from('an audit chain key of at least thirty-two bytes');
/** What the sinks logged at warn and above, for the cases only a log reports. */
const logged: { msg: string; [k: string]: unknown }[] = [];
const log = pino({ level: 'warn' }, { write: (s: string) => { logged.push(JSON.parse(s)); } });
const suffix = randomBytes(4).toString('hex');
const created: string[] = [];
let admin: pg.Client;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  await requirePostgres();
  admin = new pg.Client({ ...PG });
  await admin.connect();
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(async () => {
  for (const t of created) await admin.query(`DROP TABLE IF EXISTS ${t}, ${t}_heads, ${t}_moved`);
  await admin.query(`DROP SCHEMA IF EXISTS s_${suffix} CASCADE`);
  await admin?.end();
});

let tableNo = 0;
function config(over: Partial<PostgresAuditConfig> = {}): PostgresAuditConfig {
  const table = `dbward_audit_t${suffix}_${tableNo++}`;
  created.push(table);
  return { host: PG.host, port: PG.port, database: PG.database, user: PG.user, password: { none: true }, tls: { mode: 'disable' }, table, maxQueue: 1000, ...over };
}

function line(type = 'statement', extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ v: 1, id: randomUUID(), time: isoMicros(), session: 'sess-1', type, ...extra });
}

interface Recorded extends SinkObserver {
  batches: number[];
  failures: Error[];
  droppedLines: number;
}
function recorder(): Recorded {
  const r: Recorded = {
    batches: [], failures: [], droppedLines: 0,
    written: (n) => { r.batches.push(n); },
    failed: (err) => { r.failures.push(err); },
    dropped: (n) => { r.droppedLines += n; },
  };
  return r;
}

async function openPrimary(cfg: PostgresAuditConfig, node: string, obs: SinkObserver = {}, options = {}): Promise<PostgresAuditSink> {
  const sink = await PostgresAuditSink.open(cfg, node, key, obs, log, options);
  closers.push(() => sink.close());
  return sink;
}

async function rows(table: string, node: string): Promise<{ seq: string; line: string; type: string; session: string; time: Date; event: any }[]> {
  return (await admin.query(`SELECT seq, line, type, session, time, event FROM ${table} WHERE node = $1 ORDER BY seq`, [node])).rows;
}

/** Checks the node's stored chain: every mac valid, seqs 1..n without a gap, each prev the mac before it. */
async function expectChain(table: string, node: string, count: number): Promise<void> {
  const stored = await rows(table, node);
  expect(stored).toHaveLength(count);
  let prev = GENESIS;
  stored.forEach((r, i) => {
    const s = unseal(r.line);
    expect(s, `line ${i + 1} carries a chain field`).not.toBeNull();
    expect(macValid(key, s!)).toBe(true);
    expect(s!.seq).toBe(i + 1);
    expect(Number(r.seq)).toBe(i + 1);
    expect(s!.prev).toBe(prev);
    prev = s!.mac;
  });
  const head = await readPostgresHead(admin, table, node);
  expect(head).toEqual(count === 0 ? null : { seq: count, mac: prev });
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The backends of the sinks writing `$1` (other tests may run sinks of their own). */
const SINK_BACKENDS = `SELECT pid FROM pg_stat_activity WHERE application_name = 'dbward-audit' AND position($1 in query) > 0`;

/**
 * A loopback TCP proxy to PostgreSQL that can lose the server's next reply
 * (the statement has committed; the client never hears so) and refuse new
 * connections: the one case a real server cannot be made to produce on cue.
 */
async function cuttingProxy(): Promise<{ port: number; cutNextReply: boolean; refuse: boolean; cuts: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (state.refuse) return void client.destroy();
    const upstream = net.connect({ host: PG.host, port: PG.port });
    sockets.add(client).add(upstream);
    const drop = (): void => { client.destroy(); upstream.destroy(); };
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (state.armed.has(client)) {
        state.cutNextReply = false;
        state.cuts++;
        return drop();
      }
      client.write(d);
    });
    client.on('close', drop).on('error', drop);
    upstream.on('close', drop).on('error', drop);
  });
  const state = {
    port: 0, refuse: false, cuts: 0, armed: new Set<net.Socket>(),
    get cutNextReply(): boolean { return this.armed.size > 0; },
    set cutNextReply(on: boolean) {
      // Armed for the connections open now: the next reply on them is lost.
      this.armed = on ? new Set([...sockets].filter((s) => !s.destroyed && s.remotePort !== PG.port)) : new Set();
    },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

describe('primary', () => {
  it('stores a committed line byte for byte, with its columns and the heads row', async () => {
    const cfg = config();
    const sink = await openPrimary(cfg, 'node-a');
    expect(sink.healthy).toBe(true);
    const body = line('statement', { statement: { text: 'SELECT "quoted", \'ü\' -- ✓' } });
    await sink.commit(body);
    const [r] = await rows(cfg.table, 'node-a');
    const s = unseal(r!.line)!;
    expect(s.body).toBe(body);
    expect(r!.line.startsWith(body.slice(0, -1))).toBe(true);
    expect(r!.type).toBe('statement');
    expect(r!.session).toBe('sess-1');
    expect(r!.event.statement.text).toBe('SELECT "quoted", \'ü\' -- ✓');
    expect(r!.event.chain.seq).toBe(1);
    expect(r!.time.toISOString().slice(0, 23)).toBe(JSON.parse(body).time.slice(0, 23));
    expect(sink.head).toEqual({ seq: 1, mac: s.mac });
    await expectChain(cfg.table, 'node-a', 1);
  });

  it('continues the chain across a re-open, and writes appended lines at close', async () => {
    const cfg = config();
    const first = await openPrimary(cfg, 'node-a');
    await first.commit(line());
    first.append(line('statement_outcome'));
    await first.commit(line());
    first.append(line('session_end'));
    await first.close();
    await expectChain(cfg.table, 'node-a', 4);

    // Without the heads row the newest line gives the head.
    await admin.query(`DELETE FROM ${cfg.table}_heads`);
    const second = await openPrimary(cfg, 'node-a');
    expect(second.head.seq).toBe(4);
    await second.commit(line());
    await expectChain(cfg.table, 'node-a', 5);
    expect((await rows(cfg.table, 'node-a')).map((r) => r.type)).toEqual(['statement', 'statement_outcome', 'statement', 'session_end', 'statement']);
  });

  it('group-commits concurrent lines: fewer statements than lines', async () => {
    const cfg = config();
    const obs = recorder();
    const sink = await openPrimary(cfg, 'node-a', obs);
    const bodies = Array.from({ length: 300 }, (_, i) => line('statement', { n: i }));
    const waits: Promise<void>[] = [];
    bodies.forEach((b, i) => {
      if (i % 3 === 2) sink.append(b);
      else waits.push(sink.commit(b));
    });
    await Promise.all(waits);
    await until('appended lines', async () => (await rows(cfg.table, 'node-a')).length === 300);
    expect(obs.batches.reduce((a, b) => a + b, 0)).toBe(300);
    expect(obs.batches.length).toBeLessThan(10);
    // Chain order is the order the lines were given in.
    expect((await rows(cfg.table, 'node-a')).map((r) => unseal(r.line)!.body)).toEqual(bodies);
    await expectChain(cfg.table, 'node-a', 300);
  });

  it('refuses commits while the table cannot be written, keeps appended lines, and recovers without a gap', async () => {
    const cfg = config();
    const obs = recorder();
    const sink = await openPrimary(cfg, 'node-a', obs, { retryMaxMs: 200 });
    await sink.commit(line());
    await admin.query(`ALTER TABLE ${cfg.table} RENAME TO ${cfg.table}_moved`);

    const refused = line('statement', { refused: true });
    await expect(sink.commit(refused)).rejects.toThrow(/audit event not recorded: relation .* does not exist/);
    expect(sink.healthy).toBe(false);
    expect(obs.failures.length).toBeGreaterThan(0);
    const kept = line('session_end', { kept: true });
    sink.append(kept);
    await expect(sink.commit(line())).rejects.toThrow(/not recorded/);

    await admin.query(`ALTER TABLE ${cfg.table}_moved RENAME TO ${cfg.table.split('.').pop()}`);
    // The appended line is retried in the background; healthy again once it is written.
    await until('recovery', () => sink.healthy);
    const after = line();
    await sink.commit(after);
    const bodies = (await rows(cfg.table, 'node-a')).map((r) => unseal(r.line)!.body);
    expect(bodies).not.toContain(refused);
    expect(bodies.slice(1)).toEqual([kept, after]);
    await expectChain(cfg.table, 'node-a', 3);
  });

  it('refuses a commit held up by a lock past the statement timeout', async () => {
    const cfg = config();
    const sink = await openPrimary(cfg, 'node-a', {}, { statementTimeoutMs: 300, retryMaxMs: 200 });
    await sink.commit(line());
    const locker = new pg.Client({ ...PG });
    await locker.connect();
    closers.push(() => locker.end());
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${cfg.table} IN ACCESS EXCLUSIVE MODE`);
    const started = Date.now();
    await expect(sink.commit(line())).rejects.toThrow(/statement timeout/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(sink.healthy).toBe(false);
    await locker.query('ROLLBACK');
    await sink.commit(line());
    expect(sink.healthy).toBe(true);
    await expectChain(cfg.table, 'node-a', 2);
  });

  it('retries once on a new connection when its backend is killed mid-write; refuses when that fails too', async () => {
    const cfg = config();
    const sink = await openPrimary(cfg, 'node-a', {}, { retryMaxMs: 200 });
    await sink.commit(line());
    const locker = new pg.Client({ ...PG });
    await locker.connect();
    closers.push(() => locker.end());
    const waitingOnLock = async (): Promise<number[]> => (await admin.query(
      `${SINK_BACKENDS} AND wait_event_type = 'Lock'`, [cfg.table])).rows.map((r) => r.pid as number);
    const killWaiting = async (): Promise<void> => {
      let pids: number[] = [];
      await until('a write waiting on the lock', async () => (pids = await waitingOnLock()).length === 1);
      await admin.query('SELECT pg_terminate_backend($1)', [pids[0]]);
    };

    // Killed once: the retry on a new connection goes through once the lock is gone.
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${cfg.table} IN ACCESS EXCLUSIVE MODE`);
    const survived = sink.commit(line());
    await killWaiting();
    await until('the retry to wait on the lock', async () => (await waitingOnLock()).length === 1);
    await locker.query('ROLLBACK');
    await survived;
    expect(sink.healthy).toBe(true);
    await expectChain(cfg.table, 'node-a', 2);

    // Killed twice: refused; the appended line of the batch is kept and written on recovery.
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${cfg.table} IN ACCESS EXCLUSIVE MODE`);
    const kept = line('statement_outcome');
    sink.append(kept);
    const refused = sink.commit(line());
    refused.catch(() => undefined);
    await killWaiting();
    await killWaiting();
    await expect(refused).rejects.toThrow(/not recorded/);
    expect(sink.healthy).toBe(false);
    await locker.query('ROLLBACK');
    await until('recovery', () => sink.healthy);
    await sink.commit(line());
    expect((await rows(cfg.table, 'node-a')).map((r) => r.type)).toEqual(['statement', 'statement', 'statement_outcome', 'statement']);
    await expectChain(cfg.table, 'node-a', 4);

    // An idle connection killed between writes is replaced without refusing anything.
    await admin.query(`SELECT pg_terminate_backend(pid) FROM (${SINK_BACKENDS}) b`, [cfg.table]);
    await sink.commit(line());
    await expectChain(cfg.table, 'node-a', 5);
  });

  it('finds out that a write whose reply was lost did commit, and neither repeats nor forks it', async () => {
    const proxy = await cuttingProxy();
    closers.push(() => proxy.close());
    const cfg = config({ port: proxy.port });
    const sink = await openPrimary(cfg, 'node-a', {}, { retryMaxMs: 200 });
    await sink.commit(line());

    // The reply is lost, the retry's new connection learns the batch is stored: the commit succeeds.
    proxy.cutNextReply = true;
    const appended = line('statement_outcome');
    sink.append(appended);
    await sink.commit(line());
    expect(proxy.cuts).toBe(1);
    await expectChain(cfg.table, 'node-a', 3);

    // The same, but no new connection can be had at once: refused, then found stored; the appended line is not written twice.
    proxy.cutNextReply = true;
    proxy.refuse = true;
    sink.append(line('statement_outcome'));
    await expect(sink.commit(line())).rejects.toThrow(/not recorded/);
    expect(proxy.cuts).toBe(2);
    expect(sink.healthy).toBe(false);
    proxy.refuse = false;
    await until('recovery', () => sink.healthy);
    await sink.commit(line());
    expect((await rows(cfg.table, 'node-a')).map((r) => r.type)).toEqual(['statement', 'statement_outcome', 'statement', 'statement_outcome', 'statement', 'statement']);
    await expectChain(cfg.table, 'node-a', 6);
  });

  it('keeps one chain per node in a shared table', async () => {
    const cfg = config({ table: `s_${suffix}.audit` });
    await admin.query(`CREATE SCHEMA s_${suffix}`);
    const a = await openPrimary(cfg, 'node-a');
    const b = await openPrimary(cfg, 'node-b');
    const waits: Promise<void>[] = [];
    for (let i = 0; i < 20; i++) waits.push(a.commit(line()), b.commit(line()));
    await Promise.all(waits);
    await expectChain(cfg.table, 'node-a', 20);
    await expectChain(cfg.table, 'node-b', 20);
    expect((await admin.query(`SELECT node FROM ${cfg.table}_heads ORDER BY node`)).rows.map((r) => r.node)).toEqual(['node-a', 'node-b']);
    expect(await readPostgresHead(cfg, cfg.table, 'node-b')).toEqual(b.head);
    expect(await readPostgresHead(cfg, cfg.table, 'node-c')).toBeNull();
  });

  it('stores lines jsonb would refuse (\\u0000, a lone surrogate) exactly, with a readable event', async () => {
    const cfg = config();
    const sink = await openPrimary(cfg, 'node-a');
    const body = line('session_start', { identity: { name: 'a\u0000b', email: 'x\ud800y', ok: '\ud83d\ude00', text: 'lit\\u0000eral' } });
    expect(body).toContain('\\u0000');
    await sink.commit(body);
    const [r] = await rows(cfg.table, 'node-a');
    expect(unseal(r!.line)!.body).toBe(body);
    expect(r!.event.identity).toEqual({ name: 'a\ufffdb', email: 'x\ufffdy', ok: '\ud83d\ude00', text: 'lit\\u0000eral' });
    await expectChain(cfg.table, 'node-a', 1);
  });

  it('fails to open, with a clear error, when the database is unreachable', async () => {
    const port = await closedPort();
    await expect(PostgresAuditSink.open(config({ port }), 'node-a', key, {}, log)).rejects.toThrow(/audit.postgres: cannot open the audit table .* at root@127\.0\.0\.1:\d+\/test: .*ECONNREFUSED/);
  });
});

describe('jsonbText', () => {
  it('rewrites only the escapes jsonb refuses', () => {
    expect(jsonbText('{"a":"plain"}')).toBeNull();
    expect(jsonbText('{"a":"\\u001b ok"}')).toBeNull();
    expect(jsonbText(JSON.stringify({ a: '\ud83d\ude00' }))).toBeNull();
    expect(jsonbText('{"a":"\\ud83d\\ude00"}')).toBeNull();
    expect(jsonbText('{"a":"\\\\u0000"}')).toBeNull();
    expect(jsonbText('{"a":"\\u0000","b":"\\\\\\u0000"}')).toBe('{"a":"\\ufffd","b":"\\\\\\ufffd"}');
    expect(jsonbText('{"a":"\\udc00\\ud800x\\ud800"}')).toBe('{"a":"\\ufffd\\ufffdx\\ufffd"}');
  });
});

/** Lines as the primary (file) sink would seal them. */
function sealedLines(chain: Chain, n: number): string[] {
  return Array.from({ length: n }, (_, i) => chain.seal(line(i % 2 ? 'statement_outcome' : 'statement', { n: i })));
}

async function openSecondary(cfg: PostgresAuditConfig, node: string, obs: SinkObserver = {}, options = {}): Promise<PostgresSecondarySink> {
  const sink = await PostgresSecondarySink.create(cfg, node, obs, log, { retryMaxMs: 200, ...options });
  closers.push(() => sink.close(1000));
  return sink;
}

describe('secondary', () => {
  it('stores sealed lines, keeps the heads row at the last one, and ignores redelivery', async () => {
    const cfg = config();
    const obs = recorder();
    const sink = await openSecondary(cfg, 'node-f', obs);
    const chain = new Chain(key);
    const lines = sealedLines(chain, 50);
    sink.deliver(lines.slice(0, 30));
    sink.deliver(lines.slice(30));
    await until('50 lines', () => obs.batches.reduce((a, b) => a + b, 0) === 50);
    expect((await rows(cfg.table, 'node-f')).map((r) => r.line)).toEqual(lines);
    await expectChain(cfg.table, 'node-f', 50);
    expect(await readPostgresHead(admin, cfg.table, 'node-f')).toEqual(chain.head);

    // A retry after an unknown outcome resends lines already stored; the heads row never moves back.
    sink.deliver(lines.slice(10, 20));
    await until('redelivery', () => obs.batches.reduce((a, b) => a + b, 0) === 60);
    expect(await readPostgresHead(admin, cfg.table, 'node-f')).toEqual(chain.head);
    // A chain begun again (its file lost) collides with stored seqs: nothing is overwritten, and it is reported.
    const restarted = sealedLines(new Chain(key), 2);
    sink.deliver(restarted);
    await until('the restarted lines', () => obs.batches.reduce((a, b) => a + b, 0) === 62);
    expect(logged.some((l) => l.msg.includes('chain restarted') && l.count === 2)).toBe(true);
    expect((await rows(cfg.table, 'node-f')).slice(0, 2).map((r) => r.line)).toEqual(lines.slice(0, 2));
    expect(await readPostgresHead(admin, cfg.table, 'node-f')).toEqual(chain.head);
    const more = sealedLines(chain, 5);
    sink.deliver(lines.slice(45).concat(more));
    await until('new lines', () => obs.batches.reduce((a, b) => a + b, 0) === 72);
    expect(obs.failures).toEqual([]);
    expect(sink.healthy).toBe(true);
    await expectChain(cfg.table, 'node-f', 55);
    expect(await readPostgresHead(admin, cfg.table, 'node-f')).toEqual(chain.head);
  });

  it('queues while the table cannot be written, drops the oldest past max_queue, and catches up', async () => {
    const cfg = config({ maxQueue: 10 });
    const obs = recorder();
    const sink = await openSecondary(cfg, 'node-f', obs);
    const chain = new Chain(key);
    const first = sealedLines(chain, 3);
    sink.deliver(first);
    await until('the first lines', () => obs.batches.length === 1);
    await admin.query(`ALTER TABLE ${cfg.table} RENAME TO ${cfg.table}_moved`);
    const lost = sealedLines(chain, 15);
    const kept = sealedLines(chain, 10);
    // Given at once while nothing is in flight: the 15 oldest go at once.
    expect(() => sink.deliver(lost.concat(kept))).not.toThrow();
    expect(obs.droppedLines).toBe(15);
    await until('a failed delivery', () => !sink.healthy);
    const more = sealedLines(chain, 4);
    sink.deliver(more);
    // Past the limit again: the oldest queued go (at once, or when a batch in flight comes back).
    await until('4 more dropped', () => obs.droppedLines === 19);
    await admin.query(`ALTER TABLE ${cfg.table}_moved RENAME TO ${cfg.table}`);
    await until('recovery', () => sink.healthy && obs.batches.reduce((a, b) => a + b, 0) === 13);
    expect((await rows(cfg.table, 'node-f')).map((r) => r.line)).toEqual(first.concat(kept.slice(4), more));
    expect(await readPostgresHead(admin, cfg.table, 'node-f')).toEqual(chain.head);
  });

  it('keeps chain order when a batch fails in flight with lines queued behind it', async () => {
    const cfg = config();
    const obs = recorder();
    const sink = await openSecondary(cfg, 'node-f', obs, { statementTimeoutMs: 300 });
    const chain = new Chain(key);
    const lines = sealedLines(chain, 13);
    sink.deliver(lines.slice(0, 3));
    await until('the first lines', () => obs.batches.length === 1);
    const locker = new pg.Client({ ...PG });
    await locker.connect();
    closers.push(() => locker.end());
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${cfg.table} IN ACCESS EXCLUSIVE MODE`);
    sink.deliver(lines.slice(3, 8));
    await until('the batch to wait on the lock', async () =>
      (await admin.query(`${SINK_BACKENDS} AND wait_event_type = 'Lock'`, [cfg.table])).rowCount === 1);
    sink.deliver(lines.slice(8));
    await until('the batch to time out', () => !sink.healthy);
    await locker.query('ROLLBACK');
    await until('recovery', () => sink.healthy && obs.batches.reduce((a, b) => a + b, 0) === 13);
    // Rows of a fresh table sit in the order they were inserted.
    const physical = await admin.query(`SELECT seq FROM ${cfg.table} ORDER BY ctid`);
    expect(physical.rows.map((r) => Number(r.seq))).toEqual(lines.map((_, i) => i + 1));
    await expectChain(cfg.table, 'node-f', 13);
  });

  it('starts without its database, reports unhealthy, and does not throw', async () => {
    const port = await closedPort();
    const obs = recorder();
    const sink = await openSecondary(config({ port }), 'node-f', obs);
    expect(sink.healthy).toBe(false);
    expect(() => sink.deliver(sealedLines(new Chain(key), 3))).not.toThrow();
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.healthy).toBe(false);
    expect(obs.failures.length).toBeGreaterThan(1);
    await sink.close(100);
    expect(obs.droppedLines).toBe(3);
  });
});

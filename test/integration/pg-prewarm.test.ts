// Prewarmed upstream connections (targets[].prewarm) against the real PostgreSQL,
// with real tokens from the in-process issuer, through psql and node-postgres:
// a session that finds a ready backend runs as its mapped role, under its own
// application_name, with a working cancel; backends are never reused and the pool
// refills; a bad token opens nothing; a target whose upstream goes away recovers.

import net from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdentitySettings } from '../../src/config/types.js';
import { resolveIdentityConfig } from '../../src/identity/types.js';
import { PREWARM_APPLICATION_NAME } from '../../src/proxy/postgres/prewarm.js';
import { pgTarget, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { startTestIssuer, type TestIssuer } from '../helpers/oidc.js';
import { PG, requirePostgres } from '../helpers/services.js';

const DBA_ROLE = 'dbward_pw_dba';
const DEV_ROLE = 'dbward_pw_dev';

/** A TCP forwarder to the real PostgreSQL: counts and holds the connections dbward opens, and can go down and up again on its port. */
class Forwarder {
  opened = 0;
  readonly live = new Set<net.Socket>();
  private server: net.Server | null = null;
  port = 0;

  async up(): Promise<void> {
    this.server = net.createServer((client) => {
      this.opened++;
      const upstream = net.connect(PG.port, PG.host);
      this.live.add(client);
      client.pipe(upstream).pipe(client);
      const gone = (): void => { this.live.delete(client); client.destroy(); upstream.destroy(); };
      client.on('error', gone).on('close', gone);
      upstream.on('error', gone).on('close', gone);
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Refuses new connections and cuts the open ones, as a database that went away. */
  async down(): Promise<void> {
    const s = this.server!;
    this.server = null;
    for (const c of this.live) c.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

async function admin(sql: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ ...PG });
  await c.connect();
  try { return await c.query(sql); } finally { await c.end(); }
}

function oidc(issuer: string): IdentitySettings {
  return { mode: 'oidc', verifier: resolveIdentityConfig({ issuer, audience: 'dbward', clockToleranceSec: 0 }), expiryGraceSec: 0 };
}

/** Pids of the idle prewarmed backends the server has now. */
async function prewarmedPids(): Promise<number[]> {
  const r = await admin(`SELECT pid FROM pg_stat_activity WHERE application_name = '${PREWARM_APPLICATION_NAME}' AND usename = '${PG.user}'`);
  return r.rows.map((row: { pid: number }) => row.pid);
}

let idp: TestIssuer;
let alice: string;
let bob: string;

beforeAll(async () => {
  await requirePostgres();
  for (const r of [DBA_ROLE, DEV_ROLE]) {
    await admin(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${r}') THEN CREATE ROLE ${r} NOLOGIN; END IF; END $$`);
    await admin(`GRANT ${r} TO ${PG.user}`);
  }
  idp = await startTestIssuer();
  [alice, bob] = await Promise.all([idp.mintToken('alice'), idp.mintToken('bob')]);
}, 60_000);

afterAll(async () => {
  await idp?.close();
});

/** A daemon with one prewarming target behind a fresh forwarder. */
async function setup(): Promise<{ d: TestDaemon; fwd: Forwarder }> {
  const fwd = new Forwarder();
  await fwd.up();
  const d = await startTestDaemon({
    identity: oidc(idp.issuer),
    listener: { allowPlaintextToken: true },
    targets: [pgTarget({ port: fwd.port, prewarm: 2, roles: [{ group: 'dba', role: DBA_ROLE }], defaultRole: DEV_ROLE })],
  });
  return { d, fwd };
}

async function metric(d: TestDaemon, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = d.daemon.metrics.registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
}

const conn = (port: number, user: string, extra = '') => `host=127.0.0.1 port=${port} dbname=test user=${user} sslmode=disable ${extra}`.trim();
const WHO = "SELECT current_user, current_setting('application_name'), pg_backend_pid()";

describe('prewarmed upstream connections', () => {
  let d: TestDaemon;
  let fwd: Forwarder;
  beforeAll(async () => { ({ d, fwd } = await setup()); }, 30_000);
  afterAll(async () => { await d?.stop(); await fwd?.down().catch(() => undefined); });

  it('warms after a first session; the next psql session takes a prewarmed backend, as its role and under its own name', async () => {
    const first = await psql(conn(d.port, 'alice@example.com', 'application_name=report'), ['-Atc', WHO], { env: { PGPASSWORD: alice } });
    expect(first.stderr).toBe('');
    expect(first.stdout.trim()).toMatch(new RegExp(`^${DBA_ROLE}\\|dbward:alice@example.com report\\|\\d+$`));
    expect(await metric(d, 'dbward_prewarm_sessions_total', { result: 'miss' })).toBe(1);
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBe(2);
    const ready = await prewarmedPids();
    expect(ready.length).toBeGreaterThanOrEqual(2);

    const second = await psql(conn(d.port, 'alice@example.com', 'application_name=report'), ['-Atc', WHO], { env: { PGPASSWORD: alice } });
    expect(second.stderr).toBe('');
    const [role, app, pid] = second.stdout.trim().split('|');
    expect(role).toBe(DBA_ROLE);
    expect(app).toBe('dbward:alice@example.com report');
    expect(ready).toContain(Number(pid));
    expect(await metric(d, 'dbward_prewarm_sessions_total', { result: 'hit' })).toBe(1);
    // The pool refills the one taken.
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBe(2);
    // A name with quotes and backslashes is a name, whatever the server's string settings: nothing of it runs.
    const odd = "x\\'; SELECT pg_sleep(0); -- \\";
    const third = await psql(conn(d.port, 'alice@example.com', `application_name='${odd.replace(/[\\']/g, (c) => `\\${c}`)}'`), ['-Atc', "SELECT current_setting('application_name')"], { env: { PGPASSWORD: alice } });
    expect(third.stderr).toBe('');
    expect(third.stdout.trim()).toBe(`dbward:alice@example.com ${odd}`);
    expect(await metric(d, 'dbward_prewarm_sessions_total', { result: 'hit' })).toBe(2);
  });

  it('node-postgres on a prewarmed backend: the ParameterStatus it is greeted with names its session, and cancel reaches its query', async () => {
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBe(2);
    const hitsBefore = await metric(d, 'dbward_prewarm_sessions_total', { result: 'hit' });
    // psql and node-postgres differ in their startup parameters (client_encoding): this client warms its own key first.
    const opts = { host: '127.0.0.1', port: d.port, database: 'test', user: 'alice@example.com', password: alice, application_name: 'agent' };
    const warm = new pg.Client(opts);
    await warm.connect();
    await warm.end();
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBe(4);

    const c = new pg.Client(opts);
    const reported = new Map<string, string>();
    // The client's own view of the greeting, before any query runs.
    (c as unknown as { connection: net.Socket }).connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => reported.set(m.parameterName, m.parameterValue));
    await c.connect();
    try {
      expect(await metric(d, 'dbward_prewarm_sessions_total', { result: 'hit' })).toBe(hitsBefore + 1);
      expect(reported.get('application_name')).toBe('dbward:alice@example.com agent');
      expect(reported.get('client_encoding')).toBe('UTF8');
      const r = await c.query(`${WHO}, pg_backend_pid() <> $1 AS own_key`, [(c as unknown as { processID: number }).processID]);
      expect(r.rows[0]).toMatchObject({ current_user: DBA_ROLE, current_setting: 'dbward:alice@example.com agent', own_key: true });

      const sleeping = c.query('SELECT pg_sleep(30)');
      const failed = sleeping.then(() => null, (e: { code?: string }) => e.code);
      // Wait until the query runs upstream, then cancel with the key dbward gave this client.
      await expect.poll(async () => (await admin(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${r.rows[0].pg_backend_pid} AND query = 'SELECT pg_sleep(30)' AND state = 'active'`)).rows[0].n,
        { timeout: 10_000 }).toBe(1);
      const keyed = c as unknown as { processID: number; secretKey: number };
      await new Promise<void>((resolve, reject) => {
        const s = net.connect(d.port, '127.0.0.1', () => s.end(serialize.cancel(keyed.processID, keyed.secretKey)));
        s.on('close', () => resolve()).on('error', reject);
      });
      expect(await failed).toBe('57014');
    } finally {
      await c.end();
    }
  });

  it('never hands a backend to a second session, and never one of another role', async () => {
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBe(4);
    const pids: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await psql(conn(d.port, 'alice@example.com', 'application_name=report'), ['-Atc', 'SELECT pg_backend_pid()'], { env: { PGPASSWORD: alice } });
      expect(r.stderr).toBe('');
      pids.push(Number(r.stdout.trim()));
    }
    expect(new Set(pids).size).toBe(4);
    // Bob maps to the other role: alice's warm backends are not his, whatever is ready.
    const missesBefore = await metric(d, 'dbward_prewarm_sessions_total', { result: 'miss' });
    const b = await psql(conn(d.port, 'bob@example.com', 'application_name=report'), ['-Atc', 'SELECT current_user, pg_backend_pid()'], { env: { PGPASSWORD: bob } });
    const [role, pid] = b.stdout.trim().split('|');
    expect(role).toBe(DEV_ROLE);
    expect(pids).not.toContain(Number(pid));
    expect(await metric(d, 'dbward_prewarm_sessions_total', { result: 'miss' })).toBe(missesBefore + 1);
  });

  it('recovers when the upstream goes away and comes back: sessions are refused cleanly meanwhile, the pool refills after', async () => {
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    await fwd.down();
    // The ready backends died with their connections; refills fail and are counted.
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBe(0);
    await expect.poll(() => metric(d, 'dbward_prewarm_connect_failures_total'), { timeout: 10_000 }).toBeGreaterThan(0);
    const refused = await psql(conn(d.port, 'alice@example.com', 'application_name=report'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: alice } });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/upstream database of target "test"/);
    await fwd.up();
    // A session logs in itself meanwhile; it shows the upstream is back, and the pool refills at once, whatever its backoff had reached.
    const ok = await psql(conn(d.port, 'alice@example.com', 'application_name=report'), ['-Atc', 'SELECT current_user'], { env: { PGPASSWORD: alice } });
    expect(ok.stdout.trim()).toBe(DBA_ROLE);
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000, interval: 250 }).toBeGreaterThanOrEqual(2);
  }, 40_000);

  it('closes the ready backends on shutdown', async () => {
    await expect.poll(() => metric(d, 'dbward_prewarm_ready'), { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(fwd.live.size).toBeGreaterThanOrEqual(2);
    await d.stop();
    await expect.poll(() => fwd.live.size, { timeout: 10_000 }).toBe(0);
  });
});

describe('prewarm and bad tokens', () => {
  it('a refused token opens no upstream connection and does not warm the pool', async () => {
    const { d, fwd } = await setup();
    try {
      const r = await psql(conn(d.port, 'alice@example.com'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: `${alice.slice(0, -4)}AAAA` } });
      expect(r.stderr).toMatch(/28P01|password authentication failed/);
      const mismatch = await psql(conn(d.port, 'bob@example.com'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: alice } });
      expect(mismatch.code).not.toBe(0);
      // A good session afterwards opens exactly its own connection plus the pool's: nothing was opened before it.
      expect(fwd.opened).toBe(0);
      const ok = await psql(conn(d.port, 'alice@example.com'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: alice } });
      expect(ok.stdout.trim()).toBe('1');
      await expect.poll(() => fwd.opened, { timeout: 10_000 }).toBe(3);
      expect(await metric(d, 'dbward_prewarm_sessions_total')).toBe(1);
    } finally {
      await d.stop();
      await fwd.down();
    }
  });
});

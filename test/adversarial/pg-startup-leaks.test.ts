// However a connection's startup ends (a timeout, a refusal, a client that leaves,
// a TLS handshake that never comes, an upstream that answers late), nothing is
// left behind: no upstream backend logged in for nobody, no client socket held
// open, no connection kept by the listener.

import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { pino } from 'pino';
import client from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/admin/metrics.js';
import { AnalysisCache } from '../../src/analysis/cache.js';
import { analyzePg } from '../../src/analysis/pg/analyze.js';
import type { AuditSink } from '../../src/audit/events.js';
import { policyFromTexts } from '../../src/policy/load.js';
import { CancelRegistry } from '../../src/proxy/postgres/cancel.js';
import type { ConnectionDeps, PgTarget } from '../../src/proxy/postgres/connection.js';
import { PgListener } from '../../src/proxy/postgres/listener.js';
import { PrewarmMetrics, PrewarmPool } from '../../src/proxy/postgres/prewarm.js';
import { encodeStartup } from '../../src/proxy/postgres/startup.js';
import type { UpstreamEndpoint } from '../../src/proxy/postgres/upstream.js';
import { pgTarget, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg } from '../helpers/rawpg.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { testCertificate } from '../helpers/tls.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP forwarder to the real PostgreSQL that holds each connection `delayMs`
 * before it connects on, keeping what dbward sent meanwhile: an upstream whose
 * accept (or answer) comes late. A connection dbward closed before then is never
 * forwarded.
 */
interface SlowUpstream {
  port: number;
  /** Per connection dbward made: ms after it opened until dbward closed it, or null while open. */
  closedAfter(): (number | null)[];
  /** The forwarder's own connections to PostgreSQL, by local port (pg_stat_activity.client_port). */
  pgPorts: number[];
  close(): Promise<void>;
}

async function slowUpstream(delayMs: number): Promise<SlowUpstream> {
  const conns: { opened: number; closedAfter: number | null }[] = [];
  const pgPorts: number[] = [];
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((down) => {
    const rec = { opened: Date.now(), closedAfter: null as number | null };
    conns.push(rec);
    sockets.add(down);
    const held: Buffer[] = [];
    const hold = (b: Buffer): void => { held.push(b); };
    let up: net.Socket | null = null;
    down.on('data', hold);
    down.on('error', () => undefined);
    down.on('close', () => { rec.closedAfter = Date.now() - rec.opened; up?.destroy(); });
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (down.destroyed) return;
      const u = net.connect(PG.port, PG.host);
      up = u;
      sockets.add(u);
      u.on('connect', () => pgPorts.push(u.localPort!));
      u.on('error', () => down.destroy());
      u.on('close', () => down.destroy());
      down.off('data', hold);
      for (const b of held) u.write(b);
      down.pipe(u);
      u.pipe(down);
    }, delayMs);
    timers.add(timer);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    closedAfter: () => conns.map((c) => c.closedAfter),
    pgPorts,
    close: () => {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** For expect.poll: whether dbward has closed every connection it made to `slow`. */
const allClosed = (slow: SlowUpstream) => (): boolean => slow.closedAfter().every((ms) => ms !== null);

let direct: pg.Client;

/** Backends from these client ports (the forwarder's) or whose application_name ends with `app`. */
async function backends(ports: number[], app?: string): Promise<number> {
  const r = await direct.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE (client_addr = '127.0.0.1' AND client_port = ANY($1::int[])) OR ($2::text IS NOT NULL AND application_name LIKE '%' || $2)",
    [ports, app ?? null],
  );
  return r.rows[0]!.n;
}

function errorOf(c: RawPg): Promise<{ code: string; message: string }> {
  return c.until('error').then((m) => m.at(-1) as unknown as { code: string; message: string });
}

const open: { close(): unknown }[] = [];
const track = <T extends { close(): unknown }>(x: T): T => { open.push(x); return x; };
const rawPg = async (port: number): Promise<RawPg> => {
  const c = await RawPg.connect(port);
  open.push({ close: () => c.end() });
  return c;
};

beforeAll(async () => {
  await requirePostgres();
  direct = new pg.Client({ host: PG.host, port: PG.port, database: PG.database, user: PG.user });
  await direct.connect();
});

afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

afterAll(async () => {
  await direct?.end();
});

describe('an upstream that accepts late', () => {
  const CONNECT_TIMEOUT_MS = 300;
  const DELAY_MS = 1200;

  async function daemonBehind(slow: SlowUpstream, mode: 'prefer' | 'disable'): Promise<TestDaemon> {
    const d = await startTestDaemon({ targets: [pgTarget(), pgTarget({ name: 'slow', port: slow.port, tls: { mode }, connectTimeoutMs: CONNECT_TIMEOUT_MS })] });
    return track({ ...d, close: () => d.stop() });
  }

  // With TLS preferred, the deadline meets dbward still waiting for the answer to
  // its SSLRequest, before it has a socket to log in on: the case that leaked.
  for (const mode of ['prefer', 'disable'] as const) {
    it(`closes its connection at the connect timeout and logs in nowhere later (tls ${mode})`, async () => {
      const slow = track(await slowUpstream(DELAY_MS));
      const d = await daemonBehind(slow, mode);
      const app = `late-${mode}-${process.pid}`;
      const clients = await Promise.all(Array.from({ length: 5 }, () => rawPg(d.port)));
      for (const c of clients) c.send(encodeStartup({ user: 'alice', database: 'slow', application_name: app }));
      for (const c of clients) expect((await errorOf(c)).code).toBe('08001');
      expect(slow.closedAfter()).toHaveLength(5);
      // Every connection dbward made was closed by the deadline, before the upstream answered.
      await expect.poll(allClosed(slow), { timeout: 1000 }).toBe(true);
      for (const ms of slow.closedAfter()) expect(ms!).toBeLessThan(DELAY_MS);
      await sleep(DELAY_MS + 500);
      expect(await backends(slow.pgPorts, app)).toBe(0);
      // The daemon goes on serving the other target.
      const ok = await RawPg.login(d.port);
      ok.end();
    });
  }

  it('closes the upstream of a client that leaves while dbward logs in', async () => {
    const slow = track(await slowUpstream(400));
    const d = await startTestDaemon({ targets: [pgTarget(), pgTarget({ name: 'slow', port: slow.port, connectTimeoutMs: 3000 })] });
    track({ close: () => d.stop() });
    const app = `gone-${process.pid}`;
    for (const how of ['end', 'reset'] as const) {
      const c = await RawPg.connect(d.port);
      c.send(encodeStartup({ user: 'alice', database: 'slow', application_name: app }));
      await sleep(50);
      if (how === 'end') c.end();
      else c.socket.resetAndDestroy();
    }
    // Logged in upstream or not, each connection dbward made is closed and no backend stays.
    await expect.poll(allClosed(slow), { timeout: 5000 }).toBe(true);
    expect(slow.closedAfter()).toHaveLength(2);
    await expect.poll(() => backends(slow.pgPorts, app), { timeout: 5000 }).toBe(0);
    const ok = await RawPg.login(d.port);
    ok.end();
  });

  it('prewarm: a background login past its deadline is closed, and close() abandons those in flight', async () => {
    const slow = track(await slowUpstream(DELAY_MS));
    const endpoint: UpstreamEndpoint = {
      host: '127.0.0.1', port: slow.port, database: PG.database, user: PG.user, password: undefined,
      tlsMode: 'prefer', ca: undefined, connectTimeoutMs: CONNECT_TIMEOUT_MS,
    };
    const metrics = new PrewarmMetrics(new client.Registry());
    const pool = new PrewarmPool('slow', endpoint, 3, pino({ level: 'silent' }), metrics);
    track({ close: () => pool.close() });
    pool.demand({ application_name: 'x' });
    await expect.poll(async () => (await metrics.failures.get()).values[0]?.value ?? 0, { timeout: 3000 }).toBeGreaterThanOrEqual(3);
    expect(slow.closedAfter()).toHaveLength(3);
    await expect.poll(allClosed(slow), { timeout: 1000 }).toBe(true);
    for (const ms of slow.closedAfter()) expect(ms!).toBeLessThan(DELAY_MS);
    expect(pool.ready).toBe(0);
    pool.close(); // no more retries from it below

    // A pool closed (shutdown) while its logins wait: they are dropped at once, not at their deadline.
    const patient = new PrewarmPool('slow', { ...endpoint, connectTimeoutMs: 10_000 }, 2, pino({ level: 'silent' }), metrics);
    const before = slow.closedAfter().length;
    patient.demand({ application_name: 'y' });
    await expect.poll(() => slow.closedAfter().length, { timeout: 3000 }).toBe(before + 2);
    patient.close();
    await expect.poll(() => slow.closedAfter().slice(before).every((ms) => ms !== null), { timeout: 1000 }).toBe(true);
    await sleep(DELAY_MS + 300);
    expect(await backends(slow.pgPorts)).toBe(0);
  });
});

describe('a TLS listener', () => {
  const STARTUP_TIMEOUT_MS = 400;
  /** Time allowed past the startup timeout for the close to be seen (2 shared CPUs). */
  const MARGIN_MS = 1500;
  let d: TestDaemon;

  beforeAll(async () => {
    const cert = testCertificate();
    d = await startTestDaemon({ listener: { tls: { cert: cert.cert, key: cert.key }, requireTls: true }, limits: { startupTimeoutMs: STARTUP_TIMEOUT_MS } });
  });
  afterAll(async () => d?.stop());

  /** A TCP client that sent SSLRequest and read 'S'; `closed` resolves to the ms from its connect to dbward's close, or null past `waitMs`. */
  async function afterS(waitMs = STARTUP_TIMEOUT_MS + MARGIN_MS): Promise<{ socket: net.Socket; closed: Promise<number | null> }> {
    const since = Date.now(); // dbward's startup timer starts later, at accept
    const socket = net.connect(d.port, '127.0.0.1');
    track({ close: () => socket.destroy() });
    socket.on('error', () => undefined);
    await new Promise((r) => socket.once('connect', r));
    socket.write(serialize.requestSsl());
    const answer = await new Promise<Buffer>((r) => socket.once('data', r));
    expect(answer.toString('latin1')).toBe('S');
    const closed = new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), waitMs);
      socket.once('close', () => { clearTimeout(timer); resolve(Date.now() - since); });
    });
    return { socket, closed };
  }

  it('closes a client that answers S with nothing at the startup timeout', async () => {
    const all = await Promise.all(Array.from({ length: 10 }, () => afterS()));
    const received: Buffer[] = [];
    for (const { socket } of all) socket.on('data', (b: Buffer) => received.push(b));
    for (const { closed } of all) {
      const ms = await closed;
      expect(ms).not.toBeNull();
      expect(ms!).toBeGreaterThanOrEqual(STARTUP_TIMEOUT_MS - 20); // closed by the timer, not at once
    }
    // Nothing can be written before the handshake: no cleartext FATAL either.
    expect(received).toEqual([]);
  });

  it('closes a client stalled in the middle of its ClientHello', async () => {
    const { socket, closed } = await afterS();
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a record header and one byte of a 512-byte hello
    expect(await closed).not.toBeNull();
  });

  it('sends FATAL 08P01 over TLS to a client that completed the handshake and then stalled', async () => {
    const { socket, closed } = await afterS();
    const secure = tls.connect({ socket, rejectUnauthorized: false });
    secure.on('error', () => undefined);
    const got: Buffer[] = [];
    secure.on('data', (b: Buffer) => got.push(b));
    await new Promise<void>((resolve) => secure.once('secureConnect', resolve));
    expect(await closed).not.toBeNull();
    const all = Buffer.concat(got);
    expect(all[0]).toBe(0x45); // ErrorResponse
    expect(all.toString('latin1')).toContain('C08P01');
  });
});

describe('the listener', () => {
  const STARTUP_TIMEOUT_MS = 100;
  let listener: PgListener;
  let port: number;
  let slow: SlowUpstream;
  const auditLines: string[] = [];

  beforeAll(async () => {
    slow = await slowUpstream(2000);
    const cert = testCertificate();
    const log = pino({ level: 'silent' });
    const target = (name: string, p: number, connectTimeoutMs: number): [string, PgTarget] => [name, {
      info: { name, engine: 'postgres', database: PG.database, environment: 'test', labels: {} },
      endpoint: { host: '127.0.0.1', port: p, database: PG.database, user: PG.user, password: undefined, tlsMode: 'disable', ca: undefined, connectTimeoutMs },
      roles: [], defaultRole: null,
    }];
    const audit: AuditSink = { commit: (l) => { auditLines.push(l); }, append: (l) => { auditLines.push(l); }, healthy: true, close: async () => undefined };
    const deps: ConnectionDeps = {
      targets: new Map([target('nowhere', 1, 1000), target('slow', slow.port, 5000)]),
      cancels: new CancelRegistry(),
      secureContext: tls.createSecureContext({ cert: fs.readFileSync(cert.cert), key: fs.readFileSync(cert.key) }),
      requireTls: false,
      auth: { mode: 'unverified' },
      limits: { maxStartupBytes: 10_000, maxMessageBytes: 1024 * 1024, startupTimeoutMs: STARTUP_TIMEOUT_MS },
      policy: { current: policyFromTexts([{ file: 'p.yaml', text: 'default: allow\n' }]) },
      analysis: new AnalysisCache(analyzePg),
      audit,
      metrics: new Metrics(),
      log,
    };
    listener = new PgListener(deps);
    port = await listener.listen('127.0.0.1', 0);
  });

  afterAll(async () => {
    await listener?.drain(0);
    await slow?.close();
  });

  it('keeps no connection after many startup timeouts (silent, torn packet, stalled TLS)', async () => {
    const socks: net.Socket[] = [];
    const closed = (s: net.Socket): Promise<void> => new Promise((r) => { if (s.destroyed) r(); else s.once('close', () => r()); });
    for (let round = 0; round < 3; round++) {
      const batch = await Promise.all(Array.from({ length: 100 }, async (_, i) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => undefined);
        s.resume();
        await new Promise((r) => s.once('connect', r));
        if (i % 3 === 1) s.write(encodeStartup({ user: 'alice', database: 'test' }).subarray(0, 9));
        if (i % 3 === 2) s.write(serialize.requestSsl());
        return s;
      }));
      socks.push(...batch);
      await Promise.all(batch.map(closed));
    }
    expect(socks.every((s) => s.destroyed)).toBe(true);
    await expect.poll(() => listener.starting, { timeout: 2000 }).toBe(0);
  });

  it('keeps no connection however startup ends', async () => {
    const ends: Promise<unknown>[] = [];
    // Bad length, refused target, unreachable upstream: answered with an error.
    const bad = await rawPg(port);
    bad.send(Buffer.from([0, 0, 0, 3, 0, 3, 0, 0]));
    ends.push(errorOf(bad));
    const nowhere = await rawPg(port);
    nowhere.send(encodeStartup({ user: 'alice', database: 'nowhere' }));
    ends.push(errorOf(nowhere).then((e) => expect(e.code).toBe('08001')));
    const unknown = await rawPg(port);
    unknown.send(encodeStartup({ user: 'alice', database: 'no_such_target' }));
    ends.push(errorOf(unknown).then((e) => expect(e.code).toBe('3D000')));
    // A cancel request: closed without an answer.
    const cancel = await rawPg(port);
    const req = Buffer.alloc(16);
    req.writeInt32BE(16, 0);
    req.writeInt32BE(80877102, 4);
    cancel.send(req);
    ends.push(cancel.closedWithin());
    // Clients that leave: mid-packet, and during the upstream login (the startup timeout ends that login).
    const torn = await rawPg(port);
    torn.send(encodeStartup({ user: 'alice', database: 'test' }).subarray(0, 12));
    torn.end();
    const waiting = await rawPg(port);
    waiting.send(encodeStartup({ user: 'alice', database: 'slow', application_name: `abandoned-${process.pid}` }));
    ends.push(waiting.closedWithin(STARTUP_TIMEOUT_MS + 2000));
    await Promise.all(ends);
    await expect.poll(() => listener.starting, { timeout: 2000 }).toBe(0);
    expect(listener.sessions).toBe(0);
    // The slow target's login was abandoned when the startup timer closed the connection.
    expect(slow.closedAfter().length).toBeGreaterThan(0);
    await expect.poll(allClosed(slow), { timeout: 2000 }).toBe(true);
    for (const ms of slow.closedAfter()) expect(ms!).toBeLessThan(2000);
    await sleep(2300);
    expect(await backends(slow.pgPorts, `abandoned-${process.pid}`)).toBe(0);
  });
});

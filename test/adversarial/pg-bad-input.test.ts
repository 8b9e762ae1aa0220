// Bad input ends at most the one session, with a real SQLSTATE; the daemon and
// every other session go on, and the audit file stays valid JSONL.

import fs from 'node:fs';
import net from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeStartup } from '../../src/proxy/postgres/startup.js';
import { conninfo, pgTarget, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg } from '../helpers/rawpg.js';
import { requirePostgres } from '../helpers/services.js';

let d: TestDaemon;
const open: RawPg[] = [];

async function raw(): Promise<RawPg> {
  const c = await RawPg.connect(d.port);
  open.push(c);
  return c;
}

async function stillServes(port = d.port): Promise<void> {
  const r = await psql(conninfo(port), ['-Atc', 'SELECT 1']);
  expect(r.stdout.trim()).toBe('1');
}

beforeAll(async () => {
  await requirePostgres();
  d = await startTestDaemon({
    targets: [pgTarget(), pgTarget({ name: 'nowhere', port: 1 })],
    limits: { maxMessageBytes: 1024 * 1024, startupTimeoutMs: 1500 },
  });
});

afterEach(() => {
  for (const c of open.splice(0)) c.end();
});

afterAll(async () => {
  await d?.stop();
  for (const line of fs.readFileSync(d.auditPath, 'utf8').split('\n').filter(Boolean)) JSON.parse(line);
});

function errorOf(c: RawPg): Promise<{ code: string; message: string }> {
  return c.until('error').then((m) => m.at(-1) as unknown as { code: string; message: string });
}

describe('startup phase', () => {
  it('answers garbage (an HTTP request) with 54000/08P01 and closes', async () => {
    const c = await raw();
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const e = await errorOf(c);
    expect(['54000', '08P01']).toContain(e.code);
    expect(await c.closedWithin()).toBe(true);
    await stillServes();
  });

  it('rejects a startup length below 8 and above 10,000 bytes', async () => {
    const small = await raw();
    small.send(Buffer.from([0, 0, 0, 3, 0, 3, 0, 0]));
    expect((await errorOf(small)).code).toBe('08P01');
    const big = await raw();
    const len = Buffer.alloc(8);
    len.writeInt32BE(10_001, 0);
    len.writeInt32BE(196608, 4);
    big.send(len);
    expect((await errorOf(big)).code).toBe('54000');
  });

  it('times out a torn startup packet', async () => {
    const c = await raw();
    c.send(encodeStartup({ user: 'alice', database: 'test' }).subarray(0, 10));
    const e = await errorOf(c);
    expect(e.code).toBe('08P01');
    expect(e.message).toContain('startup');
    await stillServes();
  });

  it('refuses bytes buffered after SSLRequest (CVE-2021-23214)', async () => {
    const c = await raw();
    c.send(Buffer.concat([serialize.requestSsl(), encodeStartup({ user: 'alice', database: 'test' })]));
    // Without TLS configured dbward must not answer 'N' and then read the injected packet.
    const e = await errorOf(c);
    expect(e.code).toBe('08P01');
    expect(e.message).toContain('after SSL request');
  });

  it('answers GSSENCRequest with N and then accepts the startup', async () => {
    const c = await raw();
    expect(await c.answerTo(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]))).toBe('N');
    c.send(encodeStartup({ user: 'alice', database: 'test' }));
    const msgs = await c.until('readyForQuery');
    expect(msgs.some((m) => m.name === 'authenticationOk')).toBe(true);
  });

  it('refuses an unknown target with 3D000 and an unreachable upstream with 08001', async () => {
    const a = await raw();
    a.send(encodeStartup({ user: 'alice', database: 'no_such_target' }));
    expect((await errorOf(a)).code).toBe('3D000');
    const b = await raw();
    b.send(encodeStartup({ user: 'alice', database: 'nowhere' }));
    const e = await errorOf(b);
    expect(e.code).toBe('08001');
    expect(e.message).not.toContain('ECONNREFUSED'); // internals stay in the log
    await expect.poll(() => d.audit().filter((x) => x.type === 'session_refused').map((x) => x.sqlstate)).toEqual(expect.arrayContaining(['3D000', '08001']));
  });
});

describe('after startup', () => {
  it('ends the session on a message length below 4 (08P01) and above the limit (54000)', async () => {
    const a = await RawPg.login(d.port);
    open.push(a);
    a.send(Buffer.from([0x51, 0, 0, 0, 2]));
    expect((await errorOf(a)).code).toBe('08P01');
    expect(await a.closedWithin()).toBe(true);
    const b = await RawPg.login(d.port);
    open.push(b);
    const hdr = Buffer.alloc(5);
    hdr[0] = 0x51;
    hdr.writeInt32BE(2 * 1024 * 1024, 1);
    b.send(hdr);
    expect((await errorOf(b)).code).toBe('54000');
    await stillServes();
  });

  it('ends the session on an unknown message type', async () => {
    const c = await RawPg.login(d.port);
    open.push(c);
    c.send(Buffer.from([0x7a, 0, 0, 0, 4]));
    expect((await errorOf(c)).code).toBe('08P01');
  });

  it('survives a client that vanishes mid-COPY: the upstream COPY is aborted', async () => {
    const setup = await psql(conninfo(d.port), ['-c', 'DROP TABLE IF EXISTS adv_copy; CREATE TABLE adv_copy (v int)']);
    expect(setup.code).toBe(0);
    const c = await RawPg.login(d.port);
    c.send(serialize.query('COPY adv_copy FROM STDIN'));
    await c.until('copyInResponse');
    c.send(serialize.copyData(Buffer.from('1\n2\n3\n')));
    await new Promise((r) => setTimeout(r, 100));
    c.end();
    await expect.poll(async () => (await psql(conninfo(d.port), ['-Atc', "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY adv_copy%'"])).stdout.trim(), { timeout: 5000 }).toBe('0');
    const n = await psql(conninfo(d.port), ['-Atc', 'SELECT count(*) FROM adv_copy; DROP TABLE adv_copy']);
    expect(n.stdout.trim().split('\n')[0]).toBe('0');
  });

  it('passes on 57P01 when the upstream backend is terminated mid-query, and goes on', async () => {
    const victim = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'victim', application_name: 'adv-victim' });
    await victim.connect();
    victim.on('error', () => undefined);
    const running = victim.query('SELECT pg_sleep(10)').then(() => null, (e: { code?: string }) => e);
    const killer = new pg.Client({ host: '127.0.0.1', port: 5432, database: 'test', user: 'root' });
    await killer.connect();
    await expect.poll(async () => (await killer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'dbward:victim%' AND state = 'active'")).rows[0].n).toBe(1);
    await killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'dbward:victim%'");
    await killer.end();
    const err = await running;
    expect(err?.code).toBe('57P01');
    await stillServes();
  });

  it('tells a client whose backend the server ended only what the server said (one FATAL, no second error)', async () => {
    const c = await RawPg.login(d.port, 'victim2');
    open.push(c);
    c.send(serialize.query('SELECT pg_sleep(10)'));
    const killer = new pg.Client({ host: '127.0.0.1', port: 5432, database: 'test', user: 'root' });
    await killer.connect();
    await expect.poll(async () => (await killer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'dbward:victim2%' AND state = 'active'")).rows[0].n).toBe(1);
    await killer.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'dbward:victim2%'");
    await killer.end();
    expect(await c.closedWithin(5000)).toBe(true);
    const errors = c.messages.filter((m) => m.name === 'error');
    expect(errors.map((e) => e.code)).toEqual(['57P01']);
    await stillServes();
  });

  it('does nothing for a forged cancel key', async () => {
    const c = await RawPg.login(d.port);
    open.push(c);
    c.send(serialize.query('SELECT pg_sleep(0.5) AS slept'));
    const forged = await raw();
    forged.send(serialize.cancel(12345, 67890));
    const msgs = await c.until('readyForQuery');
    expect(msgs.some((m) => m.name === 'error')).toBe(false);
    expect(msgs.some((m) => m.name === 'dataRow')).toBe(true);
  });
});

/** A well-formed reply to dbward's post-login `SHOW search_path`. */
function settingsAnswer(): Buffer {
  const frame = (type: string, body: Buffer) => {
    const head = Buffer.alloc(5);
    head.write(type);
    head.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([head, body]);
  };
  const field = (name: string) => {
    const b = Buffer.alloc(name.length + 1 + 18);
    b.write(name);
    b.writeInt32BE(25, name.length + 1 + 6); // type oid: text
    b.writeInt16BE(-1, name.length + 1 + 10);
    b.writeInt32BE(-1, name.length + 1 + 12);
    return b;
  };
  const count = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
  const value = (v: string) => { const b = Buffer.alloc(4); b.writeInt32BE(Buffer.byteLength(v)); return Buffer.concat([b, Buffer.from(v)]); };
  return Buffer.concat([
    frame('T', Buffer.concat([count(1), field('search_path')])),
    frame('D', Buffer.concat([count(1), value('"$user", public')])),
    frame('C', Buffer.from('SHOW\0')),
    frame('Z', Buffer.from('I')),
  ]);
}

describe('hostile upstream', () => {
  let fake: net.Server;
  let h: TestDaemon;
  let mode: 'short-length' | 'huge-error' | 'ssl-inject' = 'short-length';

  beforeAll(async () => {
    // A server that logs in correctly, then answers queries with a broken frame.
    fake = net.createServer((s) => {
      s.on('error', () => undefined);
      let started = false;
      let probed = false;
      s.on('data', (b) => {
        if (!started && b.length === 8 && b.readInt32BE(4) === 80877103) {
          s.write(mode === 'ssl-inject' ? Buffer.from('SZ\0\0\0\x05I') : 'N');
          return;
        }
        if (!started) {
          started = true;
          s.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0, 0x5a, 0, 0, 0, 5, 0x49]));
          return;
        }
        if (!probed) {
          // dbward's own settings query after login gets a proper answer; the hostility comes later.
          probed = true;
          s.write(settingsAnswer());
          return;
        }
        if (mode === 'short-length') s.write(Buffer.from([0x43, 0, 0, 0, 1]));
        else s.write(Buffer.concat([Buffer.from([0x45]), Buffer.from([0x7f, 0xff, 0xff, 0xff])]));
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const port = (fake.address() as net.AddressInfo).port;
    h = await startTestDaemon({ targets: [pgTarget(), pgTarget({ name: 'evil', port }), pgTarget({ name: 'evil_tls', port, tls: { mode: 'prefer' } })] });
  });

  afterAll(async () => {
    await h?.stop();
    fake?.close();
  });

  for (const m of ['short-length', 'huge-error'] as const) {
    it(`ends only that session on a ${m} server frame (08P01)`, async () => {
      mode = m;
      const c = await RawPg.login(h.port, 'alice', 'evil');
      open.push(c);
      c.send(serialize.query('SELECT 1'));
      const e = await errorOf(c);
      expect(e.code).toBe('08P01');
      expect(e.message).toContain('upstream protocol violation');
      await stillServes(h.port);
    });
  }

  it('refuses a server that injects bytes after its SSL answer (CVE-2021-23222)', async () => {
    mode = 'ssl-inject';
    const c = await RawPg.connect(h.port);
    open.push(c);
    c.send(encodeStartup({ user: 'alice', database: 'evil_tls' }));
    expect((await errorOf(c)).code).toBe('08001');
    await stillServes(h.port);
  });
});

describe('audit store that cannot be written', () => {
  it('refuses the session with 58030 instead of running unrecorded', async () => {
    // /dev/full accepts the open and fails every write with ENOSPC: a real full disk.
    const t = await startTestDaemon({ auditPath: '/dev/full' });
    try {
      const r = await psql(conninfo(t.port), ['-c', 'SELECT 1']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('audit trail cannot be written');
      expect(t.daemon.audit.sink.healthy).toBe(false);
    } finally {
      await t.stop().catch(() => undefined);
    }
  });
});

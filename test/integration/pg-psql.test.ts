// psql (the real CLI) through dbward to the real PostgreSQL: queries, meta
// commands, COPY both ways, transactions, cancel, TLS, and the audit trail.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import { encodeStartup } from '../../src/proxy/postgres/startup.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conninfo, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { requirePostgres } from '../helpers/services.js';
import { testCertificate } from '../helpers/tls.js';

let d: TestDaemon;
let cs: string;

beforeAll(async () => {
  await requirePostgres();
  d = await startTestDaemon();
  cs = conninfo(d.port);
  const r = await psql(cs, ['-q', '-c', 'SET client_min_messages = warning; DROP SCHEMA IF EXISTS it_psql CASCADE; CREATE SCHEMA it_psql; CREATE TABLE it_psql.items (id int primary key, name text not null)']);
  expect(r.stderr).toBe('');
});

afterAll(async () => {
  await psql(cs, ['-c', 'DROP SCHEMA IF EXISTS it_psql CASCADE']);
  await d?.stop();
});

describe('psql through dbward', () => {
  it('runs a query and records statement and outcome in the audit trail', async () => {
    const r = await psql(cs, ['-Atc', "SELECT 40 + 2 AS answer, current_setting('application_name')"]);
    expect(r.code).toBe(0);
    const [answer, app] = r.stdout.trim().split('|');
    expect(answer).toBe('42');
    expect(app).toMatch(/^dbward:alice psql/);
    const events = d.audit();
    const stmt = events.find((e) => e.type === 'statement' && e.statement.text.includes('40 + 2'));
    expect(stmt).toBeDefined();
    expect(stmt!.identity).toEqual({ user: 'alice', verified: false });
    expect(stmt!.target.name).toBe('test');
    expect(stmt!.decision.action).toBe('allow');
    await expect.poll(() => d.audit().find((e) => e.type === 'statement_outcome' && e.statement_id === stmt!.id)).toBeDefined();
    const outcome = d.audit().find((e) => e.type === 'statement_outcome' && e.statement_id === stmt!.id)!;
    expect(outcome.outcome).toMatchObject({ status: 'ok', tags: ['SELECT 1'], rows: 1, sqlstate: null });
    expect(events.some((e) => e.type === 'session_start' && e.session === stmt!.session)).toBe(true);
  });

  it('keeps the client_encoding the client asked for at startup, and refuses one the parser would misread', async () => {
    const latin1 = await psql(cs, ['-Atc', "SELECT current_setting('client_encoding'), length(convert_from('\\xe9'::bytea, 'LATIN1'))"], { env: { PGCLIENTENCODING: 'LATIN1' } });
    expect(latin1.stderr).toBe('');
    expect(latin1.stdout.trim()).toBe('LATIN1|1');
    const sjis = await psql(cs, ['-Atc', 'SELECT 1'], { env: { PGCLIENTENCODING: 'SJIS' } });
    expect(sjis.code).not.toBe(0);
    expect(sjis.stderr).toMatch(/client_encoding/);
  });

  it('runs \\d meta-commands', async () => {
    const r = await psql(cs, ['-c', '\\d it_psql.items']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Table "it_psql.items"');
    expect(r.stdout).toMatch(/id\s+\|\s+integer/);
    const l = await psql(cs, ['-c', '\\dn it_psql']);
    expect(l.stdout).toContain('it_psql');
  });

  it('copies in from stdin and out to stdout', async () => {
    const rows = Array.from({ length: 500 }, (_, i) => `${i}\titem-${i}`).join('\n') + '\n';
    const inn = await psql(cs, ['-c', '\\copy it_psql.items FROM STDIN'], { input: rows });
    expect(inn.stderr).toBe('');
    expect(inn.stdout.trim()).toBe('COPY 500');
    const out = await psql(cs, ['-c', 'COPY (SELECT * FROM it_psql.items ORDER BY id) TO STDOUT']);
    expect(out.stdout).toBe(rows);
    const outcome = d.audit().filter((e) => e.type === 'statement_outcome').map((e) => e.outcome.tags).flat();
    expect(outcome).toContain('COPY 500');
  });

  it('keeps transaction semantics: rollback discards, commit keeps', async () => {
    const r = await psql(cs, ['-c', 'BEGIN', '-c', "INSERT INTO it_psql.items VALUES (9001, 'rolled back')", '-c', 'ROLLBACK',
      '-c', 'BEGIN', '-c', "INSERT INTO it_psql.items VALUES (9002, 'kept')", '-c', 'COMMIT']);
    expect(r.code).toBe(0);
    const check = await psql(cs, ['-Atc', 'SELECT id FROM it_psql.items WHERE id > 9000 ORDER BY id']);
    expect(check.stdout.trim()).toBe('9002');
  });

  it('reports server errors with their SQLSTATE and keeps the session usable', async () => {
    const r = await psql(cs, ['-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=verbose', '-c', 'SELECT 1/0', '-c', 'SELECT 7'], {});
    expect(r.stderr).toContain('22012');
    expect(r.stdout).toMatch(/\b7\b/);
  });

  it('cancels a running query with Ctrl-C within a second', async () => {
    const child = spawn('psql', [cs, '-X', '-c', 'SELECT pg_sleep(30)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b) => (stderr += b));
    await waitForActivity('SELECT pg_sleep(30)');
    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    const elapsed = Date.now() - t0;
    expect(stderr).toContain('canceling statement due to user request');
    expect(code).not.toBe(0);
    expect(elapsed).toBeLessThan(1000);
  });
});

describe('psql over TLS', () => {
  let t: TestDaemon;
  beforeAll(async () => {
    const cert = testCertificate();
    t = await startTestDaemon({ listener: { tls: { cert: cert.cert, key: cert.key }, requireTls: true } });
  });
  afterAll(async () => t?.stop());

  it('connects with sslmode=require and verify-full', async () => {
    const r = await psql(`host=127.0.0.1 port=${t.port} dbname=test user=alice sslmode=require`, ['-Atc', 'SELECT 1']);
    expect(r.stdout.trim()).toBe('1');
    const cert = testCertificate();
    const v = await psql(`host=localhost port=${t.port} dbname=test user=alice sslmode=verify-full sslrootcert=${cert.cert}`, ['-c', '\\conninfo']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    expect(t.audit().find((e) => e.type === 'session_start')!.client.tls).toBe(true);
  });

  it('accepts GSSENCRequest (refused with N) followed by SSLRequest, as libpq sends with Kerberos credentials', async () => {
    const raw = net.connect({ host: '127.0.0.1', port: t.port });
    await new Promise((r) => raw.once('connect', r));
    const byte = () => new Promise<string>((r) => raw.once('data', (b: Buffer) => r(b.toString('latin1'))));
    let answer = byte();
    raw.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]));
    expect(await answer).toBe('N');
    answer = byte();
    raw.write(serialize.requestSsl());
    expect(await answer).toBe('S');
    const secure = tls.connect({ socket: raw, servername: 'localhost', ca: fs.readFileSync(testCertificate().cert) });
    await new Promise((r) => secure.once('secureConnect', r));
    const reply = new Promise<Buffer>((r) => secure.once('data', r));
    secure.write(encodeStartup({ user: 'alice', database: 'test' }));
    expect((await reply)[0]).toBe(0x52); // AuthenticationOk
    secure.destroy();
  });

  it('refuses a plaintext client when TLS is required', async () => {
    const r = await psql(`host=127.0.0.1 port=${t.port} dbname=test user=alice sslmode=disable`, ['-c', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('requires TLS');
    await expect.poll(() => t.audit().some((e) => e.type === 'session_refused' && e.sqlstate === '28000')).toBe(true);
  });
});

/** Waits until PostgreSQL shows a backend running `query` (seen directly, not through dbward). */
async function waitForActivity(query: string): Promise<void> {
  const direct = 'host=127.0.0.1 port=5432 dbname=test user=root sslmode=disable';
  for (let i = 0; i < 100; i++) {
    const r = await psql(direct, ['-Atc', `SELECT count(*) FROM pg_stat_activity WHERE query = '${query}' AND state = 'active'`]);
    if (r.stdout.trim() !== '0') return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`query never became active: ${query}`);
}

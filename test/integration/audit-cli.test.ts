// `dbward audit verify|search|session|tail` as an operator runs them: a child
// process through the dbward entry point, a trail written by FileAuditSink
// (sealed, rotated), a config file for the defaults; the same searches and
// verification against a PostgreSQL audit table on the real server; and the
// admin API's search handler over HTTP.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { auditSearchHandler } from '../../src/admin/audit-api.js';
import { Chain } from '../../src/audit/chain.js';
import { FileAuditSink } from '../../src/audit/file-sink.js';
import { writeHeadFile } from '../../src/audit/head.js';
import { PG, requirePostgres } from '../helpers/services.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KEY_TEXT = 'audit-cli-test-key-'.padEnd(48, 'x');
const KEY = Buffer.from(KEY_TEXT);
const ENV = { ...process.env, DBWARD_TEST_AUDIT_KEY: KEY_TEXT, COLUMNS: '120' };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-audit-cli-'));
const children: ChildProcess[] = [];
afterEach(() => { for (const c of children.splice(0)) c.kill('SIGKILL'); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number; stdout: string; stderr: string }

function start(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'audit', ...args], { cwd: ROOT, env: { ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  return { child, out: () => stdout, err: () => stderr, exit };
}

async function audit(...args: string[]): Promise<Run> {
  return auditWith({}, ...args);
}

async function auditWith(env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  const c = start(args, env);
  const code = await c.exit;
  return { code, stdout: c.out(), stderr: c.err() };
}

async function until(check: () => boolean, what: () => string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ALICE = { user: 'alice@example.com', verified: true, groups: ['dba'], kind: 'human' };
const BOT = { user: 'report-bot', verified: true, groups: ['reporting'], kind: 'agent' };
const PROD = { name: 'app', engine: 'postgres', database: 'app', environment: 'production' };

/** A statement and its outcome, as event objects (times from `minute` past 10:00 on 2026-11-23). */
function pair(n: number, opts: { session?: string; identity?: object; text?: string; deny?: boolean; reads?: string[]; columns?: string[] } = {}): object[] {
  const t = (s: number): string => `2026-11-23T10:${String(n).padStart(2, '0')}:${String(s).padStart(2, '0')}.000000Z`;
  const session = opts.session ?? 'sess-alice';
  return [
    {
      v: 1, id: `st-${n}`, time: t(0), session, type: 'statement', identity: opts.identity ?? ALICE, target: PROD, protocol: 'simple',
      statement: { text: opts.text ?? `SELECT name, email FROM customers WHERE id = ${n}` },
      decision: opts.deny ? { action: 'deny', rules: ['no-pii-export'], default: false } : { action: 'allow', rules: ['dba-all'], default: false },
      facts: [{ kinds: ['select'], reads: opts.reads ?? ['public.customers'], writes: [], functions: [], flags: [], columns: opts.columns ?? ['customers.name', 'customers.email'] }],
    },
    {
      v: 1, id: `out-${n}`, time: t(1), session, type: 'statement_outcome', statement_id: `st-${n}`,
      outcome: opts.deny ? { status: 'error', tags: [], rows: null, sqlstate: '42501', duration_ms: 0.3 } : { status: 'ok', tags: ['SELECT 5'], rows: 5, sqlstate: null, duration_ms: 2.5 },
    },
  ];
}

/** The trail most tests read: 12 statements of two sessions, rotated into several files, its head exported. */
const dir = path.join(tmp, 'trail');
const active = path.join(dir, 'audit', 'dbward.jsonl');
const headFile = path.join(dir, 'head.json');
const config = path.join(dir, 'dbward.yaml');

beforeAll(async () => {
  fs.mkdirSync(dir, { recursive: true });
  const sink = new FileAuditSink(active, { fsync: 'none', key: KEY, rotateBytes: 2500 });
  await sink.commit(JSON.stringify({ v: 1, id: 'ss-1', time: '2026-11-23T09:59:59.000000Z', session: 'sess-alice', type: 'session_start', identity: ALICE, client: { address: '10.1.2.3', port: 50000, application: 'psql', tls: true }, target: PROD }));
  for (let n = 1; n <= 12; n++) {
    const events = n % 3 === 0
      ? pair(n, { session: 'sess-bot', identity: BOT, text: `SELECT sum(total) FROM orders -- report ${n}`, reads: ['orders'], columns: ['orders.total'] })
      : pair(n, { deny: n === 7, ...(n === 7 && { text: 'COPY customers TO STDOUT' }) });
    for (const e of events) await sink.commit(JSON.stringify(e));
  }
  await sink.commit(JSON.stringify({ v: 1, id: 'se-1', time: '2026-11-23T10:30:00.000000Z', session: 'sess-alice', type: 'session_end', identity: ALICE, reason: 'client_terminated', duration_ms: 1_800_000, statements: 8 }));
  await sink.close();
  writeHeadFile(headFile, 'node-a', sink.head);
  fs.writeFileSync(config, `listeners:
  - { name: pg, host: 127.0.0.1, port: 6432, allow_plaintext_token: true }
targets:
  - { name: app, host: 127.0.0.1, port: 5432, user: dbward, password: { env: UNUSED } }
identity: { mode: unverified }
policy: { path: policy.yaml }
audit:
  node: node-a
  chain: { key: { env: DBWARD_TEST_AUDIT_KEY }, head_file: head.json }
  file: { path: audit/dbward.jsonl }
`);
  expect(fs.readdirSync(path.dirname(active)).length).toBeGreaterThan(3);
});

/** A copy of the trail to tamper with. */
function copyTrail(name: string): string {
  const to = path.join(tmp, name);
  fs.cpSync(path.dirname(active), to, { recursive: true });
  return to;
}

function filesOf(d: string): string[] {
  // By name the active file sorts last; rotated names sort by time, which here is also chain order.
  return fs.readdirSync(d).sort((a, b) => (a === 'dbward.jsonl' ? 1 : b === 'dbward.jsonl' ? -1 : a < b ? -1 : 1)).map((n) => path.join(d, n));
}

describe('dbward audit verify', () => {
  it('prints its usage for --help after the subcommand, and exits 0', async () => {
    const r = await audit('verify', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('dbward audit verify [PATH...]');
  });

  it('passes an untouched trail with the config defaults (files, key, head) and exits 0', async () => {
    const r = await audit('verify', '-c', config);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d+ files: ok: 26 events, seq 1\.\.26, from the start of the chain; matches the exported head \(seq 26\)\n$/);
  });

  it('names the altered line and exits 1', async () => {
    const d = copyTrail('altered');
    const victim = filesOf(d)[1]!;
    const lines = fs.readFileSync(victim, 'utf8').split('\n');
    lines[1] = lines[1]!.replace(/"rows":5/, '"rows":0').replace(/"sqlstate":"42501"/, '"sqlstate":null').replace('SELECT', 'DELETE');
    fs.writeFileSync(victim, lines.join('\n'));
    const r = await audit('verify', d, '--key-env', 'DBWARD_TEST_AUDIT_KEY');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`ALTERED at ${victim}:2 (seq `);
    expect(r.stdout).toMatch(/does not verify: it was edited after it was written/);
    expect(r.stdout).toMatch(/verified \d+ events before it \(seq 1\.\.\d+\)/);
  });

  it('names the missing seqs when a rotated file is deleted', async () => {
    const d = copyTrail('removed');
    const gone = filesOf(d)[1]!;
    const firstSeq = JSON.parse(fs.readFileSync(gone, 'utf8').split('\n')[0]!).chain.seq as number;
    fs.rmSync(gone);
    const r = await audit('verify', d, '--key-env', 'DBWARD_TEST_AUDIT_KEY');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`REMOVED at .*:1 \\(seq \\d+\\)\\n  seqs? ${firstSeq}(\\.\\.\\d+ \\(\\d+ events\\) are| is) missing`));
    expect(r.stdout).toContain('a whole file may be missing');
  });

  it('catches lines cut off the end only with the head', async () => {
    const d = copyTrail('truncated');
    const last = filesOf(d).at(-1)!;
    const lines = fs.readFileSync(last, 'utf8').split('\n').filter(Boolean);
    fs.writeFileSync(last, `${lines.slice(0, -1).join('\n')}\n`);
    // The key read from a file this time, newline and all.
    fs.writeFileSync(path.join(tmp, 'key.txt'), `${KEY_TEXT}\n`);
    const ok = await audit('verify', d, '--key-file', path.join(tmp, 'key.txt'));
    expect(ok).toMatchObject({ code: 0 });
    expect(ok.stdout).toContain('no exported head given: events cut off the end would go unnoticed');
    const r = await audit('verify', d, '--key-file', path.join(tmp, 'key.txt'), '--head', headFile);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`TRUNCATED at ${last}:${lines.length} (seq 26)`);
    expect(r.stdout).toContain('the trail ends at seq 25');
  });

  it('exits 2 with a clear message on usage and I/O errors', async () => {
    expect(await audit('verify', dir)).toMatchObject({ code: 2, stderr: expect.stringContaining('no chain key: give --key-env NAME, --key-file FILE, or -c dbward.yaml') });
    expect(await audit('verify', path.join(tmp, 'nope'), '--key-env', 'DBWARD_TEST_AUDIT_KEY')).toMatchObject({ code: 2, stderr: expect.stringContaining('ENOENT') });
    expect(await audit('verify', dir, '--key-env', 'NOT_SET_ANYWHERE')).toMatchObject({ code: 2, stderr: expect.stringContaining('environment variable NOT_SET_ANYWHERE (the chain key) is not set') });
    expect(await audit('verify', '--frobnicate')).toMatchObject({ code: 2, stderr: expect.stringContaining("Unknown option '--frobnicate'") });
    expect(await audit('frob')).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown subcommand "frob"') });
  });
});

describe('dbward audit search', () => {
  it('prints a table: time, user, target, decision, rows, sqlstate, duration, text cut to the terminal width', async () => {
    const r = await audit('search', '-c', config, '--user', 'alice@example.com', '--column', 'customers.email');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME +USER +TARGET +DECISION +ROWS SQLSTATE +DURATION TEXT$/);
    expect(lines).toHaveLength(1 + 8);
    expect(lines[1]).toMatch(/^2026-11-23 10:01:00\.000 alice@example\.com +app +allow +5 +2\.50ms SELECT name, email FROM/);
    expect(lines.find((l) => l.includes('deny'))).toMatch(/deny +- 42501 +0\.30ms COPY customers TO STDOUT/);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(120);
    expect(lines[1]!.endsWith('…')).toBe(true);
  });

  it('prints JSON lines: the statement with its outcome merged', async () => {
    const r = await audit('search', '--file', path.dirname(active), '--table', 'orders', '--kind', 'agent', '--format', 'json', '--since', '2026-11-23T10:05:00Z');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((x) => x.id)).toEqual(['st-6', 'st-9', 'st-12']);
    expect(rows[0]).toMatchObject({ identity: { user: 'report-bot' }, facts: [{ reads: ['orders'] }], outcome: { rows: 5, status: 'ok' } });
    expect(rows[0]).not.toHaveProperty('chain');
  });

  it('answers by decision, sqlstate and rule, and refuses a bad filter', async () => {
    const r = await audit('search', '-c', config, '--decision', 'deny', '--sqlstate', '42501', '--rule', 'no-pii-export', '--format', 'json');
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['st-7']);
    expect(await audit('search', '-c', config, '--decision', 'perhaps')).toMatchObject({ code: 2, stderr: expect.stringContaining('decision must be allow, deny or require_approval') });
  });
});

describe('dbward audit session', () => {
  it('prints the timeline of one session', async () => {
    const r = await audit('session', 'sess-alice', '-c', config, '--format', 'json');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((x) => x.type)).toEqual(['session_start', ...Array(8).fill('statement'), 'session_end']);
    const table = (await auditWith({ COLUMNS: '200' }, 'session', 'sess-alice', '-c', config)).stdout.trimEnd().split('\n');
    expect(table[1]).toMatch(/^2026-11-23 09:59:59\.000 alice@example\.com +app +- +- +- \[session_start\]$/);
    expect(table.at(-1)).toMatch(/^2026-11-23 10:30:00\.000 alice@example\.com +- +- +- +30\.0min \[session_end\] client_terminated$/);
    expect(await audit('session', 'no-such-session', '-c', config)).toMatchObject({ code: 0, stdout: '', stderr: 'no events for session no-such-session\n' });
  });
});

describe('dbward audit tail', () => {
  it('prints the last rows, reaching into rotated files', async () => {
    const r = await audit('tail', '-n', '4', '-c', config, '--format', 'json');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['st-9', 'st-10', 'st-11', 'st-12']);
    const all = await audit('tail', '-n', '4', '-c', config, '--format', 'json', '--type', 'statement,session_end');
    expect(all.stdout.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['st-10', 'st-11', 'st-12', 'se-1']);
  });

  it('-f picks up appended lines and follows the active file through a rotation', async () => {
    const d = path.join(tmp, 'follow');
    const file = path.join(d, 'dbward.jsonl');
    let sink = new FileAuditSink(file, { fsync: 'none', key: KEY, rotateBytes: 2000 });
    for (const e of pair(1)) await sink.commit(JSON.stringify(e));
    await sink.close();
    const t = start(['tail', '-f', '-n', '5', '--file', file, '--format', 'json']);
    const ids = (): string[] => t.out().split('\n').filter(Boolean).map((l) => JSON.parse(l).id as string);
    await until(() => ids().length === 1, () => `initial rows: ${t.out()} ${t.err()}`);
    expect(ids()).toEqual(['st-1']);

    sink = new FileAuditSink(file, { fsync: 'none', key: KEY, rotateBytes: 2000 });
    for (const e of pair(2)) await sink.commit(JSON.stringify(e));
    await until(() => ids().length === 2, () => `appended row: ${t.out()} ${t.err()}`);
    // Enough to rotate the active file (several times) while tail follows it.
    for (let n = 3; n <= 8; n++) {
      for (const e of pair(n)) await sink.commit(JSON.stringify(e));
      await new Promise((r) => setTimeout(r, 100));
    }
    await sink.close();
    expect(fs.readdirSync(d).length).toBeGreaterThan(2);
    await until(() => ids().length === 8, () => `rows after rotation: ${t.out()} ${t.err()}`);
    expect(ids()).toEqual(['st-1', 'st-2', 'st-3', 'st-4', 'st-5', 'st-6', 'st-7', 'st-8']);
    expect(JSON.parse(t.out().trim().split('\n').at(-1)!)).toMatchObject({ outcome: { rows: 5 } });
    t.child.kill('SIGTERM');
    expect(await t.exit).toBe(0);
  });
});

describe('the PostgreSQL audit table', () => {
  const table = `dbward_audit_cli_${process.pid}`;
  const url = `postgresql://${PG.user}@${PG.host}:${PG.port}/${PG.database}`;
  let client: pg.Client;

  beforeAll(async () => {
    await requirePostgres();
    client = new pg.Client({ ...PG });
    await client.connect();
    await client.query(`CREATE TABLE ${table} (node text, seq bigint, time timestamptz, type text, session text, event jsonb, line text, PRIMARY KEY (node, seq))`);
    await client.query(`CREATE TABLE ${table}_heads (node text PRIMARY KEY, seq bigint, mac text, time timestamptz)`);
    // Two replicas, one chain each: node-a's statements st-1..5, node-b's st-21..25.
    for (const [node, identity, session, first] of [['node-a', ALICE, 'pg-alice', 1], ['node-b', BOT, 'pg-bot', 21]] as const) {
      const chain = new Chain(KEY);
      for (let n: number = first; n < first + 5; n++) {
        for (const e of pair(n, { session, identity, deny: n === 24 })) {
          const line = chain.seal(JSON.stringify(e));
          const ev = JSON.parse(line);
          await client.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5, $6, $7)`, [node, ev.chain.seq, ev.time, ev.type, ev.session, line, line]);
        }
      }
      await client.query(`INSERT INTO ${table}_heads VALUES ($1, $2, $3, now())`, [node, chain.head.seq, chain.head.mac]);
    }
  });

  afterAll(async () => {
    await client?.query(`DROP TABLE IF EXISTS ${table}, ${table}_heads`);
    await client?.end();
  });

  it('searches across nodes, with the time range and session pushed into the query', async () => {
    const r = await audit('search', '--postgres', url, '--audit-table', table, '--format', 'json');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows).toHaveLength(10);
    expect(rows.every((x) => x.outcome && typeof x.outcome.status === 'string')).toBe(true);
    const denied = await audit('search', '--postgres', url, '--audit-table', table, '--decision', 'deny', '--format', 'json');
    expect(JSON.parse(denied.stdout)).toMatchObject({ session: 'pg-bot', outcome: { sqlstate: '42501' } });
    const ranged = await audit('search', '--postgres', url, '--audit-table', table, '--since', '2026-11-23T10:22:00Z', '--until', '2026-11-23T10:24:00Z', '--format', 'json');
    expect(ranged.stdout.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['st-22', 'st-23']);
    const timeline = await audit('session', 'pg-alice', '--postgres', url, '--audit-table', table, '--format', 'json');
    expect(timeline.stdout.trim().split('\n')).toHaveLength(5);
  });

  it('verifies each node against its exported head, and names a tampered row', async () => {
    const ok = await audit('verify', '--postgres', url, '--table', table, '--key-env', 'DBWARD_TEST_AUDIT_KEY');
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe(`${table} node node-a: ok: 10 events, seq 1..10, from the start of the chain; matches the exported head (seq 10)\n`
      + `${table} node node-b: ok: 10 events, seq 1..10, from the start of the chain; matches the exported head (seq 10)\n`);
    expect(ok.code).toBe(0);

    await client.query(`UPDATE ${table} SET line = replace(line, '"rows":5', '"rows":50') WHERE node = 'node-b' AND seq = 4`);
    const altered = await audit('verify', '--postgres', url, '--table', table, '--key-env', 'DBWARD_TEST_AUDIT_KEY');
    expect(altered.code).toBe(1);
    expect(altered.stdout).toContain(`${table} node node-a: ok`);
    expect(altered.stdout).toContain(`${table} node node-b: ALTERED at ${table}[node-b]:4 (seq 4)`);

    await client.query(`DELETE FROM ${table} WHERE node = 'node-a' AND seq >= 9`);
    const cut = await audit('verify', '--postgres', url, '--table', table, '--node', 'node-a', '--key-env', 'DBWARD_TEST_AUDIT_KEY');
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain(`${table} node node-a: TRUNCATED at ${table}[node-a]:9 (seq 9)`);
  });
});

describe('the admin API search handler', () => {
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    const handler = auditSearchHandler({ source: () => ({ kind: 'files', paths: [path.dirname(active)] }), maxLimit: 50 });
    server = http.createServer((req, res) => { void handler(req, res); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('streams matching rows as JSON lines', async () => {
    const res = await fetch(`${base}/audit/search?user=report-bot&table=orders&since=2026-11-23T10:00:00Z&format=json`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const rows = (await res.text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id)).toEqual(['st-3', 'st-6', 'st-9', 'st-12']);
    expect(rows[0].outcome).toMatchObject({ rows: 5 });
  });

  it('serves a session timeline', async () => {
    const res = await fetch(`${base}/audit/sessions/sess-bot`);
    expect(res.status).toBe(200);
    expect((await res.text()).trim().split('\n').map((l) => JSON.parse(l).id)).toEqual(['st-3', 'st-6', 'st-9', 'st-12']);
  });

  it('answers 400 for a bad filter or limit, 404 elsewhere, 405 for other methods', async () => {
    expect(await fetch(`${base}/audit/search?since=soon`).then(async (r) => [r.status, await r.json()])).toEqual([400, { error: expect.stringContaining('"soon" is not a time') }]);
    expect((await fetch(`${base}/audit/search?limit=51`)).status).toBe(400);
    expect((await fetch(`${base}/audit/search?format=csv`)).status).toBe(400);
    expect((await fetch(`${base}/audit/other`)).status).toBe(404);
    expect((await fetch(`${base}/audit/search`, { method: 'POST' })).status).toBe(405);
  });
});

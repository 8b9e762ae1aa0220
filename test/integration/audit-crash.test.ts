// Nothing executes unrecorded, even when dbward dies mid-load: dbward runs as a
// real process in front of a throwaway cluster that logs every statement it
// receives (log_statement=all); 16 clients write through it, half over the
// simple protocol and half over the extended one, and dbward is SIGKILLed.
// Every statement PostgreSQL logged and every row it wrote must then have its
// statement event in the audit trail, and the trail up to the crash must verify.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readHeadFile } from '../../src/audit/head.js';
import { verifyFiles } from '../../src/audit/verify.js';
import { type Cluster, startCluster } from '../helpers/cluster.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CLIENTS = 16;
const LOAD_MS = 2_000;
const KEY = randomBytes(32).toString('hex');

let cluster: Cluster;
let dir: string;
let child: ChildProcess | null = null;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The statement a client sends for its n-th write; the (client, n) marker makes every text unique. */
function statementFor(client: number, n: number): { text: string; values?: number[] } {
  // The extended texts carry the marker in a comment: their values are parameters, which the trail does not record.
  return client % 2 === 0
    ? { text: `INSERT INTO t(client, n) VALUES (${client}, ${n})` }
    : { text: `INSERT INTO t(client, n) VALUES ($1, $2) /* ${client}:${n} */`, values: [client, n] };
}

/** Waits until a query through dbward succeeds: the listener is up and the upstream reachable. */
async function untilServing(port: number, output: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child?.exitCode !== null) throw new Error(`dbward exited during startup:\n${output()}`);
    const c = new pg.Client({ host: '127.0.0.1', port, database: 'crash', user: 'probe' });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`dbward never served a query: ${(err as Error).message}\n${output()}`);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}

/** The rows written, once every backend has ended: one that had received its statement finishes it before it sees the closed socket. */
async function settledRows(): Promise<{ client: number; n: number }[]> {
  const direct = new pg.Client({ host: '127.0.0.1', port: cluster.port, database: 'postgres', user: 'postgres' });
  await direct.connect();
  try {
    await expect.poll(async () => (await direct.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )).rows[0]!.n, { timeout: 30_000, interval: 100 }).toBe(0);
    return (await direct.query<{ client: number; n: number }>('SELECT client, n FROM t')).rows;
  } finally {
    await direct.end();
  }
}

beforeAll(async () => {
  cluster = await startCluster(['host all all 127.0.0.1/32 trust'], {
    log_statement: "'all'",
    log_destination: "'stderr'",
    logging_collector: 'off',
    log_line_prefix: "'%m [%p] '",
  });
  cluster.sql('CREATE TABLE t (client int NOT NULL, n int NOT NULL, PRIMARY KEY (client, n))');
  dir = path.join(cluster.dir, 'dbward');
  fs.mkdirSync(dir);
});

afterAll(() => {
  if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  cluster?.stop();
});

it('records every statement PostgreSQL received before dbward was SIGKILLed, in a trail that verifies', async () => {
  const port = await freePort();
  const config = path.join(dir, 'dbward.yaml');
  fs.writeFileSync(path.join(dir, 'policy.yaml'), 'default: allow\n');
  fs.writeFileSync(config, [
    'listeners:', `  - { name: pg, host: 127.0.0.1, port: ${port}, require_tls: false }`,
    'targets:', `  - { name: crash, host: 127.0.0.1, port: ${cluster.port}, database: postgres, user: postgres, tls: { mode: disable } }`,
    'identity: { mode: unverified }',
    'policy: { path: policy.yaml, watch: false }',
    'audit:',
    '  chain: { key: { env: DBWARD_CRASH_TEST_KEY }, head_file: head.json, head_interval_ms: 100 }',
    // Small files, so the crash also lands on a trail that rotated a few times.
    '  file: { path: audit/dbward.jsonl, fsync: none, rotate_bytes: 262144 }',
    'admin: { port: null }',
    'log: { level: warn }',
  ].join('\n') + '\n');
  // node itself, not an npx/tsx wrapper: the SIGKILL must hit the process that holds the sessions.
  child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'start', '-c', config], {
    cwd: ROOT, env: { ...process.env, DBWARD_CRASH_TEST_KEY: KEY }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (b) => (output += b));
  child.stderr!.on('data', (b) => (output += b));
  const exited = new Promise<NodeJS.Signals | null>((r) => child!.once('exit', (_code, signal) => r(signal)));
  await untilServing(port, () => output);

  const clients = Array.from({ length: CLIENTS }, (_, i) => {
    const c = new pg.Client({ host: '127.0.0.1', port, database: 'crash', user: `writer${i}` });
    c.on('error', () => undefined); // the connection dies with dbward; the failing query says so
    return c;
  });
  await Promise.all(clients.map((c) => c.connect()));
  let sent = 0;
  const acknowledged: string[] = [];
  const writers = clients.map(async (c, i) => {
    for (let n = 1; ; n++) {
      const s = statementFor(i, n);
      sent++;
      try {
        await c.query(s);
      } catch {
        return;
      }
      acknowledged.push(s.text);
    }
  });
  await new Promise((r) => setTimeout(r, LOAD_MS));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  await Promise.all(writers);
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));

  const rows = await settledRows();
  const executed = new Set(rows.map((r) => statementFor(r.client, r.n).text));

  // log_statement logs on receipt: a superset of what executed, and none of it may be missing from the trail.
  const logged = new Set<string>();
  let loggedExtended = 0;
  for (const line of fs.readFileSync(cluster.logFile, 'utf8').split('\n')) {
    const m = /^\S+ \S+ \S+ \[\d+\] LOG: {2}(statement|execute <unnamed>): (INSERT INTO t\(client, n\) .*)$/.exec(line);
    if (!m) continue;
    logged.add(m[2]!);
    if (m[1] !== 'statement') loggedExtended++;
  }

  const auditDir = path.join(dir, 'audit');
  const files = fs.readdirSync(auditDir).filter((f) => f.endsWith('.jsonl')).map((f) => path.join(auditDir, f));
  const events = files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>));
  const recorded = new Set(events.filter((e) => e.type === 'statement').map((e) => e.statement.text as string));
  const unexecuted = [...recorded].filter((t) => t.startsWith('INSERT INTO t(') && !executed.has(t)).length;

  console.log(`audit crash test: ${sent} statements sent by ${CLIENTS} clients, ${acknowledged.length} acknowledged, `
    + `${rows.length} executed (rows), ${logged.size} logged by PostgreSQL (${loggedExtended} over the extended protocol), `
    + `${recorded.size} statement events in ${events.length} audit events over ${files.length} file(s); `
    + `${unexecuted} recorded but not executed (in flight when dbward died)`);

  // The load was real: both protocols ran, and the parsed log covers what executed (else the log check proves nothing).
  expect(rows.filter((r) => r.client % 2 === 0).length).toBeGreaterThan(CLIENTS);
  expect(rows.filter((r) => r.client % 2 === 1).length).toBeGreaterThan(CLIENTS);
  expect([...executed].filter((t) => !logged.has(t))).toEqual([]);
  expect(acknowledged.filter((t) => !executed.has(t))).toEqual([]);

  expect([...executed].filter((t) => !recorded.has(t))).toEqual([]);
  expect([...logged].filter((t) => !recorded.has(t))).toEqual([]);

  // write(2) completes whole or not at all under SIGKILL, so the trail ends with a complete, sealed line,
  // and it reaches at least the last head dbward exported (it exports only what is on disk).
  const head = readHeadFile(path.join(dir, 'head.json'));
  const report = await verifyFiles(files, Buffer.from(KEY, 'utf8'), { head });
  expect(report.problem).toBeNull();
  expect(report.ok).toBe(true);
  expect(report.startsAtGenesis).toBe(true);
  expect(report.headChecked).toBe(true);
  expect(report.events).toBe(events.length);
}, 120_000);

// dbward as an operator runs it: `dbward start -c dbward.yaml` as a real
// process; admin endpoints; SIGTERM drains sessions (idle ones end at once with
// 57P01, a running statement finishes first); a bad config names file and line.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestIssuer } from '../helpers/oidc.js';
import { requirePostgres } from '../helpers/services.js';

const root = path.resolve(import.meta.dirname, '../..');
const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Runs the dbward CLI from source; collects its output. */
function dbward(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (out += b));
  return { child, output: () => out, exited: new Promise((r) => child.on('exit', (code) => r(code))) };
}

async function waitForPort(port: number, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} never opened`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(() => requirePostgres());

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('dbward start -c dbward.yaml', () => {
  it('serves, reports metrics and readiness, and drains on SIGTERM', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-life-'));
    const [port, adminPort] = [await freePort(), await freePort()];
    const cfg = path.join(dir, 'dbward.yaml');
    const idp = await startTestIssuer();
    const [aliceToken, bobToken] = await Promise.all([idp.mintToken('alice'), idp.mintToken('bob')]);
    fs.writeFileSync(cfg, [
      'listeners:', `  - { name: pg, host: 127.0.0.1, port: ${port}, require_tls: false, allow_plaintext_token: true }`,
      'targets:', '  - { name: test, host: 127.0.0.1, port: 5432, database: test, user: root, tls: { mode: disable } }',
      `identity: { issuer: "${idp.issuer}", audience: dbward }`,
      'policy: { path: policy.yaml }',
      'audit:', '  file: { path: audit.jsonl }',
      `admin: { host: 127.0.0.1, port: ${adminPort} }`,
      'shutdown: { drain_timeout_ms: 5000 }',
      'log: { level: info }',
    ].join('\n'));
    const policyFile = path.join(dir, 'policy.yaml');
    fs.writeFileSync(policyFile, 'default: allow\n');
    const run = dbward(['start', '-c', cfg]);
    await waitForPort(port);

    const idle = new pg.Client({ host: '127.0.0.1', port, database: 'test', user: 'alice@example.com', password: aliceToken });
    const busy = new pg.Client({ host: '127.0.0.1', port, database: 'test', user: 'bob@example.com', password: bobToken });
    await Promise.all([idle.connect(), busy.connect()]);
    const idleEnded = new Promise<Error & { code?: string }>((r) => idle.on('error', r));
    busy.on('error', () => undefined);

    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(/dbward_sessions_active\{engine="postgres"\} 2/);
    expect((await fetch(`http://127.0.0.1:${adminPort}/healthz`)).status).toBe(200);
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect(await ready.json()).toEqual({ status: 'ready', problems: [], warnings: [] });

    // An invalid policy on SIGHUP leaves the old one in force and says so in /readyz.
    fs.writeFileSync(policyFile, 'default: allow\nrules: [{ id: x, action: nonsense }]\n');
    run.child.kill('SIGHUP');
    const warnings = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as { warnings: string[] }).warnings;
    await expect.poll(async () => (await warnings()).length, { timeout: 5000 }).toBe(1);
    expect((await idle.query('SELECT version() AS v')).rows).toHaveLength(1);
    // A valid change is picked up by the file watch alone.
    fs.writeFileSync(policyFile, 'default: allow\nrules:\n  - { id: no-version, match: { statement: { functions: [version] } }, action: deny, message: not today }\n');
    await expect.poll(() => idle.query('SELECT version()').then(() => 'ok', (e: { code?: string }) => e.code), { timeout: 5000 }).toBe('42501');
    expect(await warnings()).toEqual([]);
    expect(await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()).toMatch(/dbward_policy_reloads_total\{result="invalid"\} 1/);

    const slow = busy.query('SELECT pg_sleep(1) AS done');
    await new Promise((r) => setTimeout(r, 200));
    run.child.kill('SIGTERM');
    expect((await idleEnded).code).toBe('57P01');
    const res = await slow; // the running statement finishes before its session is closed
    expect(res.rows).toEqual([{ done: '' }]);
    expect(await run.exited).toBe(0);

    const events = fs.readFileSync(path.join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(events.filter((e) => e.type === 'session_end').map((e) => [e.identity.user, e.identity.verified]).sort()).toEqual([['alice@example.com', true], ['bob@example.com', true]]);
    const sleep = events.find((e) => e.type === 'statement' && e.statement.text.includes('pg_sleep(1)'));
    expect(events.find((e) => e.type === 'statement_outcome' && e.statement_id === sleep.id).outcome.status).toBe('ok');
    expect(run.output()).toContain('"msg":"draining sessions"');
    await Promise.all([idle.end().catch(() => undefined), busy.end().catch(() => undefined), idp.close()]);
  });

  it('names the file, line and field of a config error and exits 1', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-badcfg-'));
    const cfg = path.join(dir, 'dbward.yaml');
    fs.writeFileSync(cfg, 'listeners:\n  - { port: 6432 }\ntargets:\n  - name: app\n    host: db\n    user: dbward\n    port: 99999\n');
    const policyFile = path.join(dir, 'policy.yaml');
    fs.writeFileSync(policyFile, 'default: allow\n');
    const run = dbward(['start', '-c', cfg]);
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain(`${cfg}:7:11`);
    expect(run.output()).toContain('targets[0].port');
  });
});

// Just-in-time approvals end to end: psql and node-postgres sessions through
// dbward to the real PostgreSQL, identities from the real in-process OIDC
// server, decisions from the CLI, the admin API, a second replica sharing the
// PostgreSQL store, and signed Slack callbacks. The table changes only once a
// statement is approved.

import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdentitySettings } from '../../src/config/types.js';
import { resolveIdentityConfig } from '../../src/identity/types.js';
import type { ApprovalRequest } from '../../src/approvals/types.js';
import { psql, startTestDaemon, type RunResult, type TestDaemon } from '../helpers/dbward.js';
import { fakeSlack, type FakeSlack } from '../helpers/slack.js';
import { startTestIssuer, type TestIssuer } from '../helpers/oidc.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { readSchema } from '../helpers/schema.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const S = `dbward_apr_${randomBytes(4).toString('hex')}`;
const STORE_TABLE = `${S}.approvals`;
const SLACK_SECRET = 'slack-signing-secret-for-tests-0123456789';

const POLICY = `
default: allow
rules:
  - { id: wait-orders, action: require_approval, approvers: [dba], timeout: 60s, match: { statement: { tables: { write: ["${S}.orders"] } } } }
  - { id: wait-short, action: require_approval, approvers: [dba], timeout: 2s, match: { statement: { tables: { write: ["${S}.short"] } } } }
  - { id: retry-items, action: require_approval, approvers: [dba], mode: retry, match: { statement: { tables: { write: ["${S}.items"] } } } }
  - { id: two-ledger, action: require_approval, approvers: [dba], approvals: 2, match: { statement: { tables: { write: ["${S}.ledger"] } } } }
`;

function oidc(issuer: string): IdentitySettings {
  return { mode: 'oidc', verifier: resolveIdentityConfig({ issuer, audience: 'dbward', clockToleranceSec: 0 }), expiryGraceSec: 0 };
}

async function sql(text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ ...PG });
  await c.connect();
  try { return await c.query(text); } finally { await c.end(); }
}

async function count(table: string): Promise<number> {
  return Number((await sql(`SELECT count(*) AS n FROM ${S}.${table}`)).rows[0].n);
}

let idp: TestIssuer;
let a: TestDaemon;
let b: TestDaemon;
const tokens: Record<string, string> = {};
let slackHook: FakeSlack;

beforeAll(async () => {
  await requirePostgres();
  await sql(`CREATE SCHEMA ${S}`);
  for (const t of ['orders', 'short', 'items', 'ledger']) await sql(`CREATE TABLE ${S}.${t} (id int PRIMARY KEY); INSERT INTO ${S}.${t} SELECT generate_series(1, 10)`);
  [idp, slackHook] = await Promise.all([startTestIssuer(), fakeSlack()]);
  for (const u of ['alice', 'bob', 'carol']) tokens[u] = await idp.mintToken(u);
  process.env.DBWARD_TEST_SLACK_HOOK = slackHook.url;
  process.env.DBWARD_TEST_SLACK_SECRET = SLACK_SECRET;
  process.env.DBWARD_TEST_LINK_KEY = randomBytes(32).toString('hex');
  const approvals = {
    store: 'postgres' as const,
    postgres: { host: PG.host, port: PG.port, database: PG.database, user: PG.user, password: { none: true } as const, tls: { mode: 'disable' as const }, table: STORE_TABLE },
    linkKey: { env: 'DBWARD_TEST_LINK_KEY' },
  };
  a = await startTestDaemon({
    identity: oidc(idp.issuer), policy: POLICY, listener: { allowPlaintextToken: true },
    approvals: {
      ...approvals, replica: 'a',
      slack: { webhookUrl: { env: 'DBWARD_TEST_SLACK_HOOK' }, signingSecret: { env: 'DBWARD_TEST_SLACK_SECRET' } },
    },
  });
  b = await startTestDaemon({ identity: oidc(idp.issuer), policy: POLICY, listener: { allowPlaintextToken: true }, approvals: { ...approvals, replica: 'b' } });
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([idp?.close(), slackHook?.close()]);
  await sql(`DROP SCHEMA IF EXISTS ${S} CASCADE`).catch(() => undefined);
});

const conn = (d: TestDaemon, user: string) => `host=127.0.0.1 port=${d.port} dbname=test user=${user}@example.com sslmode=disable`;

/** psql running in the background, with its output so far. */
function psqlBackground(d: TestDaemon, user: string, statement: string): { child: ChildProcess; out: () => string; done: Promise<RunResult> } {
  let out = '';
  const child = spawn('psql', [conn(d, user), '-X', '-v', 'ON_ERROR_STOP=1', '-c', statement], { env: { ...process.env, PGPASSWORD: tokens[user] } });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c; out += c; });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr += c; out += c; });
  const done = new Promise<RunResult>((r) => child.on('close', (code) => r({ code: code ?? 1, stdout, stderr })));
  return { child, out: () => out, done };
}

async function api(d: TestDaemon, user: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${d.daemon.adminPort}${p}`, {
    method, headers: { authorization: `Bearer ${tokens[user]}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

/** The CLI, as an approver runs it. */
function cli(d: TestDaemon, user: string, ...args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'approvals', ...args, '--url', `http://127.0.0.1:${d.daemon.adminPort}`],
      { cwd: ROOT, env: { ...process.env, DBWARD_TOKEN: tokens[user] } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c; });
    child.stderr.on('data', (c: Buffer) => { stderr += c; });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** The id named in a waiting client's NOTICE. */
async function noticedId(out: () => string): Promise<string> {
  await expect.poll(out, { timeout: 10_000 }).toMatch(/request (apr_\w+) waits/);
  return /request (apr_\w+) waits/.exec(out())![1]!;
}

describe('wait mode', () => {
  it('psql blocks with a NOTICE; the statement runs only once an approver approves with the CLI', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.orders WHERE id = 1`);
    const id = await noticedId(run.out);
    expect(run.out()).toMatch(/dbward approvals approve apr_\w+/);
    expect(run.out()).toMatch(/Ctrl-C/);
    // The signed link too, for the requester to hand to an approver (who must still sign in).
    expect(run.out()).toContain(`or opens http://127.0.0.1:${a.daemon.adminPort}/approvals/${id}/approve?`);
    // Held, not run: the row is still there while the request waits.
    await new Promise((r) => setTimeout(r, 300));
    expect(await count('orders')).toBe(10);
    const listed = await cli(a, 'carol', 'list');
    expect(listed.stdout).toContain(id);
    const approved = await cli(a, 'carol', 'approve', id, '--reason', 'ticket OPS-1');
    expect(approved).toMatchObject({ code: 0, stdout: `${id}: approved\n` });
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('DELETE 1');
    expect(await count('orders')).toBe(9);
    // The single-use grant is spent.
    const again = await api(a, 'carol', 'GET', `/approvals/${id}`);
    expect(again.body.request).toMatchObject({ status: 'used', uses: 1, decisions: [{ user: 'carol@example.com', via: 'cli', reason: 'ticket OPS-1' }] });
  });

  it('a deny ends the wait with an ERROR that carries the approver and reason', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.orders WHERE id = 2`);
    const id = await noticedId(run.out);
    expect((await cli(a, 'carol', 'deny', id)).code).toBe(2); // a deny needs a reason
    expect((await cli(a, 'carol', 'deny', id, '--reason', 'not during the freeze')).code).toBe(0);
    const r = await run.done;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('statement denied by approver carol@example.com: not during the freeze');
    expect(await count('orders')).toBe(9);
  });

  it('times out with an ERROR when nobody decides', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.short WHERE id = 1`);
    const id = await noticedId(run.out);
    const r = await run.done;
    expect(r.stderr).toContain(`approval request ${id} was not decided in time`);
    expect(await count('short')).toBe(10);
    expect((await api(a, 'carol', 'GET', `/approvals/${id}`)).body.request.status).toBe('expired');
    // Too late to approve.
    expect(await api(a, 'carol', 'POST', `/approvals/${id}/approve`, {})).toMatchObject({ status: 409 });
  });

  it('Ctrl-C withdraws the request and the statement never runs', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.orders WHERE id = 3`);
    const id = await noticedId(run.out);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.stderr).toContain('canceling statement due to user request');
    expect((await api(a, 'carol', 'GET', `/approvals/${id}`)).body.request).toMatchObject({ status: 'withdrawn', reason: 'cancelled by the client' });
    expect(await api(a, 'carol', 'POST', `/approvals/${id}/approve`, {})).toMatchObject({ status: 409 });
    expect(await count('orders')).toBe(9);
  });

  it('nobody approves their own request, nor decides outside the approver groups', async () => {
    const run = psqlBackground(a, 'alice', `DELETE FROM ${S}.orders WHERE id = 7`);
    const id = await noticedId(run.out);
    const self = await api(a, 'alice', 'POST', `/approvals/${id}/approve`, { reason: 'mine' });
    expect(self).toMatchObject({ status: 403, body: { error: expect.stringContaining('asked for request') } });
    const outsider = await api(a, 'bob', 'POST', `/approvals/${id}/approve`, {});
    expect(outsider).toMatchObject({ status: 403, body: { error: expect.stringContaining('not in an approver group') } });
    // bob may not even see it.
    expect((await api(a, 'bob', 'GET', `/approvals/${id}`)).status).toBe(404);
    expect((await api(a, 'carol', 'POST', `/approvals/${id}/deny`, { reason: 'cleanup' })).status).toBe(200);
    expect((await run.done).stderr).toContain('cleanup');
    expect(await count('orders')).toBe(9);
  });

  it('a rule may need two approvers: one approval is not enough, nor the same approver twice', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.ledger WHERE id = 1`);
    const id = await noticedId(run.out);
    const first = await api(a, 'alice', 'POST', `/approvals/${id}/approve`, { reason: 'one' });
    expect(first.body.request).toMatchObject({ status: 'pending', decisions: [{ user: 'alice@example.com' }] });
    expect(await api(a, 'alice', 'POST', `/approvals/${id}/approve`, {})).toMatchObject({ status: 409 });
    await new Promise((r) => setTimeout(r, 300));
    expect(await count('ledger')).toBe(10);
    const second = await api(a, 'carol', 'POST', `/approvals/${id}/approve`, { reason: 'two' });
    expect(second).toMatchObject({ status: 200, body: { request: { status: 'approved' } } });
    expect((await run.done).stdout).toContain('DELETE 1');
    expect(await count('ledger')).toBe(9);
  });
});

describe('retry mode', () => {
  it('errors at once with the request id; the same statement runs once after approval', async () => {
    const stmt = `DELETE FROM ${S}.items WHERE id = 1`;
    const client = new pg.Client({ host: '127.0.0.1', port: a.port, database: 'test', user: 'bob@example.com', password: tokens.bob });
    await client.connect();
    try {
      const first = await client.query(stmt).catch((e: pg.DatabaseError) => e);
      expect(first).toMatchObject({ code: '42501', message: expect.stringMatching(/request apr_\w+ waits for an approval from dba/) });
      const id = /(apr_\w+)/.exec((first as Error).message)![1]!;
      expect(await count('items')).toBe(10);
      // Not yet approved: asking again makes no grant appear.
      await expect(client.query(stmt)).rejects.toMatchObject({ code: '42501' });
      expect((await api(a, 'carol', 'POST', `/approvals/${id}/approve`, { reason: 'ok' })).status).toBe(200);
      // Another statement, or another identity, does not ride on the grant.
      await expect(client.query(`DELETE FROM ${S}.items WHERE id = 2`)).rejects.toMatchObject({ code: '42501' });
      const alice = await psql(conn(a, 'alice'), ['-c', stmt], { env: { PGPASSWORD: tokens.alice } });
      expect(alice.stderr).toMatch(/requires approval/);
      expect(await client.query(stmt)).toMatchObject({ rowCount: 1 });
      expect(await count('items')).toBe(9);
      // Single use: the next run needs a new approval.
      await expect(client.query(stmt)).rejects.toMatchObject({ code: '42501' });
      expect((await api(a, 'carol', 'GET', `/approvals/${id}`)).body.request).toMatchObject({ status: 'used', uses: 1 });
    } finally {
      await client.end();
    }
  });
});

describe('extended protocol', () => {
  it('approvers see the bound values, and a grant lets through only the values approved', async () => {
    const stmt = `DELETE FROM ${S}.items WHERE id = $1`;
    const client = new pg.Client({ host: '127.0.0.1', port: a.port, database: 'test', user: 'bob@example.com', password: tokens.bob });
    await client.connect();
    try {
      const first = await client.query(stmt, [5]).catch((e: pg.DatabaseError) => e);
      expect(first).toMatchObject({ code: '42501' });
      const id = /(apr_\w+)/.exec((first as Error).message)![1]!;
      expect((await api(a, 'carol', 'GET', `/approvals/${id}`)).body.request).toMatchObject({ text: stmt, params: ['5'] });
      expect((await api(a, 'carol', 'POST', `/approvals/${id}/approve`, { reason: 'ok' })).status).toBe(200);
      // The same text with another value is another statement: no grant for it.
      await expect(client.query(stmt, [6])).rejects.toMatchObject({ code: '42501' });
      expect(await count('items')).toBeGreaterThanOrEqual(9);
      const before = await count('items');
      expect(await client.query(stmt, [5])).toMatchObject({ rowCount: 1 });
      expect(await count('items')).toBe(before - 1);
      // Held statements that did not run are counted as refusals; every step as an approval event.
      const metrics = await (await fetch(`http://127.0.0.1:${a.daemon.adminPort}/metrics`)).text();
      expect(metrics).toMatch(/dbward_statements_refused_total\{reason="approval"\} [1-9]/);
      expect(metrics).toMatch(/dbward_approval_events_total\{step="requested"\} [1-9]/);
      expect(metrics).toMatch(/dbward_approval_events_total\{step="used"\} [1-9]/);
    } finally {
      await client.end();
    }
  });
});

describe('replicas sharing the PostgreSQL store', () => {
  it('a request made on one replica is approved through the other, and the waiting session proceeds', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.orders WHERE id = 4`);
    const id = await noticedId(run.out);
    const seen = await api(b, 'carol', 'GET', '/approvals?status=pending');
    expect(seen.body.requests.map((r: ApprovalRequest) => [r.id, r.replica])).toContainEqual([id, 'a']);
    expect((await cli(b, 'carol', 'approve', id, '--reason', 'from b')).code).toBe(0);
    expect((await run.done).stdout).toContain('DELETE 1');
    expect(await count('orders')).toBe(8);
  });
});

describe('Slack', () => {
  const sign = (body: string, ts: number, secret = SLACK_SECRET) =>
    `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`;
  const callback = (id: string, action: 'approve' | 'deny', user = 'U0CAROL'): string => `payload=${encodeURIComponent(JSON.stringify({
    type: 'block_actions', user: { id: user, username: 'carol' }, team: { id: 'T0' }, actions: [{ action_id: `dbward_${action}`, value: id }],
  }))}`;
  const post = (body: string, headers: Record<string, string>) => fetch(`http://127.0.0.1:${a.daemon.adminPort}/approvals/slack/interactions`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body,
  });

  it('posts Block Kit to the webhook; a forged callback is refused, a signed one is acknowledged and decides nothing', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.orders WHERE id = 5`);
    const id = await noticedId(run.out);
    await expect.poll(() => slackHook.bodies.find((m) => JSON.stringify(m).includes(id))).toBeTruthy();
    const msg = slackHook.bodies.find((m) => JSON.stringify(m).includes(id));
    const actions = msg.blocks.find((x: any) => x.type === 'actions');
    expect(actions.elements.map((e: any) => [e.action_id, e.value])).toEqual([['dbward_approve', id], ['dbward_deny', id]]);
    expect(actions.elements[0].url).toMatch(new RegExp(`/approvals/${id}/approve\\?exp=\\d+&sig=`));
    expect(JSON.stringify(msg)).toContain('bob@example.com');

    const body = callback(id, 'approve');
    const now = Math.floor(Date.now() / 1000);
    const forged = await post(body, { 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign(body, now, 'not-the-secret') });
    expect(forged.status).toBe(401);
    const stale = await post(body, { 'x-slack-request-timestamp': String(now - 600), 'x-slack-signature': sign(body, now - 600) });
    expect(stale.status).toBe(401);

    // Slack vouches for a Slack account, not a dbward identity: the press is answered, nothing is decided.
    const good = await post(body, { 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign(body, now) });
    expect(good.status).toBe(200);
    expect(await good.json()).toMatchObject({ text: `Nothing is decided in Slack. To approve request ${id}, run: dbward approvals approve ${id} --reason "...".` });
    const replayed = await post(body, { 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign(body, now) });
    expect(replayed.status).toBe(401);
    expect((await api(a, 'carol', 'GET', `/approvals/${id}`)).body.request).toMatchObject({ status: 'pending', decisions: [] });
    expect((await api(a, 'carol', 'POST', `/approvals/${id}/approve`, { reason: 'from the API' })).status).toBe(200);
    expect((await run.done).stdout).toContain('DELETE 1');
    // The approvers hear how it ended.
    await expect.poll(() => slackHook.bodies.some((m) => typeof m.text === 'string' && m.text.includes(id) && /approved/.test(m.text) && !m.blocks)).toBe(true);
  });

  it('a signed link opened in a browser checks the signature and says how to decide', async () => {
    const run = psqlBackground(a, 'bob', `DELETE FROM ${S}.orders WHERE id = 6`);
    const id = await noticedId(run.out);
    await expect.poll(() => slackHook.bodies.find((m) => JSON.stringify(m).includes(id))).toBeTruthy();
    const link: string = slackHook.bodies.find((m) => JSON.stringify(m).includes(id)).blocks.find((x: any) => x.type === 'actions').elements[1].url;
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(`dbward approvals deny ${id}`);
    expect((await fetch(link.replace(/sig=[^&]+/, 'sig=AAAA'))).status).toBe(403);
    // The link with a token decides, as a link decision.
    const res = await fetch(link, { method: 'POST', headers: { authorization: `Bearer ${tokens.carol}`, 'content-type': 'application/json' }, body: '{"reason":"no"}' });
    expect(res.status).toBe(200);
    expect((await run.done).stderr).toContain('statement denied by approver carol@example.com: no');
  });
});

describe('audit', () => {
  it('records every step as a schema-valid approval event, never a token', async () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    const validate = ajv.compile(readSchema('audit-event.schema.json'));
    const events = a.audit().filter((e) => e.type === 'approval');
    for (const e of events) expect(validate(e), JSON.stringify(validate.errors)).toBe(true);
    const steps = new Set(events.map((e) => e.step));
    for (const s of ['requested', 'notified', 'decided', 'approved', 'denied', 'used', 'expired', 'withdrawn']) expect(steps, s).toContain(s);
    const used = events.find((e) => e.step === 'used')!;
    const stmt = a.audit().find((e) => e.id === used.statement_id)!;
    expect(stmt).toMatchObject({ type: 'statement', decision: { action: 'require_approval' } });
    const raw = JSON.stringify(a.audit());
    for (const t of Object.values(tokens)) expect(raw).not.toContain(t.split('.')[2]);
  });
});

// Deciding from a browser: a held statement's signed link, the OIDC sign-in at
// the real in-process issuer (authorization code with PKCE, state and nonce; its
// login and consent pages answered over HTTP), the callback, the confirmation
// form with its CSRF token, and the decision. psql and node-postgres wait on the
// real PostgreSQL; the table changes only once the form is posted. Every refusal
// is a page with a status, and leaves the request as it was.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signLink } from '../../src/approvals/links.js';
import type { ApprovalRequest } from '../../src/approvals/types.js';
import type { ApprovalsConfig, IdentitySettings } from '../../src/config/types.js';
import { APPROVALS_CLIENT_ID, APPROVALS_SCOPE } from '../../src/embedded/dev-idp.js';
import { resolveIdentityConfig } from '../../src/identity/types.js';
import { Browser, confirmForm, signInAtIssuer } from '../helpers/browser.js';
import { startTestDaemon, type RunResult, type TestDaemon } from '../helpers/dbward.js';
import { DBWARD_RESOURCE, startTestIssuer, type TestIssuer } from '../helpers/oidc.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { fakeSlack, type FakeSlack } from '../helpers/slack.js';

const S = `dbward_signin_${randomBytes(4).toString('hex')}`;
/** The key as dbward reads it: the bytes of the variable's text. */
const LINK_KEY = Buffer.from(randomBytes(32).toString('hex'));
const SLACK_SECRET = 'slack-signing-secret-for-sign-in-tests-01';

const POLICY = `
default: allow
rules:
  - { id: wait-orders, action: require_approval, approvers: [dba], timeout: 60s, match: { statement: { tables: { write: ["${S}.orders"] } } } }
  - { id: dev-items, action: require_approval, approvers: [developers], timeout: 60s, match: { statement: { tables: { write: ["${S}.items"] } } } }
  - { id: two-ledger, action: require_approval, approvers: [dba], approvals: 2, match: { statement: { tables: { write: ["${S}.ledger"] } } } }
`;

async function sql(text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ ...PG });
  await c.connect();
  try { return await c.query(text); } finally { await c.end(); }
}

const count = async (table: string): Promise<number> => Number((await sql(`SELECT count(*) AS n FROM ${S}.${table}`)).rows[0].n);

let idp: TestIssuer;
let a: TestDaemon;
let slackHook: FakeSlack;
const tokens: Record<string, string> = {};
const admin = (p = '') => `http://127.0.0.1:${a.daemon.adminPort}${p}`;

function oidc(issuer: string): IdentitySettings {
  return { mode: 'oidc', verifier: resolveIdentityConfig({ issuer, audience: 'dbward', clockToleranceSec: 0 }), expiryGraceSec: 0 };
}

/** The approvals section of a daemon that signs approvers in at the test issuer. */
function approvals(over: Partial<ApprovalsConfig> = {}): Partial<ApprovalsConfig> {
  return {
    linkKey: { env: 'DBWARD_TEST_SIGNIN_LINK_KEY' },
    signIn: { clientId: APPROVALS_CLIENT_ID, clientSecret: { none: true }, scope: APPROVALS_SCOPE, resource: DBWARD_RESOURCE },
    ...over,
  };
}

beforeAll(async () => {
  await requirePostgres();
  await sql(`CREATE SCHEMA ${S}`);
  for (const t of ['orders', 'ledger', 'items']) await sql(`CREATE TABLE ${S}.${t} (id int PRIMARY KEY); INSERT INTO ${S}.${t} SELECT generate_series(1, 20)`);
  [idp, slackHook] = await Promise.all([startTestIssuer(), fakeSlack()]);
  for (const u of ['alice', 'bob', 'carol']) tokens[u] = await idp.mintToken(u);
  process.env.DBWARD_TEST_SIGNIN_LINK_KEY = LINK_KEY.toString('utf8');
  process.env.DBWARD_TEST_SIGNIN_SLACK_HOOK = slackHook.url;
  process.env.DBWARD_TEST_SIGNIN_SLACK_SECRET = SLACK_SECRET;
  a = await startTestDaemon({
    identity: oidc(idp.issuer), policy: POLICY, listener: { allowPlaintextToken: true },
    approvals: approvals({ slack: { webhookUrl: { env: 'DBWARD_TEST_SIGNIN_SLACK_HOOK' }, signingSecret: { env: 'DBWARD_TEST_SIGNIN_SLACK_SECRET' } } }),
  });
}, 60_000);

afterAll(async () => {
  await a?.stop();
  await Promise.all([idp?.close(), slackHook?.close()]);
  await sql(`DROP SCHEMA IF EXISTS ${S} CASCADE`).catch(() => undefined);
});

/** psql as `user`, in the background, with its output so far. */
function psqlBackground(user: string, statement: string): { out: () => string; done: Promise<RunResult> } {
  let out = '';
  let stdout = '';
  let stderr = '';
  const child = spawn('psql', [`host=127.0.0.1 port=${a.port} dbname=test user=${user}@example.com sslmode=disable`, '-X', '-v', 'ON_ERROR_STOP=1', '-c', statement],
    { env: { ...process.env, PGPASSWORD: tokens[user] } });
  child.stdout.on('data', (c: Buffer) => { stdout += c; out += c; });
  child.stderr.on('data', (c: Buffer) => { stderr += c; out += c; });
  return { out: () => out, done: new Promise((r) => child.on('close', (code) => r({ code: code ?? 1, stdout, stderr }))) };
}

/** The request a held statement made, once it exists. */
async function heldRequest(text: string): Promise<ApprovalRequest> {
  let found: ApprovalRequest | undefined;
  await expect.poll(async () => {
    found = (await a.daemon.approvals.list(['pending'])).find((r) => r.text === text);
    return found;
  }, { timeout: 10_000 }).toBeTruthy();
  return found!;
}

/** dbward's signed links for request `r`. */
function linksOf(r: ApprovalRequest): { approve: string; deny: string } {
  return a.daemon.approvals.links(r)!;
}

const status = async (id: string) => (await a.daemon.approvals.store.get(id))!;

/** Opens `link` in `b`, signs in as `account` and comes back: the confirmation page (or a refusal) the link then shows. */
async function signInThrough(b: Browser, link: string, account: string): Promise<Response> {
  const start = await b.request(link);
  expect(start.status).toBe(303);
  const callback = await signInAtIssuer(b, start.headers.get('location')!, account);
  const back = await b.request(callback);
  expect(back.status, await back.clone().text()).toBe(303);
  expect(back.headers.get('location')).toBe(new URL(link).pathname + new URL(link).search);
  return b.request(link);
}

/** Posts the confirmation form on `page` (a Response of the link), with `edit` applied to its fields. */
async function confirm(b: Browser, link: string, page: string, fields: Record<string, string> = {}, headers: Record<string, string> = {}): Promise<Response> {
  const form = confirmForm(page);
  expect(form.action).toBe(new URL(link).pathname + new URL(link).search);
  return b.request(admin(form.action), { form: { csrf: form.csrf!, ...fields }, headers });
}

describe('deciding from the link, signed in with OIDC', () => {
  it('psql waits; carol opens the link, signs in, confirms; the statement then runs', async () => {
    const stmt = `DELETE FROM ${S}.orders WHERE id = 1`;
    const run = psqlBackground('bob', stmt);
    const r = await heldRequest(stmt);
    const link = linksOf(r).approve;
    const b = new Browser();

    const start = await b.request(link);
    expect(start.status).toBe(303);
    const auth = new URL(start.headers.get('location')!);
    expect(auth.origin + auth.pathname).toBe(`${idp.issuer}/auth`);
    expect(Object.fromEntries(auth.searchParams)).toMatchObject({
      client_id: APPROVALS_CLIENT_ID, response_type: 'code', code_challenge_method: 'S256', scope: APPROVALS_SCOPE,
      redirect_uri: admin('/approvals/sign-in/callback'), resource: DBWARD_RESOURCE,
    });
    for (const p of ['state', 'nonce', 'code_challenge']) expect(auth.searchParams.get(p)).toMatch(/^[A-Za-z0-9_-]{43,}$/);
    const pending = b.received.find((c) => c.name === 'dbward_sign_in')!;
    expect(pending.attributes).toMatchObject({ path: '/approvals', httponly: '', samesite: 'Lax', 'max-age': '600' });
    expect(pending.attributes).not.toHaveProperty('secure');
    // Nothing about the request is shown before the sign-in.
    expect(await start.text()).not.toContain('DELETE');

    const callback = await signInAtIssuer(b, auth.href, 'carol');
    expect(callback.startsWith(admin('/approvals/sign-in/callback?'))).toBe(true);
    const back = await b.request(callback);
    expect(back.status).toBe(303);
    expect(back.headers.get('location')).toBe(new URL(link).pathname + new URL(link).search);
    const session = b.received.find((c) => c.name === 'dbward_approver')!;
    expect(session.attributes).toMatchObject({ path: '/approvals', httponly: '', samesite: 'Lax' });
    expect(Number(session.attributes['max-age'])).toBeGreaterThan(800);
    expect(Number(session.attributes['max-age'])).toBeLessThanOrEqual(900);
    expect(b.cookie('dbward_sign_in')).toBeUndefined();
    // The access token is not in the cookie, in any readable form.
    expect(session.value).not.toContain('carol');

    const page = await b.request(link);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    // Not no-referrer: that would make the browser post the form with `Origin: null`.
    expect(page.headers.get('referrer-policy')).toBe('same-origin');
    const html = await page.text();
    for (const s of [r.id, 'bob@example.com', stmt, 'wait-orders', 'test', 'Signed in as carol@example.com']) expect(html).toContain(s);
    await new Promise((res) => setTimeout(res, 200));
    expect(await count('orders')).toBe(20);

    const posted = await confirm(b, link, html, { reason: 'ticket OPS-9' }, { origin: admin() });
    expect(posted.status).toBe(200);
    expect(await posted.text()).toContain('approved');
    const done = await run.done;
    expect(done.code).toBe(0);
    expect(done.stdout).toContain('DELETE 1');
    expect(await count('orders')).toBe(19);
    expect((await status(r.id)).decisions).toEqual([
      expect.objectContaining({ decision: 'approve', user: 'carol@example.com', subject: 'carol', groups: ['dba', 'privacy-officers'], reason: 'ticket OPS-9', via: 'link' }),
    ]);
    const event = a.audit().find((e) => e.type === 'approval' && e.step === 'approved' && e.request.id === r.id);
    expect(event?.actor).toEqual({ user: 'carol@example.com', subject: 'carol', groups: ['dba', 'privacy-officers'], via: 'link' });
  });

  it('a deny with a reason reaches the node-postgres client; a deny without one is refused', async () => {
    const stmt = `DELETE FROM ${S}.orders WHERE id = 2`;
    const client = new pg.Client({ host: '127.0.0.1', port: a.port, database: 'test', user: 'bob@example.com', password: tokens.bob });
    await client.connect();
    try {
      const query = client.query(stmt).then(() => null, (e: pg.DatabaseError) => e);
      const r = await heldRequest(stmt);
      const link = linksOf(r).deny;
      const b = new Browser();
      const page = await signInThrough(b, link, 'alice');
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain('name="reason"');
      const empty = await confirm(b, link, html, { reason: '  ' });
      expect(empty.status).toBe(400);
      expect(await empty.text()).toContain('A deny needs a reason');
      expect((await status(r.id)).status).toBe('pending');
      expect((await confirm(b, link, html, { reason: 'not during the freeze' })).status).toBe(200);
      expect(await query).toMatchObject({ code: '42501', message: expect.stringContaining('statement denied by approver alice@example.com: not during the freeze') });
      expect(await count('orders')).toBe(19);
      expect((await status(r.id)).decisions).toMatchObject([{ decision: 'deny', user: 'alice@example.com', via: 'link' }]);
    } finally {
      await client.end();
    }
  });

  it('a two-approver rule takes two people through the link, and nobody twice', async () => {
    const stmt = `DELETE FROM ${S}.ledger WHERE id = 1`;
    const run = psqlBackground('bob', stmt);
    const r = await heldRequest(stmt);
    const link = linksOf(r).approve;
    const alice = new Browser();
    const page = await (await signInThrough(alice, link, 'alice')).text();
    expect((await confirm(alice, link, page)).status).toBe(200);
    expect((await status(r.id)).status).toBe('pending');
    // Back to the link: she already decided, so no form.
    const again = await alice.request(link);
    expect(again.status).toBe(409);
    expect(await again.text()).toContain('has already decided');
    expect((await confirm(alice, link, page)).status).toBe(409);
    expect(await count('ledger')).toBe(20);
    const carol = new Browser();
    expect((await confirm(carol, link, await (await signInThrough(carol, link, 'carol')).text())).status).toBe(200);
    expect((await run.done).stdout).toContain('DELETE 1');
    expect((await status(r.id)).decisions.map((d) => [d.user, d.via])).toEqual([['alice@example.com', 'link'], ['carol@example.com', 'link']]);
  });
});

describe('refusals: a page with a status, and nothing decided', () => {
  /** A pending request of bob's (psql waits on it) and a way to end it afterwards. */
  async function held(user: string, id: number, table = 'orders'): Promise<{ r: ApprovalRequest; end: () => Promise<void> }> {
    const stmt = `DELETE FROM ${S}.${table} WHERE id = ${id}`;
    const run = psqlBackground(user, stmt);
    const r = await heldRequest(stmt);
    return {
      r,
      end: async () => {
        expect((await status(r.id)).status, 'nothing was decided').toBe('pending');
        expect((await status(r.id)).decisions).toEqual([]);
        await a.daemon.approvals.withdraw(r.id, 'test over');
        await run.done;
      },
    };
  }

  it('a forged or expired link, before any sign-in and after one', async () => {
    const { r, end } = await held('bob', 11);
    const link = linksOf(r).approve;
    const b = new Browser();
    const forged = link.replace(/sig=[^&]+/, `sig=${'A'.repeat(43)}`);
    const res = await b.request(forged);
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('the link signature does not match');
    expect(b.received).toEqual([]);
    // A link for approve does not deny, nor one for another request approve this one.
    expect((await b.request(link.replace('/approve?', '/deny?'))).status).toBe(403);
    const expired = signLink(LINK_KEY, admin(), r.id, 'approve', Math.floor(Date.now() / 1000) - 5);
    const old = await b.request(expired);
    expect(old.status).toBe(403);
    expect(await old.text()).toMatch(/the link expired at/);
    // Signed in, a forged link still posts nothing.
    const page = await (await signInThrough(b, link, 'carol')).text();
    const { csrf } = confirmForm(page);
    expect((await b.request(forged, { form: { csrf: csrf!, reason: 'x' } })).status).toBe(403);
    expect((await b.request(expired, { form: { csrf: csrf!, reason: 'x' } })).status).toBe(403);
    await end();
  });

  it('a tampered state is refused and signs nobody in', async () => {
    const { r, end } = await held('bob', 12);
    const link = linksOf(r).approve;
    const b = new Browser();
    const start = await b.request(link);
    const callback = new URL(await signInAtIssuer(b, start.headers.get('location')!, 'carol'));
    callback.searchParams.set('state', `${callback.searchParams.get('state')!.slice(0, -2)}xx`);
    const res = await b.request(callback.href);
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('its state does not match');
    expect(b.cookie('dbward_approver')).toBeUndefined();
    // Still not signed in: the link sends the browser to the issuer again.
    expect((await b.request(link)).status).toBe(303);
    // A callback with no sign-in started in this browser.
    const stranger = await new Browser().request(callback.href);
    expect(stranger.status).toBe(400);
    expect(await stranger.text()).toContain('No sign-in is in progress');
    await end();
  });

  it('a replayed callback is refused, here and on a replica with the same key (the issuer refuses the used code)', async () => {
    const { r, end } = await held('bob', 13);
    const link = linksOf(r).approve;
    const b = new Browser();
    const start = await b.request(link);
    const pending = b.cookie('dbward_sign_in')!;
    const callback = await signInAtIssuer(b, start.headers.get('location')!, 'alice');
    expect((await b.request(callback)).status).toBe(303);
    // Someone who captured both the callback URL and the sign-in cookie.
    const thief = new Browser();
    thief.setCookie('dbward_sign_in', pending, '/approvals');
    const replay = await thief.request(callback);
    expect(replay.status).toBe(400);
    expect(await replay.text()).toContain('already completed');
    expect(thief.cookie('dbward_approver')).toBeUndefined();
    // Another replica (same link key and public URL) has not seen it; the issuer has.
    const replica = await startTestDaemon({ identity: oidc(idp.issuer), policy: POLICY, approvals: approvals({ publicUrl: admin() }) });
    try {
      const other = new Browser();
      other.setCookie('dbward_sign_in', pending, '/approvals');
      const res = await other.request(callback.replace(admin(), `http://127.0.0.1:${replica.daemon.adminPort}`));
      expect(res.status).toBe(400);
      expect(await res.text()).toContain('The identity provider refused the sign-in (invalid_grant');
      expect(other.cookie('dbward_approver')).toBeUndefined();
    } finally {
      await replica.stop();
    }
    await end();
  });

  it('a missing or wrong CSRF token, a post from another site, or no sign-in', async () => {
    const { r, end } = await held('bob', 14);
    const link = linksOf(r).approve;
    const b = new Browser();
    const page = await (await signInThrough(b, link, 'carol')).text();
    const missing = await b.request(link, { form: { reason: 'x' } });
    expect(missing.status).toBe(403);
    expect(await missing.text()).toContain('CSRF token is missing');
    const wrong = await confirm(b, link, page, { csrf: 'A'.repeat(43) });
    expect(wrong.status).toBe(403);
    expect(await wrong.text()).toContain('not the one of your sign-in');
    // Another sign-in's token does not fit this one's cookie.
    const other = new Browser();
    const otherPage = await (await signInThrough(other, link, 'carol')).text();
    expect(confirmForm(otherPage).csrf).not.toBe(confirmForm(page).csrf);
    expect((await b.request(link, { form: { csrf: confirmForm(otherPage).csrf! } })).status).toBe(403);
    const foreign = await confirm(b, link, page, {}, { origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(await foreign.text()).toContain('posted from https://evil.example');
    // The right token without the cookie (a cross-site post carries none: SameSite=Lax).
    const noCookie = await new Browser().request(link, { form: { csrf: confirmForm(page).csrf! } });
    expect(noCookie.status).toBe(401);
    expect(await noCookie.text()).toContain('Open the approval link again');
    await end();
  });

  it('an approver outside the approver groups, and the requester themselves', async () => {
    const { r, end } = await held('alice', 15);
    const link = linksOf(r).approve;
    const bob = new Browser();
    const outsider = await signInThrough(bob, link, 'bob');
    expect(outsider.status).toBe(403);
    const outsiderHtml = await outsider.text();
    expect(outsiderHtml).toContain('is not in an approver group');
    expect(outsiderHtml).not.toContain('name="csrf"');
    // bob posts anyway, with his sign-in's own CSRF token (from a request developers may decide): decide itself refuses.
    const items = await held('carol', 1, 'items');
    const page = await bob.request(linksOf(items.r).approve);
    expect(page.status).toBe(200);
    const posted = await bob.request(link, { form: { csrf: confirmForm(await page.text()).csrf!, reason: 'sneaky' } });
    expect(posted.status).toBe(403);
    expect(await posted.text()).toContain('bob@example.com is not in an approver group');
    const self = await signInThrough(new Browser(), link, 'alice');
    expect(self.status).toBe(403);
    expect(await self.text()).toContain('asked for request');
    await items.end();
    await end();
  });
});

describe('Slack', () => {
  const sign = (body: string, ts: number, secret = SLACK_SECRET) => `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`;

  it("the buttons open the signed links; a signed callback is acknowledged and decides nothing; the link decides", async () => {
    const stmt = `DELETE FROM ${S}.orders WHERE id = 17`;
    const run = psqlBackground('bob', stmt);
    const r = await heldRequest(stmt);
    await expect.poll(() => slackHook.bodies.find((m) => JSON.stringify(m).includes(r.id))).toBeTruthy();
    const buttons = slackHook.bodies.find((m) => JSON.stringify(m).includes(r.id)).blocks.find((x: any) => x.type === 'actions').elements;
    expect(buttons.map((e: any) => e.url)).toEqual([linksOf(r).approve, linksOf(r).deny]);

    const body = `payload=${encodeURIComponent(JSON.stringify({ type: 'block_actions', user: { id: 'U0CAROL', username: 'carol' }, team: { id: 'T0' }, actions: [{ action_id: 'dbward_approve', value: r.id }] }))}`;
    const now = Math.floor(Date.now() / 1000);
    const post = (signature: string) => fetch(admin('/approvals/slack/interactions'), {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(now), 'x-slack-signature': signature }, body,
    });
    expect((await post(sign(body, now, 'not-the-secret'))).status).toBe(401);
    const ack = await post(sign(body, now));
    expect(ack.status).toBe(200);
    expect(await ack.json()).toMatchObject({ text: expect.stringContaining('Nothing is decided in Slack') });
    expect((await status(r.id)).status).toBe('pending');

    const b = new Browser();
    const page = await (await signInThrough(b, buttons[0].url, 'carol')).text();
    expect((await confirm(b, buttons[0].url, page)).status).toBe(200);
    expect((await run.done).stdout).toContain('DELETE 1');
    expect((await status(r.id)).decisions).toMatchObject([{ user: 'carol@example.com', via: 'link' }]);
  });
});

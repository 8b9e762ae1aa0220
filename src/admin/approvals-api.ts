// Approvals over HTTP, on the admin server:
//   GET  /approvals[?status=pending,approved&limit=N]   requests the caller may see
//   GET  /approvals/<id>                                one request
//   POST /approvals/<id>/approve|deny  {"reason": ...}  a decision (Bearer token)
//   GET  /approvals/<id>/approve|deny?exp&sig           a signed link opened in a browser: sign in, then a confirmation form
//   POST /approvals/<id>/approve|deny?exp&sig           that form (session cookie + CSRF token), or the link with a Bearer token
//   GET  /approvals/sign-in/callback                    where the identity provider sends the browser back
//   POST /approvals/slack/interactions                  Slack's signed button callbacks (acknowledged; the decision is the link's)
// Every decision is made by an OIDC identity: a Bearer access token, or a browser
// sign-in whose access token the same verifier checked.

import type http from 'node:http';
import type { Logger } from 'pino';
import type { Identity } from '../identity/types.js';
import type { TokenVerifier } from '../identity/verifier.js';
import { verifyLink } from '../approvals/links.js';
import { ApprovalRefused, decide } from '../approvals/rules.js';
import type { ApprovalService } from '../approvals/service.js';
import { parseSlackAction, SlackReplayGuard, verifySlackSignature } from '../approvals/slack.js';
import type { ApprovalRequest, ApprovalStatus, DecisionChannel } from '../approvals/types.js';
import { commandPage, confirmPage, decidedPage, refusalPage } from './approval-pages.js';
import { bearerIdentity } from './auth.js';
import { sameToken } from './cookies.js';
import { CALLBACK_PATH, type ApproverSignIn } from './sign-in.js';

const MAX_BODY = 256 * 1024;
const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'used', 'denied', 'expired', 'withdrawn'];

export interface ApprovalsApiOptions {
  service: ApprovalService;
  /** Null in identity.mode unverified: then nobody can decide over HTTP. */
  verifier: TokenVerifier | null;
  linkKey: Buffer | null;
  /** Browser sign-in of approvers (approvals.sign_in); null: a link opened in a browser shows the CLI command. */
  signIn: ApproverSignIn | null;
  slack: { signingSecret: Buffer | null } | null;
  log: Logger;
}

/** The /approvals route; resolves false for other paths. */
export function approvalsRoute(opts: ApprovalsApiOptions): (req: http.IncomingMessage, res: http.ServerResponse, path: string) => Promise<boolean> {
  const replay = new SlackReplayGuard();
  return async (req, res, path) => {
    if (path !== '/approvals' && !path.startsWith('/approvals/')) return false;
    try {
      if (path === '/approvals/slack/interactions') await slack(req, res, opts, replay);
      else if (path === CALLBACK_PATH) await callback(req, res, opts);
      else await route(req, res, path, opts);
    } catch (err) {
      if (err instanceof ApprovalRefused) json(res, err.status, { error: err.message });
      else if (err instanceof BodyError) json(res, 400, { error: err.message });
      else if (err instanceof URIError) json(res, 400, { error: 'malformed request id in the path' });
      else throw err;
    }
    return true;
  };
}

async function route(req: http.IncomingMessage, res: http.ServerResponse, path: string, opts: ApprovalsApiOptions): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const parts = path.split('/').slice(2).map((p) => decodeURIComponent(p));
  const [id, action] = parts;
  if (parts.length > 2 || (action !== undefined && action !== 'approve' && action !== 'deny')) return json(res, 404, { error: 'not found' });
  if (action && req.method === 'GET') return linkPage(req, res, url, id!, action, opts);
  // A browser's confirmation form: no Bearer token, the sign-in cookie instead.
  if (action && req.method === 'POST' && opts.signIn && url.searchParams.has('sig') && req.headers.authorization === undefined) {
    return browserDecision(req, res, url, id!, action, opts.signIn, opts);
  }
  const method = action ? 'POST' : 'GET';
  if (req.method !== method) {
    res.writeHead(405, { allow: method }).end();
    return;
  }
  if (!opts.verifier) return json(res, 403, { error: 'approvals over HTTP need identity.mode oidc' });
  const caller = await bearerIdentity(req, opts.verifier);
  if (!caller.ok) {
    res.writeHead(caller.status, { 'content-type': 'application/json', ...(caller.status === 401 && { 'www-authenticate': 'Bearer' }) })
      .end(JSON.stringify({ error: caller.message }));
    return;
  }
  const me = caller.identity;
  if (!id) {
    const status = url.searchParams.get('status')?.split(',').filter(Boolean);
    if (status?.some((s) => !STATUSES.includes(s as ApprovalStatus))) return json(res, 400, { error: `status must be among ${STATUSES.join(', ')}` });
    const limit = Number(url.searchParams.get('limit') ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) return json(res, 400, { error: 'limit must be an integer from 1 to 10000' });
    const all = await opts.service.list(status as ApprovalStatus[] | undefined, limit);
    return json(res, 200, { requests: all.filter((r) => visible(r, me)) });
  }
  if (!action) {
    const r = await opts.service.store.get(id);
    if (!r || !visible(r, me)) return json(res, 404, { error: `no approval request ${id} that ${me.user} may see` });
    return json(res, 200, { request: r });
  }
  const body = await readBody(req);
  const reason = reasonOf(body);
  let via: DecisionChannel = req.headers['x-dbward-client'] === 'cli' ? 'cli' : 'api';
  if (url.searchParams.has('sig')) {
    // A signed link posted with a token: the link must be dbward's and unexpired.
    const check = checkLink(opts, url, id, action);
    if (!check.ok) return json(res, 403, { error: `approval link refused: ${check.reason}` });
    via = 'link';
  }
  const r = await opts.service.decide(id, me, action, reason, via);
  opts.log.info({ request: id, approver: me.user, action, via }, 'approval decision');
  json(res, 200, { request: r });
}

/**
 * A signed link opened in a browser. The link is checked first (a forged or
 * expired one goes no further). Without a sign-in the browser is sent to the
 * issuer; signed in, the approver sees the request and a form to confirm, or why
 * the decision is not theirs to make (checked with the same rules decide applies).
 */
async function linkPage(req: http.IncomingMessage, res: http.ServerResponse, url: URL, id: string, action: 'approve' | 'deny', opts: ApprovalsApiOptions): Promise<void> {
  const check = checkLink(opts, url, id, action);
  if (!check.ok) return refusalPage(res, 403, 'Approval link refused', check.reason);
  if (!opts.signIn) {
    const r = await opts.service.store.get(id);
    if (!r) return refusalPage(res, 404, 'No such approval request', `There is no approval request ${id}.`);
    return commandPage(res, r, action);
  }
  const me = opts.signIn.session(req.headers.cookie);
  if (!me) {
    let start: { location: string; cookie: string };
    try {
      start = await opts.signIn.begin(url.pathname + url.search);
    } catch (err) {
      opts.log.warn({ err }, 'approval sign-in could not start');
      return refusalPage(res, 502, 'Sign-in unavailable', 'dbward cannot start a sign-in with the identity provider now; try again shortly.');
    }
    res.writeHead(303, { location: start.location, 'set-cookie': start.cookie, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).end();
    return;
  }
  const r = await opts.service.store.get(id);
  if (!r) return refusalPage(res, 404, 'No such approval request', `There is no approval request ${id}.`, me.identity);
  try {
    // A dry run of the decision: the page offers only what decide would accept now.
    decide(r, me.identity, action, null, 'link', new Date());
  } catch (err) {
    if (!(err instanceof ApprovalRefused)) throw err;
    return refusalPage(res, err.status, 'You cannot decide this request', err.message, me.identity);
  }
  confirmPage(res, r, action, me.identity, me.csrf, url.pathname + url.search);
}

/** The issuer sends the browser back here: finish the sign-in and return to the link. */
async function callback(req: http.IncomingMessage, res: http.ServerResponse, opts: ApprovalsApiOptions): Promise<void> {
  if (req.method !== 'GET') {
    res.writeHead(405, { allow: 'GET' }).end();
    return;
  }
  if (!opts.signIn) return refusalPage(res, 404, 'Sign-in is not configured', 'This dbward has no approvals.sign_in section.');
  const url = new URL(req.url ?? '/', 'http://localhost');
  const done = await opts.signIn.complete(url.searchParams, req.headers.cookie);
  if (!done.ok) {
    opts.log.warn({ status: done.status, reason: done.message }, 'approval sign-in refused');
    return refusalPage(res, done.status, 'Sign-in refused', done.message, null, done.cookies);
  }
  opts.log.info({ approver: done.identity.user, subject: done.identity.subject }, 'approver signed in');
  res.writeHead(303, { location: done.back, 'set-cookie': done.cookies, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).end();
}

/** The confirmation form posted: the link, the sign-in, its CSRF token, then the same decide as every channel. */
async function browserDecision(req: http.IncomingMessage, res: http.ServerResponse, url: URL, id: string, action: 'approve' | 'deny', signIn: ApproverSignIn, opts: ApprovalsApiOptions): Promise<void> {
  const check = checkLink(opts, url, id, action);
  if (!check.ok) return refusalPage(res, 403, 'Approval link refused', check.reason);
  const me = signIn.session(req.headers.cookie);
  if (!me) return refusalPage(res, 401, 'Not signed in', 'Your sign-in is missing or has expired. Open the approval link again to sign in.');
  // Browsers send Origin with a form post; one from another site is refused even before the token.
  // "null" (a sandboxed frame, some privacy settings) says nothing either way: the token decides.
  const origin = header(req, 'origin');
  if (origin !== undefined && origin !== 'null' && origin !== signIn.origin()) return refusalPage(res, 403, 'Decision refused', `The form was posted from ${origin}, not from this dbward.`, me.identity);
  const form = new URLSearchParams((await readBody(req)).toString('utf8'));
  if (!sameToken(form.get('csrf'), me.csrf)) {
    return refusalPage(res, 403, 'Decision refused', `The form's CSRF token is ${form.get('csrf') ? 'not the one of your sign-in' : 'missing'}. Open the approval link again and use its form.`, me.identity);
  }
  const reason = (form.get('reason') ?? '').trim();
  if (reason.length > 2000) return refusalPage(res, 400, 'Decision refused', 'The reason is over 2000 characters.', me.identity);
  if (action === 'deny' && reason === '') return refusalPage(res, 400, 'Decision refused', 'A deny needs a reason: the requester sees it.', me.identity);
  let r: ApprovalRequest;
  try {
    r = await opts.service.decide(id, me.identity, action, reason === '' ? null : reason, 'link');
  } catch (err) {
    if (!(err instanceof ApprovalRefused)) throw err;
    return refusalPage(res, err.status, 'You cannot decide this request', err.message, me.identity);
  }
  opts.log.info({ request: id, approver: me.identity.user, action, via: 'link' }, 'approval decision');
  decidedPage(res, r, action, me.identity);
}

/**
 * Slack's button callbacks: signature, replay window, then an answer only. The
 * buttons open dbward's signed links, where the approver signs in with OIDC and
 * decides; Slack vouches for a Slack account, which is not a dbward identity.
 */
async function slack(req: http.IncomingMessage, res: http.ServerResponse, opts: ApprovalsApiOptions, replay: SlackReplayGuard): Promise<void> {
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  const secret = opts.slack?.signingSecret;
  if (!secret) return json(res, 404, { error: 'Slack callbacks are not configured (approvals.slack.signing_secret)' });
  const body = await readBody(req);
  const timestamp = header(req, 'x-slack-request-timestamp');
  const signature = header(req, 'x-slack-signature');
  const now = Math.floor(Date.now() / 1000);
  const check = verifySlackSignature(secret, { timestamp, signature }, body, now);
  if (!check.ok) {
    opts.log.warn({ reason: check.reason }, 'Slack callback refused');
    return json(res, 401, { error: check.reason });
  }
  if (replay.seen(signature!, Number(timestamp), now)) return json(res, 401, { error: 'this signed request was already received' });
  const action = parseSlackAction(body);
  if (!action.ok) return json(res, 400, { error: action.reason });
  opts.log.info({ request: action.id, action: action.action, slackUser: action.slackUser.id }, 'Slack button pressed');
  // Slack shows the answer to the clicker: 200 with a message.
  const how = opts.linkKey && opts.signIn
    ? `sign in with your dbward identity in the browser tab the button opened, and confirm there`
    : `run: dbward approvals ${action.action} ${action.id} --reason "..."`;
  json(res, 200, { response_type: 'ephemeral', text: `Nothing is decided in Slack. To ${action.action} request ${action.id}, ${how}.` });
}

/** Whether the URL is a link this dbward signed for `id` and `action`, and unexpired. */
function checkLink(opts: ApprovalsApiOptions, url: URL, id: string, action: string): ReturnType<typeof verifyLink> {
  if (!opts.linkKey) return { ok: false, reason: 'this dbward signs no links' };
  return verifyLink(opts.linkKey, id, action, url.searchParams.get('exp'), url.searchParams.get('sig'), Math.floor(Date.now() / 1000));
}

/** A caller sees the requests they made and those they may decide. */
function visible(r: ApprovalRequest, me: Identity): boolean {
  return r.requester.subject === me.subject || r.requester.user === me.user || me.groups.some((g) => r.approvers.includes(g));
}

class BodyError extends Error {}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new BodyError(`request body over ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

function reasonOf(body: Buffer): string | null {
  if (body.length === 0) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new BodyError('the body must be JSON: {"reason": "..."}');
  }
  const reason = (parsed as { reason?: unknown } | null)?.reason;
  if (reason === undefined || reason === null) return null;
  if (typeof reason !== 'string' || reason.length > 2000) throw new BodyError('reason must be a string of at most 2000 characters');
  return reason;
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}


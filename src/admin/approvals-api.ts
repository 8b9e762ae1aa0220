// Approvals over HTTP, on the admin server:
//   GET  /approvals[?status=pending,approved&limit=N]   requests the caller may see
//   GET  /approvals/<id>                                one request
//   POST /approvals/<id>/approve|deny  {"reason": ...}  a decision (Bearer token)
//   GET  /approvals/<id>/approve|deny?exp&sig           a signed link opened in a browser: what to run
//   POST /approvals/slack/interactions                  Slack's signed button callbacks
// Every caller but Slack is identified by an OIDC access token; Slack's callbacks
// are verified by their signature and name a Slack user mapped in the config.

import type http from 'node:http';
import type { Logger } from 'pino';
import type { Identity } from '../identity/types.js';
import type { TokenVerifier } from '../identity/verifier.js';
import { verifyLink } from '../approvals/links.js';
import { ApprovalRefused } from '../approvals/rules.js';
import type { ApprovalService } from '../approvals/service.js';
import { parseSlackAction, SlackReplayGuard, verifySlackSignature } from '../approvals/slack.js';
import type { ApprovalRequest, ApprovalStatus, DecisionChannel } from '../approvals/types.js';
import { bearerIdentity } from './auth.js';

const MAX_BODY = 256 * 1024;
const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'used', 'denied', 'expired', 'withdrawn'];

export interface ApprovalsApiOptions {
  service: ApprovalService;
  /** Null in identity.mode unverified: then nobody can decide over HTTP. */
  verifier: TokenVerifier | null;
  linkKey: Buffer | null;
  slack: { signingSecret: Buffer | null; users: Record<string, { user: string; groups: string[] }> } | null;
  log: Logger;
}

/** The /approvals route; resolves false for other paths. */
export function approvalsRoute(opts: ApprovalsApiOptions): (req: http.IncomingMessage, res: http.ServerResponse, path: string) => Promise<boolean> {
  const replay = new SlackReplayGuard();
  return async (req, res, path) => {
    if (path !== '/approvals' && !path.startsWith('/approvals/')) return false;
    try {
      if (path === '/approvals/slack/interactions') await slack(req, res, opts, replay);
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
  if (action && req.method === 'GET') return linkPage(res, url, id!, action, opts);
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

/** A signed link opened in a browser: the link is checked, and the page says how to decide as yourself. */
async function linkPage(res: http.ServerResponse, url: URL, id: string, action: 'approve' | 'deny', opts: ApprovalsApiOptions): Promise<void> {
  const check = checkLink(opts, url, id, action);
  if (!check.ok) return html(res, 403, `<h1>Approval link refused</h1><p>${esc(check.reason)}</p>`);
  const r = await opts.service.store.get(id);
  if (!r) return html(res, 404, `<h1>No approval request ${esc(id)}</h1>`);
  html(res, 200, `<h1>${action === 'approve' ? 'Approve' : 'Deny'} request ${esc(r.id)}</h1>
<p>Status: <b>${esc(r.status)}</b>. Asked by ${esc(r.requester.user)} on target ${esc(r.target.name)} (${esc(r.target.environment)}), rule ${esc(r.rules.join(', '))}; open until ${esc(r.expiresAt)}.</p>
<pre>${esc(r.text)}</pre>
<p>Approvers prove who they are with their own sign-in. Decide with:</p>
<pre>dbward approvals ${action} ${esc(r.id)} --reason "..."</pre>`);
}

/** Slack's button callbacks: signature, replay window, a mapped user, then the decision. */
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
  const mapped = opts.slack!.users[action.slackUser.id];
  // Slack shows the answer to the clicker: 200 with a message, whatever the outcome.
  if (!mapped) return json(res, 200, { response_type: 'ephemeral', text: `Slack user ${action.slackUser.id} is not a dbward approver (approvals.slack.users).` });
  const approver: Identity = {
    subject: `slack:${action.slackUser.teamId ?? '-'}:${action.slackUser.id}`, user: mapped.user, groups: mapped.groups,
    kind: 'human', issuer: 'slack', claims: {}, expiresAt: now + 60, verified: true,
  };
  try {
    const r = await opts.service.decide(action.id, approver, action.action, `from Slack by ${action.slackUser.username ?? action.slackUser.id}`, 'slack');
    json(res, 200, { response_type: 'ephemeral', text: `Request ${r.id} is now ${r.status}.` });
  } catch (err) {
    if (!(err instanceof ApprovalRefused)) throw err;
    json(res, 200, { response_type: 'ephemeral', text: err.message });
  }
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

function html(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'none'" })
    .end(`<!doctype html><meta charset="utf-8"><title>dbward approval</title>${body}`);
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

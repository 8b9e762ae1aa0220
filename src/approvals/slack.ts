// Slack, both ways: the Block Kit message that asks for an approval (sent), and
// the signed button clicks Slack posts back (received). Pure: no sockets here;
// the notifier sends the message, the admin route feeds in the raw bytes.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { shownStatement } from './rules.js';
import type { ApprovalRequest } from './types.js';

/** The statement shown in the message, in escaped characters; Slack caps a section at 3000. */
export const STATEMENT_LIMIT = 2500;
/** Bigger than any real block_actions body (the message is echoed back in it). */
export const MAX_ACTION_BODY = 256 * 1024;

const ACTION_IDS = { dbward_approve: 'approve', dbward_deny: 'deny' } as const;
const ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The incoming-webhook body asking approvers to decide `req`; `links` make the buttons open dbward's signed links. */
export function slackMessage(req: ApprovalRequest, links: { approve: string; deny: string } | null, opts: { approveCommand: string }): object {
  const who = `${req.requester.user} (${req.requester.kind ?? 'unknown kind'}${req.requester.verified ? '' : ', unverified identity'})`;
  const expSec = Math.floor(Date.parse(req.expiresAt) / 1000);
  const expires = Number.isFinite(expSec) ? `<!date^${expSec}^{date_short_pretty} {time}|${mrkdwn(req.expiresAt, 64)}>` : mrkdwn(req.expiresAt, 64);
  const grant = req.grant === 'once' ? `one statement, within ${req.ttlSec}s` : `any statement like it for ${req.ttlSec}s`;
  const field = (title: string, value: string) => ({ type: 'mrkdwn', verbatim: true, text: `*${title}*\n${value}` });
  const stmt = escapeClip(shownStatement(req), STATEMENT_LIMIT);
  const cut = stmt.more === 0 ? '' : `\n_Statement cut: ${stmt.more} more characters not shown._`;
  const button = (label: string, style: 'primary' | 'danger', action: keyof typeof ACTION_IDS, url: string | undefined) =>
    ({ type: 'button', text: { type: 'plain_text', text: label }, style, action_id: action, value: req.id, ...(url === undefined ? {} : { url }) });
  return {
    text: mrkdwn(`${req.requester.user} asks to run a statement on ${req.target.name} (${req.target.environment}): approval ${req.id} needs ${req.required} approver(s) from ${req.approvers.join(', ')}`, 1000),
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(`Approval needed: ${req.target.name} (${req.target.environment})`, 150) } },
      {
        type: 'section',
        fields: [
          field('Requested by', mrkdwn(who, 500)),
          field('Target', mrkdwn(`${req.target.name} · ${req.target.environment} · database ${req.target.database}`, 500)),
          field('Rules', mrkdwn(req.rules.join(', ') || '(none)', 1000)),
          field('Approvers needed', mrkdwn(`${req.required} from ${req.approvers.join(', ') || '(no group)'}`, 1000)),
          field('Decide before', expires),
          field('Grant', grant),
        ],
      },
      // The newlines keep a trailing backtick in the statement off the closing fence.
      { type: 'section', text: { type: 'mrkdwn', verbatim: true, text: `\`\`\`\n${stmt.text}\n\`\`\`${cut}` } },
      { type: 'actions', block_id: 'dbward_approval', elements: [button('Approve', 'primary', 'dbward_approve', links?.approve), button('Deny', 'danger', 'dbward_deny', links?.deny)] },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', verbatim: true, text: mrkdwn(`Request ${req.id} · session ${req.session} on ${req.replica} · from a terminal: `, 500) + `\`${mrkdwn(opts.approveCommand, 500)}\`` }],
      },
    ],
  };
}

/** The one-line follow-up once `req` has ended or been decided ("apr_x approved by alice: reason"). */
export function slackDecisionMessage(req: ApprovalRequest): { text: string } {
  const by = (d: 'approve' | 'deny') => req.decisions.filter((x) => x.decision === d);
  const reasons = (ds: { reason: string | null }[]) => ds.map((x) => x.reason).filter((r): r is string => !!r).join('; ');
  let line: string;
  if (req.status === 'approved' || req.status === 'used') {
    const ds = by('approve');
    const why = reasons(ds);
    line = `${req.id} ${req.status === 'used' ? 'approved and used' : 'approved'} by ${ds.map((x) => x.user).join(', ') || 'nobody'}${why ? `: ${why}` : ''}`;
  } else if (req.status === 'denied') {
    const ds = by('deny');
    line = `${req.id} denied by ${ds.map((x) => x.user).join(', ') || 'nobody'}: ${reasons(ds) || req.reason || 'no reason given'}`;
  } else {
    line = `${req.id} ${req.status}${req.reason ? `: ${req.reason}` : ''}`;
  }
  return { text: mrkdwn(`${line} (${req.target.name}, ${req.target.environment})`, 2000) };
}

/**
 * Checks Slack's request signature: HMAC-SHA256 over `v0:<timestamp>:<raw body>`
 * with the app's signing secret, sent as `X-Slack-Signature: v0=<hex>` with
 * `X-Slack-Request-Timestamp`. The timestamp window bounds replays; within it,
 * use SlackReplayGuard.
 */
export function verifySlackSignature(signingSecret: Buffer | string, headers: { timestamp: string | undefined; signature: string | undefined }, rawBody: Buffer, nowSec: number, windowSec = 300): { ok: true } | { ok: false; reason: string } {
  if (signingSecret.length === 0) throw new Error('the Slack signing secret is empty');
  const { timestamp, signature } = headers;
  if (timestamp === undefined || timestamp === '') return { ok: false, reason: 'missing X-Slack-Request-Timestamp header' };
  if (signature === undefined || signature === '') return { ok: false, reason: 'missing X-Slack-Signature header' };
  if (!/^[0-9]{1,12}$/.test(timestamp)) return { ok: false, reason: 'X-Slack-Request-Timestamp is not Unix seconds' };
  const skew = Math.abs(nowSec - Number(timestamp));
  if (skew > windowSec) return { ok: false, reason: `X-Slack-Request-Timestamp is ${skew}s away from now, outside the ${windowSec}s replay window` };
  if (!signature.startsWith('v0=')) return { ok: false, reason: 'X-Slack-Signature is not a v0 signature' };
  // Lowercase only, as Slack sends it: one spelling per signature, or SlackReplayGuard could be dodged.
  if (!/^v0=[0-9a-f]{64}$/.test(signature)) return { ok: false, reason: 'X-Slack-Signature is not 64 lowercase hex digits after v0=' };
  const expected = createHmac('sha256', signingSecret).update(`v0:${timestamp}:`).update(rawBody).digest();
  const got = Buffer.from(signature.slice(3), 'hex');
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) return { ok: false, reason: 'X-Slack-Signature does not match the body' };
  return { ok: true };
}

/** A click on one of slackMessage's buttons, as the approval service needs it. */
export type SlackAction = { action: 'approve' | 'deny'; id: string; slackUser: { id: string; username: string | null; teamId: string | null }; responseUrl: string | null };

/** Reads a block_actions interaction (form field `payload`); never throws, whatever the bytes. */
export function parseSlackAction(rawBody: Buffer): ({ ok: true } & SlackAction) | { ok: false; reason: string } {
  const no = (reason: string) => ({ ok: false as const, reason });
  if (rawBody.length > MAX_ACTION_BODY) return no(`the body is ${rawBody.length} bytes; at most ${MAX_ACTION_BODY} are read`);
  const fields = new URLSearchParams(rawBody.toString('utf8'));
  const payloads = fields.getAll('payload');
  if (payloads.length !== 1) return no(payloads.length === 0 ? 'the body has no payload field' : 'the body has more than one payload field');
  let p: unknown;
  try {
    p = JSON.parse(payloads[0]!);
  } catch {
    return no('the payload is not JSON');
  }
  if (!isObject(p)) return no('the payload is not a JSON object');
  if (p.type !== 'block_actions') return no(`the payload type is ${typeof p.type === 'string' ? JSON.stringify(p.type.slice(0, 40)) : 'missing'}, not block_actions`);
  if (!Array.isArray(p.actions) || p.actions.length !== 1 || !isObject(p.actions[0])) return no('the payload does not hold exactly one action');
  const a = p.actions[0];
  const action = typeof a.action_id === 'string' && Object.hasOwn(ACTION_IDS, a.action_id) ? ACTION_IDS[a.action_id as keyof typeof ACTION_IDS] : null;
  if (action === null) return no('the action is not a dbward approve or deny button');
  if (typeof a.value !== 'string' || !ID.test(a.value)) return no('the action carries no valid approval request id');
  const user = p.user;
  if (!isObject(user) || !shortString(user.id)) return no('the payload names no Slack user');
  const teamId = isObject(p.team) && shortString(p.team.id) ? p.team.id : shortString(user.team_id) ? user.team_id : null;
  const username = shortString(user.username) ? user.username : null;
  return { ok: true, action, id: a.value, slackUser: { id: user.id, username, teamId }, responseUrl: slackUrl(p.response_url) };
}

/**
 * Refuses a signed request seen before within the window (a signature covers its
 * timestamp, so the signature alone names a request). Per process: replicas do
 * not share it. Feed it only verified signatures, so strangers cannot fill it.
 */
export class SlackReplayGuard {
  private readonly until = new Map<string, number>();
  private sweptAt = 0;

  constructor(private readonly windowSec = 300, private readonly maxEntries = 10_000) {}

  /** True when `signature` was already seen; otherwise remembers it and returns false. */
  seen(signature: string, timestampSec: number, nowSec: number): boolean {
    const known = this.until.get(signature);
    if (known !== undefined && known >= nowSec) return true;
    if (this.until.size >= this.maxEntries || nowSec - this.sweptAt > this.windowSec) this.evict(nowSec);
    // Past timestamp + window the signature check refuses the request anyway.
    this.until.set(signature, timestampSec + this.windowSec);
    return false;
  }

  /** Entries remembered now (for tests and metrics). */
  get size(): number {
    return this.until.size;
  }

  private evict(nowSec: number): void {
    this.sweptAt = nowSec;
    for (const [sig, until] of this.until) if (until < nowSec) this.until.delete(sig);
    // Still full: only genuine Slack traffic gets here; forget the oldest first.
    for (const sig of this.until.keys()) {
      if (this.until.size < this.maxEntries) break;
      this.until.delete(sig);
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function shortString(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= 255;
}

/** Only Slack's own https hosts: the service posts to this URL. */
function slackUrl(v: unknown): string | null {
  if (typeof v !== 'string' || v.length > 2048) return null;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' && /(^|\.)slack(-gov)?\.com$/.test(u.hostname) ? u.href : null;
  } catch {
    return null;
  }
}

/** Escaped for mrkdwn (see escapeClip), with a note when cut. */
function mrkdwn(s: string, max: number): string {
  const { text, more } = escapeClip(s, max);
  return more === 0 ? text : `${text} … (${more} more characters)`;
}

/** Escapes Slack's control characters, breaks backtick runs (no fence can close early), and cuts at `max` output characters. */
function escapeClip(s: string, max: number): { text: string; more: number } {
  let out = '';
  let shown = 0;
  let prev = '';
  for (const ch of s) {
    const piece = (ch === '`' && prev === '`' ? '\u200b' : '') + (ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : ch === '>' ? '&gt;' : ch);
    if (out.length + piece.length > max) return { text: out, more: s.length - shown };
    out += piece;
    shown += ch.length;
    prev = ch;
  }
  return { text: out, more: 0 };
}

function clip(s: string, max: number): string {
  const cp = Array.from(s.slice(0, max + 1));
  return cp.length <= max ? cp.join('') : `${cp.slice(0, max - 1).join('')}…`;
}

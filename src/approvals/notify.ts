// Tells people about approval requests: Slack incoming webhooks and signed
// generic webhooks. One attempt per send, bounded by a timeout; the caller
// records failures (and decides about retrying), so a slow receiver never holds
// up a request. Webhook URLs can be secrets (Slack's are): errors name the origin only.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { slackDecisionMessage, slackMessage } from './slack.js';
import type { ApprovalRequest } from './types.js';

/** What happened to a request: it was made, or it was decided or ended. */
export type NotifyEvent = { kind: 'requested' | 'decided'; request: ApprovalRequest; links: { approve: string; deny: string } | null };

/** Somewhere approval events go. */
export interface Notifier {
  readonly name: string;
  /** Rejects with an Error naming the notifier when the receiver did not take the event. */
  send(event: NotifyEvent): Promise<void>;
}

/** Options of SlackNotifier. */
export interface SlackNotifierOptions {
  /** The incoming-webhook URL (a secret). */
  webhookUrl: string;
  name?: string;
  timeoutMs?: number;
  /** The CLI command shown for deciding from a terminal. */
  approveCommand?: (request: ApprovalRequest) => string;
}

/** Posts approval requests to a Slack channel through an incoming webhook. */
export class SlackNotifier implements Notifier {
  readonly name: string;
  private readonly target: Target;
  private readonly approveCommand: (request: ApprovalRequest) => string;

  constructor(opts: SlackNotifierOptions) {
    this.name = opts.name ?? 'slack';
    this.target = target(this.name, opts.webhookUrl, opts.timeoutMs);
    this.approveCommand = opts.approveCommand ?? ((r) => `dbward approvals approve ${r.id} --reason "..."`);
  }

  /** Posts the Block Kit request, or a one-line outcome once decided. */
  async send(event: NotifyEvent): Promise<void> {
    const body = event.kind === 'requested' ? slackMessage(event.request, event.links, { approveCommand: this.approveCommand(event.request) }) : slackDecisionMessage(event.request);
    await post(this.target, JSON.stringify(body), {});
  }
}

/**
 * Writes each request's approve and deny links to a terminal, and one line when it
 * ends (`dbward dev`, where the approver is at the same machine). Names only:
 * the statement stays in the audit trail and on the link's page.
 */
export class TerminalNotifier implements Notifier {
  readonly name = 'terminal';

  constructor(private readonly out: { write(s: string): unknown }) {}

  async send(event: NotifyEvent): Promise<void> {
    const r = event.request;
    const line = (s: string) => s.replace(/[\p{Cc}]+/gu, ' ');
    if (event.kind === 'decided') {
      const by = r.decisions.map((d) => `${d.user} ${d.decision === 'approve' ? 'approved' : 'denied'} via ${d.via}`).join(', ');
      this.out.write(`approval ${r.id} is now ${r.status}${line(by ? ` (${by})` : '')}${line(r.reason ? `: ${r.reason}` : '')}\n`);
      return;
    }
    const waits = `approval ${r.id}: ${line(r.requester.user)} on ${line(r.target.name)} (rule ${line(r.rules.join(', '))}) waits for ${r.required} approval(s) from ${line(r.approvers.join(', '))}`;
    this.out.write(event.links
      ? `\n${waits}. Open in a browser and sign in:\n  approve: ${event.links.approve}\n  deny:    ${event.links.deny}\n\n`
      : `\n${waits}: dbward approvals approve ${r.id} --reason "..."\n\n`);
  }
}

/** Options of WebhookNotifier. */
export interface WebhookNotifierOptions {
  url: string;
  /** Signs every body; receivers check it with verifyWebhookSignature. */
  secret: Buffer;
  name?: string;
  timeoutMs?: number;
  /** The clock; tests pin it. */
  now?: () => Date;
}

/** Posts approval events as signed JSON to any HTTP receiver. */
export class WebhookNotifier implements Notifier {
  readonly name: string;
  private readonly target: Target;
  private readonly secret: Buffer;
  private readonly now: () => Date;

  constructor(opts: WebhookNotifierOptions) {
    if (opts.secret.length === 0) throw new Error(`${opts.name ?? 'webhook'} notifier: the signing secret is empty`);
    this.name = opts.name ?? 'webhook';
    this.target = target(this.name, opts.url, opts.timeoutMs);
    this.secret = opts.secret;
    this.now = opts.now ?? (() => new Date());
  }

  /** Posts `{ type, request, links, sent_at }` with x-dbward-timestamp and x-dbward-signature. */
  async send(event: NotifyEvent): Promise<void> {
    const at = this.now();
    const body = JSON.stringify({ type: `dbward.approval.${event.kind}`, request: event.request, links: event.links, sent_at: at.toISOString() });
    const timestamp = String(Math.floor(at.getTime() / 1000));
    const signature = `v1=${createHmac('sha256', this.secret).update(`${timestamp}.${body}`).digest('hex')}`;
    await post(this.target, body, { 'x-dbward-timestamp': timestamp, 'x-dbward-signature': signature });
  }
}

/**
 * For receivers of WebhookNotifier: checks `x-dbward-signature` (v1=<hex HMAC-SHA256
 * of "<timestamp>.<raw body>">) and that `x-dbward-timestamp` is within the window.
 */
export function verifyWebhookSignature(
  secret: Buffer | string,
  timestamp: string | null | undefined,
  signature: string | null | undefined,
  rawBody: Buffer | string,
  nowSec: number,
  windowSec = 300,
): { ok: true } | { ok: false; reason: string } {
  if (secret.length === 0) throw new Error('the webhook signing secret is empty');
  if (!timestamp) return { ok: false, reason: 'missing x-dbward-timestamp header' };
  if (!signature) return { ok: false, reason: 'missing x-dbward-signature header' };
  if (!/^[0-9]{1,12}$/.test(timestamp)) return { ok: false, reason: 'x-dbward-timestamp is not Unix seconds' };
  const skew = Math.abs(nowSec - Number(timestamp));
  if (skew > windowSec) return { ok: false, reason: `x-dbward-timestamp is ${skew}s away from now, outside the ${windowSec}s window` };
  if (!/^v1=[0-9a-f]{64}$/.test(signature)) return { ok: false, reason: 'x-dbward-signature is not v1= and 64 lowercase hex digits' };
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest();
  const got = Buffer.from(signature.slice(3), 'hex');
  if (!timingSafeEqual(got, expected)) return { ok: false, reason: 'x-dbward-signature does not match the body' };
  return { ok: true };
}

interface Target {
  name: string;
  url: string;
  /** What errors may show of the URL. */
  origin: string;
  /** What they must not: path and query, longest first. */
  secrets: string[];
  timeoutMs: number;
}

function target(name: string, url: string, timeoutMs = 5000): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Not even the bad URL: it may be a secret with a typo.
    throw new Error(`${name} notifier: the webhook URL is not a valid URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`${name} notifier: the webhook URL must be http or https, not ${u.protocol}`);
  // fetch refuses these, quoting the whole URL in its error.
  if (u.username || u.password) throw new Error(`${name} notifier: the webhook URL must not hold a user name or password`);
  if (!(timeoutMs > 0)) throw new Error(`${name} notifier: timeoutMs must be positive`);
  return { name, url: u.href, origin: u.origin, secrets: [u.pathname + u.search, u.pathname].filter((p) => p.length > 1), timeoutMs };
}

async function post(t: Target, body: string, headers: Record<string, string>): Promise<void> {
  let res: Response;
  let detail: string;
  try {
    // Redirects are refused, not followed: a POST would turn into a GET elsewhere.
    res = await fetch(t.url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers }, redirect: 'manual', signal: AbortSignal.timeout(t.timeoutMs) });
    detail = await res.text();
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') throw new Error(`${t.name} notifier: no answer from ${t.origin} within ${t.timeoutMs} ms`);
    throw new Error(`${t.name} notifier: could not reach ${t.origin}: ${e.cause?.code ?? e.message}`);
  }
  if (res.status < 200 || res.status > 299) {
    // Receivers' error pages often quote the path ("Cannot POST /hooks/<secret>").
    let snippet = detail.split(t.url).join(t.origin);
    for (const secret of t.secrets) snippet = snippet.split(secret).join('/…');
    snippet = snippet.replace(/\s+/g, ' ').trim().slice(0, 200);
    throw new Error(`${t.name} notifier: ${t.origin} answered HTTP ${res.status}${snippet ? `: ${snippet}` : ''}`);
  }
}

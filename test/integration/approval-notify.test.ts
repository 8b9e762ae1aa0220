// The notifiers against a real HTTP server on loopback: what Slack and a generic
// webhook receiver get (body, headers, signature), and how failures read: a 5xx,
// a redirect, a refused connection and a receiver that never answers.

import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SlackNotifier, WebhookNotifier, verifyWebhookSignature, type NotifyEvent } from '../../src/approvals/notify.js';
import type { ApprovalRequest } from '../../src/approvals/types.js';
import { APPROVAL_LINKS, approvalRequest } from '../helpers/approvals.js';

interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A receiver that records requests and answers with `answer` (which may never answer). */
async function receiver(answer: (res: ServerResponse) => void = (res) => res.end('ok')): Promise<{ url: (path: string) => string; got: Received[] }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
      answer(res);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  const { port } = server.address() as AddressInfo;
  return { url: (path) => `http://127.0.0.1:${port}${path}`, got };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const REQUEST: ApprovalRequest = approvalRequest({ rules: ['prod-deletes'], approvers: ['dba'], required: 1 });
const LINKS = APPROVAL_LINKS;
const REQUESTED: NotifyEvent = { kind: 'requested', request: REQUEST, links: LINKS };
const DECIDED: NotifyEvent = {
  kind: 'decided',
  request: { ...REQUEST, status: 'approved', decisions: [{ decision: 'approve', user: 'bob', subject: 'sub-bob', groups: ['dba'], reason: 'ticket OPS-7', via: 'cli', at: '2026-03-01T10:02:00.000Z' }] },
  links: null,
};
const SECRET_PATH = '/services/T000/B000/XXXXsecretXXXX';

describe('SlackNotifier', () => {
  it('posts the Block Kit request as JSON to the webhook', async () => {
    const r = await receiver();
    await new SlackNotifier({ webhookUrl: r.url(SECRET_PATH), approveCommand: (q) => `dbward approvals approve ${q.id} --reason ...` }).send(REQUESTED);
    expect(r.got).toHaveLength(1);
    const [req] = r.got;
    expect(req!.method).toBe('POST');
    expect(req!.url).toBe(SECRET_PATH);
    expect(req!.headers['content-type']).toBe('application/json');
    const body = JSON.parse(req!.body.toString());
    expect(body.text).toContain('alice@example.com asks to run a statement on orders (production)');
    expect(body.blocks.map((b: any) => b.type)).toEqual(['header', 'section', 'section', 'actions', 'context']);
    expect(body.blocks[2].text.text).toBe('```\nDELETE FROM orders WHERE id = $1\n```');
    const buttons = body.blocks[3].elements;
    expect(buttons.map((b: any) => [b.action_id, b.style, b.value, b.url])).toEqual([
      ['dbward_approve', 'primary', 'apr_7k3m9q2x4d', LINKS.approve],
      ['dbward_deny', 'danger', 'apr_7k3m9q2x4d', LINKS.deny],
    ]);
    expect(body.blocks[4].elements[0].text).toContain('`dbward approvals approve apr_7k3m9q2x4d --reason ...`');
  });

  it('posts a one-line outcome once decided', async () => {
    const r = await receiver();
    await new SlackNotifier({ webhookUrl: r.url(SECRET_PATH) }).send(DECIDED);
    expect(JSON.parse(r.got[0]!.body.toString())).toEqual({ text: 'apr_7k3m9q2x4d approved by bob: ticket OPS-7 (orders, production)' });
  });

  it('rejects a 500 naming the notifier, the status and the origin, never the secret path', async () => {
    // Like many frameworks' error pages, this one quotes the path back.
    const r = await receiver((res) => {
      res.statusCode = 500;
      res.end(`no_service: cannot POST ${SECRET_PATH}`);
    });
    const err = await new SlackNotifier({ webhookUrl: r.url(SECRET_PATH) }).send(REQUESTED).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toBe(`slack notifier: ${new URL(r.url('/')).origin} answered HTTP 500: no_service: cannot POST /…`);
    expect(err!.message).not.toContain('secret');
    expect(err!.message).not.toContain('T000');
  });

  it('treats a redirect as a failure rather than following it', async () => {
    const r = await receiver((res) => {
      res.writeHead(302, { location: '/elsewhere' }).end();
    });
    await expect(new SlackNotifier({ webhookUrl: r.url(SECRET_PATH) }).send(REQUESTED)).rejects.toThrow(/answered HTTP 302$/);
    expect(r.got.map((g) => g.url)).toEqual([SECRET_PATH]);
  });

  it('gives up on a receiver that never answers, after timeoutMs', async () => {
    const r = await receiver(() => {});
    const started = Date.now();
    const err = await new SlackNotifier({ webhookUrl: r.url(SECRET_PATH), timeoutMs: 200 }).send(REQUESTED).then(() => null, (e: Error) => e);
    expect(err?.message).toBe(`slack notifier: no answer from ${new URL(r.url('/')).origin} within 200 ms`);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r.got).toHaveLength(1);
  });

  it('says when nothing listens, without the path', async () => {
    const r = await receiver();
    const url = r.url(SECRET_PATH);
    for (const s of servers.splice(0)) await new Promise((done) => s.close(done));
    const err = await new SlackNotifier({ webhookUrl: url }).send(REQUESTED).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/^slack notifier: could not reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED$/);
  });

  it('refuses a malformed webhook URL without printing it', () => {
    expect(() => new SlackNotifier({ webhookUrl: 'hooks.slack.com/services/T000/secret' })).toThrow(/^slack notifier: the webhook URL is not a valid URL$/);
    expect(() => new SlackNotifier({ webhookUrl: 'ftp://hooks.slack.com/services/T000/secret' })).toThrow(/must be http or https, not ftp:$/);
    expect(() => new SlackNotifier({ webhookUrl: 'https://u:p@hooks.slack.com/services/T000/secret' })).toThrow(/^slack notifier: the webhook URL must not hold a user name or password$/);
  });
});

describe('WebhookNotifier', () => {
  const SECRET = Buffer.from('webhook-secret-for-tests');
  const AT = new Date('2026-03-01T10:00:05.250Z');
  const NOW = Math.floor(AT.getTime() / 1000);

  it('posts a signed JSON event that verifyWebhookSignature accepts, and only with the right secret', async () => {
    const r = await receiver();
    const n = new WebhookNotifier({ url: r.url('/hooks/dbward'), secret: SECRET, now: () => AT });
    await n.send(REQUESTED);
    await n.send(DECIDED);
    expect(r.got).toHaveLength(2);
    const [first, second] = r.got;
    expect(first!.headers['content-type']).toBe('application/json');
    expect(first!.headers['x-dbward-timestamp']).toBe(String(NOW));
    expect(first!.headers['x-dbward-signature']).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(JSON.parse(first!.body.toString())).toEqual({ type: 'dbward.approval.requested', request: REQUEST, links: LINKS, sent_at: '2026-03-01T10:00:05.250Z' });
    expect(JSON.parse(second!.body.toString())).toMatchObject({ type: 'dbward.approval.decided', request: { status: 'approved' }, links: null });

    const ts = first!.headers['x-dbward-timestamp'] as string;
    const sig = first!.headers['x-dbward-signature'] as string;
    expect(verifyWebhookSignature(SECRET, ts, sig, first!.body, NOW + 10)).toEqual({ ok: true });
    expect(verifyWebhookSignature(SECRET.toString(), ts, sig, first!.body.toString(), NOW)).toEqual({ ok: true });
    expect(verifyWebhookSignature(Buffer.from('another-secret'), ts, sig, first!.body, NOW)).toEqual({ ok: false, reason: 'x-dbward-signature does not match the body' });
    expect(verifyWebhookSignature(SECRET, ts, sig, second!.body, NOW).ok).toBe(false);
    expect(verifyWebhookSignature(SECRET, String(NOW + 1), sig, first!.body, NOW).ok).toBe(false);
    expect(verifyWebhookSignature(SECRET, ts, sig, first!.body, NOW + 301)).toEqual({ ok: false, reason: 'x-dbward-timestamp is 301s away from now, outside the 300s window' });
  });

  it('names missing and malformed headers to receivers', () => {
    const body = Buffer.from('{}');
    const good = `v1=${'0'.repeat(64)}`;
    expect(verifyWebhookSignature(SECRET, undefined, good, body, NOW)).toEqual({ ok: false, reason: 'missing x-dbward-timestamp header' });
    expect(verifyWebhookSignature(SECRET, String(NOW), null, body, NOW)).toEqual({ ok: false, reason: 'missing x-dbward-signature header' });
    expect(verifyWebhookSignature(SECRET, '17e8', good, body, NOW)).toEqual({ ok: false, reason: 'x-dbward-timestamp is not Unix seconds' });
    expect(verifyWebhookSignature(SECRET, String(NOW), good.slice(1), body, NOW).ok).toBe(false);
    expect(verifyWebhookSignature(SECRET, String(NOW), good.toUpperCase(), body, NOW).ok).toBe(false);
    expect(verifyWebhookSignature(SECRET, String(NOW), good, body, NOW)).toEqual({ ok: false, reason: 'x-dbward-signature does not match the body' });
    expect(() => verifyWebhookSignature('', String(NOW), good, body, NOW)).toThrow(/secret is empty/);
  });

  it('rejects a 500 with the notifier name and status, not the URL path or query', async () => {
    const r = await receiver((res) => {
      res.statusCode = 503;
      res.end();
    });
    const err = await new WebhookNotifier({ name: 'pagerbridge', url: r.url('/in/abc123?token=s3cr3t'), secret: SECRET }).send(REQUESTED).then(() => null, (e: Error) => e);
    expect(err?.message).toBe(`pagerbridge notifier: ${new URL(r.url('/')).origin} answered HTTP 503`);
  });

  it('gives up on a receiver that never answers', async () => {
    const r = await receiver(() => {});
    await expect(new WebhookNotifier({ url: r.url('/in'), secret: SECRET, timeoutMs: 150 }).send(DECIDED)).rejects.toThrow(/^webhook notifier: no answer from http:\/\/127\.0\.0\.1:\d+ within 150 ms$/);
  });

  it('refuses an empty secret', () => {
    expect(() => new WebhookNotifier({ url: 'https://example.com/in', secret: Buffer.alloc(0) })).toThrow(/signing secret is empty/);
  });
});

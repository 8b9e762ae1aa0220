// Slack, both ways: the Block Kit request message (content, escaping, limits),
// the signature on Slack's requests (Slack's published example, tampering, the
// replay window, replays within it) and the block_actions click it posts back.

import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SlackReplayGuard, parseSlackAction, slackDecisionMessage, slackMessage, verifySlackSignature } from '../../src/approvals/slack.js';
import { APPROVAL_LINKS, approvalRequest } from '../helpers/approvals.js';

const request = approvalRequest;
const LINKS = APPROVAL_LINKS;
const CMD = { approveCommand: 'dbward approvals approve apr_7k3m9q2x4d --reason "..."' };

function blocks(msg: object): any[] {
  return (msg as { blocks: any[] }).blocks;
}
function codeSection(msg: object): string {
  return blocks(msg).find((b) => b.type === 'section' && b.text?.text.startsWith('```')).text.text;
}

describe('slackMessage', () => {
  it('says who, where, which rules, who must approve, until when, and the statement', () => {
    const msg = slackMessage(request(), LINKS, CMD) as any;
    expect(msg.text).toContain('alice@example.com asks to run a statement on orders (production)');
    const [header, section, code, actions, context] = msg.blocks;
    expect(header).toEqual({ type: 'header', text: { type: 'plain_text', text: 'Approval needed: orders (production)' } });
    const fields = section.fields.map((f: any) => f.text).join('\n');
    expect(fields).toContain('*Requested by*\nalice@example.com (human)');
    expect(fields).toContain('orders · production · database shop');
    expect(fields).toContain('prod-deletes, no-unbounded-writes');
    expect(fields).toContain('*Approvers needed*\n2 from dba, sre');
    expect(fields).toContain(`<!date^${Date.parse('2026-03-01T10:15:00Z') / 1000}^{date_short_pretty} {time}|2026-03-01T10:15:00.000Z>`);
    expect(code.text.text).toBe('```\nDELETE FROM orders WHERE id = $1\n```');
    expect(actions.elements).toEqual([
      { type: 'button', text: { type: 'plain_text', text: 'Approve' }, style: 'primary', action_id: 'dbward_approve', value: 'apr_7k3m9q2x4d', url: LINKS.approve },
      { type: 'button', text: { type: 'plain_text', text: 'Deny' }, style: 'danger', action_id: 'dbward_deny', value: 'apr_7k3m9q2x4d', url: LINKS.deny },
    ]);
    expect(context.elements[0].text).toContain('`dbward approvals approve apr_7k3m9q2x4d --reason "..."`');
  });

  it('leaves the buttons without a url when there are no links', () => {
    const actions = blocks(slackMessage(request(), null, CMD)).find((b) => b.type === 'actions');
    expect(actions.elements.map((e: any) => 'url' in e)).toEqual([false, false]);
    expect(actions.elements.map((e: any) => e.action_id)).toEqual(['dbward_approve', 'dbward_deny']);
  });

  it('flags an unverified requester', () => {
    const msg = slackMessage(request({ requester: { user: 'bot', subject: null, groups: [], kind: null, verified: false } }), null, CMD);
    expect(JSON.stringify(msg)).toContain('bot (unknown kind, unverified identity)');
  });

  it('escapes &, < and > everywhere, so nobody can mention @channel or forge a link', () => {
    const msg = slackMessage(
      request({ text: "SELECT '<!channel>' & '<https://evil|ok>'", target: { name: 'a<@U1>b', environment: 'p&q', database: 'd>' }, requester: { user: '<!here>', subject: null, groups: [], kind: 'agent', verified: true } }),
      null,
      CMD,
    );
    // The header is plain_text, which Slack never parses for mentions or links.
    const [header, ...rest] = blocks(msg);
    expect(header.text.type).toBe('plain_text');
    const all = JSON.stringify({ text: (msg as any).text, rest }).replace(/<!date\^[^>]*>/g, '');
    expect(all).not.toMatch(/<!channel>|<!here>|<@U1>|<https:/);
    expect(codeSection(msg)).toBe("```\nSELECT '&lt;!channel&gt;' &amp; '&lt;https://evil|ok&gt;'\n```");
    expect(JSON.stringify(msg)).toContain('a&lt;@U1&gt;b · p&amp;q · database d&gt;');
  });

  it('cannot be broken out of the code block by backticks in the statement', () => {
    const text = 'SELECT 1 ```\n*bold* <!channel>``` `x` ```` ``';
    const inner = codeSection(slackMessage(request({ text }), null, CMD)).slice(4, -4);
    expect(inner).not.toContain('``');
    // Only zero-width spaces were added: what approvers read is the statement.
    expect(inner.replaceAll('\u200b', '').replaceAll('&lt;', '<').replaceAll('&gt;', '>')).toBe(text);
  });

  it('cuts a long statement to the limit, in escaped characters, and says so outside the code block', () => {
    for (const text of ['x'.repeat(10_000), '&'.repeat(3000), '😀'.repeat(3000)]) {
      const s = codeSection(slackMessage(request({ text }), null, CMD));
      expect(s.length).toBeLessThanOrEqual(3000);
      const [, inner, note] = /^```\n([\s\S]*)\n```\n(.*)$/.exec(s)!;
      expect(inner!.length).toBeLessThanOrEqual(2500);
      expect(inner!.length).toBeGreaterThan(2490);
      expect(note).toMatch(/^_Statement cut: \d+ more characters not shown\._$/);
      expect(inner).not.toMatch(/&(a|am|amp)?$/); // no half entity
      expect(inner).not.toMatch(/[\ud800-\udbff]$/); // no half surrogate pair
    }
  });

  it('keeps the header within Slack’s 150 characters', () => {
    const header = blocks(slackMessage(request({ target: { name: 'n'.repeat(400), environment: 'prod', database: 'd' } }), null, CMD))[0];
    expect(header.text.text.length).toBeLessThanOrEqual(150);
    expect(header.text.text.endsWith('…')).toBe(true);
  });
});

describe('slackDecisionMessage', () => {
  const d = (decision: 'approve' | 'deny', user: string, reason: string | null) => ({ decision, user, subject: user, groups: ['dba'], reason, via: 'slack' as const, at: '2026-03-01T10:01:00Z' });
  it('names the outcome, the deciders and their reasons', () => {
    expect(slackDecisionMessage(request({ status: 'approved', decisions: [d('approve', 'bob', 'ticket OPS-1'), d('approve', 'carol', null)] })).text).toBe('apr_7k3m9q2x4d approved by bob, carol: ticket OPS-1 (orders, production)');
    expect(slackDecisionMessage(request({ status: 'denied', decisions: [d('deny', 'bob', 'not <now>')], reason: 'not <now>' })).text).toBe('apr_7k3m9q2x4d denied by bob: not &lt;now&gt; (orders, production)');
    expect(slackDecisionMessage(request({ status: 'expired', reason: 'timed out' })).text).toBe('apr_7k3m9q2x4d expired: timed out (orders, production)');
    expect(slackDecisionMessage(request({ status: 'withdrawn', reason: 'cancelled by the client' })).text).toBe('apr_7k3m9q2x4d withdrawn: cancelled by the client (orders, production)');
  });
});

const SECRET = 'test-signing-secret';
const NOW = 1_700_000_000;
function sign(body: Buffer | string, ts: number | string, secret = SECRET): { timestamp: string; signature: string } {
  return { timestamp: String(ts), signature: `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}` };
}

describe('verifySlackSignature', () => {
  const body = Buffer.from('payload=%7B%22type%22%3A%22block_actions%22%7D');

  it("accepts Slack's published example", () => {
    const docBody = Buffer.from(
      'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
    );
    const headers = { timestamp: '1531420618', signature: 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503' };
    expect(verifySlackSignature('8f742231b10e8888abcd99yyyzzz85a5', headers, docBody, 1531420618 + 60)).toEqual({ ok: true });
    expect(verifySlackSignature(Buffer.from('8f742231b10e8888abcd99yyyzzz85a5'), headers, docBody, 1531420618)).toEqual({ ok: true });
  });

  it('accepts a correctly signed body within the window, either side of now', () => {
    expect(verifySlackSignature(SECRET, sign(body, NOW), body, NOW)).toEqual({ ok: true });
    expect(verifySlackSignature(SECRET, sign(body, NOW - 300), body, NOW)).toEqual({ ok: true });
    expect(verifySlackSignature(SECRET, sign(body, NOW + 300), body, NOW)).toEqual({ ok: true });
  });

  it('hashes the raw bytes, not a decoded string', () => {
    const raw = Buffer.from([0x70, 0x3d, 0xff, 0xfe]); // not UTF-8
    const signature = `v0=${createHmac('sha256', SECRET).update(Buffer.concat([Buffer.from(`v0:${NOW}:`), raw])).digest('hex')}`;
    expect(verifySlackSignature(SECRET, { timestamp: String(NOW), signature }, raw, NOW)).toEqual({ ok: true });
  });

  it('refuses a tampered body, a wrong secret, and a moved timestamp', () => {
    const h = sign(body, NOW);
    expect(verifySlackSignature(SECRET, h, Buffer.from(body.toString().replace('block', 'blocc')), NOW)).toEqual({ ok: false, reason: 'X-Slack-Signature does not match the body' });
    expect(verifySlackSignature('another-secret', h, body, NOW).ok).toBe(false);
    expect(verifySlackSignature(SECRET, { ...h, timestamp: String(NOW + 1) }, body, NOW).ok).toBe(false);
  });

  it('refuses a correctly signed request outside the replay window', () => {
    const r = verifySlackSignature(SECRET, sign(body, NOW - 301), body, NOW);
    expect(r).toEqual({ ok: false, reason: 'X-Slack-Request-Timestamp is 301s away from now, outside the 300s replay window' });
    expect(verifySlackSignature(SECRET, sign(body, NOW + 301), body, NOW).ok).toBe(false);
    expect(verifySlackSignature(SECRET, sign(body, NOW - 100), body, NOW, 60).ok).toBe(false);
  });

  it('names missing and malformed headers', () => {
    const h = sign(body, NOW);
    const cases: [{ timestamp: string | undefined; signature: string | undefined }, RegExp][] = [
      [{ timestamp: undefined, signature: h.signature }, /missing X-Slack-Request-Timestamp/],
      [{ timestamp: '', signature: h.signature }, /missing X-Slack-Request-Timestamp/],
      [{ timestamp: h.timestamp, signature: undefined }, /missing X-Slack-Signature/],
      [{ timestamp: `${NOW}.5`, signature: h.signature }, /not Unix seconds/],
      [{ timestamp: 'abc', signature: h.signature }, /not Unix seconds/],
      [{ timestamp: h.timestamp, signature: h.signature.replace('v0=', 'v1=') }, /not a v0 signature/],
      [{ timestamp: h.timestamp, signature: h.signature.slice(0, -2) }, /64 lowercase hex/],
      [{ timestamp: h.timestamp, signature: `${h.signature}00` }, /64 lowercase hex/],
      [{ timestamp: h.timestamp, signature: h.signature.toUpperCase().replace('V0=', 'v0=') }, /64 lowercase hex/],
    ];
    for (const [headers, reason] of cases) {
      const r = verifySlackSignature(SECRET, headers, body, NOW);
      expect(r.ok ? '' : r.reason, JSON.stringify(headers)).toMatch(reason);
    }
  });

  it('refuses to run without a secret', () => {
    expect(() => verifySlackSignature('', sign(body, NOW), body, NOW)).toThrow(/signing secret is empty/);
  });
});

describe('SlackReplayGuard', () => {
  it('refuses the same signed request the second time, and forgets it after the window', () => {
    const g = new SlackReplayGuard(300);
    const { signature } = sign('payload=x', NOW);
    expect(g.seen(signature, NOW, NOW)).toBe(false);
    expect(g.seen(signature, NOW, NOW + 10)).toBe(true);
    expect(g.seen(signature, NOW, NOW + 300)).toBe(true);
    expect(g.seen(sign('payload=y', NOW).signature, NOW, NOW + 10)).toBe(false);
    // Past the window the signature check refuses it first; the guard need not remember.
    expect(g.seen(sign('payload=z', NOW).signature, NOW, NOW + 1000)).toBe(false);
    expect(g.size).toBe(1);
  });

  it('stays bounded, dropping the oldest when every entry is still live', () => {
    const g = new SlackReplayGuard(300, 3);
    for (const s of ['a', 'b', 'c', 'd']) expect(g.seen(s, NOW, NOW)).toBe(false);
    expect(g.size).toBe(3);
    expect(g.seen('d', NOW, NOW)).toBe(true);
    expect(g.seen('a', NOW, NOW)).toBe(false);
  });
});

function actionBody(payload: unknown, extra = ''): Buffer {
  return Buffer.from(`payload=${encodeURIComponent(typeof payload === 'string' ? payload : JSON.stringify(payload))}${extra}`);
}
const CLICK = {
  type: 'block_actions',
  user: { id: 'U0ALICE', username: 'alice', name: 'alice', team_id: 'T0ACME' },
  api_app_id: 'A0DBWARD',
  token: 'legacy',
  container: { type: 'message', message_ts: '1700000000.000100', channel_id: 'C0OPS', is_ephemeral: false },
  trigger_id: '1.2.3',
  team: { id: 'T0ACME', domain: 'acme' },
  channel: { id: 'C0OPS', name: 'ops' },
  response_url: 'https://hooks.slack.com/actions/T0ACME/1/abc',
  actions: [{ action_id: 'dbward_deny', block_id: 'dbward_approval', text: { type: 'plain_text', text: 'Deny' }, value: 'apr_7k3m9q2x4d', style: 'danger', type: 'button', action_ts: '1700000001.1' }],
};

describe('parseSlackAction', () => {
  it('reads the action, the request id, the Slack user and the response URL', () => {
    expect(parseSlackAction(actionBody(CLICK))).toEqual({
      ok: true,
      action: 'deny',
      id: 'apr_7k3m9q2x4d',
      slackUser: { id: 'U0ALICE', username: 'alice', teamId: 'T0ACME' },
      responseUrl: 'https://hooks.slack.com/actions/T0ACME/1/abc',
    });
    const approve = parseSlackAction(actionBody({ ...CLICK, actions: [{ ...CLICK.actions[0], action_id: 'dbward_approve' }] }));
    expect(approve.ok && approve.action).toBe('approve');
  });

  it('keeps going without the optional parts, and drops a response URL off Slack', () => {
    const { team: _t, response_url: _r, ...bare } = CLICK;
    expect(parseSlackAction(actionBody({ ...bare, user: { id: 'U0ALICE' } }))).toMatchObject({ ok: true, slackUser: { id: 'U0ALICE', username: null, teamId: null }, responseUrl: null });
    expect(parseSlackAction(actionBody({ ...bare, user: { id: 'U0ALICE', team_id: 'T0USER' } }))).toMatchObject({ ok: true, slackUser: { teamId: 'T0USER' } });
    for (const url of ['http://hooks.slack.com/x', 'https://hooks.slack.com.evil.example/x', 'https://evilslack.com/x', 'not a url']) {
      expect(parseSlackAction(actionBody({ ...CLICK, response_url: url }))).toMatchObject({ ok: true, responseUrl: null });
    }
  });

  it('refuses anything else with a reason, and never throws', () => {
    const a = CLICK.actions[0]!;
    const cases: [Buffer, RegExp][] = [
      [Buffer.from(''), /no payload field/],
      [Buffer.from('token=x'), /no payload field/],
      [actionBody(CLICK, '&payload=x'), /more than one payload/],
      [actionBody('{not json'), /not JSON/],
      [actionBody('[1,2]'), /not a JSON object/],
      [actionBody('null'), /not a JSON object/],
      [actionBody({ ...CLICK, type: 'view_submission' }), /"view_submission", not block_actions/],
      [actionBody({ ...CLICK, type: undefined }), /missing, not block_actions/],
      [actionBody({ ...CLICK, actions: [] }), /exactly one action/],
      [actionBody({ ...CLICK, actions: [a, a] }), /exactly one action/],
      [actionBody({ ...CLICK, actions: 'dbward_approve' }), /exactly one action/],
      [actionBody({ ...CLICK, actions: [{ ...a, action_id: 'other_button' }] }), /not a dbward approve or deny/],
      [actionBody({ ...CLICK, actions: [{ ...a, action_id: 'toString' }] }), /not a dbward approve or deny/],
      [actionBody({ ...CLICK, actions: [{ ...a, action_id: '__proto__' }] }), /not a dbward approve or deny/],
      [actionBody({ ...CLICK, actions: [{ ...a, value: undefined }] }), /no valid approval request id/],
      [actionBody({ ...CLICK, actions: [{ ...a, value: '../../admin' }] }), /no valid approval request id/],
      [actionBody({ ...CLICK, actions: [{ ...a, value: 'x'.repeat(65) }] }), /no valid approval request id/],
      [actionBody({ ...CLICK, user: undefined }), /no Slack user/],
      [actionBody({ ...CLICK, user: { id: 42 } }), /no Slack user/],
      [actionBody({ ...CLICK, user: { id: 'U'.repeat(300) } }), /no Slack user/],
      [Buffer.alloc(300 * 1024, 'a'), /at most/],
      [Buffer.from([0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x3d, 0xff, 0xfe, 0x25]), /not JSON/],
    ];
    for (const [body, reason] of cases) {
      const r = parseSlackAction(body);
      expect(r.ok, body.toString().slice(0, 80)).toBe(false);
      expect(r.ok ? '' : r.reason).toMatch(reason);
    }
  });

  it('survives random bytes', () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
      const r = parseSlackAction(i % 2 ? Buffer.concat([Buffer.from('payload='), bytes]) : bytes);
      expect(r.ok).toBe(false);
    }
  });
});

// dbward's signed approve/deny links: what a valid link looks like, and every way
// a changed, stale or malformed one is refused.

import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signLink, verifyLink } from '../../src/approvals/links.js';

const KEY = Buffer.alloc(32, 7);
const OTHER = Buffer.alloc(32, 8);
const NOW = 1_700_000_000;
const EXP = NOW + 600;

/** The link's query parts, as the admin route would read them. */
function parts(link: string): { path: string; exp: string | null; sig: string | null } {
  const u = new URL(link);
  return { path: u.pathname, exp: u.searchParams.get('exp'), sig: u.searchParams.get('sig') };
}

describe('signLink', () => {
  it('builds <base>/approvals/<id>/<action>?exp&sig with sig = base64url(HMAC-SHA256(key, v1:id:action:exp))', () => {
    const link = signLink(KEY, 'https://dbward.example.com/', 'apr_7k3m9q2x4d', 'approve', EXP);
    const want = createHmac('sha256', KEY).update(`v1:apr_7k3m9q2x4d:approve:${EXP}`).digest('base64url');
    expect(link).toBe(`https://dbward.example.com/approvals/apr_7k3m9q2x4d/approve?exp=${EXP}&sig=${want}`);
  });

  it('keeps a base path and escapes the id', () => {
    const link = signLink(KEY, 'https://ops.example.com/dbward', 'a/b c', 'deny', EXP);
    expect(parts(link).path).toBe('/dbward/approvals/a%2Fb%20c/deny');
  });

  it('refuses short keys, fractional or negative expiries, and other actions', () => {
    expect(() => signLink(Buffer.alloc(31), 'https://x', 'apr_1', 'approve', EXP)).toThrow(/31 bytes; it must be at least 32/);
    expect(() => signLink(KEY, 'https://x', 'apr_1', 'approve', 1.5)).toThrow(/whole Unix seconds/);
    expect(() => signLink(KEY, 'https://x', 'apr_1', 'approve', -1)).toThrow(/whole Unix seconds/);
    expect(() => signLink(KEY, 'https://x', 'apr_1', 'grant' as 'approve', EXP)).toThrow(/action "grant"/);
    expect(() => signLink(KEY, 'https://x', '', 'approve', EXP)).toThrow(/id of 0 characters/);
  });
});

describe('verifyLink', () => {
  const { exp, sig } = parts(signLink(KEY, 'https://x', 'apr_1', 'approve', EXP));

  it('accepts the link it signed until just before it expires', () => {
    expect(verifyLink(KEY, 'apr_1', 'approve', exp, sig, NOW)).toEqual({ ok: true });
    expect(verifyLink(KEY, 'apr_1', 'approve', exp, sig, EXP - 1)).toEqual({ ok: true });
  });

  it('refuses it from its expiry second on, saying when it expired', () => {
    expect(verifyLink(KEY, 'apr_1', 'approve', exp, sig, EXP)).toEqual({ ok: false, reason: `the link expired at ${new Date(EXP * 1000).toISOString()}` });
    expect(verifyLink(KEY, 'apr_1', 'approve', exp, sig, EXP + 3600).ok).toBe(false);
  });

  it('refuses it for another request, the other action, or under another key', () => {
    for (const r of [
      verifyLink(KEY, 'apr_2', 'approve', exp, sig, NOW),
      verifyLink(KEY, 'apr_1', 'deny', exp, sig, NOW),
      verifyLink(OTHER, 'apr_1', 'approve', exp, sig, NOW),
    ]) {
      expect(r).toEqual({ ok: false, reason: expect.stringMatching(/signature does not match/) });
    }
  });

  it('refuses an extended expiry (the signature covers it)', () => {
    expect(verifyLink(KEY, 'apr_1', 'approve', String(EXP + 86_400), sig, NOW)).toEqual({ ok: false, reason: expect.stringMatching(/signature does not match/) });
  });

  it('refuses a signature with one character changed, or an equivalent spelling of it', () => {
    const s = sig!;
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    expect(verifyLink(KEY, 'apr_1', 'approve', exp, flipped, NOW).ok).toBe(false);
    // The last base64url character carries 2 unused bits: another letter can decode to the same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = [...alphabet].map((c) => s.slice(0, 42) + c).find((t) => t !== s && Buffer.from(t, 'base64url').equals(Buffer.from(s, 'base64url')));
    expect(twin).toBeDefined();
    expect(verifyLink(KEY, 'apr_1', 'approve', exp, twin!, NOW).ok).toBe(false);
  });

  it('names what is missing or malformed', () => {
    const cases: [string, string | null, string | null, RegExp][] = [
      ['approve', null, sig, /no expiry/],
      ['approve', '', sig, /no expiry/],
      ['approve', `${EXP}.0`, sig, /not whole Unix seconds/],
      ['approve', '1e12', sig, /not whole Unix seconds/],
      ['approve', '-5', sig, /not whole Unix seconds/],
      ['approve', ` ${EXP}`, sig, /not whole Unix seconds/],
      ['approve', exp, null, /no signature/],
      ['approve', exp, '', /no signature/],
      ['approve', exp, sig!.slice(1), /malformed/],
      ['approve', exp, `${sig}=`, /malformed/],
      ['approve', exp, sig!.replace(/.$/, '+'), /malformed/],
      ['grant', exp, sig, /"grant" is not an approval action/],
    ];
    for (const [action, e, s, reason] of cases) {
      const r = verifyLink(KEY, 'apr_1', action, e, s, NOW);
      expect(r.ok, `${action} ${e} ${s}`).toBe(false);
      expect(r.ok ? '' : r.reason).toMatch(reason);
    }
  });

  it('refuses an empty or overlong id, and a short key', () => {
    expect(verifyLink(KEY, '', 'approve', exp, sig, NOW).ok).toBe(false);
    expect(verifyLink(KEY, 'x'.repeat(129), 'approve', exp, sig, NOW).ok).toBe(false);
    expect(() => verifyLink(Buffer.alloc(0), 'apr_1', 'approve', exp, sig, NOW)).toThrow(/at least 32/);
  });
});

// The approval sign-in's cookies and CSRF pieces: sealing (AES-256-GCM under a
// key derived from the link key, the cookie's name bound in), expiry, the
// Set-Cookie attributes, reading a Cookie header, token comparison, and what
// ApproverSignIn decides without talking to an issuer (where it comes back to,
// which session cookies it believes).

import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  clearCookie, cookieKey, cookieValues, openCookie, randomToken, sameToken, seal, SESSION_COOKIE, setCookie, SIGN_IN_COOKIE, unseal,
} from '../../src/admin/cookies.js';
import { ApproverSignIn } from '../../src/admin/sign-in.js';
import { resolveIdentityConfig } from '../../src/identity/types.js';
import { TokenVerifier } from '../../src/identity/verifier.js';

const LINK_KEY = Buffer.from('k'.repeat(32));
const KEY = cookieKey(LINK_KEY);
const NOW = 1_800_000_000;

describe('cookieKey', () => {
  it('derives a 32-byte key of its own from the link key', () => {
    expect(KEY).toHaveLength(32);
    expect(KEY.equals(LINK_KEY)).toBe(false);
    expect(cookieKey(Buffer.from('k'.repeat(32))).equals(KEY)).toBe(true);
    expect(cookieKey(Buffer.from('j'.repeat(32))).equals(KEY)).toBe(false);
    // Not the link MAC's key, nor its output.
    expect(KEY.equals(createHmac('sha256', LINK_KEY).update('v1:x:approve:1').digest())).toBe(false);
  });

  it('refuses a short link key', () => {
    expect(() => cookieKey(Buffer.alloc(31))).toThrow(/at least 32/);
  });
});

describe('seal and unseal', () => {
  const payload = { csrf: 'tok', sub: 'carol', groups: ['dba'] };

  it('round-trips the payload with its expiry, and hides it', () => {
    const v = seal(KEY, SESSION_COOKIE, payload, NOW + 60);
    expect(v).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
    expect(v).not.toContain('carol');
    expect(Buffer.from(v.slice(3), 'base64url').toString('latin1')).not.toContain('carol');
    expect(unseal(KEY, SESSION_COOKIE, v, NOW)).toEqual({ ok: true, payload: { ...payload, exp: NOW + 60 } });
  });

  it('seals the same payload differently each time (fresh IV)', () => {
    expect(seal(KEY, SESSION_COOKIE, payload, NOW + 60)).not.toBe(seal(KEY, SESSION_COOKIE, payload, NOW + 60));
  });

  it('refuses it once expired, at the second of expiry', () => {
    const v = seal(KEY, SESSION_COOKIE, payload, NOW + 60);
    expect(unseal(KEY, SESSION_COOKIE, v, NOW + 59).ok).toBe(true);
    expect(unseal(KEY, SESSION_COOKIE, v, NOW + 60)).toEqual({ ok: false, reason: 'the cookie has expired' });
  });

  it('refuses every altered byte', () => {
    const v = seal(KEY, SESSION_COOKIE, payload, NOW + 60);
    const raw = Buffer.from(v.slice(3), 'base64url');
    for (let i = 0; i < raw.length; i++) {
      const bad = Buffer.from(raw);
      bad[i] = bad[i]! ^ 0x01;
      expect(unseal(KEY, SESSION_COOKIE, `v1.${bad.toString('base64url')}`, NOW), `byte ${i}`).toMatchObject({ ok: false });
    }
    expect(unseal(KEY, SESSION_COOKIE, `v1.${raw.subarray(0, raw.length - 1).toString('base64url')}`, NOW).ok).toBe(false);
  });

  it('refuses a value made for the other cookie, or with another key', () => {
    const signIn = seal(KEY, SIGN_IN_COOKIE, payload, NOW + 60);
    expect(unseal(KEY, SESSION_COOKIE, signIn, NOW)).toEqual({ ok: false, reason: 'the cookie was altered, or made with another key' });
    const foreign = seal(cookieKey(Buffer.from('j'.repeat(32))), SESSION_COOKIE, payload, NOW + 60);
    expect(unseal(KEY, SESSION_COOKIE, foreign, NOW).ok).toBe(false);
  });

  it('refuses what it did not make: no version, other characters, too short, too long', () => {
    for (const v of ['', 'v1.', 'v2.AAAA', 'abc', 'v1.AAAA', 'v1.+/==', `v1.${'A'.repeat(5000)}`, JSON.stringify({ exp: NOW + 60 })]) {
      expect(unseal(KEY, SESSION_COOKIE, v, NOW), v.slice(0, 20)).toEqual({ ok: false, reason: 'the cookie is not one dbward made' });
    }
  });

  it('will not make a cookie a browser would drop', () => {
    expect(() => seal(KEY, SESSION_COOKIE, { groups: Array.from({ length: 400 }, (_, i) => `group-${i}`) }, NOW + 60)).toThrow(/browsers keep at most/);
  });
});

describe('Set-Cookie', () => {
  it('is HttpOnly, SameSite=Lax, scoped to /approvals, short-lived; Secure only over https', () => {
    expect(setCookie(SESSION_COOKIE, 'v1.x', { maxAgeSec: 900, secure: false })).toBe('dbward_approver=v1.x; Path=/approvals; Max-Age=900; HttpOnly; SameSite=Lax');
    expect(setCookie(SIGN_IN_COOKIE, 'v1.y', { maxAgeSec: 600.7, secure: true })).toBe('dbward_sign_in=v1.y; Path=/approvals; Max-Age=600; HttpOnly; SameSite=Lax; Secure');
    expect(setCookie(SESSION_COOKIE, 'v1.x', { maxAgeSec: -5, secure: false })).toContain('Max-Age=0;');
  });

  it('clears with an empty value and Max-Age=0 on the same path', () => {
    expect(clearCookie(SIGN_IN_COOKIE, { secure: true })).toBe('dbward_sign_in=; Path=/approvals; Max-Age=0; HttpOnly; SameSite=Lax; Secure');
  });
});

describe('reading the Cookie header', () => {
  it('finds every value of one name, and only that name', () => {
    expect(cookieValues(undefined, SESSION_COOKIE)).toEqual([]);
    expect(cookieValues('a=1; dbward_approver=v1.x;dbward_approver_2=no; dbward_approver = v1.y', SESSION_COOKIE)).toEqual(['v1.x', 'v1.y']);
    expect(cookieValues('xdbward_approver=v1.z; =v1.w; dbward_approver', SESSION_COOKIE)).toEqual([]);
  });

  it('opens the first value that unseals, skipping junk and foreign ones', () => {
    const good = seal(KEY, SESSION_COOKIE, { n: 1 }, NOW + 60);
    const expired = seal(KEY, SESSION_COOKIE, { n: 0 }, NOW - 1);
    const header = `dbward_approver=junk; dbward_approver=${expired}; dbward_approver=${good}`;
    expect(openCookie(KEY, header, SESSION_COOKIE, NOW)).toEqual({ n: 1, exp: NOW + 60 });
    expect(openCookie(KEY, `dbward_approver=${expired}`, SESSION_COOKIE, NOW)).toBeNull();
    expect(openCookie(KEY, `dbward_sign_in=${good}`, SIGN_IN_COOKIE, NOW)).toBeNull();
  });
});

describe('CSRF tokens', () => {
  it('are 256 random bits, base64url', () => {
    const a = randomToken();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(randomToken()).not.toBe(a);
  });

  it('match only exactly, and never when missing or empty', () => {
    const t = randomToken();
    expect(sameToken(t, t)).toBe(true);
    expect(sameToken(`${t.slice(0, -1)}${t.endsWith('A') ? 'B' : 'A'}`, t)).toBe(false);
    expect(sameToken(t.slice(1), t)).toBe(false);
    expect(sameToken(`${t}x`, t)).toBe(false);
    expect(sameToken(null, t)).toBe(false);
    expect(sameToken(undefined, t)).toBe(false);
    expect(sameToken('', '')).toBe(false);
  });
});

describe('ApproverSignIn without the issuer', () => {
  const ISSUER = 'https://idp.example.com';
  const signIn = (base: string | null = 'https://dbward.example.com') => new ApproverSignIn({
    issuer: ISSUER, clientId: 'dbward-approvals', clientSecret: undefined, scope: 'openid', resource: null, baseUrl: () => base,
    verifier: new TokenVerifier(resolveIdentityConfig({ issuer: ISSUER, audience: 'dbward' })), key: KEY, now: () => NOW * 1000,
  });
  const session = (over: Record<string, unknown> = {}, exp = NOW + 60) => `${SESSION_COOKIE}=${seal(KEY, SESSION_COOKIE, {
    csrf: 'c'.repeat(43), sub: 'carol', user: 'carol@example.com', groups: ['dba'], kind: 'human', iss: ISSUER, email: 'carol@example.com', ...over,
  }, exp)}`;

  it('takes its redirect URI and cookie security from the public URL', () => {
    expect(signIn().redirectUri()).toBe('https://dbward.example.com/approvals/sign-in/callback');
    expect(signIn().secure).toBe(true);
    expect(signIn('http://127.0.0.1:6480/').redirectUri()).toBe('http://127.0.0.1:6480/approvals/sign-in/callback');
    expect(signIn('http://127.0.0.1:6480').secure).toBe(false);
    expect(signIn(null).redirectUri()).toBeNull();
  });

  it('comes back only to an approval link of this server', async () => {
    for (const back of ['https://evil.example/approvals/apr_x/approve?exp=1&sig=a', '//evil.example/approvals/apr_x/approve?exp=1', '/approvals/apr_x/delete?exp=1', '/approvals/apr_x/approve?exp=1&next=https://evil']) {
      await expect(signIn().begin(back), back).rejects.toThrow(/approval link of this server/);
    }
  });

  it('reads the signed-in approver from a session cookie it sealed', () => {
    const me = signIn().session(`other=1; ${session()}`);
    expect(me).toEqual({
      csrf: 'c'.repeat(43),
      identity: { subject: 'carol', user: 'carol@example.com', email: 'carol@example.com', groups: ['dba'], kind: 'human', issuer: ISSUER, claims: {}, expiresAt: NOW + 60, verified: true },
    });
  });

  it('refuses a session that expired, names another issuer, is malformed, or is a sign-in cookie', () => {
    expect(signIn().session(session({}, NOW))).toBeNull();
    expect(signIn().session(session({ iss: 'https://other.example.com' }))).toBeNull();
    expect(signIn().session(session({ groups: 'dba' }))).toBeNull();
    expect(signIn().session(session({ kind: 'root' }))).toBeNull();
    expect(signIn().session(session({ csrf: 7 }))).toBeNull();
    expect(signIn().session(`${SESSION_COOKIE}=${seal(KEY, SIGN_IN_COOKIE, { csrf: 'c', sub: 'carol', user: 'carol', groups: [], kind: 'human', iss: ISSUER }, NOW + 60)}`)).toBeNull();
    expect(signIn().session(undefined)).toBeNull();
  });
});

// The approval sign-in's cookies: sealed (AES-256-GCM) with a key derived from
// the approval link key, so only a dbward holding that key (any replica sharing
// the store) can make or read one, and nobody can change one unnoticed. Each
// cookie's name is bound into the seal, so one cookie cannot stand in for
// another, and its expiry is inside, so a cookie kept past its Max-Age is refused.
// Pure: no sockets; the admin route feeds in headers.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/** The sign-in in progress: state, nonce, PKCE verifier and where to come back to. */
export const SIGN_IN_COOKIE = 'dbward_sign_in';
/** The signed-in approver and their CSRF token. */
export const SESSION_COOKIE = 'dbward_approver';
/** Both cookies go only to the approval routes. */
export const COOKIE_PATH = '/approvals';

/** Browsers keep cookies up to about 4096 bytes, name and attributes included. */
const MAX_VALUE = 3800;
const VERSION = 'v1.';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The cookie key: HKDF-SHA256 of the link key, for this use only (a cookie is never a valid link MAC, nor the reverse). */
export function cookieKey(linkKey: Buffer): Buffer {
  if (linkKey.length < 32) throw new Error(`the approval link key is ${linkKey.length} bytes; sign-in cookies need at least 32`);
  return Buffer.from(hkdfSync('sha256', linkKey, 'dbward', 'dbward approvals sign-in cookies v1', 32));
}

/** Seals `payload` (JSON) as the value of cookie `name`, valid until `expSec` (Unix seconds). */
export function seal(key: Buffer, name: string, payload: Record<string, unknown>, expSec: number): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aad(name));
  const body = Buffer.concat([cipher.update(JSON.stringify({ ...payload, exp: expSec }), 'utf8'), cipher.final()]);
  const value = VERSION + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
  if (value.length > MAX_VALUE) throw new Error(`cookie ${name} would be ${value.length} characters; browsers keep at most about ${MAX_VALUE}`);
  return value;
}

/** Opens a value made by seal for cookie `name`; refuses one altered, made for another cookie or key, or past its expiry. */
export function unseal(key: Buffer, name: string, value: string, nowSec: number): { ok: true; payload: Record<string, unknown> } | { ok: false; reason: string } {
  if (!value.startsWith(VERSION) || value.length > MAX_VALUE || !/^[A-Za-z0-9_-]+$/.test(value.slice(VERSION.length))) {
    return { ok: false, reason: 'the cookie is not one dbward made' };
  }
  const raw = Buffer.from(value.slice(VERSION.length), 'base64url');
  if (raw.length < IV_BYTES + TAG_BYTES + 2) return { ok: false, reason: 'the cookie is not one dbward made' };
  let text: string;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(aad(name));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    text = Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return { ok: false, reason: 'the cookie was altered, or made with another key' };
  }
  const payload = JSON.parse(text) as Record<string, unknown>;
  if (typeof payload.exp !== 'number' || nowSec >= payload.exp) return { ok: false, reason: 'the cookie has expired' };
  return { ok: true, payload };
}

/** Set-Cookie for `name`: HttpOnly, SameSite=Lax, Path=/approvals, Secure when the admin server is reached over https. */
export function setCookie(name: string, value: string, o: { maxAgeSec: number; secure: boolean }): string {
  return `${name}=${value}; Path=${COOKIE_PATH}; Max-Age=${Math.max(0, Math.floor(o.maxAgeSec))}; HttpOnly; SameSite=Lax${o.secure ? '; Secure' : ''}`;
}

/** Set-Cookie that makes the browser forget `name`. */
export function clearCookie(name: string, o: { secure: boolean }): string {
  return setCookie(name, '', { maxAgeSec: 0, secure: o.secure });
}

/** Every value of cookie `name` in a Cookie header (a browser may send several, from several paths). */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}

/** The first value of cookie `name` that unseals; null when none does. */
export function openCookie(key: Buffer, header: string | undefined, name: string, nowSec: number): Record<string, unknown> | null {
  for (const v of cookieValues(header, name)) {
    const r = unseal(key, name, v, nowSec);
    if (r.ok) return r.payload;
  }
  return null;
}

/** A fresh random token (256 bits, base64url): CSRF tokens, session ids. */
export function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Constant-time equality of a token received (possibly missing) and the one expected. */
export function sameToken(got: string | null | undefined, expected: string): boolean {
  if (typeof got !== 'string' || got.length === 0 || expected.length === 0) return false;
  const a = Buffer.from(got);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function aad(name: string): Buffer {
  return Buffer.from(`dbward cookie v1 ${name}`);
}

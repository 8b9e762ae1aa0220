// dbward's own approve/deny links, for notifications read outside Slack. The link
// carries an HMAC over the request id, the action and an expiry, so the admin
// route can tell a link dbward minted from one somebody typed. It proves nothing
// about who clicked it: the route still decides who the approver is.

import { createHmac, timingSafeEqual } from 'node:crypto';

/** Below this a link key is guessable in practice; the same floor as the audit chain key. */
export const MIN_LINK_KEY_BYTES = 32;

const ACTIONS: ReadonlySet<string> = new Set(['approve', 'deny']);
/** Whole seconds, at most 12 digits: no signs, exponents or fractions that parse differently elsewhere. */
const EXP = /^[0-9]{1,12}$/;
/** base64url of a 32-byte HMAC-SHA256, unpadded. */
const SIG = /^[A-Za-z0-9_-]{43}$/;
const MAX_ID = 128;

/** The link to approve or deny request `id`, valid until `expiresAtSec` (Unix seconds). */
export function signLink(key: Buffer, baseUrl: string, id: string, action: 'approve' | 'deny', expiresAtSec: number): string {
  checkKey(key);
  if (!ACTIONS.has(action)) throw new Error(`cannot sign an approval link for action ${JSON.stringify(action)}`);
  if (id.length === 0 || id.length > MAX_ID) throw new Error(`cannot sign an approval link for an id of ${id.length} characters`);
  if (!Number.isSafeInteger(expiresAtSec) || !EXP.test(String(expiresAtSec))) throw new Error(`approval link expiry must be whole Unix seconds, got ${expiresAtSec}`);
  const exp = String(expiresAtSec);
  const base = baseUrl.replace(/\/+$/, '');
  return `${base}/approvals/${encodeURIComponent(id)}/${action}?exp=${exp}&sig=${mac(key, id, action, exp).toString('base64url')}`;
}

/**
 * Checks a link's parts as the admin route received them (id and action from the
 * path, exp and sig from the query). The signature is checked before the expiry,
 * so "expired" is only ever said of a link dbward really minted.
 */
export function verifyLink(key: Buffer, id: string, action: string, exp: string | null, sig: string | null, nowSec: number): { ok: true } | { ok: false; reason: string } {
  checkKey(key);
  if (!ACTIONS.has(action)) return { ok: false, reason: `"${action.slice(0, 32)}" is not an approval action (approve or deny)` };
  if (id.length === 0 || id.length > MAX_ID) return { ok: false, reason: 'the link names no valid approval request' };
  if (exp === null || exp === '') return { ok: false, reason: 'the link has no expiry (exp)' };
  if (!EXP.test(exp)) return { ok: false, reason: 'the link expiry (exp) is not whole Unix seconds' };
  if (sig === null || sig === '') return { ok: false, reason: 'the link has no signature (sig)' };
  if (!SIG.test(sig)) return { ok: false, reason: 'the link signature (sig) is malformed' };
  // Compared as text, not decoded: base64url's last character has spare bits, so
  // decoding would accept several spellings of one signature.
  const expected = Buffer.from(mac(key, id, action, exp).toString('base64url'));
  const got = Buffer.from(sig);
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
    return { ok: false, reason: 'the link signature does not match: the link was altered, or is for another request or action' };
  }
  const expSec = Number(exp);
  if (nowSec >= expSec) return { ok: false, reason: `the link expired at ${new Date(expSec * 1000).toISOString()}` };
  return { ok: true };
}

function mac(key: Buffer, id: string, action: string, exp: string): Buffer {
  // Versioned so a later format cannot be confused with this one; ids never hold
  // ':' ambiguously because action and exp, on the right, cannot contain it.
  return createHmac('sha256', key).update(`v1:${id}:${action}:${exp}`).digest();
}

function checkKey(key: Buffer): void {
  if (key.length < MIN_LINK_KEY_BYTES) throw new Error(`approval link key is ${key.length} bytes; it must be at least ${MIN_LINK_KEY_BYTES}`);
}

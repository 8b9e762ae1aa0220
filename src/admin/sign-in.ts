// Approvers sign in from a browser: the OIDC authorization-code flow with PKCE,
// state and nonce (openid-client), against the issuer dbward already trusts.
//
//   1. A signed approval link opened without a sign-in: begin() seals state, nonce,
//      PKCE verifier and the link into a short-lived cookie and redirects to the issuer.
//   2. The issuer sends the browser back to <public_url>/approvals/sign-in/callback;
//      complete() checks the cookie and the state, exchanges the code (PKCE verifier,
//      expected state and nonce, ID token checked by openid-client, its signature too),
//      then verifies the access token with the daemon's own TokenVerifier: the user
//      name and groups come out exactly as for a database session. The ID token's
//      subject must be the access token's.
//   3. The approver gets a sealed session cookie holding that identity and a fresh
//      CSRF token, and goes back to the link, which now shows the confirmation form.
//
// Stateless across replicas (the cookies carry everything, sealed with a key every
// replica derives from the shared link key); a callback is completed once per
// process, and the issuer refuses a code used twice anywhere.

import * as oidc from 'openid-client';
import { resolveSecret } from '../config/secrets.js';
import type { ApprovalSignInConfig } from '../config/types.js';
import { connect, printable, type Connection } from '../identity/oauth-client.js';
import { isIdentityError } from '../identity/errors.js';
import type { Identity, IdentityKind } from '../identity/types.js';
import type { TokenVerifier } from '../identity/verifier.js';
import { clearCookie, cookieKey, openCookie, randomToken, seal, sameToken, setCookie, SESSION_COOKIE, SIGN_IN_COOKIE } from './cookies.js';

/** Where the issuer sends the browser back, under the public URL. */
export const CALLBACK_PATH = '/approvals/sign-in/callback';
/** How long a signed-in approver may decide without signing in again (bounded by the token's own expiry). */
export const SESSION_TTL_SEC = 15 * 60;
/** How long a sign-in may take, from the link to the callback. */
export const SIGN_IN_TTL_SEC = 10 * 60;

const KINDS: readonly IdentityKind[] = ['human', 'service', 'agent'];
/** A link of this server to come back to: /approvals/<id>/<action>?<query>, nothing else. */
const BACK = /^\/approvals\/[A-Za-z0-9_-]{1,128}\/(approve|deny)\?[A-Za-z0-9_=&-]{0,400}$/;

/** Options of ApproverSignIn. */
export interface SignInOptions {
  /** The issuer sessions are verified against (identity.issuer). */
  issuer: string;
  clientId: string;
  /** Undefined: a public client, authenticated by PKCE alone. */
  clientSecret: string | undefined;
  scope: string;
  /** RFC 8707 resource indicator sent with the request, for issuers that pick the access token's audience by it. */
  resource: string | null;
  /** The admin server's public base URL (approvals.public_url, or where it listens); null before it listens. */
  baseUrl: () => string | null;
  /** The daemon's verifier: the access token is checked as a session's would be. */
  verifier: TokenVerifier;
  /** The cookie key (cookieKey(link key)). */
  key: Buffer;
  /** Clock in epoch ms; tests move it. */
  now?: () => number;
}

/** A signed-in approver, from the session cookie. */
export interface SignedIn {
  identity: Identity;
  /** The CSRF token of this sign-in: the confirmation form carries it back. */
  csrf: string;
}

/** The end of a callback: where to go, or why not; `cookies` are Set-Cookie values to send either way. */
export type SignInResult =
  | { ok: true; back: string; identity: Identity; cookies: string[] }
  | { ok: false; status: 400 | 401 | 403 | 502; message: string; cookies: string[] };

/**
 * The sign-in from config (approvals.sign_in), or null when there is none. The
 * client secret is read now, so a missing one fails at start; so do a sign-in
 * without a link key or without OIDC sessions, which the config check also reports.
 */
export function approverSignIn(config: ApprovalSignInConfig | null, verifier: TokenVerifier | null, linkKey: Buffer | null, baseUrl: () => string | null): ApproverSignIn | null {
  if (!config) return null;
  if (!verifier) throw new Error('approvals.sign_in needs identity.mode oidc: approvers sign in at identity.issuer');
  if (!linkKey) throw new Error('approvals.sign_in needs approvals.link_key: approvers sign in from the signed links');
  return new ApproverSignIn({
    issuer: verifier.config.issuer, clientId: config.clientId, clientSecret: resolveSecret(config.clientSecret),
    scope: config.scope, resource: config.resource, baseUrl, verifier, key: cookieKey(linkKey),
  });
}

/** The browser sign-in of approvers. */
export class ApproverSignIn {
  private conn: Promise<Connection> | undefined;
  /** States completed here, until their sign-in would have expired anyway. */
  private readonly completed = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly opts: SignInOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The redirect URI registered with the issuer; null until the admin server's URL is known. */
  redirectUri(): string | null {
    const base = this.opts.baseUrl();
    return base ? `${base.replace(/\/+$/, '')}${CALLBACK_PATH}` : null;
  }

  /** Whether cookies must be Secure: the public URL is https. */
  get secure(): boolean {
    return this.opts.baseUrl()?.startsWith('https:') ?? false;
  }

  /** The origin browsers post the confirmation form from. */
  origin(): string | null {
    const base = this.opts.baseUrl();
    return base ? new URL(base).origin : null;
  }

  /** Starts a sign-in that comes back to `back` (a signed link of this server): the issuer URL to redirect to and the cookie to set. */
  async begin(back: string): Promise<{ location: string; cookie: string }> {
    if (!BACK.test(back)) throw new Error('a sign-in must come back to an approval link of this server');
    const redirectUri = this.redirectUri();
    if (!redirectUri) throw new Error('the admin server URL is not known yet');
    const conn = await this.connection();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(conn.config, {
      redirect_uri: redirectUri,
      response_type: 'code',
      scope: this.opts.scope,
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      ...(this.opts.resource && { resource: this.opts.resource }),
    });
    const exp = this.nowSec() + SIGN_IN_TTL_SEC;
    const value = seal(this.opts.key, SIGN_IN_COOKIE, { s: state, n: nonce, v: verifier, b: back }, exp);
    return { location: url.href, cookie: setCookie(SIGN_IN_COOKIE, value, { maxAgeSec: SIGN_IN_TTL_SEC, secure: this.secure }) };
  }

  /** Completes a sign-in at the callback: `query` is the callback's query string, `cookieHeader` the browser's cookies. */
  async complete(query: URLSearchParams, cookieHeader: string | undefined): Promise<SignInResult> {
    const cleared = [clearCookie(SIGN_IN_COOKIE, { secure: this.secure })];
    const fail = (status: 400 | 401 | 403 | 502, message: string): SignInResult => ({ ok: false, status, message, cookies: cleared });
    const nowSec = this.nowSec();
    const pending = openCookie(this.opts.key, cookieHeader, SIGN_IN_COOKIE, nowSec);
    if (!pending || typeof pending.s !== 'string' || typeof pending.n !== 'string' || typeof pending.v !== 'string' || typeof pending.b !== 'string') {
      return fail(400, 'No sign-in is in progress in this browser, or it took longer than 10 minutes. Open the approval link again.');
    }
    if (!sameToken(query.get('state'), pending.s)) {
      return fail(400, 'The sign-in answer does not belong to the sign-in this browser started (its state does not match). Open the approval link again.');
    }
    const issuerError = query.get('error');
    if (issuerError !== null) {
      const detail = query.get('error_description');
      return fail(401, `The identity provider did not sign you in: ${printable(issuerError)}${detail ? ` (${printable(detail)})` : ''}.`);
    }
    this.forgetOld(nowSec);
    if (this.completed.has(pending.s)) return fail(400, 'This sign-in was already completed; an answer from the identity provider is used once. Open the approval link again.');
    // Taken before the exchange, so two requests with the same answer cannot both go on.
    this.completed.set(pending.s, (typeof pending.exp === 'number' ? pending.exp : nowSec) + 60);
    const redirectUri = this.redirectUri();
    if (!redirectUri) return fail(502, 'The admin server URL is not known yet; try again.');
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
    try {
      const conn = await this.connection();
      tokens = await oidc.authorizationCodeGrant(conn.config, new URL(`${redirectUri}?${query.toString()}`), {
        pkceCodeVerifier: pending.v, expectedState: pending.s, expectedNonce: pending.n, idTokenExpected: true,
      }, this.opts.resource ? { resource: this.opts.resource } : undefined);
    } catch (err) {
      return { ...this.exchangeFailure(err), cookies: cleared };
    }
    let identity: Identity;
    try {
      identity = await this.opts.verifier.verify(tokens.access_token);
    } catch (err) {
      if (isIdentityError(err, 'ISSUER_UNAVAILABLE')) return fail(502, 'The identity provider cannot be reached to check your token; try again.');
      const code = isIdentityError(err) ? err.code : 'refused';
      return fail(403, `dbward does not accept the access token the identity provider issued (${code}): it must be a JWT for this dbward's audience, as database sessions use.`);
    }
    const idSub = tokens.claims()?.sub;
    if (idSub !== identity.subject) return fail(403, 'The ID token and the access token name different subjects.');
    const csrf = randomToken();
    const exp = Math.min(nowSec + SESSION_TTL_SEC, identity.expiresAt);
    const session = seal(this.opts.key, SESSION_COOKIE, {
      csrf, sub: identity.subject, user: identity.user, groups: identity.groups, kind: identity.kind, iss: identity.issuer,
      ...(identity.email !== undefined && { email: identity.email }),
      ...(identity.name !== undefined && { name: identity.name }),
      ...(identity.clientId !== undefined && { cid: identity.clientId }),
    }, exp);
    return {
      ok: true, back: pending.b, identity,
      cookies: [...cleared, setCookie(SESSION_COOKIE, session, { maxAgeSec: exp - nowSec, secure: this.secure })],
    };
  }

  /**
   * The approver signed in on this browser, or null. The identity is the one the
   * verifier built at the callback, sealed since; it lasts until the cookie's
   * expiry (at most SESSION_TTL_SEC, never past the access token's).
   */
  session(cookieHeader: string | undefined): SignedIn | null {
    const p = openCookie(this.opts.key, cookieHeader, SESSION_COOKIE, this.nowSec());
    if (!p) return null;
    const { csrf, sub, user, groups, kind, iss, exp } = p;
    if (typeof csrf !== 'string' || typeof sub !== 'string' || typeof user !== 'string' || typeof iss !== 'string' || typeof exp !== 'number') return null;
    if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string') || !KINDS.includes(kind as IdentityKind)) return null;
    // A sign-in with another issuer (the config changed) does not carry over.
    if (iss !== this.opts.issuer) return null;
    const identity: Identity = { subject: sub, user, groups: groups as string[], kind: kind as IdentityKind, issuer: iss, claims: {}, expiresAt: exp, verified: true };
    if (typeof p.email === 'string') identity.email = p.email;
    if (typeof p.name === 'string') identity.name = p.name;
    if (typeof p.cid === 'string') identity.clientId = p.cid;
    return { identity, csrf };
  }

  /** Discovery, once; a failed one is tried again on the next sign-in. */
  private connection(): Promise<Connection> {
    if (!this.conn) {
      this.conn = connect({ issuer: new URL(this.opts.issuer), clientId: this.opts.clientId, clientSecret: this.opts.clientSecret }).then((c) => {
        // The ID token's signature too, not only its claims: it names who signed in.
        oidc.enableNonRepudiationChecks(c.config);
        return c;
      });
      this.conn.catch(() => { this.conn = undefined; });
    }
    return this.conn;
  }

  private exchangeFailure(err: unknown): { ok: false; status: 400 | 401 | 502; message: string } {
    if (err instanceof oidc.ResponseBodyError) {
      const detail = err.error_description ? `: ${printable(err.error_description)}` : '';
      return { ok: false, status: 400, message: `The identity provider refused the sign-in (${printable(err.error)}${detail}). An answer from it is used once; open the approval link again.` };
    }
    if (err instanceof oidc.AuthorizationResponseError) {
      return { ok: false, status: 401, message: `The identity provider did not sign you in: ${printable(err.error)}.` };
    }
    const e = err as { code?: string; name?: string; message?: string };
    if ((err instanceof TypeError && e.message === 'fetch failed') || e.code === 'OAUTH_TIMEOUT' || e.code === 'ISSUER_UNAVAILABLE') {
      return { ok: false, status: 502, message: 'The identity provider cannot be reached; try again.' };
    }
    return { ok: false, status: 400, message: `The identity provider's answer did not check out: ${printable(e.message ?? String(err))}.` };
  }

  private forgetOld(nowSec: number): void {
    for (const [state, until] of this.completed) if (until < nowSec) this.completed.delete(state);
    // Only completed sign-ins (sealed cookies dbward made) get here; keep the newest.
    for (const state of this.completed.keys()) {
      if (this.completed.size < 10_000) break;
      this.completed.delete(state);
    }
  }

  private nowSec(): number {
    return Math.floor(this.now() / 1000);
  }
}

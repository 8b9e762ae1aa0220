// The client side of OIDC for the dbward CLI. openid-client does the protocol; this
// file adds what the CLI needs around it: a bounded timeout on every request, plain
// http only for a loopback issuer, and errors reduced to one clear line.

import * as oidc from 'openid-client';
import { isLoopbackUrl } from './verifier.js';

/** Default bound of each HTTP request to the issuer, in seconds. */
export const DEFAULT_TIMEOUT_SEC = 10;

/** Stable reasons an exchange with the issuer failed. */
export type OAuthErrorCode =
  | 'ISSUER_UNAVAILABLE' // network error, timeout, 5xx, not an OIDC issuer
  | 'ISSUER_REFUSED' // the issuer answered with an OAuth error
  | 'LOGIN_EXPIRED' // the user must run `dbward login` again
  | 'ISSUER_INVALID'; // the issuer's answers do not check out

/** An exchange with the issuer failed; the message is one line for the user. */
export class OAuthError extends Error {
  override readonly name = 'OAuthError';
  constructor(readonly code: OAuthErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Tokens from a grant. expiresAt is in epoch seconds. */
export interface Tokens {
  accessToken: string;
  expiresAt?: number;
  refreshToken?: string;
  /** Verified ID token claims, when the issuer sent one. */
  idClaims?: oidc.IDToken;
}

/** Where and as whom to talk to the issuer. */
export interface IssuerClient {
  issuer: URL;
  clientId: string;
  /** Confidential clients only; a public client (the device flow) authenticates with none. */
  clientSecret?: string;
  timeoutSec?: number;
}

/** A discovered issuer, ready for grants. */
export interface Connection {
  config: oidc.Configuration;
  /** The issuer identifier as the issuer spells it (what its tokens carry in iss). */
  issuer: string;
  timeoutSec: number;
}

/** Discovers the issuer; every later request through the connection has the same timeout. */
export async function connect(c: IssuerClient): Promise<Connection> {
  const timeoutSec = c.timeoutSec ?? DEFAULT_TIMEOUT_SEC;
  const insecure = c.issuer.protocol === 'http:' && isLoopbackUrl(c.issuer);
  // client_secret_basic is the registration default (RFC 7591), so issuers accept it
  // unless told otherwise; openid-client would default to client_secret_post.
  const auth = c.clientSecret === undefined ? oidc.None() : oidc.ClientSecretBasic(c.clientSecret);
  try {
    const config = await oidc.discovery(c.issuer, c.clientId, undefined, auth, {
      timeout: timeoutSec,
      ...(insecure && { execute: [oidc.allowInsecureRequests] }),
    });
    return { config, issuer: config.serverMetadata().issuer, timeoutSec };
  } catch (err) {
    throw describe(err, c.issuer.href.replace(/\/$/, ''), 'discovery', timeoutSec);
  }
}

/** Starts a device authorization; show verification_uri and user_code to the user. */
export async function startDeviceLogin(conn: Connection, params: Record<string, string>): Promise<oidc.DeviceAuthorizationResponse> {
  try {
    return await oidc.initiateDeviceAuthorization(conn.config, params);
  } catch (err) {
    throw describe(err, conn.issuer, 'the device authorization', conn.timeoutSec);
  }
}

/** Polls until the user completes (or denies) the device login, or its code expires. */
export async function pollDeviceLogin(conn: Connection, da: oidc.DeviceAuthorizationResponse, params: Record<string, string>): Promise<Tokens> {
  try {
    return tokens(await oidc.pollDeviceAuthorizationGrant(conn.config, da, params));
  } catch (err) {
    // openid-client stops polling by itself (OAUTH_ABORT) when the device code expires.
    const expired = err instanceof oidc.ResponseBodyError ? err.error === 'expired_token' : (err as { code?: string }).code === 'OAUTH_ABORT';
    if (expired) throw new OAuthError('LOGIN_EXPIRED', 'the code expired before the login was completed; run dbward login again', { cause: err });
    if (err instanceof oidc.ResponseBodyError && err.error === 'access_denied') throw new OAuthError('ISSUER_REFUSED', 'the login was denied', { cause: err });
    throw describe(err, conn.issuer, 'the device login', conn.timeoutSec);
  }
}

/** Exchanges a refresh token for new tokens (the issuer may rotate the refresh token). */
export async function refresh(conn: Connection, refreshToken: string, params: Record<string, string>): Promise<Tokens> {
  try {
    return tokens(await oidc.refreshTokenGrant(conn.config, refreshToken, params));
  } catch (err) {
    // The refresh token is expired, revoked, or was already used (rotation).
    if (err instanceof oidc.ResponseBodyError && err.error === 'invalid_grant') {
      throw new OAuthError('LOGIN_EXPIRED', 'the login has expired or was revoked; run dbward login', { cause: err });
    }
    throw describe(err, conn.issuer, 'the token refresh', conn.timeoutSec);
  }
}

/** The client-credentials grant (RFC 6749 4.4) of a confidential client. */
export async function clientCredentials(conn: Connection, params: Record<string, string>): Promise<Tokens> {
  try {
    return tokens(await oidc.clientCredentialsGrant(conn.config, params));
  } catch (err) {
    throw describe(err, conn.issuer, 'the client credentials', conn.timeoutSec);
  }
}

function tokens(r: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): Tokens {
  const expiresIn = r.expiresIn();
  const idClaims = r.claims();
  return {
    accessToken: r.access_token,
    ...(expiresIn !== undefined && { expiresAt: Math.floor(Date.now() / 1000) + expiresIn }),
    ...(r.refresh_token && { refreshToken: r.refresh_token }),
    ...(idClaims && { idClaims }),
  };
}

/** Issuer-supplied text made safe for a terminal: one line, no control characters. */
export function printable(s: string): string {
  return s.replace(/[\s\p{Cc}]+/gu, ' ').trim().slice(0, 300);
}

/** Reduces whatever openid-client threw to one OAuthError with a message a user can act on. */
function describe(err: unknown, issuer: string, action: string, timeoutSec: number): OAuthError {
  const o = { cause: err };
  if (err instanceof oidc.ResponseBodyError) {
    const detail = err.error_description ? `: ${printable(err.error_description)}` : '';
    return new OAuthError('ISSUER_REFUSED', `${issuer} refused ${action}: ${printable(err.error)}${detail}`, o);
  }
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    const p = err.cause[0]?.parameters;
    const detail = p?.error ? `${printable(p.error)}${p.error_description ? `: ${printable(p.error_description)}` : ''}` : `HTTP ${err.status}`;
    return new OAuthError('ISSUER_REFUSED', `${issuer} refused ${action}: ${detail}`, o);
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    const cause = err.cause as { code?: string; message?: string } | undefined;
    return new OAuthError('ISSUER_UNAVAILABLE', `cannot reach issuer ${issuer} (${cause?.code ?? cause?.message ?? 'network error'})`, o);
  }
  if (err instanceof oidc.ClientError) {
    switch (err.code) {
      case 'OAUTH_TIMEOUT':
        return new OAuthError('ISSUER_UNAVAILABLE', `issuer ${issuer} did not answer within ${timeoutSec} s (${action})`, o);
      case 'OAUTH_RESPONSE_IS_NOT_CONFORM':
      case 'OAUTH_RESPONSE_IS_NOT_JSON': {
        const status = err.cause instanceof Response ? ` (HTTP ${err.cause.status})` : '';
        const hint = action === 'discovery' ? '; is it the right issuer URL?' : '';
        return new OAuthError('ISSUER_UNAVAILABLE', `${issuer} gave an unexpected answer to ${action}${status}${hint}`, o);
      }
    }
    return new OAuthError('ISSUER_INVALID', `${action} with ${issuer} failed: ${err.message}`, o);
  }
  return new OAuthError('ISSUER_INVALID', `${action} with ${issuer} failed: ${(err as Error).message ?? String(err)}`, o);
}

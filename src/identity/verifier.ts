// Access-token verification: discovery (openid-client) finds the JWKS, jose
// verifies. Everything cheap and local (size, shape, algorithm, issuer) is
// checked before any network I/O, so junk tokens never cost a fetch.

import { createRemoteJWKSet, customFetch, decodeProtectedHeader, decodeJwt, jwtVerify, type JWTVerifyGetKey } from 'jose';
import * as oidc from 'openid-client';
import { identityFromClaims, userMatches } from './claims.js';
import { IdentityError } from './errors.js';
import { resolveIdentityConfig, type Identity, type IdentityConfig, type IdentityConfigInput } from './types.js';

/** Tokens above this are refused unparsed: real access tokens are a few KB at most. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/** Verified tokens remembered, so a client reconnecting with the same token skips the signature check. */
const MAX_VERIFIED = 1000;

/** Test and tuning hooks; production leaves them unset. */
export interface VerifierOptions {
  /** Clock in epoch milliseconds (Date.now shape); passed to jose as currentDate. */
  now?: () => number;
  /** Minimum time between JWKS refetches on an unknown kid (jose default 30 s). */
  jwksCooldownMs?: number;
  /** How long fetched keys are trusted without refetching (jose default 10 min). */
  jwksCacheMaxAgeMs?: number;
}

/** Whether a host name or address is this machine's loopback. */
export function isLoopbackHost(h: string): boolean {
  return h === 'localhost' || h === '[::1]' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Whether a URL points at this machine, the only place plain http is tolerated. */
export function isLoopbackUrl(url: URL): boolean {
  return isLoopbackHost(url.hostname);
}

function unavailable(what: string, cause: unknown): IdentityError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new IdentityError('ISSUER_UNAVAILABLE', `${what} failed${detail}`, { cause });
}

/** Maps jose's error codes onto ours; anything unknown is treated as a malformed token. */
function fromJose(err: unknown): IdentityError {
  if (err instanceof IdentityError) return err;
  const e = err as { code?: string; claim?: string; reason?: string; message?: string };
  const msg = e.message ?? String(err);
  switch (e.code) {
    case 'ERR_JWT_EXPIRED': return new IdentityError('TOKEN_EXPIRED', 'token has expired', { cause: err });
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if ((e.claim === 'nbf' || e.claim === 'iat') && e.reason === 'check_failed') return new IdentityError('TOKEN_NOT_YET_VALID', 'token is not yet valid', { cause: err });
      if (e.claim === 'iss') return new IdentityError('TOKEN_ISSUER', 'token issuer does not match', { cause: err });
      if (e.claim === 'aud') return new IdentityError('TOKEN_AUDIENCE', 'token audience does not match', { cause: err });
      return new IdentityError('TOKEN_MALFORMED', `token claim check failed: ${msg}`, { cause: err });
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new IdentityError('TOKEN_SIGNATURE', `token signature not verified: ${msg}`, { cause: err });
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new IdentityError('TOKEN_ALGORITHM', `token algorithm refused: ${msg}`, { cause: err });
    default:
      return new IdentityError('TOKEN_MALFORMED', `token is malformed: ${msg}`, { cause: err });
  }
}

/** Verifies OIDC access tokens (JWTs) against one issuer and turns them into Identities. */
export class TokenVerifier {
  /** The configuration with defaults applied. */
  readonly config: IdentityConfig;
  private readonly now: () => number;
  private readonly opts: VerifierOptions;
  private readonly algorithms: string[];
  private keys: Promise<JWTVerifyGetKey> | undefined;
  /**
   * Which key set is in force: bumped by every JWKS fetch. A verified token is reused
   * only while the set it was checked against is still the one in force (and fresh),
   * so a rotation or a refetch makes every remembered token verify again.
   */
  private keyGeneration = 0;
  /** Whether the fetched key set is within its cache age (jose refetches it otherwise). */
  private keysFresh: () => boolean = () => false;
  private readonly verified = new Map<string, { identity: Identity; generation: number }>();

  constructor(config: IdentityConfigInput, opts: VerifierOptions = {}) {
    this.config = resolveIdentityConfig(config);
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    const issuer = new URL(this.config.issuer);
    if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && isLoopbackUrl(issuer))) {
      throw new Error(`identity: issuer ${this.config.issuer} must use https (plain http only on loopback)`);
    }
    // Symmetric algorithms would let anyone holding a shared secret mint tokens, and
    // 'none' means no signature at all: neither is ever accepted, whatever the config says.
    this.algorithms = this.config.algorithms.filter((a) => a !== 'none' && !/^HS/i.test(a));
    if (this.algorithms.length === 0) throw new Error('identity: no acceptable signing algorithms configured');
  }

  /** Verifies a token; when expectedUser is given it must equal the user claim. Throws IdentityError. */
  async verify(token: string, expectedUser?: string): Promise<Identity> {
    const hit = this.verified.get(token);
    if (hit) {
      // Same token, same key set, not expired: the signature and claims checks would give the same answer.
      if (hit.generation === this.keyGeneration && this.keysFresh() && this.now() / 1000 < hit.identity.expiresAt + this.config.clockToleranceSec) {
        return this.matchUser(hit.identity, expectedUser);
      }
      this.verified.delete(token);
    }
    this.precheck(token);
    const getKey = await this.keyResolver();
    // Taken before the check: a refetch while it runs makes the result not reusable.
    const generation = this.keyGeneration;
    let claims: Record<string, unknown>;
    try {
      const result = await jwtVerify(token, getKey, {
        issuer: this.config.issuer,
        audience: this.config.audience,
        algorithms: this.algorithms,
        clockTolerance: this.config.clockToleranceSec,
        currentDate: new Date(this.now()),
        requiredClaims: ['exp', 'sub'],
      });
      claims = result.payload as Record<string, unknown>;
    } catch (err) {
      throw fromJose(err);
    }
    // jose only checks iat against maxTokenAge; a token issued in our future means
    // clock skew beyond tolerance or a forged iat, so refuse it like an early nbf.
    const nowSec = Math.floor(this.now() / 1000);
    if (typeof claims.iat === 'number' && claims.iat > nowSec + this.config.clockToleranceSec) {
      throw new IdentityError('TOKEN_NOT_YET_VALID', 'token was issued in the future');
    }
    let identity: Identity;
    try {
      identity = identityFromClaims(claims, this.config);
    } catch (err) {
      throw new IdentityError('TOKEN_MALFORMED', (err as Error).message, { cause: err });
    }
    // Only a check that no JWKS fetch overlapped is remembered: its keys are the ones in force.
    if (generation === this.keyGeneration) this.verified.set(token, { identity, generation });
    if (this.verified.size > MAX_VERIFIED) this.verified.delete(this.verified.keys().next().value!);
    return this.matchUser(identity, expectedUser);
  }

  private matchUser(identity: Identity, expectedUser: string | undefined): Identity {
    if (expectedUser !== undefined && !userMatches(identity.user, expectedUser)) {
      throw new IdentityError('USER_MISMATCH', `user "${expectedUser}" does not match the token's ${this.config.userClaim}`);
    }
    return identity;
  }

  /** Local checks that need no keys: size, JWS shape, algorithm, issuer. */
  private precheck(token: string): void {
    if (typeof token !== 'string') throw new IdentityError('TOKEN_MALFORMED', 'token is not a string');
    if (Buffer.byteLength(token, 'utf8') > MAX_TOKEN_BYTES) {
      throw new IdentityError('TOKEN_TOO_LARGE', `token exceeds ${MAX_TOKEN_BYTES} bytes`);
    }
    const parts = token.split('.');
    if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p)) || !parts[0] || !parts[1]) {
      throw new IdentityError('TOKEN_MALFORMED', 'token is not a compact JWS');
    }
    let alg: unknown;
    let payload: Record<string, unknown>;
    try {
      alg = decodeProtectedHeader(token).alg;
      payload = decodeJwt(token) as Record<string, unknown>;
    } catch (err) {
      throw new IdentityError('TOKEN_MALFORMED', 'token header or payload is not valid JSON', { cause: err });
    }
    if (typeof alg !== 'string' || !this.algorithms.includes(alg)) {
      throw new IdentityError('TOKEN_ALGORITHM', `token algorithm ${String(alg)} is not accepted`);
    }
    if (!parts[2]) throw new IdentityError('TOKEN_SIGNATURE', 'token has no signature');
    // Rejecting a foreign issuer before fetching keys gives a precise error (a foreign
    // token's kid is unknown here) and spares the JWKS endpoint; jose re-checks iss after
    // the signature, so this early look at unverified data can only refuse, never admit.
    if (payload.iss !== this.config.issuer) {
      throw new IdentityError('TOKEN_ISSUER', `token issuer ${String(payload.iss)} is not ${this.config.issuer}`);
    }
  }

  /** The JWKS resolver, discovered once; a failed discovery is retried on the next verify. */
  private keyResolver(): Promise<JWTVerifyGetKey> {
    if (!this.keys) {
      this.keys = this.discover();
      this.keys.catch(() => { this.keys = undefined; });
    }
    return this.keys;
  }

  private async discover(): Promise<JWTVerifyGetKey> {
    const issuer = new URL(this.config.issuer);
    const timeoutMs = this.config.discoveryTimeoutMs;
    const execute = isLoopbackUrl(issuer) && issuer.protocol === 'http:' ? [oidc.allowInsecureRequests] : [];
    // openid-client's own timeout is in whole seconds; this fetch bounds it in ms.
    const boundedFetch: oidc.CustomFetch = (url, options) =>
      fetch(url, { ...options, signal: AbortSignal.timeout(timeoutMs) } as RequestInit);
    let jwksUri: string | undefined;
    try {
      const conf = await oidc.discovery(issuer, 'dbward', undefined, undefined, {
        execute,
        timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
        [oidc.customFetch]: boundedFetch,
      });
      jwksUri = conf.serverMetadata().jwks_uri;
    } catch (err) {
      throw unavailable(`discovery of ${this.config.issuer}`, err);
    }
    if (!jwksUri) throw new IdentityError('ISSUER_UNAVAILABLE', `issuer ${this.config.issuer} publishes no jwks_uri`);
    const jwksUrl = new URL(jwksUri);
    if (jwksUrl.protocol !== 'https:' && !(jwksUrl.protocol === 'http:' && isLoopbackUrl(jwksUrl))) {
      throw new IdentityError('ISSUER_UNAVAILABLE', `jwks_uri ${jwksUri} must use https`);
    }
    const remote = createRemoteJWKSet(jwksUrl, {
      timeoutDuration: timeoutMs,
      ...(this.opts.jwksCooldownMs !== undefined && { cooldownDuration: this.opts.jwksCooldownMs }),
      ...(this.opts.jwksCacheMaxAgeMs !== undefined && { cacheMaxAge: this.opts.jwksCacheMaxAgeMs }),
      // Every fetch may bring a different key set (jose's jwks() hands out a fresh copy
      // each call, so it cannot be compared by identity): count fetches instead.
      // Counted when a fetch starts and again when its keys are read: a check that
      // overlaps a fetch in any way sees the count move and is not remembered.
      [customFetch]: async (url: string, init: RequestInit) => {
        this.keyGeneration++;
        const res = await fetch(url, init);
        const json = res.json.bind(res);
        Object.defineProperty(res, 'json', {
          value: async () => {
            try {
              return await json() as unknown;
            } finally {
              this.keyGeneration++;
            }
          },
        });
        return res;
      },
    });
    this.keysFresh = () => remote.fresh;
    // The keys are part of discovery: fetched now, so the first verified token is
    // remembered against the set it was checked with.
    try {
      await remote.reload();
    } catch (err) {
      throw unavailable(`JWKS fetch from ${jwksUri}`, err);
    }
    // Key lookups that fail for network reasons must read as ISSUER_UNAVAILABLE, not as a
    // bad token: the caller may retry those, but never a forged one.
    return async (header, input) => {
      try {
        return await remote(header, input);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') throw err;
        throw unavailable(`JWKS fetch from ${jwksUri}`, err);
      }
    };
  }
}

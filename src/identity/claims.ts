// Verified JWT claims -> Identity. Pure functions: no I/O, no clock, so the
// mapping rules can be unit-tested without an issuer.

import { IDENTITY_KINDS, type Identity, type IdentityConfig, type IdentityKind } from './types.js';

/** Reads a dotted path ('realm_access.roles') from a claims object; undefined if any step is missing. */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    // Own properties only, so a path like '__proto__' cannot reach Object.prototype.
    if (!Object.prototype.hasOwnProperty.call(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** Groups from a claim value: a string array, or one string (space/comma separated, as some IdPs emit). */
export function groupsFrom(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((g): g is string => typeof g === 'string' && g.length > 0);
  if (typeof value === 'string') return value.split(/[\s,]+/).filter((g) => g.length > 0);
  return [];
}

/** The OAuth client a token was issued to: RFC 9068 `client_id`, else OIDC `azp`. */
export function clientIdOf(claims: Record<string, unknown>): string | undefined {
  return str(claims.client_id) ?? str(claims.azp);
}

/**
 * Decides human | service | agent. An explicit, valid kind claim wins; then the
 * configured client lists; then a token with no end-user behind it (a
 * client_credentials token has sub === client_id, or carries no user claim and
 * no email) is a service; everything else is a human.
 */
export function kindOf(claims: Record<string, unknown>, config: Pick<IdentityConfig, 'kind' | 'userClaim'>): IdentityKind {
  const { kind } = config;
  if (kind.claim) {
    const v = claimAt(claims, kind.claim);
    if (typeof v === 'string' && (IDENTITY_KINDS as readonly string[]).includes(v)) return v as IdentityKind;
  }
  const clientId = clientIdOf(claims);
  if (clientId !== undefined) {
    if (kind.agentClients?.includes(clientId)) return 'agent';
    if (kind.serviceClients?.includes(clientId)) return 'service';
    if (claims.sub === clientId) return 'service';
  }
  if (str(claims.email) === undefined && str(claimAt(claims, config.userClaim)) === undefined) return 'service';
  return 'human';
}

/**
 * Builds the Identity from claims that have already been verified. Throws a
 * plain Error when mandatory claims are absent; the verifier reports that as
 * TOKEN_MALFORMED.
 */
export function identityFromClaims(claims: Record<string, unknown>, config: IdentityConfig): Identity {
  const subject = str(claims.sub);
  const issuer = str(claims.iss);
  const exp = claims.exp;
  if (subject === undefined || issuer === undefined || typeof exp !== 'number') {
    throw new Error('token lacks sub, iss or exp');
  }
  const clientId = clientIdOf(claims);
  // Services have no email; their natural name is the client id they authenticate as.
  const user = str(claimAt(claims, config.userClaim)) ?? clientId ?? subject;
  const email = str(claims.email);
  const name = str(claims.name) ?? str(claims.preferred_username);
  const identity: Identity = {
    subject,
    user,
    groups: groupsFrom(claimAt(claims, config.groupsClaim)),
    kind: kindOf(claims, config),
    issuer,
    claims,
    expiresAt: exp,
    verified: true,
  };
  if (email !== undefined) identity.email = email;
  if (name !== undefined) identity.name = name;
  if (clientId !== undefined) identity.clientId = clientId;
  return identity;
}

/** Whether a client-supplied user name matches the identity; emails compare case-insensitively. */
export function userMatches(identityUser: string, expected: string): boolean {
  if (identityUser.includes('@') || expected.includes('@')) {
    return identityUser.toLowerCase() === expected.toLowerCase();
  }
  return identityUser === expected;
}

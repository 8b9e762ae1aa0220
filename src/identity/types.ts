// Shapes shared by the identity room: what a verified caller looks like and how
// the verifier is configured. Kept free of runtime imports so policy and audit
// code can depend on it without pulling in jose or openid-client.

/** Who the caller is, as far as policy cares: human, service account or AI agent. */
export type IdentityKind = 'human' | 'service' | 'agent';

/** The kinds accepted from a configured kind claim; anything else is ignored. */
export const IDENTITY_KINDS: readonly IdentityKind[] = ['human', 'service', 'agent'];

/** A caller whose access token passed signature, issuer, audience and time checks. */
export interface Identity {
  /** The token's `sub`: stable and opaque, never reassigned by the issuer. */
  subject: string;
  /** The name the caller goes by (configured user claim, else client id, else sub). */
  user: string;
  email?: string;
  name?: string;
  groups: string[];
  kind: IdentityKind;
  issuer: string;
  /** The OAuth client the token was issued to (`client_id`, else `azp`). */
  clientId?: string;
  /** All verified claims, for policy conditions such as an agent's model claim. */
  claims: Record<string, unknown>;
  /** Token expiry, epoch seconds; a session must not outlive it. */
  expiresAt: number;
  /** Only the verifier builds Identities; the literal type keeps raw claims from passing as one. */
  verified: true;
}

/** A session opened without authentication (identity.mode: unverified, loopback only). */
export interface UnverifiedIdentity {
  /** The user name the client claimed at startup; nothing vouches for it. */
  user: string;
  verified: false;
}

/** Who a session runs as: a verified Identity, or a claimed name in unverified mode. */
export type SessionIdentity = Identity | UnverifiedIdentity;

/** How kind is decided: an explicit claim wins, then client-id lists, then heuristics. */
export interface KindConfig {
  /** Dotted claim path whose value, if human|service|agent, is the kind. */
  claim?: string;
  agentClients?: string[];
  serviceClients?: string[];
}

/** Verifier configuration with all defaults applied. */
export interface IdentityConfig {
  issuer: string;
  audience: string | string[];
  /** Dotted claim path that must match the database user name. Default 'email'. */
  userClaim: string;
  /** Dotted claim path holding the groups (e.g. 'realm_access.roles'). Default 'groups'. */
  groupsClaim: string;
  kind: KindConfig;
  /** Asymmetric algorithms only: none and HS* are refused whatever is listed here. */
  algorithms: string[];
  clockToleranceSec: number;
  /** Bound on discovery and JWKS fetches, so a slow issuer fails connections fast. */
  discoveryTimeoutMs: number;
}

/** IdentityConfig as written by a user: only issuer and audience are required. */
export type IdentityConfigInput = Pick<IdentityConfig, 'issuer' | 'audience'> &
  Partial<Omit<IdentityConfig, 'issuer' | 'audience'>>;

/** Algorithms accepted when the config does not narrow them. */
export const DEFAULT_ALGORITHMS = ['RS256', 'ES256', 'PS256', 'EdDSA'];

/** Fills the defaults of an IdentityConfigInput. */
export function resolveIdentityConfig(input: IdentityConfigInput): IdentityConfig {
  return {
    issuer: input.issuer,
    audience: input.audience,
    userClaim: input.userClaim ?? 'email',
    groupsClaim: input.groupsClaim ?? 'groups',
    kind: input.kind ?? {},
    algorithms: input.algorithms ?? DEFAULT_ALGORITHMS,
    clockToleranceSec: input.clockToleranceSec ?? 30,
    discoveryTimeoutMs: input.discoveryTimeoutMs ?? 5000,
  };
}

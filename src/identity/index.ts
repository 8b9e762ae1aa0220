// Public surface of the identity room; the proxy imports from here only.

export { TokenVerifier, MAX_TOKEN_BYTES, isLoopbackUrl, type VerifierOptions } from './verifier.js';
export { IdentityError, isIdentityError, type IdentityErrorCode } from './errors.js';
export { identityFromClaims, kindOf, claimAt, groupsFrom, clientIdOf, userMatches } from './claims.js';
export * from './types.js';

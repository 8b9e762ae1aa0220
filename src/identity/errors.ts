// One error class with stable codes: the proxy turns these into protocol errors
// and audit events, so callers switch on `code`, never on message text.

/** Stable reasons a token is refused. */
export type IdentityErrorCode =
  | 'TOKEN_MALFORMED'
  | 'TOKEN_TOO_LARGE'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_SIGNATURE'
  | 'TOKEN_ISSUER'
  | 'TOKEN_AUDIENCE'
  | 'TOKEN_ALGORITHM'
  | 'USER_MISMATCH'
  | 'ISSUER_UNAVAILABLE';

/** A token could not be turned into an Identity; `code` says why. */
export class IdentityError extends Error {
  override readonly name = 'IdentityError';
  constructor(
    readonly code: IdentityErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Type guard for IdentityError, optionally of one code. */
export function isIdentityError(err: unknown, code?: IdentityErrorCode): err is IdentityError {
  return err instanceof IdentityError && (code === undefined || err.code === code);
}

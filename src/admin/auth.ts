// Who may read the audit trail over HTTP: a caller with an OIDC access token
// (Bearer) that the daemon's verifier accepts, in one of admin.audit_groups.
// The trail holds every statement text of every user, so the admin port's
// other endpoints being open does not make this one open.

import type http from 'node:http';
import { isIdentityError } from '../identity/errors.js';
import type { Identity } from '../identity/types.js';
import type { TokenVerifier } from '../identity/verifier.js';

/** The outcome of checking a request's credentials. */
export type AuditReaderCheck = { ok: true; identity: Identity } | { ok: false; status: 401 | 403 | 503; message: string };

/** Checks the request's Bearer token and group membership. `verifier` is null in identity mode unverified. */
export async function authorizeAuditReader(req: http.IncomingMessage, verifier: TokenVerifier | null, groups: readonly string[]): Promise<AuditReaderCheck> {
  if (!verifier) return { ok: false, status: 403, message: 'audit search over HTTP needs identity.mode oidc (sessions are not authenticated in unverified mode)' };
  const caller = await bearerIdentity(req, verifier);
  if (!caller.ok) return caller;
  const identity = caller.identity;
  if (!identity.groups.some((g) => groups.includes(g))) {
    return { ok: false, status: 403, message: `${identity.user} is not in a group allowed to read the audit trail (${groups.join(', ')})` };
  }
  return { ok: true, identity };
}

/** The caller's identity from its Bearer token (an OIDC access token the daemon's verifier accepts). */
export async function bearerIdentity(req: http.IncomingMessage, verifier: TokenVerifier): Promise<AuditReaderCheck> {
  const header = req.headers.authorization ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return { ok: false, status: 401, message: 'send an OIDC access token: Authorization: Bearer <token>' };
  let identity: Identity;
  try {
    identity = await verifier.verify(m[1]!);
  } catch (err) {
    if (isIdentityError(err, 'ISSUER_UNAVAILABLE')) return { ok: false, status: 503, message: 'the identity provider cannot be reached; try again' };
    return { ok: false, status: 401, message: isIdentityError(err) ? `token refused (${err.code})` : 'token refused' };
  }
  return { ok: true, identity };
}

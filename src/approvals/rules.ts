// The transitions of an approval request, as pure functions of the record and
// the clock: who may decide, when a request is approved, when a grant is used
// up. The store applies them atomically; the service records each as an event.

import type { Identity } from '../identity/types.js';
import type { ApprovalDecision, ApprovalRequest, DecisionChannel } from './types.js';

/** A transition that cannot happen, with the HTTP status that says why. */
export class ApprovalRefused extends Error {
  constructor(readonly status: 403 | 404 | 409, message: string) {
    super(message);
  }
}

/** True once the request can change no more (a window grant still changes: its uses). */
export function isFinal(r: ApprovalRequest): boolean {
  return r.status !== 'pending' && r.status !== 'approved';
}

/**
 * Adds `approver`'s decision. Throws ApprovalRefused when the request is not
 * pending, the approver is not in an approver group, asked for it themselves,
 * or already decided it. A deny ends the request; enough approvals approve it.
 */
export function decide(r: ApprovalRequest, approver: Identity, decision: 'approve' | 'deny', reason: string | null, via: DecisionChannel, now: Date): ApprovalRequest {
  if (r.status !== 'pending' || Date.parse(r.expiresAt) <= now.getTime()) {
    throw new ApprovalRefused(409, `request ${r.id} is ${r.status === 'pending' ? 'past its deadline' : r.status}; it can no longer be decided`);
  }
  if (!approver.groups.some((g) => r.approvers.includes(g))) {
    throw new ApprovalRefused(403, `${approver.user} is not in an approver group of request ${r.id} (${r.approvers.join(', ')})`);
  }
  if (sameIdentity(r, approver)) {
    throw new ApprovalRefused(403, `${approver.user} asked for request ${r.id} and cannot decide it`);
  }
  // By name too: one person deciding once from Slack and once with a token must not count twice.
  if (r.decisions.some((d) => d.subject === approver.subject || d.user === approver.user)) {
    throw new ApprovalRefused(409, `${approver.user} has already decided request ${r.id}`);
  }
  const at = now.toISOString();
  const d: ApprovalDecision = { decision, user: approver.user, subject: approver.subject, groups: approver.groups, reason, via, at };
  const next: ApprovalRequest = { ...r, decisions: [...r.decisions, d], updatedAt: at };
  if (decision === 'deny') return { ...next, status: 'denied', reason: reason ?? `denied by ${approver.user}` };
  if (next.decisions.filter((x) => x.decision === 'approve').length < r.required) return next;
  return { ...next, status: 'approved', grantExpiresAt: new Date(now.getTime() + r.ttlSec * 1000).toISOString() };
}

/** The request after one statement ran on its grant; null when the grant cannot be used now. */
export function use(r: ApprovalRequest, now: Date): ApprovalRequest | null {
  if (r.status !== 'approved' || r.grantExpiresAt === null || Date.parse(r.grantExpiresAt) <= now.getTime()) return null;
  const at = now.toISOString();
  return { ...r, uses: r.uses + 1, status: r.grant === 'once' ? 'used' : 'approved', updatedAt: at };
}

/** The request once its time is up: a pending one past its deadline, or a grant past its window. Null when not due. */
export function expire(r: ApprovalRequest, now: Date): ApprovalRequest | null {
  const t = now.getTime();
  const due = (r.status === 'pending' && Date.parse(r.expiresAt) <= t)
    || (r.status === 'approved' && r.grantExpiresAt !== null && Date.parse(r.grantExpiresAt) <= t);
  if (!due) return null;
  const reason = r.status === 'pending' ? 'no decision before the request timed out' : 'the approval window ended';
  return { ...r, status: 'expired', reason, updatedAt: now.toISOString() };
}

/** The request withdrawn by its requester (Ctrl-C, or the session ended); null when it is no longer pending. */
export function withdraw(r: ApprovalRequest, why: string, now: Date): ApprovalRequest | null {
  if (r.status !== 'pending') return null;
  return { ...r, status: 'withdrawn', reason: why, updatedAt: now.toISOString() };
}

// The subject is the issuer's stable id; the user name guards against one person holding two subjects under one name.
function sameIdentity(r: ApprovalRequest, approver: Identity): boolean {
  return (r.requester.subject !== null && r.requester.subject === approver.subject) || r.requester.user === approver.user;
}

/** The statement for approvers to read: its text, then the values it was bound with, if any. */
export function shownStatement(r: ApprovalRequest): string {
  if (!r.params || r.params.length === 0) return r.text;
  const values = r.params.map((v, i) => `$${i + 1} = ${v === null ? 'NULL' : `'${v.replace(/'/g, "''")}'`}`);
  return `${r.text}\n-- bound: ${values.join(', ')}`;
}

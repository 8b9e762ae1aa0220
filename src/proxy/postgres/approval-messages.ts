// What a PostgreSQL client is told about a statement held for approval: the
// NOTICE while it waits, and the ERROR when it will not run (yet).

import type { ApprovalRequest } from '../../approvals/types.js';
import type { Refusal } from '../session.js';
import { PgError } from './errors.js';

/**
 * The NOTICE a waiting client sees: the request id, what it waits for, how to decide
 * it (the signed link, when dbward makes them, to hand to an approver), how to give up.
 */
export function approvalNotice(r: ApprovalRequest, link: string | null = null): PgError {
  return new PgError('01000',
    `statement held for approval: request ${r.id} waits for ${needs(r)} (rule ${r.rules.join(', ')})`,
    'NOTICE',
    `target ${r.target.name}; the request stays open until ${r.expiresAt}`,
    `An approver runs: dbward approvals approve ${r.id} --reason "..." (or deny)${link ? `, or opens ${link}` : ''}. Press Ctrl-C to withdraw the request.`);
}

/** The ERROR for a statement that needs approval and does not run now. */
export function approvalError(r: Refusal & { reason: 'approval' }, rules: string): PgError {
  const q = r.request;
  if (!q) return new PgError('42501', `statement requires approval${rules}, and ${r.message ?? 'no request could be made'}`);
  switch (q.status) {
    case 'pending':
      return new PgError('42501', `statement requires approval: request ${q.id} waits for ${needs(q)}${rules}`, 'ERROR',
        `The statement did not run. Once the request is approved, run the same statement again from this identity on target ${q.target.name}${q.grant === 'once' ? ' (the approval lets it run once)' : ''}.`,
        `An approver runs: dbward approvals approve ${q.id} --reason "..."`);
    case 'denied': {
      const by = q.decisions.find((d) => d.decision === 'deny');
      return new PgError('42501', `statement denied by approver ${by?.user ?? 'unknown'}: ${q.reason ?? 'no reason given'} (request ${q.id})`);
    }
    case 'withdrawn':
      return new PgError('57014', 'canceling statement due to user request', 'ERROR', `approval request ${q.id} was withdrawn: ${q.reason ?? ''}`);
    case 'expired':
      return new PgError('57014', `canceling statement: approval request ${q.id} was not decided in time`, 'ERROR', `It stayed open until ${q.expiresAt}.`);
    default:
      // Approved or used, yet the grant could not be used for this statement (its window closed in between).
      return new PgError('42501', `statement requires approval: request ${q.id} is ${q.status} but its approval could not be used${rules}`);
  }
}

function needs(r: ApprovalRequest): string {
  const n = r.required === 1 ? 'an approval' : `${r.required} approvals`;
  return `${n} from ${r.approvers.join(' or ')}`;
}

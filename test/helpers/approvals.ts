// One approval request fixture for the approvals tests: every field of the
// interface filled, overridable per test.

import type { ApprovalRequest } from '../../src/approvals/types.js';

/** A pending request for two dba/sre approvals of a DELETE, with `over` applied. */
export function approvalRequest(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    id: 'apr_7k3m9q2x4d',
    status: 'pending',
    key: 'k',
    createdAt: '2026-03-01T10:00:00.000Z',
    expiresAt: '2026-03-01T10:15:00.000Z',
    requester: { user: 'alice@example.com', subject: 'sub-alice', groups: ['dev'], kind: 'human', verified: true },
    session: 's_1',
    replica: 'dbward-0',
    target: { name: 'orders', environment: 'production', database: 'shop' },
    text: 'DELETE FROM orders WHERE id = $1',
    fingerprint: 'fp',
    rules: ['prod-deletes', 'no-unbounded-writes'],
    approvers: ['dba', 'sre'],
    required: 2,
    mode: 'wait',
    grant: 'once',
    ttlSec: 600,
    decisions: [],
    grantExpiresAt: null,
    uses: 0,
    reason: null,
    updatedAt: '2026-03-01T10:00:00.000Z',
    ...over,
  };
}

/** Signed-looking links for approvalRequest()'s id. */
export const APPROVAL_LINKS = {
  approve: 'https://dbward.example.com/approvals/apr_7k3m9q2x4d/approve?exp=1&sig=a',
  deny: 'https://dbward.example.com/approvals/apr_7k3m9q2x4d/deny?exp=1&sig=b',
};

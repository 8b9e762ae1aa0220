// The shapes of just-in-time approvals: a request made when a statement needs
// approval, the decisions approvers add to it, and the store that holds requests
// for one dbward (memory) or for several replicas (PostgreSQL).

/**
 * pending: waiting for approvers. approved: enough approvers said yes; the grant
 * may be used. used: a single-use grant was used. denied, expired (nobody decided
 * in time, or the grant's window passed unused), withdrawn (the requester gave up:
 * Ctrl-C, or the session ended while it waited).
 */
export type ApprovalStatus = 'pending' | 'approved' | 'used' | 'denied' | 'expired' | 'withdrawn';

/** Where a decision came from. link: a signed link, by a browser sign-in or a Bearer token. slack: only in records from before Slack stopped deciding. */
export type DecisionChannel = 'cli' | 'api' | 'slack' | 'link';

/** One approver's answer. */
export interface ApprovalDecision {
  decision: 'approve' | 'deny';
  /** The approver's user name (the configured username claim). */
  user: string;
  subject: string;
  groups: string[];
  reason: string | null;
  via: DecisionChannel;
  /** ISO-8601 UTC. */
  at: string;
}

/** Who asked: the session's verified identity (never its token). */
export interface Requester {
  user: string;
  subject: string | null;
  groups: string[];
  kind: 'human' | 'service' | 'agent' | null;
  verified: boolean;
}

/** One approval request. Stored as a whole; changed only through ApprovalStore.update. */
export interface ApprovalRequest {
  /** Short and typeable, e.g. apr_7k3m9q2x4d. */
  id: string;
  status: ApprovalStatus;
  /** Identity + target + statement fingerprint: which later statement a grant lets through. */
  key: string;
  createdAt: string;
  /** Until when a pending request may be decided. */
  expiresAt: string;
  requester: Requester;
  /** The session that asked, and the dbward replica it runs on. */
  session: string;
  replica: string;
  target: { name: string; environment: string; database: string };
  /** The statement as the audit trail records it (secrets scrubbed; literals redacted when configured). */
  text: string;
  /**
   * Extended protocol: the values the statement was bound with ($1, $2, ...), as people
   * read them (text; binary as \x hex; cut at 200 characters); absent for simple
   * queries, and when the trail redacts the statement's text.
   */
  params?: (string | null)[];
  fingerprint: string | null;
  /** The policy rules that held the statement. */
  rules: string[];
  /** Groups whose members may approve. */
  approvers: string[];
  /** Distinct approvers needed. */
  required: number;
  mode: 'wait' | 'retry';
  /** once: the grant lets one statement through; window: any number until grantExpiresAt. */
  grant: 'once' | 'window';
  /** How long an approval stays valid, in seconds. */
  ttlSec: number;
  decisions: ApprovalDecision[];
  /** Set when approved: the grant's end. */
  grantExpiresAt: string | null;
  /** Statements let through by this request's grant. */
  uses: number;
  /** Why it ended when not approved (the denier's reason, "timed out", "cancelled by the client"). */
  reason: string | null;
  /** ISO-8601 UTC of the last change. */
  updatedAt: string;
}

/** Which requests to list. */
export interface ApprovalFilter {
  status?: ApprovalStatus[];
  /** Newest first; at most this many (default 100). */
  limit?: number;
}

/**
 * Holds approval requests. Every change goes through `update`, which applies a
 * pure function to the current record atomically (one replica's approval and
 * another's expiry cannot both win), and wakes the watchers of that request on
 * every replica sharing the store.
 */
export interface ApprovalStore {
  /** Stores a new request. */
  create(request: ApprovalRequest): Promise<void>;
  get(id: string): Promise<ApprovalRequest | null>;
  list(filter: ApprovalFilter): Promise<ApprovalRequest[]>;
  /** Requests with this key whose status is one of `status`, newest first. */
  byKey(key: string, status: ApprovalStatus[]): Promise<ApprovalRequest[]>;
  /**
   * Applies `change` to the current record under a lock. `change` returns the new
   * record, or null to leave it as it is. Resolves to the record after the call
   * (changed or not), or null when there is no such request.
   */
  update(id: string, change: (current: ApprovalRequest) => ApprovalRequest | null): Promise<{ record: ApprovalRequest; changed: boolean } | null>;
  /** Calls `listener` with the record whenever request `id` changes (on any replica). Returns the unsubscribe function. */
  watch(id: string, listener: (record: ApprovalRequest) => void): () => void;
  close(): Promise<void>;
}

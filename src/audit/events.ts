// Audit event shapes (schemas/audit-event.schema.json is the published form; a
// test checks emitted events against it). Version 1: session start/end/refusal,
// auth failure, statement (written before forwarding) and statement outcome.

import { randomUUID } from 'node:crypto';

/** Who ran a session, as the audit trail records it. Never the token. */
export interface IdentityRecord {
  user: string;
  /** False only in identity.mode unverified: the user is the client's claimed startup name. */
  verified: boolean;
  subject?: string;
  name?: string;
  email?: string;
  groups?: string[];
  kind?: 'human' | 'service' | 'agent';
  issuer?: string;
  client_id?: string;
  /** The upstream database role the session runs as (from the target's group mapping); null when none is set. */
  role?: string | null;
  /** Token expiry (ISO-8601): the session ends then (plus grace). */
  expires_at?: string;
}

export interface ClientRecord {
  address: string;
  port: number;
  application: string | null;
  tls: boolean;
}

export interface TargetRecord {
  name: string;
  engine: 'postgres';
  database: string;
  environment: string;
}

interface Base {
  v: 1;
  id: string;
  /** ISO-8601 UTC with microseconds. */
  time: string;
  session: string;
}

export interface SessionStartEvent extends Base {
  type: 'session_start';
  identity: IdentityRecord;
  client: ClientRecord;
  target: TargetRecord;
}

export interface SessionEndEvent extends Base {
  type: 'session_end';
  identity: IdentityRecord;
  reason: string;
  duration_ms: number;
  statements: number;
}

export interface SessionRefusedEvent extends Base {
  type: 'session_refused';
  user: string | null;
  client: ClientRecord;
  target: string | null;
  sqlstate: string;
  reason: string;
}

/** A client that did not authenticate; no upstream connection was opened for it. */
export interface AuthFailureEvent extends Base {
  type: 'auth_failure';
  /** The user name the client claimed. */
  user: string;
  client: ClientRecord;
  target: string | null;
  /** Stable reason code, e.g. TOKEN_EXPIRED, TOKEN_SIGNATURE, USER_MISMATCH, ISSUER_UNAVAILABLE, NO_TOKEN. */
  reason: string;
  message: string;
  sqlstate: string;
}

export interface StatementEvent extends Base {
  type: 'statement';
  identity: IdentityRecord;
  client: ClientRecord;
  target: TargetRecord;
  protocol: 'simple' | 'extended' | 'function_call';
  /** The text is normalized (literals as $n) when `redacted`; `fingerprint` groups texts differing only in literals. */
  statement: { text: string; redacted?: true; fingerprint?: string; name?: string; portal?: string; function_oid?: number };
  decision: { action: 'allow' | 'deny' | 'require_approval'; rules: string[]; default: boolean; message?: string; limit_rows?: number };
  /** What the parser found, per statement of the text (absent for fast-path calls recorded before analysis existed). */
  facts?: { kinds: string[]; reads: string[]; writes: string[]; columns: string[]; functions: string[]; flags: string[] }[];
  /** Why the text could not be parsed. */
  analysis_error?: string;
}

/** One masked output column of a statement: printed `schema.table.column`, `(computed: name)` or `(detected: kind)`. */
export interface MaskRecord {
  column: string;
  rule: string;
  strategy: string;
  cells: number;
}

export interface StatementOutcomeEvent extends Base {
  type: 'statement_outcome';
  statement_id: string;
  outcome: {
    /** ok: completed; error: the server (or dbward) raised an error; skipped: not run (an earlier error in the pipeline); lost: the connection ended first. */
    status: 'ok' | 'error' | 'skipped' | 'lost';
    tags: string[];
    rows: number | null;
    sqlstate: string | null;
    duration_ms: number;
    /** Columns masked in what the client received, with how many cells; never the clear values. Absent when nothing was masked. */
    masks?: MaskRecord[];
  };
  /**
   * The session's transaction the statement ran in. Its fate is the matching
   * transaction_end event when there is one, else this outcome's own: ok
   * committed (autocommit), otherwise rolled back.
   */
  txn: number;
}

/** The end of an explicit transaction block, or of an implicit one whose commit failed. */
export interface TransactionEndEvent extends Base {
  type: 'transaction_end';
  txn: number;
  /** prepared: PREPARE TRANSACTION (two-phase; COMMIT PREPARED runs later as its own statement). */
  result: 'committed' | 'rolled_back' | 'prepared';
  /** Statements the transaction ran through dbward. */
  statements: number;
}

/** The policy was loaded at start or reloaded; session is '-'. */
export interface PolicyReloadEvent extends Base {
  type: 'policy_reload';
  trigger: 'start' | 'watch' | 'SIGHUP';
  result: 'applied' | 'invalid';
  rules: number;
  files: string[];
  digest?: string;
  error?: string;
}

/**
 * One step of a just-in-time approval: requested, notified (or notify_failed),
 * decided (one approver's answer; approved or denied once it settles the
 * request), used (a statement ran on the grant), expired, withdrawn. `session`
 * is the requesting session's id.
 */
export interface ApprovalEvent extends Base {
  type: 'approval';
  step: 'requested' | 'notified' | 'notify_failed' | 'decided' | 'approved' | 'denied' | 'used' | 'expired' | 'withdrawn';
  request: {
    id: string;
    status: 'pending' | 'approved' | 'used' | 'denied' | 'expired' | 'withdrawn';
    requester: string;
    target: string;
    rules: string[];
    approvers: string[];
    required: number;
    mode: 'wait' | 'retry';
    grant: 'once' | 'window';
    fingerprint: string | null;
    /** With requested: the statement as the trail records it. */
    text?: string;
    expires_at: string;
    grant_expires_at: string | null;
    uses: number;
  };
  /** With decided, approved, denied: who answered, from where. */
  actor?: { user: string; subject: string; groups: string[]; via: 'cli' | 'api' | 'slack' | 'link' };
  reason?: string | null;
  /** With notified and notify_failed: which notifier, and why it failed. */
  notifier?: string;
  error?: string;
  /** With used: the statement event that ran on the grant. */
  statement_id?: string;
}

export type AuditEvent =
  | ApprovalEvent
  | SessionStartEvent
  | SessionEndEvent
  | SessionRefusedEvent
  | AuthFailureEvent
  | StatementEvent
  | StatementOutcomeEvent
  | TransactionEndEvent
  | PolicyReloadEvent;

/**
 * Where audit lines go. A line is one event serialized as JSON (its canonical
 * form: the bytes a hash chain covers).
 */
export interface AuditSink {
  /**
   * Writes a line that must be stored before the caller goes on. Returns
   * nothing when the line is already written, or a promise that settles once it
   * is; throws (or rejects) when the store cannot be written.
   */
  commit(line: string): void | Promise<void>;
  /** Queues a line without waiting (outcomes, session ends); written in order with the rest. */
  append(line: string): void;
  /** True while the last write succeeded. */
  readonly healthy: boolean;
  /** Writes what is queued and closes. */
  close(): Promise<void>;
}

/** Observes a sink for metrics; all optional. */
export interface SinkObserver {
  written?(lines: number, seconds: number): void;
  failed?(err: Error): void;
  queueDepth?(depth: number): void;
  /** Lines a secondary sink gave up on (its queue overflowed). */
  dropped?(lines: number): void;
}

/**
 * A sink fed after the primary has written a line (NATS, or PostgreSQL when it
 * is not the primary). It gets the sealed lines in chain order, holds them in a
 * bounded queue and delivers them in the background: it never holds up a statement.
 */
export interface SecondarySink {
  /** For logs and metric labels: `postgres`, `nats`. */
  readonly name: string;
  /** Takes sealed lines in chain order; never throws, never blocks. */
  deliver(lines: readonly string[]): void;
  /** False while deliveries fail (the sink retries). */
  readonly healthy: boolean;
  /** Delivers what is queued (waiting at most `timeoutMs`) and closes. */
  close(timeoutMs?: number): Promise<void>;
}

/** Fields every event carries: id, microsecond timestamp, schema version. */
export function eventBase(session: string): Base {
  return { v: 1, id: randomUUID(), time: isoMicros(), session };
}

let cachedMs = -1;
let cachedPrefix = '';

/** Now as ISO-8601 UTC with microsecond precision. */
export function isoMicros(): string {
  const now = performance.timeOrigin + performance.now();
  const ms = Math.floor(now);
  if (ms !== cachedMs) {
    // Formatting a Date is most of the cost; statements within one millisecond share it.
    cachedMs = ms;
    cachedPrefix = new Date(ms).toISOString().slice(0, -1);
  }
  const micros = Math.min(999, Math.floor((now - ms) * 1000));
  return `${cachedPrefix}${micros < 10 ? '00' : micros < 100 ? '0' : ''}${micros}Z`;
}

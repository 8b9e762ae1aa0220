// What every protocol session shares: who (identity), where (target), and the
// decide -> record -> forward pipeline. The one place where proxy, policy and
// audit meet; protocol code calls it and knows nothing of rules or sinks.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Metrics } from '../admin/metrics.js';
import { eventBase, type AuditEvent, type AuditSink, type ClientRecord, type IdentityRecord, type StatementOutcomeEvent, type TargetRecord } from '../audit/events.js';
import { eventLine, SessionFragments } from '../audit/serialize.js';
import type { SessionIdentity } from '../identity/types.js';
import type { Decision, PolicyEngine } from '../policy/decide.js';

export type { SessionIdentity } from '../identity/types.js';

/** The target a session is bound to, as policy and audit see it. */
export interface TargetInfo {
  name: string;
  engine: 'postgres';
  database: string;
  environment: string;
  labels: Record<string, string>;
}

/** One statement-carrying message, as the pipeline sees it. */
export interface StatementRequest {
  protocol: 'simple' | 'extended' | 'function_call';
  text: string;
  /** Prepared statement name (extended protocol). */
  name?: string;
  portal?: string;
  functionOid?: number;
}

export type ClientInfo = ClientRecord;

/** The services a session pipeline uses; owned by the daemon. */
export interface PipelineDeps {
  policy: { current: PolicyEngine };
  audit: AuditSink;
  metrics: Metrics;
  log: Logger;
}

/** A statement that was admitted (recorded) and may be forwarded; completed once its outcome is known. */
export interface Admission {
  eventId: string;
  startedNs: bigint;
}

export type Outcome = StatementOutcomeEvent['outcome'];

/** Why a statement was not forwarded. */
export type Refusal = { reason: 'policy'; decision: Decision } | { reason: 'audit'; error: Error };

/** The per-session pipeline: every statement passes decide() and admit() before forwarding. */
export class SessionPipeline {
  readonly id = randomUUID();
  private readonly identityRecord: IdentityRecord;
  private readonly targetRecord: TargetRecord;
  private readonly fragments: SessionFragments;
  private readonly startedAt = Date.now();
  private statements = 0;
  private ended = false;
  private started = false;
  private endReason: string | undefined;

  constructor(
    private readonly deps: PipelineDeps,
    readonly identity: SessionIdentity,
    readonly target: TargetInfo,
    readonly client: ClientInfo,
    /** The upstream role the session runs as, if the target maps groups to roles. */
    readonly role: string | null = null,
  ) {
    this.identityRecord = identityRecord(identity, role);
    this.targetRecord = { name: target.name, engine: target.engine, database: target.database, environment: target.environment };
    this.fragments = new SessionFragments(this.id, this.identityRecord, this.targetRecord);
  }

  /** Records the session start; the session may not run statements unless this resolves. */
  async start(): Promise<void> {
    await this.deps.audit.commit(eventLine({
      ...eventBase(this.id), type: 'session_start', identity: this.identityRecord, client: this.client, target: this.targetRecord,
    }));
    this.started = true;
    this.deps.metrics.sessionsActive.inc({ engine: 'postgres' });
  }

  /** The policy decision for a statement (synchronous; no I/O). */
  decide(stmt: StatementRequest): Decision {
    return this.deps.policy.current.decide(this.identity, this.target, stmt);
  }

  /**
   * Records the statement with its decision. Gives an Admission when the
   * statement may be forwarded, or a Refusal (policy said no, or the audit store
   * could not be written: nothing executes unrecorded). Synchronous when the
   * sink writes synchronously; a promise when it group-commits.
   */
  admit(stmt: StatementRequest, decision: Decision): Admission | Refusal | Promise<Admission | Refusal> {
    const { id, line } = this.fragments.statement(stmt.protocol, statementRecord(stmt), decision);
    this.statements++;
    if (decision.action !== 'allow') {
      this.deps.metrics.pgDenied.inc();
      this.deps.metrics.refusals.inc({ reason: 'policy' });
      this.safeAppend(line);
      return { reason: 'policy', decision };
    }
    this.deps.metrics.pgAllowed.inc();
    let pending: void | Promise<void>;
    try {
      pending = this.deps.audit.commit(line);
    } catch (error) {
      return this.auditFailed(error as Error);
    }
    if (!pending) return { eventId: id, startedNs: process.hrtime.bigint() };
    return pending.then(() => ({ eventId: id, startedNs: process.hrtime.bigint() }), (error: Error) => this.auditFailed(error));
  }

  /** Appends the outcome of an admitted statement. */
  complete(admission: Admission, outcome: Omit<Outcome, 'duration_ms'>): void {
    const durationMs = Number(process.hrtime.bigint() - admission.startedNs) / 1e6;
    this.safeAppend(this.fragments.outcome(admission.eventId, { ...outcome, duration_ms: Math.round(durationMs * 1000) / 1000 }));
  }

  /** Names why the session is about to end, overriding what the protocol layer will report (e.g. token_expired). */
  endingFor(reason: string): void {
    this.endReason ??= reason;
  }

  /** Records the session end once, whatever ended it. */
  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    reason = this.endReason ?? reason;
    if (this.started) this.deps.metrics.sessionsActive.dec({ engine: 'postgres' });
    this.deps.metrics.sessionsTotal.inc({ engine: 'postgres', result: reason });
    this.safeAppend(eventLine({
      ...eventBase(this.id), type: 'session_end', identity: this.identityRecord, reason,
      duration_ms: Date.now() - this.startedAt, statements: this.statements,
    } satisfies AuditEvent));
  }

  private auditFailed(error: Error): Refusal {
    this.deps.metrics.refusals.inc({ reason: 'audit' });
    this.deps.log.error({ err: error, session: this.id }, 'audit write failed; statement refused');
    return { reason: 'audit', error };
  }

  private safeAppend(line: string): void {
    try {
      this.deps.audit.append(line);
    } catch (err) {
      this.deps.log.error({ err, session: this.id }, 'audit append failed');
    }
  }
}

/** The audit view of an identity: the verified facts, never the token or raw claims. */
export function identityRecord(identity: SessionIdentity, role: string | null): IdentityRecord {
  if (!identity.verified) return role === null ? { user: identity.user, verified: false } : { user: identity.user, verified: false, role };
  const r: IdentityRecord = {
    user: identity.user, verified: true, subject: identity.subject, groups: identity.groups, kind: identity.kind, issuer: identity.issuer,
  };
  if (identity.name !== undefined) r.name = identity.name;
  if (identity.email !== undefined) r.email = identity.email;
  if (identity.clientId !== undefined) r.client_id = identity.clientId;
  r.role = role;
  r.expires_at = new Date(identity.expiresAt * 1000).toISOString();
  return r;
}

function statementRecord(stmt: StatementRequest): StatementEventRecord {
  const r: StatementEventRecord = { text: stmt.text };
  if (stmt.name !== undefined) r.name = stmt.name;
  if (stmt.portal !== undefined) r.portal = stmt.portal;
  if (stmt.functionOid !== undefined) r.function_oid = stmt.functionOid;
  return r;
}

type StatementEventRecord = { text: string; name?: string; portal?: string; function_oid?: number };

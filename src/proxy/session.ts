// What every protocol session shares: who (identity), where (target), and the
// decide -> record -> forward pipeline. The one place where proxy, policy and
// audit meet; protocol code calls it and knows nothing of rules or sinks.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Metrics } from '../admin/metrics.js';
import { eventBase, type AuditEvent, type AuditSink, type ClientRecord, type IdentityRecord, type StatementOutcomeEvent, type TargetRecord } from '../audit/events.js';
import { eventLine, SessionFragments, type StatementTexts } from '../audit/serialize.js';
import { dependsOnSession, type AnalysisCache } from '../analysis/cache.js';
import { fastPathAnalysis } from '../analysis/fast-path.js';
import type { Analysis } from '../analysis/facts.js';
import type { PreparedChange, SqlSessionState } from '../analysis/session-state.js';
import type { SessionIdentity } from '../identity/types.js';
import { decideWithBuiltins } from '../policy/builtin.js';
import type { Decision, PolicyEngine } from '../policy/decide.js';
import type { TargetCatalog } from '../masking/catalog.js';
import { rulesFor } from '../masking/policy.js';
import { SessionMasking, type StatementTaint } from '../masking/session.js';
import { ApprovalService } from '../approvals/service.js';
import type { ApprovalRequest } from '../approvals/types.js';

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
  /** Extended protocol, for statements that need approval: the values bound, as sent (key) and for people (request). */
  params?: BoundParams;
  functionOid?: number;
}

/** The parameters a statement was bound with: the engine's bytes, and a reading of them for approvers. */
export interface BoundParams {
  bytes: Buffer;
  show(): (string | null)[];
}

export type ClientInfo = ClientRecord;

/** The services a session pipeline uses; owned by the daemon. */
export interface PipelineDeps {
  policy: { current: PolicyEngine };
  /** Statement analysis with its cache, shared by the daemon's sessions. */
  analysis: AnalysisCache;
  audit: AuditSink;
  /** Redaction of statement texts in the trail; texts as sent when absent. */
  texts?: StatementTexts;
  metrics: Metrics;
  log: Logger;
  /** The catalog of a target (for masking) and the hash strategy's key; absent: policies may not mask. */
  masking?: { catalog(target: TargetInfo): TargetCatalog; hashKey: Buffer | null };
  /** Just-in-time approvals; absent: require_approval refuses the statement. */
  approvals?: ApprovalService;
}

/** A policy decision together with the analysis it was made on. */
export interface Ruling {
  /** The engine's decision object (shared, so its audit JSON is computed once). */
  decision: Decision;
  analysis: Analysis;
  /** In masked sessions: what the statement does with masked columns, judged on catalog snapshot `taintVersion`. */
  taint?: StatementTaint;
  taintVersion?: number;
}

/** Command tags of transaction control, and those that end a transaction (ROLLBACK TO SAVEPOINT's tag is ROLLBACK too; a later COMMIT overrides it). */
const TX_CONTROL_TAGS: ReadonlySet<string> = new Set(['BEGIN', 'START TRANSACTION', 'COMMIT', 'ROLLBACK', 'PREPARE TRANSACTION']);
const TX_END_TAGS: ReadonlySet<string> = new Set(['COMMIT', 'ROLLBACK', 'PREPARE TRANSACTION']);

const MASKED_FAST_PATH: Decision = Object.freeze({
  action: 'deny', ruleIds: [], default: false,
  message: 'fast-path function calls are refused in sessions with masked columns (their results cannot be masked)',
}) as Decision;

/** Rulings remembered per session, by statement text: a repeated statement costs a map lookup. */
const MAX_RULINGS = 512;

/** A statement that was admitted (recorded) and may be forwarded; completed once its outcome is known. */
export interface Admission {
  eventId: string;
  /** performance.now() when it was admitted. */
  startedMs: number;
  /** Prepared names the statement changes, settled by its outcome. */
  change: PreparedChange | null;
}

export type Outcome = StatementOutcomeEvent['outcome'];

/**
 * Why a statement was not forwarded: policy said no; the audit store could not
 * be written; or it needs approval (`request` pending in retry mode, or ended
 * without approval; null when no request could be made, with `message` saying why).
 */
export type Refusal =
  | { reason: 'policy'; decision: Ruling }
  | { reason: 'audit'; error: Error }
  | { reason: 'approval'; decision: Ruling; request: ApprovalRequest | null; message?: string };

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
  private readonly rulings = new Map<string, Ruling>();
  private readonly rulingsByAnalysis = new Map<Analysis, Ruling>();
  private rulingsEngine: PolicyEngine | null = null;
  private rulingsVersion = -1;
  private rulingsCatalog = -1;
  private maskingEngine: PolicyEngine | null = null;
  private maskingNow: SessionMasking | null = null;
  /**
   * The transaction the server is in, numbered per session. Outcomes and
   * ReadyForQuery reach the pipeline in the server's order, so a statement's
   * transaction is the one current when its outcome arrives (not when it was
   * sent: a pipelining client sends past transaction ends).
   */
  private txn = 1;
  private txnStatements = 0;
  /** An explicit block: the server reported T or E, or a statement's tags show transaction control. */
  private txnBlock = false;
  private txnAborted = false;
  /** Some statement of the transaction did not complete. */
  private txnFailed = false;
  /** The last COMMIT, ROLLBACK or PREPARE TRANSACTION tag, and whether the last statement failed. */
  private endTag: string | null = null;
  private lastFailed = false;
  /** The approval the session waits for, if any: aborted by a cancel request or the session's end. */
  private waiting: AbortController | null = null;
  /** Told when a statement starts waiting for approval (the protocol layer sends a notice). */
  onHeld: ((request: ApprovalRequest) => void) | null = null;

  constructor(
    private readonly deps: PipelineDeps,
    readonly identity: SessionIdentity,
    readonly target: TargetInfo,
    readonly client: ClientInfo,
    /** Search path and SQL-level prepared statements, as analysis needs them. */
    readonly sql: SqlSessionState,
    /** The upstream role the session runs as, if the target maps groups to roles. */
    readonly role: string | null = null,
  ) {
    this.identityRecord = identityRecord(identity, role);
    this.targetRecord = { name: target.name, engine: target.engine, database: target.database, environment: target.environment };
    this.fragments = new SessionFragments(this.id, this.identityRecord, this.targetRecord, client, deps.texts);
  }

  /** Records the session start; the session may not run statements unless this resolves. */
  async start(): Promise<void> {
    await this.deps.audit.commit(eventLine({
      ...eventBase(this.id), type: 'session_start', identity: this.identityRecord, client: this.client, target: this.targetRecord,
    }));
    this.started = true;
    this.deps.metrics.sessionsActive.inc({ engine: 'postgres' });
  }

  /** Analyzes a statement and decides it (synchronous; no I/O; cached by text). */
  decide(stmt: StatementRequest): Ruling {
    const engine = this.deps.policy.current;
    const masking = this.masking;
    const catalogVersion = masking?.catalog.current?.version ?? -1;
    if (engine !== this.rulingsEngine || this.sql.version !== this.rulingsVersion || catalogVersion !== this.rulingsCatalog) {
      // A reloaded policy, a session change (search_path, PREPARE) or a new catalog reading invalidates what was decided.
      this.rulings.clear();
      this.rulingsByAnalysis.clear();
      this.rulingsEngine = engine;
      this.rulingsVersion = this.sql.version;
      this.rulingsCatalog = catalogVersion;
    }
    if (stmt.protocol === 'function_call') {
      // A fast-path call returns a value no RowDescription describes: nothing to mask it by.
      if (masking) return { decision: MASKED_FAST_PATH, analysis: fastPathAnalysis(stmt.functionOid ?? -1) };
      return this.rule(engine, fastPathAnalysis(stmt.functionOid ?? -1));
    }
    const cached = this.rulings.get(stmt.text);
    if (cached) return cached;
    const analysis = this.deps.analysis.get(stmt.text, this.sql);
    // Texts that differ only in integer literals share one analysis (the analysis cache's
    // shapes), and a ruling depends on the analysis, not the text: decided once.
    const shared = this.rulingsByAnalysis.get(analysis);
    if (shared) return shared;
    const ruling = this.rule(engine, analysis);
    if (!analysis.ok || !analysis.statements.some(dependsOnSession)) {
      if (this.rulings.size >= MAX_RULINGS) this.rulings.delete(this.rulings.keys().next().value!);
      this.rulings.set(stmt.text, ruling);
      if (this.rulingsByAnalysis.size >= MAX_RULINGS) this.rulingsByAnalysis.delete(this.rulingsByAnalysis.keys().next().value!);
      this.rulingsByAnalysis.set(analysis, ruling);
    }
    return ruling;
  }

  private rule(engine: PolicyEngine, analysis: Analysis): Ruling {
    let decision: Decision;
    try {
      decision = decideWithBuiltins(engine, this.identity, this.target, analysis, this.role !== null);
    } catch (err) {
      // A policy that cannot decide does not let the statement through.
      this.deps.log.error({ err, session: this.id }, 'policy engine failed; statement denied');
      decision = { action: 'deny', ruleIds: [], default: false, message: 'dbward could not evaluate its policy for this statement' };
    }
    const masking = this.masking;
    const snapshot = masking?.catalog.current;
    if (!masking || !snapshot || !analysis.ok) return { decision, analysis };
    const taint = masking.taint(snapshot, analysis.statements);
    // A statement awaiting approval is checked too: an approval does not make a leak of masked values safe.
    const refusal = decision.action !== 'deny' ? masking.check(analysis, taint) : null;
    if (refusal) decision = { action: 'deny', ruleIds: [refusal.rule], default: false, message: refusal.message };
    return { decision, analysis, taint, taintVersion: snapshot.version };
  }

  /** True when the policy masks anything for anyone: DDL then makes the target's catalog stale. */
  get watchesCatalog(): boolean {
    return this.deps.masking !== undefined && (this.deps.policy.current.masking?.rules.length ?? 0) > 0;
  }

  /** A statement changed the schema: the target's catalog is read again before the next masked result. */
  catalogChanged(): void {
    this.deps.masking?.catalog(this.target).invalidate();
  }

  /** The masking rules that apply to this session under the current policy; null when none do. */
  get masking(): SessionMasking | null {
    const engine = this.deps.policy.current;
    if (engine !== this.maskingEngine) {
      this.maskingEngine = engine;
      const m = this.deps.masking;
      const compiled = engine.masking;
      const rules = m && compiled ? rulesFor(compiled, this.identity, this.target) : [];
      this.maskingNow = rules.length === 0 || !m || !compiled ? null
        : new SessionMasking(rules, { strict: compiled.strict, derived: compiled.derived, trusted: compiled.trusted }, m.catalog(this.target), m.hashKey);
    }
    return this.maskingNow;
  }

  /**
   * Records the statement with its decision. Gives an Admission when the
   * statement may be forwarded, or a Refusal (policy said no, or the audit store
   * could not be written: nothing executes unrecorded). Synchronous when the
   * sink writes synchronously; a promise when it group-commits.
   */
  admit(stmt: StatementRequest, decision: Ruling): Admission | Refusal | Promise<Admission | Refusal> {
    const { id, line } = this.fragments.statement(stmt.protocol, statementRecord(stmt), decision.decision, decision.analysis);
    this.statements++;
    if (decision.decision.action === 'require_approval' && this.deps.approvals) return this.held(stmt, decision, id, line);
    if (decision.decision.action !== 'allow') {
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
    // Applied once admitted: later statements are analyzed in the state this one creates.
    const change = this.sql.apply(decision.analysis);
    if (!pending) return { eventId: id, startedMs: performance.now(), change };
    return pending.then(() => ({ eventId: id, startedMs: performance.now(), change }), (error: Error) => this.auditFailed(error));
  }

  /**
   * A statement that needs approval: runs at once on a grant for it (a retry
   * after approval), else makes a request and, in wait mode, waits for it.
   * The statement event is committed when it runs, appended when it does not.
   */
  private async held(stmt: StatementRequest, ruling: Ruling, eventId: string, line: string): Promise<Admission | Refusal> {
    const approvals = this.deps.approvals!;
    const terms = ruling.decision.approval!;
    if (!this.identity.verified) {
      this.safeAppend(line);
      return this.notRun(ruling, null, 'approvals need identity.mode oidc: nobody can vouch for an unverified requester');
    }
    const recorded = this.fragments.recordedText(stmt.text, ruling.analysis);
    // The grant is for exactly this statement: its text as sent, and the values it was bound with.
    const key = ApprovalService.key(this.identity, this.target, stmt.text, stmt.params?.bytes ?? null);
    // Approvers read the values, unless the trail hides this statement's text.
    const params = stmt.params && !recorded.redacted ? stmt.params.show() : undefined;
    let request: ApprovalRequest;
    try {
      if (await approvals.useGrant(key, eventId)) return await this.admitHeld(ruling, line, eventId);
      request = await approvals.request({
        identity: this.identity, session: this.id, target: this.target, text: recorded.text, ...(params && { params }),
        fingerprint: recorded.fingerprint, rules: ruling.decision.ruleIds, terms,
      }, key);
    } catch (error) {
      this.safeAppend(line);
      return this.auditFailed(error as Error);
    }
    if (request.mode === 'retry') {
      this.safeAppend(line);
      return this.notRun(ruling, request);
    }
    this.onHeld?.(request);
    const ac = new AbortController();
    this.waiting = ac;
    let final: ApprovalRequest;
    try {
      final = await approvals.wait(request.id, ac.signal);
      if (final.status === 'approved' && await approvals.useOne(final.id, eventId)) return await this.admitHeld(ruling, line, eventId);
    } catch (error) {
      this.safeAppend(line);
      return this.auditFailed(error as Error);
    } finally {
      this.waiting = null;
    }
    this.safeAppend(line);
    return this.notRun(ruling, final);
  }

  // A held statement that does not run (yet): counted as refused, like any other.
  private notRun(ruling: Ruling, request: ApprovalRequest | null, message?: string): Refusal {
    this.deps.metrics.pgDenied.inc();
    this.deps.metrics.refusals.inc({ reason: 'approval' });
    return { reason: 'approval', decision: ruling, request, ...(message !== undefined && { message }) };
  }

  private async admitHeld(ruling: Ruling, line: string, eventId: string): Promise<Admission> {
    this.deps.metrics.pgAllowed.inc();
    const change = this.sql.apply(ruling.analysis);
    await this.deps.audit.commit(line);
    return { eventId, startedMs: performance.now(), change };
  }

  /** The signed approve link of a request, for the waiting client to hand on; null when dbward signs no links. */
  approvalLink(r: ApprovalRequest): string | null {
    return this.deps.approvals?.links(r)?.approve ?? null;
  }

  /** True when require_approval holds statements for a decision (rather than refusing them). */
  get takesApprovals(): boolean {
    return this.deps.approvals !== undefined;
  }

  /** Withdraws the approval the session waits for (a cancel request); returns whether there was one. */
  cancelWait(why = 'cancelled by the client'): boolean {
    if (!this.waiting) return false;
    this.waiting.abort(why);
    return true;
  }

  /** Appends the outcome of an admitted statement. */
  complete(admission: Admission, outcome: Omit<Outcome, 'duration_ms'>): void {
    const durationMs = performance.now() - admission.startedMs;
    if (admission.change) this.sql.settle(admission.change, outcome.status);
    this.txnStatements++;
    this.lastFailed = outcome.status !== 'ok';
    if (this.lastFailed) this.txnFailed = true;
    for (const tag of outcome.tags) {
      // One simple Query may hold a whole block: `BEGIN; DELETE ...; ROLLBACK` reports I after it.
      if (TX_CONTROL_TAGS.has(tag)) this.txnBlock = true;
      if (TX_END_TAGS.has(tag)) this.endTag = tag;
    }
    // A literal, not a spread: a spread takes V8's slow path and defeats the serializer's inline caches.
    const record: Outcome = {
      status: outcome.status, tags: outcome.tags, rows: outcome.rows, sqlstate: outcome.sqlstate, duration_ms: Math.round(durationMs * 1000) / 1000,
    };
    if (outcome.masks) record.masks = outcome.masks;
    this.safeAppend(this.fragments.outcome(admission.eventId, record, this.txn));
  }

  /**
   * The server is ready for the next request, in transaction state `status`
   * (I idle, T in a block, E in a failed block). Ends the current transaction
   * when the session is idle again. A transaction_end event is recorded for an
   * explicit block, for an implicit one whose commit failed (`syncFailed`), and
   * for an implicit one of several statements of which one failed; otherwise a
   * statement's own outcome says it: ok committed, anything else rolled back.
   */
  ready(status: 'I' | 'T' | 'E', syncFailed: boolean): void {
    if (status !== 'I') {
      this.txnBlock = true;
      // ROLLBACK TO SAVEPOINT brings a failed block back to T.
      this.txnAborted = status === 'E';
      return;
    }
    if (this.txnStatements === 0 && !this.txnBlock) return;
    // An implicit transaction of several statements (a pipeline up to one Sync) is undone
    // as a whole when one fails, though the others' outcomes say ok.
    if (this.txnBlock || syncFailed || (this.txnFailed && this.txnStatements > 1)) {
      const result = this.endTag === 'PREPARE TRANSACTION' && !this.lastFailed ? 'prepared'
        : this.txnAborted || syncFailed || this.lastFailed || this.endTag === 'ROLLBACK' || (!this.txnBlock && this.txnFailed) ? 'rolled_back' : 'committed';
      this.transactionEnd(result);
    }
    this.nextTransaction();
  }

  private transactionEnd(result: 'committed' | 'rolled_back' | 'prepared'): void {
    this.safeAppend(eventLine({
      ...eventBase(this.id), type: 'transaction_end', txn: this.txn, result, statements: this.txnStatements,
    } satisfies AuditEvent));
  }

  private nextTransaction(): void {
    this.txn++;
    this.txnStatements = 0;
    this.txnBlock = false;
    this.txnAborted = false;
    this.txnFailed = false;
    this.endTag = null;
    this.lastFailed = false;
  }

  /** Names why the session is about to end, overriding what the protocol layer will report (e.g. token_expired). */
  endingFor(reason: string): void {
    this.endReason ??= reason;
  }

  /** Records the session end once, whatever ended it. */
  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.cancelWait('the session ended while it waited');
    reason = this.endReason ?? reason;
    if (this.started) this.deps.metrics.sessionsActive.dec({ engine: 'postgres' });
    // The server rolls back a block left open when its connection ends.
    if (this.txnBlock) this.transactionEnd('rolled_back');
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

// One PostgreSQL session after startup: client frames go through the pipeline in
// order (decide, record, forward); server bytes go back as they came, scanned for
// the few messages that settle outcomes. See docs/lifecycle.md.
//
// A refused message is not dropped: it is replaced by a stand-in that the server
// rejects at parse time without running anything, and the server's error is
// swapped for dbward's. The server then does what PostgreSQL does on any error
// (abort the transaction, skip to Sync), so the client sees exact semantics.

import type net from 'node:net';
import { serialize } from 'pg-protocol';
import type { Logger } from 'pino';
import type { Metrics } from '../../admin/metrics.js';
import type { Admission, Refusal, Ruling, SessionPipeline, StatementRequest } from '../session.js';
import { readingHazard } from '../../analysis/pg/flags.js';
import { errorResponse, type TxStatus } from './backend.js';
import { PgError, pgErrors } from './errors.js';
import { BackendScanner, FrontendReader, type Frame } from './frames.js';
import { decodeBind, decodeDescribeOrClose, decodeExecute, decodeFunctionCall, decodeParse, decodeQuery, F, showBindParams } from './frontend.js';
import { ResponseTracker, MASKED_TYPES, TRACKED_TYPES, type OutcomeSink, type Pending, type RowLimit } from './tracker.js';
import { ResultMasker, type MaskState } from './result-masker.js';
import { ProtocolNames, type Prepared } from './names.js';
import { ClientText } from './client-text.js';
import { CLEAN } from '../../masking/session.js';
import type { ApprovalRequest } from '../../approvals/types.js';
import { approvalError, approvalNotice } from './approval-messages.js';

/** SQL the server rejects in its grammar, before anything runs: the stand-in for a refused message. */
export const REFUSED_STAND_IN = 'DBWARD REFUSED';
/** Client bytes waiting behind a pending audit write before dbward stops reading the client. */
const READER_HIGH_WATER = 1024 * 1024;
/** How long a Terminate waits for the replies to requests sent before it. */
const TERMINATE_GRACE_MS = 10_000;
/** How long relayed byte counts may wait before they reach the metrics. */
const BYTES_FLUSH_MS = 1000;

type State = 'relaying' | 'closing' | 'closed';

export interface RelayDeps {
  metrics: Metrics;
  log: Logger;
  maxMessageBytes: number;
}

/** Relays one session between a client socket and its upstream connection. */
export class PgRelay {
  private state: State = 'relaying';
  private readonly reader: FrontendReader;
  private readonly scanner: BackendScanner;
  private readonly tracker = new ResponseTracker();
  private readonly names = new ProtocolNames();
  private readonly text = new ClientText();
  private out: Buffer[] = [];
  /** Outcomes settled by the server's reply, recorded once the reply is written. */
  private settled: ([Admission, Parameters<OutcomeSink>[0]] | [null, TxStatus, boolean])[] = [];
  private processing = false;
  private draining = false;
  private upstreamBlocked = false;
  /** The client sent Terminate with requests in flight: their replies still go to it. */
  private terminated = false;
  private readerFull = false;
  private bytesFromClient = 0;
  private bytesFromServer = 0;
  private bytesTimer: NodeJS.Timeout | null = null;
  private masker: ResultMasker | null = null;
  /** Notices of dbward's own waiting for the server's bytes to reach a message boundary. */
  private notices: Buffer[] = [];
  private resolveClosed!: () => void;
  /** Resolves when both sockets are closed and the session end is recorded. */
  readonly closed = new Promise<void>((r) => (this.resolveClosed = r));

  constructor(
    private readonly client: net.Socket,
    private readonly upstream: net.Socket,
    private readonly pipeline: SessionPipeline,
    private readonly deps: RelayDeps,
    private readonly onEnd: () => void,
  ) {
    this.reader = new FrontendReader(deps.maxMessageBytes);
    this.scanner = new BackendScanner(TRACKED_TYPES, (type, src, start, end, out) => this.tracker.onMessage(type, src, start, end, out));
    this.tracker.onReady = (status, syncFailed, mark) => {
      // The transaction is over, and its portals with it (on the server too).
      if (status === 'I') this.names.idle(mark, this.unexecuted);
      // Every change a statement before it made to client_encoding has been reported by now.
      if (this.tracker.depth === 0) this.text.ready();
      // In order with the outcomes, so the pipeline sees a transaction's statements before its end.
      this.settled.push([null, status, syncFailed]);
      if (this.draining && status === 'I' && this.tracker.depth === 0 && !this.processing) this.state = 'closing';
    };
    this.pipeline.onHeld = (request) => this.notifyHeld(request);
    this.tracker.onParameter = (name, value) => {
      if (name.toLowerCase() === 'client_encoding') this.text.set(value);
      // Backstop for a change dbward could not see coming (a function that calls set_config):
      // from here on the server would read SQL text differently from dbward's parser.
      if (readingHazard(name.toLowerCase(), value)) {
        this.deps.log.warn({ session: this.pipeline.id, name, value }, 'server now reads SQL differently; session ended');
        this.terminate(pgErrors.featureNotSupported(`the server now reports ${name} = ${value}, under which SQL text reads differently than dbward parses it; the session was ended`));
      }
    };
  }

  /** Starts relaying; `initial` holds client bytes that arrived with the startup packet, `clientEncoding` what the server reported at login. */
  start(initial: Buffer, clientEncoding = 'UTF8'): void {
    this.text.set(clientEncoding);
    this.maskingOn();
    this.client.on('data', (c: Buffer) => this.onClientData(c));
    this.client.on('close', () => this.shutdown('client_closed'));
    this.client.on('error', (e) => { this.deps.log.debug({ err: e, session: this.pipeline.id }, 'client socket error'); });
    this.upstream.on('data', (c: Buffer) => this.onUpstreamData(c));
    this.upstream.on('close', () => this.upstreamGone());
    this.upstream.on('error', (e) => { this.deps.log.warn({ err: e, session: this.pipeline.id }, 'upstream socket error'); });
    if (initial.length > 0) this.onClientData(initial);
    this.client.resume(); // paused by the startup phase during the upstream login
  }

  /** Ends the session at its next idle point (between transactions) with 57P01. */
  drain(): void {
    this.draining = true;
    if (this.tracker.depth === 0 && this.tracker.txStatus === 'I' && !this.processing) this.terminate(pgErrors.adminShutdown());
  }

  /** Sends a FATAL error to the client and closes both sides now. */
  terminate(err: PgError): void {
    if (this.state === 'closed') return;
    this.state = 'closing';
    this.writeClient(errorResponse(err.severity === 'FATAL' ? err : err.fatal()));
    this.upstream.end(serialize.end());
    this.client.end();
    this.shutdown(err.sqlstate === '57P01' ? 'shutdown' : 'protocol_error');
  }

  private onClientData(chunk: Buffer): void {
    this.countBytes(chunk.length, 0);
    this.reader.push(chunk);
    if (!this.processing) return this.process();
    // process() is waiting on a statement's audit write; whole frames pile up behind
    // it. Past a bound, stop reading. (Never for one large frame still arriving: it
    // needs more bytes, and the reader caps it at maxMessageBytes.)
    if (this.reader.buffered > READER_HIGH_WATER && !this.readerFull) {
      this.readerFull = true;
      this.client.pause();
    }
  }

  /**
   * Handles whole client frames in order. Synchronous while the audit sink writes
   * synchronously (fsync: none), which is every statement on the hot path; when a
   * statement must wait for a group commit, the frames behind it wait too, and
   * processing resumes once it is recorded and forwarded.
   */
  private process(): void {
    this.processing = true;
    try {
      let frame: Frame | null;
      while (this.state === 'relaying' && (frame = this.reader.next())) {
        const pending = this.handle(frame);
        if (pending) {
          pending.then(() => this.process(), (err: unknown) => this.processFailed(err));
          return; // still processing
        }
      }
      this.flushUpstream();
      if (this.readerFull) {
        this.readerFull = false;
        if (!this.upstreamBlocked) this.client.resume();
      }
    } catch (err) {
      this.fail(err);
    }
    this.processed();
  }

  private processFailed(err: unknown): void {
    this.fail(err);
    this.processed();
  }

  private processed(): void {
    this.processing = false;
    if (this.draining && this.state === 'relaying') this.drain();
  }

  /** Handles one client frame; returns a promise only when it must wait (audit write). */
  private handle(frame: Frame): Promise<void> | void {
    switch (frame.type) {
      case F.Query: {
        const stmt: StatementRequest = { protocol: 'simple', text: decodeQuery(frame.payload, this.text.read) };
        return this.admitAndForward(frame, stmt, 'query', this.decideRead(stmt));
      }
      case F.Parse: {
        const p = decodeParse(frame.payload, this.text.read);
        const stmt: StatementRequest = { protocol: 'extended', text: p.sql, name: p.name };
        const decision = this.decideRead(stmt);
        // A statement that needs approval is prepared (that runs nothing); its Execute waits for the approval.
        if (decision.decision.action !== 'allow' && !(decision.decision.action === 'require_approval' && this.pipeline.takesApprovals)) {
          void this.pipeline.admit(stmt, decision); // records the refusal; nothing to wait for
          this.names.statements.delete(p.name);
          this.pipeline.sql.protocolPrepared(p.name, null);
          return this.substitute(serialize.parse({ name: p.name, text: REFUSED_STAND_IN }), 'parse', refusalError({ reason: 'policy', decision }));
        }
        const undo = this.names.parsed(p.name, { text: p.sql, decision });
        this.pipeline.sql.protocolPrepared(p.name, decision.analysis);
        return this.forward(frame, {
          kind: 'parse',
          onOutcome: () => {
            // Refused or skipped by the server (an outcome here is never ok): the name holds what it held.
            undo();
            this.pipeline.sql.protocolPrepared(p.name, this.names.statements.get(p.name)?.decision.analysis ?? null);
          },
        });
      }
      case F.Bind: {
        const b = decodeBind(frame.payload);
        const prepared = this.names.statements.get(b.statement);
        if (!prepared) {
          // Not prepared by a Parse dbward saw (a SQL-level PREPARE, or nothing): not bound.
          this.unbind(b.portal);
          return this.substitute(serialize.bind({ portal: b.portal, statement: '\u0001dbward-unknown-statement' }), 'bind',
            new PgError('26000', `prepared statement "${b.statement}" does not exist in this dbward session`));
        }
        return this.bind(frame, b.portal, prepared, b.params);
      }
      case F.Execute: {
        const e = decodeExecute(frame.payload);
        const prepared = this.names.portals.get(e.portal);
        if (!prepared) {
          // A portal dbward did not see bound: nothing to judge it by, so it does not run.
          return this.substitute(serialize.execute({ portal: '\u0001dbward-unknown-portal' }), 'execute',
            new PgError('34000', `portal "${e.portal}" does not exist`));
        }
        const bound = prepared.admission;
        if (bound) {
          // The first Execute of a portal runs under the event written when it was bound.
          prepared.admission = undefined;
          const ddl = this.pipeline.watchesCatalog && changesCatalog(prepared.decision);
          return this.afterAdmit(frame, 'execute', bound, performance.now(), prepared.limit, this.maskState(prepared.decision, prepared.text), e.portal, ddl);
        }
        return this.admitAndForward(frame, portalStatement(prepared, e.portal), 'execute', prepared.decision, prepared.limit);
      }
      case F.Describe: {
        const d = decodeDescribeOrClose(frame.payload, 'Describe');
        const prepared = (d.kind === 'S' ? this.names.statements : this.names.portals).get(d.name);
        const mask = prepared && this.maskState(prepared.decision, prepared.text);
        return this.forward(frame, mask ? { kind: 'describe', mask } : { kind: 'describe' });
      }
      case F.Close: {
        const c = decodeDescribeOrClose(frame.payload, 'Close');
        if (c.kind === 'S') this.names.statements.delete(c.name);
        else this.unbind(c.name);
        if (c.kind === 'S') this.pipeline.sql.protocolPrepared(c.name, null);
        return this.forward(frame, { kind: 'close' });
      }
      case F.Sync:
        return this.forward(frame, { kind: 'sync' });
      case F.Flush: case F.CopyData: case F.CopyDone: case F.CopyFail:
        this.out.push(frame.raw);
        return;
      case F.FunctionCall: {
        const fc = decodeFunctionCall(frame.payload);
        const stmt: StatementRequest = { protocol: 'function_call', text: `FunctionCall(oid ${fc.oid}, ${fc.argCount} args)`, functionOid: fc.oid };
        return this.admitAndForward(frame, stmt, 'fcall');
      }
      case F.Terminate:
        this.state = 'closing';
        this.out.push(frame.raw);
        this.flushUpstream();
        this.upstream.end();
        if (this.tracker.depth > 0) return this.finishThenClose();
        this.client.end();
        this.shutdown('client_terminated');
        return;
      default:
        throw pgErrors.protocolViolation(`invalid frontend message type ${JSON.stringify(String.fromCharCode(frame.type))}`);
    }
  }

  /**
   * Binds a portal. Binding plans the statement and runs its parameters' input
   * functions and domain checks, so code may run: the statement event is written
   * first (and approval sought), and the portal's first Execute runs under it.
   */
  private bind(frame: Frame, portal: string, prepared: Prepared, paramBytes: Buffer): Promise<void> | void {
    // Decided again (from the session's cache): a policy reloaded, or a catalog read again, since the Parse counts.
    const decision = this.pipeline.decide({ protocol: 'extended', text: prepared.text });
    this.text.noteStatement(decision.analysis);
    const entry: Prepared = { text: prepared.text, decision };
    const limit = rowLimit(decision);
    if (limit) entry.limit = limit;
    // An approval is for the statement with these values: they go into the request and its grant's key.
    if (decision.decision.action === 'require_approval') entry.params = Buffer.from(paramBytes);
    const admitted = this.pipeline.admit(portalStatement(entry, portal), decision);
    if (!(admitted instanceof Promise)) return this.afterBind(frame, portal, entry, admitted);
    this.flushUpstream();
    return admitted.then((a) => this.afterBind(frame, portal, entry, a));
  }

  private afterBind(frame: Frame, portal: string, entry: Prepared, admitted: Admission | Refusal): void {
    if ('reason' in admitted) {
      this.unbind(portal);
      return this.substitute(serialize.bind({ portal, statement: '\u0001dbward-refused' }), 'bind', refusalError(admitted));
    }
    if (this.state !== 'relaying') return this.pipeline.complete(admitted, { status: 'lost', tags: [], rows: null, sqlstate: null });
    this.names.sqlAdmitted(entry.decision.analysis, this.unexecuted);
    entry.admission = admitted;
    this.unbind(portal); // a portal bound again under its name replaces the old one
    const undo = this.names.bound(portal, entry);
    this.forward(frame, {
      kind: 'bind',
      onOutcome: (o) => {
        // Refused or skipped by the server: the statement did not run, and the name holds what it held.
        undo();
        if (entry.admission) this.settled.push([entry.admission, o]);
        entry.admission = undefined;
      },
    });
  }

  /** Forgets a portal; one bound but never executed gets its outcome now. */
  private unbind(portal: string): void {
    const p = this.names.portals.get(portal);
    if (!p) return;
    this.names.portals.delete(portal);
    this.unexecuted(p);
  }

  /** A portal is gone: its statement event, if no Execute settled it, says it was bound and nothing more. */
  private readonly unexecuted = (p: Prepared): void => {
    if (!p.admission) return;
    this.settled.push([p.admission, { status: 'ok', tags: [], rows: null, sqlstate: null }]);
    p.admission = undefined;
  };

  /** Decides a statement just read; one whose bytes dbward could not read as the server will is refused. */
  private decideRead(stmt: StatementRequest): Ruling {
    const problem = this.text.takeProblem();
    if (problem === null) return this.pipeline.decide(stmt);
    return { decision: { action: 'deny', ruleIds: [], default: false, message: problem }, analysis: { ok: false, error: problem, position: 1 } };
  }

  /** Admits and forwards a statement; waits only when the audit sink group-commits. */
  private admitAndForward(frame: Frame, stmt: StatementRequest, kind: 'query' | 'execute' | 'fcall',
    decision = this.pipeline.decide(stmt), limit = rowLimit(decision)): Promise<void> | void {
    const t0 = performance.now();
    // Forgotten before the server sees the statement, whether or not it is admitted: forgetting is always safe.
    this.names.sqlAdmitted(decision.analysis, this.unexecuted);
    this.text.noteStatement(decision.analysis);
    const admitted = this.pipeline.admit(stmt, decision);
    const mask = this.maskState(decision, stmt.text);
    const ddl = this.pipeline.watchesCatalog && changesCatalog(decision);
    if (!(admitted instanceof Promise)) return this.afterAdmit(frame, kind, admitted, t0, limit, mask, stmt.portal, ddl);
    this.flushUpstream(); // what came before the statement need not wait for its record
    return admitted.then((a) => this.afterAdmit(frame, kind, a, t0, limit, mask, stmt.portal, ddl));
  }

  private afterAdmit(frame: Frame, kind: 'query' | 'execute' | 'fcall', admitted: Admission | Refusal, t0: number, limit: RowLimit | undefined,
    mask: MaskState | undefined, portal: string | undefined, ddl: boolean): void {
    if (this.state !== 'relaying') {
      // Recorded, then the session ended before it was forwarded: it never ran.
      if (!('reason' in admitted)) this.pipeline.complete(admitted, { status: 'lost', tags: [], rows: null, sqlstate: null });
      return;
    }
    if ('reason' in admitted) {
      const standIn = kind === 'execute' ? serialize.execute({ portal: '\u0001dbward-refused' }) : serialize.query(REFUSED_STAND_IN);
      return this.substitute(standIn, kind, refusalError(admitted));
    }
    const onOutcome: OutcomeSink = ddl ? (o) => this.ddlDone(admitted, o) : (o) => this.settled.push([admitted, o]);
    if (limit || mask) {
      // DataRows are read (and counted) only in sessions where a cap applies.
      if (limit) this.scanner.setCapture('D', true);
      if (mask && kind === 'execute') {
        // An Execute's rows come with no RowDescription: ask for the portal's own first, for dbward's eyes only.
        this.out.push(serialize.describe({ type: 'P', name: portal ?? '' }));
        this.tracker.push({ kind: 'describe', internal: true, mask });
      }
      const pending: Pending = { kind, onOutcome };
      if (limit) pending.limit = limit;
      if (mask) pending.mask = mask;
      this.forward(frame, pending);
    } else {
      this.forward(frame, { kind, onOutcome });
    }
    this.deps.metrics.overhead.observe((performance.now() - t0) / 1000);
  }

  /** Tells the client its statement waits for approval; between server messages, so no frame of the server's is split. */
  private notifyHeld(request: ApprovalRequest): void {
    const notice = errorResponse(approvalNotice(request, this.pipeline.approvalLink(request)), 'N');
    if (this.scanner.atBoundary) this.writeClient(notice);
    else this.notices.push(notice);
  }

  private flushNotices(): void {
    if (this.notices.length === 0 || !this.scanner.atBoundary) return;
    for (const n of this.notices) this.writeClient(n);
    this.notices = [];
  }

  /** Turns result masking on once the session has masking rules (at start, or after a policy reload). */
  private maskingOn(): boolean {
    if (this.masker) return true;
    if (!this.pipeline.masking) return false;
    this.masker = new ResultMasker(() => this.pipeline.masking);
    this.tracker.masker = this.masker;
    for (const t of MASKED_TYPES) this.scanner.setCapture(t, true);
    return true;
  }

  /** The masking state for a statement about to be forwarded, in masked sessions. */
  private maskState(r: Ruling, text: string): MaskState | undefined {
    if (!this.maskingOn()) return undefined;
    const m = this.pipeline.masking!;
    const facts = r.analysis.ok ? r.analysis.statements : [];
    const taint = r.taint ?? CLEAN;
    m.noteDeclare(facts, taint);
    // A statement prepared before the catalog was read again is judged again (version -1 never matches).
    return this.masker!.state(facts, text, taint, r.taintVersion ?? -1, m.cursorSpec);
  }

  private ddlDone(admitted: Admission, o: Parameters<OutcomeSink>[0]): void {
    // A new view or column changes what results mean: the target's catalog is read again before the next one.
    if (o.status === 'ok') this.pipeline.catalogChanged();
    this.settled.push([admitted, o]);
  }

  private forward(frame: Frame, pending: Pending): void {
    this.out.push(frame.raw);
    this.track(pending);
  }

  private substitute(standIn: Buffer, kind: Pending['kind'], error: PgError): void {
    this.out.push(standIn);
    this.track({ kind, replaceError: error });
  }

  private track(pending: Pending): void {
    // What ReadyForQuery answers may end a transaction: the stamp tells which portals ended with it.
    if (pending.kind === 'sync' || pending.kind === 'query' || pending.kind === 'fcall') pending.mark = this.names.mark;
    this.tracker.push(pending);
  }

  private flushUpstream(): void {
    if (this.out.length === 0) return;
    const out = this.out;
    this.out = [];
    const ok = writeAll(this.upstream, out);
    if (!ok && this.state === 'relaying') {
      // The server reads slower than the client sends (COPY FROM): stop reading the client.
      this.upstreamBlocked = true;
      this.client.pause();
      this.upstream.once('drain', () => {
        this.upstreamBlocked = false;
        if (this.state === 'relaying' && !this.readerFull) this.client.resume();
      });
    }
  }

  private onUpstreamData(chunk: Buffer): void {
    this.countBytes(0, chunk.length);
    const out: Buffer[] = [];
    try {
      this.scanner.feed(chunk, out);
    } catch (err) {
      return this.scanFailed(err);
    }
    if (this.scanner.holding) this.awaitCatalog();
    const ok = out.length === 0 || writeAll(this.client, out);
    if (this.notices.length > 0) this.flushNotices();
    this.recordOutcomes(); // after the reply is on its way: not on the client's critical path
    if (this.state === 'closing' && this.draining) return this.terminate(pgErrors.adminShutdown());
    if (!ok) {
      // A slow client: stop reading the server rather than buffering its result.
      this.upstream.pause();
      this.client.once('drain', () => this.upstream.resume());
    }
  }

  private scanFailed(err: unknown): void {
    this.deps.log.warn({ err, session: this.pipeline.id }, this.masker ? 'server message could not be relayed or masked' : 'upstream protocol violation');
    if (err instanceof PgError) return this.terminate(err);
    // A result dbward could not mask does not reach the client at all.
    this.terminate(this.masker ? new PgError('XX000', 'dbward could not mask a result; the session was ended', 'FATAL') : pgErrors.upstreamLost());
  }

  /** A result waits for the target's catalog: stop reading the server, feed the held bytes again once it is read. */
  private awaitCatalog(): void {
    const waiting = this.masker?.waiting;
    this.upstream.pause();
    const resume = (): void => {
      if (this.state === 'closed') return;
      const out: Buffer[] = [];
      try {
        for (const chunk of this.scanner.release()) this.scanner.feed(chunk, out);
      } catch (err) {
        return this.scanFailed(err);
      }
      const ok = out.length === 0 || writeAll(this.client, out);
      if (this.notices.length > 0) this.flushNotices();
      this.recordOutcomes();
      if (this.scanner.holding) return this.awaitCatalog();
      if (ok) this.upstream.resume();
      else this.client.once('drain', () => this.upstream.resume());
    };
    if (!waiting) return resume();
    waiting.then(resume, (err: unknown) => {
      this.deps.log.error({ err, session: this.pipeline.id }, 'target catalog could not be read; masked session ended');
      this.terminate(new PgError('58000', 'dbward could not read the target\'s catalog to mask this result; the session was ended', 'FATAL'));
    });
  }

  /**
   * Byte counters are summed here and handed to the metrics at most once per
   * BYTES_FLUSH_MS and at the session's end: a prom-client increment per chunk
   * (two per statement) showed in the profile.
   */
  private countBytes(fromClient: number, fromServer: number): void {
    this.bytesFromClient += fromClient;
    this.bytesFromServer += fromServer;
    if (this.bytesTimer === null && this.state !== 'closed') {
      this.bytesTimer = setTimeout(() => this.flushBytes(), BYTES_FLUSH_MS);
      this.bytesTimer.unref();
    }
  }

  private flushBytes(): void {
    if (this.bytesTimer !== null) clearTimeout(this.bytesTimer);
    this.bytesTimer = null;
    if (this.bytesFromClient > 0) this.deps.metrics.clientBytes.inc(this.bytesFromClient);
    if (this.bytesFromServer > 0) this.deps.metrics.serverBytes.inc(this.bytesFromServer);
    this.bytesFromClient = 0;
    this.bytesFromServer = 0;
  }

  private recordOutcomes(): void {
    if (this.settled.length === 0) return;
    for (const [admission, outcome, syncFailed] of this.settled) {
      if (admission) this.pipeline.complete(admission, outcome);
      else this.pipeline.ready(outcome, syncFailed);
    }
    this.settled = [];
  }

  private writeClient(b: Buffer): void {
    if (!this.client.destroyed && this.client.writable) this.client.write(b);
  }

  /**
   * A Terminate behind requests still in flight: like PostgreSQL, which answers them
   * before it reads the Terminate, the client gets their replies, and the session
   * ends when the server closes after them (or, from a server that does not, soon).
   */
  private finishThenClose(): void {
    this.terminated = true;
    const timer = setTimeout(() => {
      this.upstream.destroy();
      this.upstreamGone();
    }, TERMINATE_GRACE_MS);
    timer.unref();
    void this.closed.then(() => clearTimeout(timer));
  }

  private upstreamGone(): void {
    if (this.terminated) {
      this.client.end();
      return this.shutdown('client_terminated');
    }
    if (this.state === 'relaying') {
      this.deps.log.warn({ session: this.pipeline.id }, 'upstream connection closed');
      // A server that ended the session with a FATAL has said why; a second error would only confuse;
      // and inside a torn message the client would read dbward's error as part of the server's.
      if (!this.tracker.serverEnded && this.scanner.atBoundary) this.writeClient(errorResponse(pgErrors.upstreamLost()));
      this.client.end();
    }
    this.shutdown('upstream_lost');
  }

  private fail(err: unknown): void {
    if (err instanceof PgError) {
      this.deps.log.info({ session: this.pipeline.id, sqlstate: err.sqlstate, msg: err.message }, 'session ended by client error');
      return this.terminate(err);
    }
    this.deps.log.error({ err, session: this.pipeline.id }, 'internal error in session');
    this.terminate(new PgError('XX000', 'internal error in dbward; the session was closed', 'FATAL'));
  }

  private shutdown(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.flushBytes();
    // A commit the server refused just before the session ended: its ReadyForQuery never came, its fate did.
    if (this.tracker.syncFailurePending) this.settled.push([null, 'I', true]);
    this.tracker.abandon();
    this.recordOutcomes();
    this.pipeline.end(reason);
    this.client.destroySoon();
    if (!this.upstream.destroyed) this.upstream.destroySoon();
    this.onEnd();
    this.resolveClosed();
  }
}

/** True for statements that may change what the catalog says (DDL, including views and comments). */
function changesCatalog(r: Ruling): boolean {
  return r.analysis.ok && r.analysis.statements.some((f) => f.flags.includes('ddl'));
}

/** A fresh row cap for a statement allowed under limit_rows, else undefined. */
function rowLimit(r: Ruling): RowLimit | undefined {
  const max = r.decision.limitRows;
  return max === undefined || r.decision.action !== 'allow' ? undefined : { max, sent: 0, withheld: 0, rules: r.decision.ruleIds };
}

function refusalError(r: Refusal): PgError {
  if (r.reason === 'audit') return pgErrors.auditUnavailable();
  const d = r.decision.decision;
  const rules = d.ruleIds.length > 0 ? ` (rule ${d.ruleIds.join(', ')})` : '';
  if (r.reason === 'approval') return approvalError(r, rules);
  if (d.action === 'require_approval') {
    // No approvals service: the statement is refused, and the client is told it would need one.
    const who = d.approval ? ` by ${d.approval.approvers.join(' or ')}` : '';
    return pgErrors.refused(`${d.message ?? 'statement requires approval'}${rules}`, `This statement needs approval${who}; this dbward takes no approvals, so it was not run.`);
  }
  if (d.ruleIds.length === 0 && d.default) return pgErrors.refused(`${d.message ?? 'statement refused by policy'} (no rule allows it; the policy default is deny)`);
  const a = r.decision.analysis;
  if (!a.ok && d.ruleIds.length === 0 && a.tooComplex) {
    return new PgError('54001', `${d.message ?? a.error}: dbward refused it unread`, 'ERROR', 'Split the statement, or nest it less deeply.');
  }
  if (!a.ok && d.ruleIds.length === 0 && a.position !== undefined) {
    // What the parser rejected at a place in the text, as PostgreSQL would report it: a driver catching 42601 (or 22021)
    // recognises it. Failures without a place are dbward's own limits and stay refusals.
    const sqlstate = a.error.includes('not valid Unicode') ? '22021' : '42601';
    return new PgError(sqlstate, d.message ?? `statement could not be parsed: ${a.error}`, 'ERROR', undefined, undefined, a.position);
  }
  return pgErrors.refused(`${d.message ?? 'statement refused by policy'}${rules}`);
}

/** Writes buffers as one write (writev when several); returns false when the socket wants a pause. */
function writeAll(socket: net.Socket, bufs: Buffer[]): boolean {
  if (bufs.length === 1) return socket.write(bufs[0]!);
  socket.cork();
  let ok = true;
  for (const b of bufs) ok = socket.write(b);
  socket.uncork();
  return ok;
}

/** The statement request of a portal's Bind or Execute. */
function portalStatement(p: Prepared, portal: string): StatementRequest {
  const stmt: StatementRequest = { protocol: 'extended', text: p.text, portal };
  const bytes = p.params;
  if (bytes) stmt.params = { bytes, show: () => showBindParams(bytes) };
  return stmt;
}

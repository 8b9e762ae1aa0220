// Matches server responses to the client requests that caused them, in order,
// so each statement's outcome (tags, rows, SQLSTATE) reaches the audit trail and
// a refused message's stand-in error can be swapped for dbward's own. Pure.
//
// PostgreSQL answers in request order. In the extended protocol an error makes
// the server skip every message up to the next Sync; those are "skipped".

import { decodeCommandTag, decodeErrorFields, decodeTxStatus, errorResponse, frame, rowsFromTag, type TxStatus } from './backend.js';
import { PgError } from './errors.js';
import { HOLD, WRITTEN, type FrameWriter } from './frames.js';
import type { MaskState, ResultMasker } from './result-masker.js';
import type { MaskRecord } from '../../audit/events.js';

export type RequestKind = 'query' | 'fcall' | 'parse' | 'bind' | 'describe' | 'close' | 'execute' | 'sync';

/** Where a tracked statement's outcome goes. */
export interface OutcomeSink {
  (outcome: { status: 'ok' | 'error' | 'skipped' | 'lost'; tags: string[]; rows: number | null; sqlstate: string | null; masks?: MaskRecord[] }): void;
}

/** One request awaiting its response. */
export interface Pending {
  kind: RequestKind;
  /** Set for statements that carry an audit event (query, execute, fcall). */
  onOutcome?: OutcomeSink;
  /** The server's error for this request is replaced by this one (a refused message's stand-in). */
  replaceError?: PgError;
  tags?: string[];
  rows?: number | null;
  sqlstate?: string | null;
  /** A policy row cap (limit_rows): rows past `max` are withheld from the client. Shared by a portal's Executes. */
  limit?: RowLimit;
  /** Masking state (masked sessions only); an Execute shares it with the Describe dbward sent before it. */
  mask?: MaskState;
  /** A Describe dbward sent itself (to learn a portal's columns): its answer is not the client's. */
  internal?: true;
  /** Requests answered by ReadyForQuery: the relay's stamp, handed back with it. */
  mark?: number;
}

/** Rows a statement (or portal) may still send under a limit_rows decision. */
export interface RowLimit {
  max: number;
  sent: number;
  /** Rows dropped since the client was last told. */
  withheld: number;
  rules: string[];
}

const T = {
  DataRow: 0x44, ParameterStatus: 0x53, ParseComplete: 0x31, BindComplete: 0x32, CloseComplete: 0x33, NoData: 0x6e, ParameterDescription: 0x74,
  RowDescription: 0x54, PortalSuspended: 0x73, EmptyQuery: 0x49, CommandComplete: 0x43, Error: 0x45, Ready: 0x5a,
  CopyOut: 0x48, CopyData: 0x64, CopyDone: 0x63, Notice: 0x4e,
} as const;

/** Server message types the tracker must read; everything else passes untouched. */
export const TRACKED_TYPES = '123ntTsICEZS';
/** What masked sessions read besides: rows, COPY out, notices. */
export const MASKED_TYPES = 'DHdcN';

/** The FIFO of requests in flight to the server. */
export class ResponseTracker {
  private queue: Pending[] = [];
  private head = 0;
  private skipping = false;
  /** Transaction status from the last ReadyForQuery. */
  txStatus: TxStatus = 'I';
  /** The server sent a FATAL (or PANIC) error: it is ending the session and has told the client why. */
  serverEnded = false;

  /**
   * Called for each ReadyForQuery, after the tracker has settled it; `syncFailed`: the server raised an error
   * for the Sync itself (a commit that failed); `mark`: the stamp of the request it answers, if known.
   */
  onReady: ((status: TxStatus, syncFailed: boolean, mark: number | undefined) => void) | null = null;
  private syncFailed = false;

  /** Rewrites results in masked sessions. */
  masker: ResultMasker | null = null;

  /** Called for each ParameterStatus the server sends mid-session (a setting it reports changed). */
  onParameter: ((name: string, value: string) => void) | null = null;

  /** The server failed a Sync (its commit) and the ReadyForQuery after it has not been read yet. */
  get syncFailurePending(): boolean {
    return this.syncFailed;
  }

  /** Number of requests awaiting a response. */
  get depth(): number {
    return this.queue.length - this.head;
  }

  /** Registers a request sent to the server. */
  push(p: Pending): void {
    if (this.skipping) {
      // The server discards everything up to the next Sync, a simple Query included.
      if (p.kind !== 'sync') return settle(p, 'skipped');
      this.skipping = false;
    }
    this.queue.push(p);
  }

  /**
   * Reads one server message, its payload src[start, end) (a CaptureHandler); returns a
   * replacement for it, WRITTEN when a rewritten DataRow went to `out`, null to drop
   * it, or undefined to forward it.
   */
  onMessage(type: number, src: Buffer, start: number, end: number, out: FrameWriter): Buffer | null | undefined | typeof HOLD | typeof WRITTEN {
    const p = this.peek();
    if (type === T.DataRow) {
      // Only captured while some statement of the session runs under a row limit, or in masked sessions.
      // Read in place: rows are the one message that comes by the million.
      const limit = p?.limit;
      if (limit) {
        if (limit.sent >= limit.max) {
          limit.withheld++;
          return null;
        }
        limit.sent++;
      }
      return this.masker?.dataRow(p?.mask, src, start, end, out);
    }
    const payload = src.subarray(start, end);
    switch (type) {
      case T.ParseComplete: case T.BindComplete: case T.CloseComplete: case T.NoData:
        if (p && p.kind !== 'query' && p.kind !== 'execute') this.shift();
        return p?.internal ? null : undefined;
      case T.CopyOut:
        return this.masker?.copyOut(p?.mask, payload);
      case T.CopyData:
        return this.masker?.copyData(p?.mask, payload);
      case T.CopyDone:
        return this.masker?.copyDone(p?.mask, frame('c'));
      case T.Notice:
        return this.masker?.scrubError(p?.mask, type, payload);
      case T.ParameterDescription:
        return undefined;
      case T.ParameterStatus: {
        const nul = payload.indexOf(0);
        const end = payload.indexOf(0, nul + 1);
        if (nul > 0 && end > nul) this.onParameter?.(payload.toString('utf8', 0, nul), payload.toString('utf8', nul + 1, end));
        return undefined;
      }
      case T.RowDescription: {
        const r = this.masker?.rowDescription(p?.mask, payload);
        if (r === HOLD) return HOLD;
        if (p?.kind === 'describe') this.shift();
        return p?.internal ? null : r;
      }
      case T.CommandComplete: case T.EmptyQuery: case T.PortalSuspended: {
        if (!p) return undefined;
        if (type === T.CommandComplete) {
          const tag = decodeCommandTag(payload);
          (p.tags ??= []).push(tag);
          const n = rowsFromTag(tag);
          if (n !== null) p.rows = (p.rows ?? 0) + n;
        }
        if (p.kind === 'execute') {
          this.shift();
          settle(p, 'ok');
        }
        if (p.limit && p.limit.withheld > 0) {
          // The tag keeps the server's count; a notice before it says how many rows the client did not get.
          const notice = errorResponse(new PgError('01000', `dbward withheld ${p.limit.withheld} row(s): at most ${p.limit.max} may be returned (rule ${p.limit.rules.join(', ')})`, 'NOTICE'), 'N');
          p.limit.withheld = 0;
          return Buffer.concat([notice, frame(String.fromCharCode(type), payload)]);
        }
        return undefined;
      }
      case T.Error:
        return this.onError(p, payload);
      case T.Ready: {
        this.txStatus = decodeTxStatus(payload);
        this.skipping = false;
        let mark: number | undefined;
        if (p && (p.kind === 'query' || p.kind === 'fcall' || p.kind === 'sync')) {
          this.shift();
          mark = p.mark;
          if (p.kind !== 'sync') settle(p, p.sqlstate ? 'error' : 'ok');
        }
        const syncFailed = this.syncFailed;
        this.syncFailed = false;
        this.onReady?.(this.txStatus, syncFailed, mark);
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** The connection ended: every request still in flight is settled as lost. */
  abandon(): void {
    for (let i = this.head; i < this.queue.length; i++) settle(this.queue[i]!, 'lost');
    this.queue = [];
    this.head = 0;
  }

  private onError(p: Pending | undefined, payload: Buffer): Buffer | undefined {
    const fields = decodeErrorFields(payload);
    const severity = fields.get('V') ?? fields.get('S');
    if (severity === 'FATAL' || severity === 'PANIC') this.serverEnded = true;
    if (!p) return undefined; // asynchronous error (e.g. FATAL on shutdown): pass it on
    const sqlstate = fields.get('C') ?? 'XX000';
    const replacement = p.replaceError ? errorResponse(p.replaceError) : this.masker?.scrubError(p.mask, 0x45, payload);
    if (p.kind === 'query' || p.kind === 'fcall') {
      p.sqlstate = p.replaceError?.sqlstate ?? sqlstate;
      return replacement;
    }
    if (p.kind === 'sync') {
      // e.g. a deferred constraint failing at the implicit commit
      this.syncFailed = true;
      return replacement;
    }
    this.shift();
    p.sqlstate = p.replaceError?.sqlstate ?? sqlstate;
    settle(p, 'error');
    // The server now ignores everything up to the next Sync.
    while (this.peek() && this.peek()!.kind !== 'sync') settle(this.shift()!, 'skipped');
    if (!this.peek()) this.skipping = true;
    return replacement;
  }

  private peek(): Pending | undefined {
    return this.head < this.queue.length ? this.queue[this.head] : undefined;
  }

  private shift(): Pending | undefined {
    const p = this.queue[this.head++];
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return p;
  }
}

function settle(p: Pending, status: 'ok' | 'error' | 'skipped' | 'lost'): void {
  if (!p.onOutcome) return;
  const sink = p.onOutcome;
  p.onOutcome = undefined;
  const masks = p.mask && p.mask.applied.size > 0 ? [...p.mask.applied.values()] : undefined;
  sink({ status, tags: p.tags ?? [], rows: p.rows ?? null, sqlstate: p.sqlstate ?? null, ...(masks && { masks }) });
}

// Append-only JSONL audit file.
//
// fsync 'none' (default): a committed line (a statement about to be forwarded)
// is written with write() before commit() returns, together with every queued
// line: the bytes are in the kernel before the statement reaches the database,
// so they survive a dbward crash. Measured on the bench, a synchronous append
// is cheaper than deferring the statement to a shared write.
// fsync 'batch': group commit. Lines committed during one turn of the event
// loop share one write() and one fdatasync(), and their waiters are released
// together; the next group collects while one is on disk.
// Appended lines (outcomes, session ends) ride along with the next commit, or
// are written within APPEND_DELAY_MS when no commit comes.

import fs from 'node:fs';
import path from 'node:path';
import type { AuditSink } from './events.js';

/** Observes the sink for metrics; all optional. */
export interface SinkObserver {
  written?(lines: number, seconds: number): void;
  failed?(err: Error): void;
  queueDepth?(depth: number): void;
}

interface Waiter {
  line: string;
  resolve(): void;
  reject(err: Error): void;
}

/** The embedded default sink: one JSONL file, opened for append only. */
export class FileAuditSink implements AuditSink {
  private fd: number | null;
  private lines: string[] = [];
  private waiters: Waiter[] = [];
  private scheduled = false;
  private immediate = false;
  private timer: NodeJS.Timeout | null = null;
  private writing = false;
  private closed = false;
  private ok = true;
  /** Reused encoding buffer for synchronous writes. */
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly idle: (() => void)[] = [];

  constructor(
    readonly file: string,
    private readonly fsyncMode: 'none' | 'batch',
    private readonly observer: SinkObserver = {},
  ) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
    this.fd = fs.openSync(file, 'a', 0o640);
  }

  get healthy(): boolean {
    return this.ok;
  }

  commit(line: string): void | Promise<void> {
    this.checkOpen();
    if (this.fsyncMode === 'none' && !this.writing) return this.writeQueuedSync(line);
    return new Promise((resolve, reject) => {
      this.lines.push(line);
      this.waiters.push({ line, resolve, reject });
      this.schedule(0);
    });
  }

  append(line: string): void {
    this.checkOpen();
    this.lines.push(line);
    // Appended lines ride along with the next commit; the timer bounds how long they wait.
    this.schedule(APPEND_DELAY_MS);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.writing || (this.fsyncMode === 'batch' && (this.scheduled || this.lines.length > 0))) {
      await new Promise<void>((r) => this.idle.push(r));
    }
    if (this.lines.length > 0) {
      try { this.writeQueuedSync(null); } catch { /* reported through the observer; nothing more to try */ }
    }
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.fd !== null) {
      try { fs.fsyncSync(this.fd); } catch { /* closing anyway */ }
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('audit sink is closed');
  }

  private schedule(delayMs: number): void {
    if (this.writing || this.closed) return;
    if (this.scheduled && (delayMs > 0 || this.immediate)) return;
    if (this.timer) clearTimeout(this.timer);
    this.scheduled = true;
    this.immediate = delayMs === 0;
    if (delayMs === 0) {
      this.timer = null;
      setImmediate(() => this.flush());
    } else {
      this.timer = setTimeout(() => this.flush(), delayMs);
    }
  }

  /**
   * Writes every queued line, then `committed` if given, in one write(). On
   * failure `committed` is not written (its caller is told) and the queued lines
   * stay queued. The lines are encoded into a reused buffer: this runs once per
   * statement, and a fresh Buffer per write showed in the profile.
   */
  private writeQueuedSync(committed: string | null): void {
    const queued = this.lines;
    const started = performance.now();
    let len = 0;
    for (let i = 0; i < queued.length; i++) len = this.encode(queued[i]!, len);
    if (committed !== null) len = this.encode(committed, len);
    try {
      writeAll(this.fd!, this.scratch, len);
    } catch (err) {
      this.ok = false;
      this.observer.failed?.(err as Error);
      throw err;
    } finally {
      if (this.scratch.length > MAX_KEPT_SCRATCH) this.scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
    }
    const count = queued.length + (committed !== null ? 1 : 0);
    if (queued.length > 0) this.lines = [];
    this.ok = true;
    this.observer.written?.(count, (performance.now() - started) / 1000);
  }

  /** Appends `line` and a newline to the scratch buffer at `off`; returns the new end. */
  private encode(line: string, off: number): number {
    // A UTF-16 code unit is at most 3 UTF-8 bytes: make room for the worst case, so write() never truncates.
    const need = off + line.length * 3 + 1;
    if (need > this.scratch.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
      this.scratch.copy(bigger, 0, 0, off);
      this.scratch = bigger;
    }
    off += this.scratch.write(line, off);
    this.scratch[off] = 0x0a;
    return off + 1;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.lines.length === 0) return this.settleIdle();
    this.observer.queueDepth?.(this.lines.length);
    if (this.fsyncMode === 'none') {
      // Only appended lines wait here: commits in this mode were written when made.
      try {
        this.writeQueuedSync(null);
      } catch {
        // Kept queued and retried; metrics and /readyz report the failure.
        this.schedule(RETRY_MS);
        return;
      }
      return this.settleIdle();
    }
    const buf = Buffer.from(this.lines.join('\n') + '\n');
    const count = this.lines.length;
    const waiters = this.waiters;
    this.waiters = [];
    this.writing = true;
    const started = process.hrtime.bigint();
    const group = this.lines;
    this.lines = [];
    fs.write(this.fd!, buf, 0, buf.length, null, (err, n) => {
      if (err || n !== buf.length) {
        this.writing = false;
        this.requeueAppended(group, waiters);
        return this.batchDone(waiters, count, started, err ?? new Error('short write to audit file'));
      }
      fs.fdatasync(this.fd!, (syncErr) => {
        this.writing = false;
        if (syncErr) this.requeueAppended(group, waiters);
        this.batchDone(waiters, count, started, syncErr);
      });
    });
  }

  /** After a failed group: appended lines go back to the front of the queue; committed ones were refused. */
  private requeueAppended(group: string[], waiters: Waiter[]): void {
    const refused = new Set(waiters.map((w) => w.line));
    this.lines = [...group.filter((l) => !refused.has(l)), ...this.lines];
  }

  private batchDone(waiters: Waiter[], count: number, started: bigint, err: Error | null): void {
    if (err) {
      this.ok = false;
      this.observer.failed?.(err);
      for (const w of waiters) w.reject(err);
    } else {
      this.ok = true;
      this.observer.written?.(count, Number(process.hrtime.bigint() - started) / 1e9);
      for (const w of waiters) w.resolve();
    }
    if (this.lines.length > 0) this.schedule(err ? RETRY_MS : 0);
    else this.settleIdle();
  }

  private settleIdle(): void {
    if (this.lines.length > 0 || this.writing || this.scheduled) return;
    for (const r of this.idle.splice(0)) r();
  }
}

/** How long an appended line (an outcome, a session end) may wait for a commit to ride along with. */
const APPEND_DELAY_MS = 5;
const RETRY_MS = 100;
const SCRATCH_BYTES = 64 * 1024;
/** A scratch buffer grown past this (one huge statement) is not kept. */
const MAX_KEPT_SCRATCH = 1024 * 1024;

function writeAll(fd: number, buf: Buffer, len: number): void {
  let off = 0;
  while (off < len) off += fs.writeSync(fd, buf, off, len - off, null);
}

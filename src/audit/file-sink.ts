// Append-only JSONL audit file.
//
// fsync 'none' (default): a committed line is written with write() before
// commit() returns, together with every queued line, so the statement it
// records is forwarded only once the bytes are in the kernel (they survive a
// dbward crash). A synchronous write of a few hundred bytes costs microseconds,
// less than deferring the statement would.
// fsync 'batch': group commit. Lines committed during one turn of the event
// loop share one write() and one fdatasync(), and their waiters are released
// together; the next group collects while one is on disk.

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
  resolve(): void;
  reject(err: Error): void;
}

/** The embedded default sink: one JSONL file, opened for append only. */
export class FileAuditSink implements AuditSink {
  private fd: number | null;
  private lines: string[] = [];
  private waiters: Waiter[] = [];
  private scheduled = false;
  private writing = false;
  private closed = false;
  private ok = true;
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
    if (this.fsyncMode === 'none' && !this.writing) {
      this.lines.push(line);
      this.writeQueuedSync(line);
      return;
    }
    return new Promise((resolve, reject) => {
      this.lines.push(line);
      this.waiters.push({ resolve, reject });
      this.schedule();
    });
  }

  append(line: string): void {
    this.checkOpen();
    this.lines.push(line);
    this.schedule();
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
    if (this.fd !== null) {
      try { fs.fsyncSync(this.fd); } catch { /* closing anyway */ }
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('audit sink is closed');
  }

  private schedule(): void {
    if (!this.scheduled && !this.writing) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes every queued line now; on failure drops `committed` (its caller is told) and keeps the rest queued. */
  private writeQueuedSync(committed: string | null): void {
    const count = this.lines.length;
    const started = process.hrtime.bigint();
    try {
      writeAll(this.fd!, Buffer.from(this.lines.join('\n') + '\n'));
      this.lines = [];
      this.ok = true;
      this.observer.written?.(count, Number(process.hrtime.bigint() - started) / 1e9);
    } catch (err) {
      if (committed !== null) this.lines.pop();
      this.ok = false;
      this.observer.failed?.(err as Error);
      throw err;
    }
  }

  private flush(): void {
    this.scheduled = false;
    if (this.lines.length === 0) return this.settleIdle();
    this.observer.queueDepth?.(this.lines.length);
    if (this.fsyncMode === 'none') {
      try {
        this.writeQueuedSync(null);
      } catch {
        // Kept queued; retried with the next line. Metrics and /readyz report it.
        setTimeout(() => this.schedule(), 100).unref();
        return;
      }
      return this.settleIdle();
    }
    const buf = Buffer.from(this.lines.join('\n') + '\n');
    const count = this.lines.length;
    const waiters = this.waiters;
    this.lines = [];
    this.waiters = [];
    this.writing = true;
    const started = process.hrtime.bigint();
    fs.write(this.fd!, buf, 0, buf.length, null, (err, n) => {
      if (err || n !== buf.length) {
        this.writing = false;
        return this.batchDone(waiters, count, started, err ?? new Error('short write to audit file'));
      }
      fs.fdatasync(this.fd!, (syncErr) => {
        this.writing = false;
        this.batchDone(waiters, count, started, syncErr);
      });
    });
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
    if (this.lines.length > 0) this.schedule();
    else this.settleIdle();
  }

  private settleIdle(): void {
    if (this.lines.length > 0 || this.writing || this.scheduled) return;
    for (const r of this.idle.splice(0)) r();
  }
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}

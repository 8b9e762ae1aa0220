// Append-only JSONL audit files, sealed by the keyed chain (chain.ts) as lines
// are written, and rotated by size and age: the active file is renamed to
// `<stem>.<UTC time>.jsonl` beside it and a new one begun. The chain runs on
// across rotations and restarts (a new process continues from the last line of
// the newest file), so a set of files verifies as one trail.
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
import { Chain, CHAIN_FIELD_BYTES, type ChainHead } from './chain.js';
import { FlushTimer } from './flush-timer.js';
import type { AuditSink, SinkObserver } from './events.js';
import { fileHead, lastLinesOffset, trailFiles } from './read.js';

/** How a file sink writes. */
export interface FileSinkOptions {
  fsync: 'none' | 'batch';
  /** The chain key; null writes lines unsealed (tests of the write path only). */
  key?: Buffer | null;
  /** Rotate once the active file would grow past this many bytes. */
  rotateBytes?: number;
  /** Rotate once the active file is this old; 0 never. */
  rotateMs?: number;
  /** Receives the sealed lines after each successful write (feeds secondary sinks). */
  onWritten?: (lines: readonly string[]) => void;
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
  private readonly flushTimer = new FlushTimer(() => this.flush());
  private writing = false;
  private closed = false;
  private ok = true;
  /** Reused encoding buffer for synchronous writes. */
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly idle: (() => void)[] = [];

  private readonly fsyncMode: 'none' | 'batch';
  private readonly chain: Chain | null;
  private readonly rotateBytes: number;
  private readonly rotateMs: number;
  private readonly onWritten: ((lines: readonly string[]) => void) | null;
  /** Bytes in the active file, and when it was begun. */
  private size = 0;
  private openedAt = 0;
  /** While a group is being written (fsync batch): the head on disk, behind the chain's. */
  private writingFrom: ChainHead | null = null;
  /** A cut (after a failed write) that could not be made yet. */
  private cutTo: number | null = null;
  /** The path is a character device (/dev/stdout): written, never read back, cut or rotated. */
  private readonly device: boolean;

  constructor(
    readonly file: string,
    options: FileSinkOptions,
    private readonly observer: SinkObserver = {},
  ) {
    this.fsyncMode = options.fsync;
    this.rotateBytes = options.rotateBytes ?? Number.MAX_SAFE_INTEGER;
    this.rotateMs = options.rotateMs ?? 0;
    this.onWritten = options.onWritten ?? null;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
    this.device = isDevice(file);
    // A line torn by a crash mid-write would be glued to the next one: it goes (it was never a whole event).
    if (!this.device) dropTornTail(file);
    const head = options.key && !this.device ? fileHead(file) ?? newestRotatedHead(file) : null;
    this.chain = options.key ? new Chain(options.key, head) : null;
    this.fd = this.openActive();
  }

  get healthy(): boolean {
    return this.ok;
  }

  /** The chain head of the last line on disk (what a head export may publish). */
  get head(): ChainHead {
    // Lines are sealed as they are written, and a failed write rewinds the chain: but for a group
    // on its way to disk, the chain's head is the head on disk.
    return this.writingFrom ?? this.chain?.head ?? { seq: 0, mac: '' };
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
    if (this.writing || (this.fsyncMode === 'batch' && (this.flushTimer.due || this.lines.length > 0))) {
      await new Promise<void>((r) => this.idle.push(r));
    }
    if (this.lines.length > 0) {
      try { this.writeQueuedSync(null); } catch { /* reported through the observer; nothing more to try */ }
    }
    this.closed = true;
    this.flushTimer.cancelTimer();
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
    this.flushTimer.request(delayMs);
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
    const markSeq = this.chain?.lastSeq ?? 0;
    const markMac = this.chain?.lastMac ?? '';
    const sealed: string[] | null = this.onWritten ? [] : null;
    let len = 0;
    let before = -1;
    try {
      for (let i = 0; i < queued.length; i++) len = this.encode(queued[i]!, len, sealed);
      if (committed !== null) len = this.encode(committed, len, sealed);
      this.prepareWrite(len);
      before = this.size;
      writeAll(this.fd!, this.scratch, len);
    } catch (err) {
      // Part of the lines may be on disk: cut them off, so the chain can take their seqs again.
      if (before >= 0) this.undoTo(before);
      this.chain?.rewindTo(markSeq, markMac);
      this.ok = false;
      this.observer.failed?.(err as Error);
      throw err;
    } finally {
      if (this.scratch.length > MAX_KEPT_SCRATCH) this.scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
    }
    this.size += len;
    const count = queued.length + (committed !== null ? 1 : 0);
    if (queued.length > 0) this.lines = [];
    this.wrote(sealed);
    this.observer.written?.(count, (performance.now() - started) / 1000);
  }


  /** After a successful write: secondaries get the lines. */
  private wrote(sealed: readonly string[] | null): void {
    this.ok = true;
    if (sealed && sealed.length > 0) this.onWritten!(sealed);
  }

  /** Before a write of `bytes`: reopens a file a failed rotation left closed, finishes a failed cut, rotates when due. */
  private prepareWrite(bytes: number): void {
    if (this.fd === null) this.fd = this.openActive();
    if (this.cutTo !== null) {
      fs.ftruncateSync(this.fd, this.cutTo);
      this.size = this.cutTo;
      this.cutTo = null;
    }
    this.rotateIfDue(bytes);
  }

  /** Cuts the active file back to `size` (what a failed write may have added); retried before the next write if it fails. */
  private undoTo(size: number): void {
    if (this.device) return;
    try {
      if (this.fd !== null) fs.ftruncateSync(this.fd, size);
      this.size = size;
    } catch {
      this.cutTo = size;
    }
  }

  /** Starts a new active file when `bytes` more would pass the size limit, or the active one is too old. */
  private rotateIfDue(bytes: number): void {
    // Renaming a device and creating a file in its place would take it from the whole machine.
    if (this.size === 0 || this.device) return;
    const full = this.size + bytes > this.rotateBytes;
    const old = this.rotateMs > 0 && Date.now() - this.openedAt >= this.rotateMs;
    if (!full && !old) return;
    fs.fsyncSync(this.fd!);
    fs.closeSync(this.fd!);
    this.fd = null;
    try {
      fs.renameSync(this.file, rotatedName(this.file, new Date()));
    } finally {
      // Renamed or not, writing goes on in a file named `this.file`.
      this.fd = this.openActive();
    }
  }

  private openActive(): number {
    const fd = fs.openSync(this.file, 'a', 0o640);
    const st = fs.fstatSync(fd);
    if (!st.isFile() && !st.isCharacterDevice()) {
      fs.closeSync(fd);
      throw new Error(unsupportedPath(this.file));
    }
    this.size = st.size;
    // An existing file's age counts from its creation; the filesystem may not record it (0), then from now.
    this.openedAt = st.size > 0 && st.birthtimeMs > 0 ? st.birthtimeMs : Date.now();
    return fd;
  }

  /**
   * Appends `line`, sealed, and a newline to the scratch buffer at `off`;
   * returns the new end. The line is encoded once and sealed over its bytes:
   * this runs twice per statement.
   */
  private encode(line: string, off: number, sealed: string[] | null): number {
    // A UTF-16 code unit is at most 3 UTF-8 bytes: make room for the worst case, so write() never truncates.
    const need = off + line.length * 3 + CHAIN_FIELD_BYTES + 1;
    if (need > this.scratch.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
      this.scratch.copy(bigger, 0, 0, off);
      this.scratch = bigger;
    }
    const start = off;
    off += this.scratch.write(line, off);
    if (this.chain) off = this.chain.sealInto(this.scratch, start, off);
    sealed?.push(this.scratch.toString('utf8', start, off));
    this.scratch[off] = 0x0a;
    return off + 1;
  }

  private flush(): void {
    this.flushTimer.started();
    if (this.closed) return;
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
    const group = this.lines;
    const mark = this.chain?.head;
    const chain = this.chain;
    const sealed = chain ? group.map((l) => chain.seal(l)) : group;
    const buf = Buffer.from(sealed.join('\n') + '\n');
    const count = group.length;
    const waiters = this.waiters;
    this.waiters = [];
    this.writing = true;
    this.writingFrom = mark ?? null;
    const started = process.hrtime.bigint();
    this.lines = [];
    let before = -1;
    const failed = (err: Error): void => {
      if (before >= 0) this.undoTo(before);
      if (mark) this.chain!.rewind(mark);
      this.writing = false;
      this.writingFrom = null;
      this.requeueAppended(group, waiters);
      this.batchDone(waiters, count, started, err);
    };
    try {
      this.prepareWrite(buf.length);
      before = this.size;
    } catch (err) {
      return failed(err as Error);
    }
    fs.write(this.fd!, buf, 0, buf.length, null, (err, n) => {
      if (err || n !== buf.length) return failed(err ?? new Error('short write to audit file'));
      fs.fdatasync(this.fd!, (syncErr) => {
        if (syncErr) return failed(syncErr);
        this.size += buf.length;
        this.writing = false;
        this.writingFrom = null;
        this.wrote(this.onWritten ? sealed : null);
        this.batchDone(waiters, count, started, null);
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
      this.observer.written?.(count, Number(process.hrtime.bigint() - started) / 1e9);
      for (const w of waiters) w.resolve();
    }
    if (this.lines.length > 0) this.schedule(err ? RETRY_MS : 0);
    else this.settleIdle();
  }

  private settleIdle(): void {
    if (this.lines.length > 0 || this.writing || this.flushTimer.due) return;
    for (const r of this.idle.splice(0)) r();
  }
}

/** How long an appended line (an outcome, a session end) may wait for a commit to ride along with. */
const APPEND_DELAY_MS = 5;
const RETRY_MS = 100;
const SCRATCH_BYTES = 64 * 1024;
/** A scratch buffer grown past this (one huge statement) is not kept. */
const MAX_KEPT_SCRATCH = 1024 * 1024;

/** `dir/stem.jsonl` rotated at `at`: `dir/stem.20261124T101500123Z.jsonl` (sorts by time; a clash gets a counter). */
export function rotatedName(active: string, at: Date): string {
  const ext = path.extname(active);
  const stem = active.slice(0, active.length - ext.length);
  const stamp = at.toISOString().replace(/[-:.]/g, '');
  let name = `${stem}.${stamp}${ext}`;
  for (let n = 1; fs.existsSync(name); n++) name = `${stem}.${stamp}-${n}${ext}`;
  return name;
}

/** The head of the newest rotated sibling of `active`, for an active file that was just rotated away. */
function newestRotatedHead(active: string): ChainHead | null {
  // Timestamps sort lexically; the highest seq wins in case names were touched.
  let best: ChainHead | null = null;
  for (const f of trailFiles(active)) {
    const h = f === active ? null : fileHead(f);
    if (h && (!best || h.seq > best.seq)) best = h;
  }
  return best;
}

/**
 * True when `file` is a character device; throws for a path that is neither
 * that nor a regular file (or absent). A FIFO would block the open, and a
 * directory or socket cannot hold a trail.
 */
function isDevice(file: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // created on open
    throw err;
  }
  if (st.isCharacterDevice()) return true;
  if (!st.isFile()) throw new Error(unsupportedPath(file));
  return false;
}

function unsupportedPath(file: string): string {
  return `audit file ${file} is neither a regular file nor a character device; audit.file.path must name a file`;
}

/** Cuts a last line without its newline (a write torn by a crash) off the end of `file`. */
function dropTornTail(file: string): void {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    return;
  }
  const { offset } = lastLinesOffset(file, 0);
  if (offset < size) fs.truncateSync(file, offset);
}

function writeAll(fd: number, buf: Buffer, len: number): void {
  let off = 0;
  while (off < len) off += fs.writeSync(fd, buf, off, len - off, null);
}

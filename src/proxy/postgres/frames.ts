// Typed-frame splitting for both directions. Pure: chunks in, frames out, a
// partial frame kept for the next chunk; no socket in here.
//
// FrontendReader (F, client -> dbward) assembles whole frames, because every
// client message is looked at before anything after it is forwarded.
// BackendScanner (B, server -> dbward) forwards bytes as they came and holds back
// only the frames the session must read (small ones: CommandComplete, errors,
// ReadyForQuery...), so result rows pass through without being copied or decoded.

import { PgError, pgErrors } from './errors.js';

/** One whole frontend frame. `raw` includes the 5-byte header; both are views (of the chunk, when the frame came in one), never written again. */
export interface Frame {
  type: number;
  payload: Buffer;
  raw: Buffer;
}

const EMPTY = Buffer.alloc(0);
/** The most bytes a FrameAssembler copies in one push, besides the chunk itself, while a frame of known size arrives. */
export const RECOPY_MAX = 1024 * 1024;

/**
 * Received bytes read frame by frame: the base of the frontend and startup
 * readers. A chunk that arrives with nothing unread is read in place, so frames
 * within one chunk are views of it. One that arrives behind unread bytes is joined
 * to them in a store that doubles as it fills, or takes a large frame's declared
 * size: re-concatenating per chunk would make one large frame cost time quadratic
 * in its size, on the event loop every session shares. Of a chunk that completes a
 * frame, only the frame's bytes are copied; the rest is read in place after it.
 */
export abstract class FrameAssembler {
  /** Unread bytes from `off`: a chunk as it came, or the filled part of `store`. */
  protected buf: Buffer = EMPTY;
  protected off = 0;
  private store: Buffer | null = null; // while `buf` is joined: its backing buffer, free past buf.length
  private spill: Buffer | null = null; // the chunk's bytes after a joined frame; `buf` then holds just that frame
  private copiedBytes = 0;

  /**
   * `lenAt`: where a frame's int32 length is (1 after a type byte, 0 for startup
   * packets); it counts all but `lenAt` bytes. `maxBytes`: the largest length the reader accepts.
   */
  protected constructor(private readonly lenAt: 0 | 1, protected readonly maxBytes: number) {}

  /** Appends a chunk of received bytes. */
  push(chunk: Buffer): void {
    if (this.off >= this.buf.length) {
      // Nothing unread (a spill is never left behind a fully read `buf`).
      this.buf = chunk;
      this.off = 0;
      this.store = null;
      return;
    }
    if (this.spill !== null) {
      // Bytes pile up behind a joined frame not yet read: the spill joins them first.
      const spill = this.spill;
      this.spill = null;
      this.join(spill);
    }
    this.join(chunk);
  }

  /** Bytes received and not yet read as frames. */
  get buffered(): number {
    return this.buf.length - this.off + (this.spill?.length ?? 0);
  }

  /** Bytes copied so far to join chunks (none for frames within one chunk); at most about twice those received. */
  get copied(): number {
    return this.copiedBytes;
  }

  /** Takes the unread bytes (handed to the next reader). */
  drain(): Buffer {
    const unread = this.buf.subarray(this.off);
    const rest = this.spill === null ? unread : Buffer.concat([unread, this.spill]);
    this.buf = EMPTY;
    this.off = 0;
    this.store = this.spill = null;
    return rest;
  }

  /** Takes the next `n` bytes, which the caller has checked are in `buf`: a view, not a copy. */
  protected take(n: number): Buffer {
    const start = this.off;
    this.off += n;
    const bytes = this.buf.subarray(start, this.off);
    if (this.spill !== null && this.off === this.buf.length) {
      this.buf = this.spill;
      this.off = 0;
      this.store = this.spill = null;
    }
    return bytes;
  }

  private join(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const unread = this.buf.length - this.off;
    const frame = this.pendingFrame(unread, chunk);
    let part = chunk;
    if (unread + chunk.length > frame) {
      part = chunk.subarray(0, frame - unread);
      this.spill = chunk.subarray(frame - unread);
    }
    const filled = this.buf.length;
    if (this.store !== null && this.store.length - filled >= part.length) {
      part.copy(this.store, filled);
      this.buf = this.store.subarray(0, filled + part.length);
      this.copiedBytes += part.length;
      return;
    }
    // A new store: frames already taken are views of the old one, whose bytes must not move.
    // Doubling keeps the copies linear. Once the frame's known size is near (a quarter in)
    // or doubling would pass RECOPY_MAX, the store takes that size outright: no push then
    // copies much more than RECOPY_MAX at once (a stall for every session), and the frame
    // is copied at most about twice.
    const need = unread + part.length;
    const store = Buffer.allocUnsafe(frame < Infinity && (4 * need > frame || 2 * need > RECOPY_MAX) ? frame : 2 * need);
    this.buf.copy(store, 0, this.off);
    part.copy(store, unread);
    this.copiedBytes += need;
    this.store = store;
    this.buf = store.subarray(0, need);
    this.off = 0;
  }

  // The size of the frame at `off` once its length is in (counting `chunk`), while
  // its end is not; otherwise Infinity. A length the reader refuses gives no size: a
  // store is never sized by a claim beyond the limit.
  private pendingFrame(unread: number, chunk: Buffer): number {
    const head = this.lenAt + 4;
    let len = 0;
    if (unread >= head) len = this.buf.readInt32BE(this.off + this.lenAt);
    else if (unread + chunk.length >= head) {
      for (let i = this.lenAt; i < head; i++) len = (len << 8) | (i < unread ? this.buf[this.off + i]! : chunk[i - unread]!);
    } else return Infinity;
    const size = this.lenAt + len;
    return len >= 4 && len <= this.maxBytes && size > unread ? size : Infinity;
  }
}

/** Splits client bytes into whole typed frames, refusing lengths below 4 or above the limit. */
export class FrontendReader extends FrameAssembler {
  constructor(maxBytes: number) {
    super(1, maxBytes);
  }

  /** The next whole frame, or null when more bytes are needed. Throws PgError on a bad length. */
  next(): Frame | null {
    const avail = this.buf.length - this.off;
    if (avail < 5) return null;
    const len = this.buf.readInt32BE(this.off + 1);
    if (len < 4) throw pgErrors.protocolViolation(`invalid message length ${len}`);
    if (len > this.maxBytes) throw pgErrors.messageTooLarge(len, this.maxBytes);
    if (avail < len + 1) return null;
    const raw = this.take(len + 1);
    return { type: raw[0]!, payload: raw.subarray(5), raw };
  }
}

/** Returned by a capture handler that cannot judge a frame yet (masking waits for the catalog). */
export const HOLD = Symbol('hold');

/** Returned by a capture handler that wrote the frame's replacement into the scanner's FrameWriter. */
export const WRITTEN = Symbol('written');

/**
 * What the session does with a held-back server frame, given as its payload
 * src[start, end) (the 5-byte header just before it): `undefined` forwards it
 * unchanged, a Buffer replaces it (possibly with several messages), null drops it,
 * WRITTEN replaces it with what the handler wrote to `out` during the call, HOLD
 * stops the scan before it: the frame and everything after it wait, unread, until
 * `release()` hands them back to be fed again. `src` may hold other frames around
 * this one: never read outside [start, end).
 */
export type CaptureHandler = (type: number, src: Buffer, start: number, end: number, out: FrameWriter) =>
  Buffer | null | undefined | typeof HOLD | typeof WRITTEN;

/** The smallest buffer a FrameWriter allocates. */
const WRITER_BLOCK = 64 * 1024;
/** Replacements up to this size are copied into the writer rather than forwarded as buffers of their own. */
const COALESCE_MAX = 8 * 1024;
/** Room beyond a captured frame's size that its rewrite may take (masked cells can grow). */
const REWRITE_ROOM = 4 * 1024;

const EMPTY_VIEW = new DataView(EMPTY.buffer, 0, 0);

/**
 * Where capture handlers build replacement frames (rewritten DataRows): one growing
 * buffer, so a chunk's rewritten rows reach the socket as one buffer, not one each.
 * Bytes once handed out are never written again; a handler writes at `pos` after
 * `reserve` and moves `pos` past what it wrote.
 */
export class FrameWriter {
  /** The buffer to write into at `pos`; `reserve` may replace it. */
  buf: Buffer = EMPTY;
  /** A DataView of `buf`, for moving 4 bytes at a time. */
  view: DataView = EMPTY_VIEW;
  /** Where the next byte goes. */
  pos = 0;
  private from = 0; // start of the bytes written and not yet handed out
  private src: Buffer | null = null;
  private srcView: DataView | null = null;

  /** Bytes written and not yet handed out. */
  get pending(): number {
    return this.pos - this.from;
  }

  /** Makes room for `n` more bytes at `pos`; returns `buf`. */
  reserve(n: number): Buffer {
    if (this.buf.length - this.pos < n) {
      // The pending bytes move along: a handler may be halfway through its frame.
      const pending = this.pos - this.from;
      const next = Buffer.allocUnsafe(Math.max(WRITER_BLOCK, 2 * (pending + n)));
      this.buf.copy(next, 0, this.from, this.pos);
      this.use(next);
      this.from = 0;
      this.pos = pending;
    }
    return this.buf;
  }

  /** When `n` more bytes would not fit: hands the pending bytes to `out` and starts afresh, so they are not moved. */
  makeRoom(n: number, out: Buffer[]): void {
    if (this.pos === this.from || this.buf.length - this.pos >= n) return;
    this.flushTo(out);
    this.use(EMPTY);
    this.pos = this.from = 0;
  }

  /** A DataView of `src`, the buffer a handler reads frames from: made once per chunk, not per frame. */
  viewOf(src: Buffer): DataView {
    if (src !== this.src) {
      this.srcView = new DataView(src.buffer, src.byteOffset, src.length);
      this.src = src;
    }
    return this.srcView!;
  }

  /**
   * Between chunks, everything handed out: lets go of the chunk read from, and of a
   * buffer grown for one large frame or too full for the next chunk's rows (which
   * then go out as one buffer, not two).
   */
  settle(): void {
    this.src = this.srcView = null;
    if (this.pos === this.from && (this.buf.length > WRITER_BLOCK || this.buf.length - this.pos < WRITER_BLOCK / 2)) {
      this.use(EMPTY);
      this.pos = this.from = 0;
    }
  }

  /** Appends src[start, end). */
  append(src: Buffer, start = 0, end = src.length): void {
    this.pos += src.copy(this.reserve(end - start), this.pos, start, end);
  }

  /** Hands the pending bytes to `out` as one buffer, except the last `keep`, which stay pending. */
  flushTo(out: Buffer[], keep = 0): void {
    const until = this.pos - keep;
    if (until > this.from) {
      out.push(this.buf.subarray(this.from, until));
      this.from = until;
    }
  }

  private use(buf: Buffer): void {
    this.buf = buf;
    this.view = buf === EMPTY ? EMPTY_VIEW : new DataView(buf.buffer, buf.byteOffset, buf.length);
  }
}

/** Largest server frame dbward will hold back to read (errors, tags, parameters). */
export const MAX_CAPTURED_FRAME = 16 * 1024 * 1024;

/**
 * Scans server bytes frame by frame. Frames whose type is not captured are
 * forwarded as byte ranges of the chunk they came in; captured frames are
 * assembled, handed to `onCapture`, and forwarded (or replaced) whole.
 */
export class BackendScanner {
  private readonly captured = new Uint8Array(256);
  private remaining = 0; // bytes left of a pass-through frame body
  private header = Buffer.alloc(5);
  private headerLen = 0; // bytes of a header split across chunks
  private capBuf: Buffer | null = null;
  private capFilled = 0;
  private held: Buffer[] | null = null;
  private readonly writer = new FrameWriter();

  constructor(captureTypes: string, private readonly onCapture: CaptureHandler) {
    for (const c of captureTypes) this.captured[c.charCodeAt(0)] = 1;
  }

  /** Starts or stops holding back frames of one type (DataRow when masking, for example). */
  setCapture(type: string, on: boolean): void {
    this.captured[type.charCodeAt(0)] = on ? 1 : 0;
  }

  /**
   * Scans a chunk and appends to `out` the buffers to forward, in order. When
   * nothing in the chunk is held back or replaced, `out` gets the chunk itself
   * (one write); replacements written or small are gathered into as few buffers as
   * the runs of unchanged bytes between them allow. Throws PgError on a bad frame.
   */
  feed(chunk: Buffer, out: Buffer[]): void {
    if (this.held) {
      this.held.push(chunk);
      return;
    }
    let pos = 0;
    let segStart = 0; // start of the run of this chunk's bytes not yet pushed
    const n = chunk.length;
    const w = this.writer;
    // Everything before the run goes out first: the writer's pending replacements.
    const flushSeg = (end: number) => {
      w.flushTo(out);
      if (end > segStart) out.push(segStart === 0 && end === n ? chunk : chunk.subarray(segStart, end));
    };
    while (pos < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - pos);
        pos += take;
        this.remaining -= take;
        continue;
      }
      if (this.capBuf) {
        const take = Math.min(this.capBuf.length - this.capFilled, n - pos);
        chunk.copy(this.capBuf, this.capFilled, pos, pos + take);
        this.capFilled += take;
        pos += take;
        segStart = pos;
        if (this.capFilled === this.capBuf.length) {
          const raw = this.capBuf;
          this.capBuf = null;
          if (this.emitCaptured(raw, out)) return this.hold(out, raw, chunk.subarray(pos));
        }
        continue;
      }
      // At a frame boundary: complete the 5-byte header first.
      let type: number;
      let len: number;
      let headerInChunk: boolean;
      if (this.headerLen > 0 || n - pos < 5) {
        if (this.headerLen === 0) flushSeg(pos);
        const take = Math.min(5 - this.headerLen, n - pos);
        chunk.copy(this.header, this.headerLen, pos, pos + take);
        this.headerLen += take;
        pos += take;
        segStart = pos;
        if (this.headerLen < 5) break;
        this.headerLen = 0;
        headerInChunk = false;
        type = this.header[0]!;
        len = this.header.readInt32BE(1);
      } else {
        headerInChunk = true;
        type = chunk[pos]!;
        len = chunk.readInt32BE(pos + 1);
      }
      if (len < 4) throw upstreamViolation(`invalid message length ${len}`);
      if (this.captured[type]) {
        if (len + 1 > MAX_CAPTURED_FRAME) throw upstreamViolation(`server message of ${len} bytes is too large`);
        if (!headerInChunk) {
          this.capBuf = Buffer.allocUnsafe(len + 1);
          this.header.copy(this.capBuf, 0);
          this.capFilled = 5;
          if (len === 4) {
            // No body: the frame is whole now, and may be the last the server sends for a while.
            const raw = this.capBuf;
            this.capBuf = null;
            if (this.emitCaptured(raw, out)) return this.hold(out, raw, chunk.subarray(pos));
          }
          continue;
        }
        if (n - pos < len + 1) {
          flushSeg(pos);
          this.capBuf = Buffer.allocUnsafe(len + 1);
          this.capFilled = 0;
          continue;
        }
        // What is pending precedes this frame and the run before it either way.
        w.makeRoom(len + 1 + REWRITE_ROOM, out);
        const before = w.pending;
        const result = this.onCapture(type, chunk, pos + 5, pos + len + 1, w);
        if (result === HOLD) {
          flushSeg(pos);
          return this.hold(out, chunk.subarray(pos));
        }
        if (result === WRITTEN) {
          if (pos > segStart) {
            // The run before the frame goes out between the earlier replacements and this one.
            w.flushTo(out, w.pending - before);
            out.push(chunk.subarray(segStart, pos));
          }
          segStart = pos + len + 1;
        } else if (result !== undefined) {
          // Replaced or dropped: end the run before it, resume after it.
          if (pos > segStart) flushSeg(pos);
          if (result !== null) this.put(result, out);
          segStart = pos + len + 1;
        }
        pos += len + 1;
        continue;
      }
      if (headerInChunk) {
        pos += 5;
      } else {
        w.flushTo(out);
        out.push(Buffer.from(this.header)); // the held header bytes of a pass-through frame
      }
      this.remaining = len - 4;
    }
    flushSeg(pos);
    w.settle();
  }

  /** True between server messages: bytes of dbward's own (a notice) may be written to the client now. */
  get atBoundary(): boolean {
    return this.remaining === 0 && this.capBuf === null && this.headerLen === 0 && this.held === null;
  }

  /** True while frames wait for `release()`. */
  get holding(): boolean {
    return this.held !== null;
  }

  /** The bytes held since a handler said HOLD, to be fed again in order; the scan resumes. */
  release(): Buffer[] {
    const held = this.held ?? [];
    this.held = null;
    return held;
  }

  private hold(out: Buffer[], ...bufs: Buffer[]): void {
    this.writer.flushTo(out);
    this.writer.settle();
    this.held = bufs.filter((b) => b.length > 0);
  }

  // True when the handler said HOLD (nothing was added to `out`). The writer has
  // nothing pending that belongs after this frame: it was flushed before the frame began.
  private emitCaptured(raw: Buffer, out: Buffer[]): boolean {
    const result = this.onCapture(raw[0]!, raw, 5, raw.length, this.writer);
    if (result === HOLD) return true;
    if (result === undefined) {
      this.writer.flushTo(out);
      out.push(raw);
    } else if (result !== null && result !== WRITTEN) this.put(result, out);
    return false;
  }

  // A replacement buffer: small ones join the writer's pending bytes (one socket write for many).
  private put(result: Buffer, out: Buffer[]): void {
    if (result.length <= COALESCE_MAX) return this.writer.append(result);
    this.writer.flushTo(out);
    if (result.length > 0) out.push(result);
  }
}

function upstreamViolation(message: string): PgError {
  return new PgError('08P01', `upstream protocol violation: ${message}`, 'FATAL');
}

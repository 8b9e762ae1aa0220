// Typed-frame splitting for both directions. Pure: chunks in, frames out, a
// partial frame kept for the next chunk; no socket in here.
//
// FrontendReader (F, client -> dbward) assembles whole frames, because every
// client message is looked at before anything after it is forwarded.
// BackendScanner (B, server -> dbward) forwards bytes as they came and holds back
// only the frames the session must read (small ones: CommandComplete, errors,
// ReadyForQuery...), so result rows pass through without being copied or decoded.

import { PgError, pgErrors } from './errors.js';

/** One whole frontend frame. `raw` includes the 5-byte header; both are views, not copies. */
export interface Frame {
  type: number;
  payload: Buffer;
  raw: Buffer;
}

/** Splits client bytes into whole typed frames, refusing lengths below 4 or above the limit. */
export class FrontendReader {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;

  constructor(private readonly maxBytes: number) {}

  /** Appends a chunk of received bytes. */
  push(chunk: Buffer): void {
    if (this.off >= this.buf.length) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
    }
    this.off = 0;
  }

  /** The next whole frame, or null when more bytes are needed. Throws PgError on a bad length. */
  next(): Frame | null {
    const avail = this.buf.length - this.off;
    if (avail < 5) return null;
    const len = this.buf.readInt32BE(this.off + 1);
    if (len < 4) throw pgErrors.protocolViolation(`invalid message length ${len}`);
    if (len > this.maxBytes) throw pgErrors.messageTooLarge(len, this.maxBytes);
    if (avail < len + 1) return null;
    const start = this.off;
    this.off += len + 1;
    const raw = this.buf.subarray(start, this.off);
    return { type: raw[0]!, payload: raw.subarray(5), raw };
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.buf.length - this.off;
  }

  /** Takes the unread bytes (handed to the session's reader after authentication). */
  drain(): Buffer {
    const rest = this.buf.subarray(this.off);
    this.buf = Buffer.alloc(0);
    this.off = 0;
    return rest;
  }
}

/** Returned by a capture handler that cannot judge a frame yet (masking waits for the catalog). */
export const HOLD = Symbol('hold');

/**
 * What the session does with a held-back server frame: `undefined` forwards it
 * unchanged, a Buffer replaces it (possibly with several messages), null drops it,
 * HOLD stops the scan before it: the frame and everything after it wait, unread,
 * until `release()` hands them back to be fed again.
 */
export type CaptureHandler = (type: number, payload: Buffer, raw: Buffer) => Buffer | null | undefined | typeof HOLD;

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
   * (one write). Throws PgError on a bad frame.
   */
  feed(chunk: Buffer, out: Buffer[]): void {
    if (this.held) {
      this.held.push(chunk);
      return;
    }
    let pos = 0;
    let segStart = 0; // start of the run of this chunk's bytes not yet pushed
    const n = chunk.length;
    const flushSeg = (end: number) => {
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
          if (this.emitCaptured(raw, out)) return this.hold(raw, chunk.subarray(pos));
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
            if (this.emitCaptured(raw, out)) return this.hold(raw, chunk.subarray(pos));
          }
          continue;
        }
        if (n - pos < len + 1) {
          flushSeg(pos);
          this.capBuf = Buffer.allocUnsafe(len + 1);
          this.capFilled = 0;
          continue;
        }
        const result = this.onCapture(type, chunk.subarray(pos + 5, pos + len + 1), chunk.subarray(pos, pos + len + 1));
        if (result === HOLD) {
          flushSeg(pos);
          return this.hold(chunk.subarray(pos));
        }
        if (result !== undefined) {
          // Replaced or dropped: end the run before it, resume after it.
          flushSeg(pos);
          if (result !== null && result.length > 0) out.push(result);
          segStart = pos + len + 1;
        }
        pos += len + 1;
        continue;
      }
      if (headerInChunk) {
        pos += 5;
      } else {
        out.push(Buffer.from(this.header)); // the held header bytes of a pass-through frame
      }
      this.remaining = len - 4;
    }
    flushSeg(pos);
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

  private hold(...bufs: Buffer[]): void {
    this.held = bufs.filter((b) => b.length > 0);
  }

  // True when the handler said HOLD (nothing was added to `out`).
  private emitCaptured(raw: Buffer, out: Buffer[]): boolean {
    const result = this.onCapture(raw[0]!, raw.subarray(5), raw);
    if (result === HOLD) return true;
    if (result === undefined) out.push(raw);
    else if (result !== null && result.length > 0) out.push(result);
    return false;
  }
}

function upstreamViolation(message: string): PgError {
  return new PgError('08P01', `upstream protocol violation: ${message}`, 'FATAL');
}

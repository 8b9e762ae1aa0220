// FrontendReader (client frames assembled whole) and BackendScanner (server bytes
// forwarded as they come, only captured frames held back), fed realistic
// streams split at every boundary and at seeded random points.

import { serialize } from 'pg-protocol';
import { describe, expect, it, vi } from 'vitest';
import {
  BackendScanner, FrameWriter, FrontendReader, HOLD, MAX_CAPTURED_FRAME, RECOPY_MAX, WRITTEN, type Frame,
} from '../../src/proxy/postgres/frames.js';
import {
  clientMessages, commandComplete, dataRow, errorResponse, expectBytes, expectPgError, header, msg,
  prng, randomChunks, readyForQuery, serverStream, splitFrames,
} from './pg-test-encode.js';


function expectFrame(f: Frame | null, bytes: Buffer): void {
  expect(f).not.toBeNull();
  expect(f!.type).toBe(bytes[0]);
  expect(f!.raw).toEqual(bytes);
  expect(f!.payload).toEqual(bytes.subarray(5));
}

function readAll(r: FrontendReader, into: Buffer[]): void {
  for (let f = r.next(); f; f = r.next()) into.push(Buffer.from(f.raw));
}

describe('FrontendReader', () => {
  it.each(clientMessages)('%s: one frame at every split point', (_name, bytes) => {
    for (let i = 1; i < bytes.length; i++) {
      const r = new FrontendReader(1 << 20);
      r.push(Buffer.from(bytes.subarray(0, i)));
      expect(r.next(), `split at ${i}`).toBeNull();
      expect(r.buffered).toBe(i);
      r.push(Buffer.from(bytes.subarray(i)));
      expectFrame(r.next(), bytes);
      expect(r.next()).toBeNull();
      expect(r.buffered).toBe(0);
    }
  });

  const all = Buffer.concat(clientMessages.map((m) => m[1]));
  const expected = clientMessages.map((m) => m[1]);

  it('reads every message from one chunk, in order', () => {
    const r = new FrontendReader(1 << 20);
    r.push(all);
    const got: Buffer[] = [];
    readAll(r, got);
    expect(got).toEqual(expected);
  });

  it('reads every message from the concatenation split at every point', () => {
    for (let i = 1; i < all.length; i++) {
      const r = new FrontendReader(1 << 20);
      const got: Buffer[] = [];
      r.push(Buffer.from(all.subarray(0, i)));
      readAll(r, got);
      r.push(Buffer.from(all.subarray(i)));
      readAll(r, got);
      expect(got, `split at ${i}`).toEqual(expected);
    }
  });

  it('reads every message from seeded random chunkings', () => {
    const rand = prng(1);
    for (let n = 0; n < 200; n++) {
      const r = new FrontendReader(1 << 20);
      const got: Buffer[] = [];
      for (const c of randomChunks(all, 1 + Math.floor(rand() * 60), rand)) {
        r.push(Buffer.from(c));
        readAll(r, got);
      }
      expect(got).toEqual(expected);
    }
  });

  it('raw and payload are views into the pushed chunk, and earlier frames survive later pushes', () => {
    const q = serialize.query('SELECT 1');
    const s = serialize.sync();
    const chunk = Buffer.alloc(q.length + s.length + 4); // not from the shared pool
    Buffer.concat([q, s, q.subarray(0, 4)]).copy(chunk);
    const r = new FrontendReader(1 << 20);
    r.push(chunk);
    const f1 = r.next()!;
    const f2 = r.next()!;
    expect(f1.raw.buffer).toBe(chunk.buffer);
    expect(f1.raw.byteOffset).toBe(chunk.byteOffset);
    expect(f1.payload.byteOffset).toBe(f1.raw.byteOffset + 5);
    expect(f1.payload.toString('utf8')).toBe('SELECT 1\0');
    expect(f2.raw.byteOffset).toBe(chunk.byteOffset + q.length);
    expect(f2.payload.length).toBe(0);
    expect(r.next()).toBeNull();
    r.push(q.subarray(4));
    expectFrame(r.next(), q);
    expectFrame(f1, q);
    expectFrame(f2, s);
  });

  it.each([3, 0, -1])('a declared length of %i is 08P01', (len) => {
    const r = new FrontendReader(1 << 20);
    r.push(header('Q', len));
    expectPgError(() => r.next(), '08P01', `invalid message length ${len}`);
  });

  it('a length of exactly 4 (empty body) is a frame', () => {
    const r = new FrontendReader(1 << 20);
    r.push(header('S', 4));
    expectFrame(r.next(), header('S', 4));
  });

  it('a length above maxBytes is 54000 as soon as the header is in', () => {
    const r = new FrontendReader(1000);
    r.push(Buffer.from('Q'));
    expect(r.next()).toBeNull();
    r.push(header('Q', 1001).subarray(1));
    expectPgError(() => r.next(), '54000', 'message of 1001 bytes exceeds the limit of 1000 bytes');
  });

  it('a length equal to maxBytes waits for its body', () => {
    const r = new FrontendReader(1000);
    const m = msg('d', Buffer.alloc(996, 7));
    r.push(m.subarray(0, 5));
    expect(r.next()).toBeNull();
    r.push(m.subarray(5));
    expectFrame(r.next(), m);
  });

  it('fewer than 5 bytes never throw', () => {
    const r = new FrontendReader(10);
    r.push(Buffer.from([0x51, 0x7f, 0xff, 0xff]));
    expect(r.next()).toBeNull();
  });

  it('reads every message from the concatenation split at every pair of points', () => {
    // Three chunks: a frame is joined from two or three, and a header can arrive in pieces.
    const some = Buffer.concat([clientMessages[0]![1], serialize.sync(), serialize.copyData(Buffer.from('1\tone\n'))]);
    const want = splitFrames(some);
    for (let i = 1; i < some.length; i++) {
      for (let j = i + 1; j < some.length; j++) {
        const r = new FrontendReader(1 << 20);
        const got: Buffer[] = [];
        for (const c of [some.subarray(0, i), some.subarray(i, j), some.subarray(j)]) {
          r.push(Buffer.from(c));
          readAll(r, got);
        }
        expect(got, `split at ${i} and ${j}`).toEqual(want);
        expect(r.buffered).toBe(0);
      }
    }
  });

  it('byte at a time: every message, buffered counts what is unread, copies stay linear', () => {
    const r = new FrontendReader(1 << 20);
    const got: Buffer[] = [];
    let read = 0;
    for (let i = 0; i < all.length; i++) {
      r.push(Buffer.from(all.subarray(i, i + 1)));
      for (let f = r.next(); f; f = r.next()) {
        got.push(Buffer.from(f.raw));
        read += f.raw.length;
      }
      expect(r.buffered).toBe(i + 1 - read);
    }
    expect(got).toEqual(expected);
    expect(r.copied).toBeLessThanOrEqual(2 * all.length);
  });

  it('a 32 MiB frame fed in 64 KiB chunks comes out whole, copied at most twice over', () => {
    const big = msg('d', Buffer.alloc(32 << 20, 'dbward '));
    const q = serialize.query('SELECT 1');
    const stream = Buffer.concat([q, big, serialize.sync(), q]);
    const r = new FrontendReader(64 << 20);
    const got: Buffer[] = [];
    let read = 0;
    for (let at = 0; at < stream.length; at += 64 << 10) {
      const before = r.copied;
      r.push(stream.subarray(at, at + (64 << 10)));
      // No push moves the whole partial frame: the work per chunk stays bounded.
      expect(r.copied - before).toBeLessThanOrEqual(RECOPY_MAX + (128 << 10));
      for (let f = r.next(); f; f = r.next()) {
        got.push(f.raw);
        read += f.raw.length;
      }
      const fed = Math.min(at + (64 << 10), stream.length);
      expect(r.buffered).toBe(fed - read);
      // The large frame is held, never handed out in part.
      if (fed < q.length + big.length) expect(got.length).toBe(1);
    }
    expect(got.length).toBe(4);
    expectBytes(got[1]!, big);
    expect(got.map((f) => f.length)).toEqual([q.length, big.length, 5, q.length]);
    expect(Buffer.concat(got).equals(stream)).toBe(true);
    expect(r.buffered).toBe(0);
    // Re-concatenating per chunk would copy about 512 chunks x 16 MiB on average: 8 GiB.
    expect(r.copied).toBeGreaterThanOrEqual(big.length - (64 << 10));
    expect(r.copied).toBeLessThanOrEqual(2 * big.length);
  });

  it('of a chunk that completes a frame, only the frame is copied; the frames after it are views of the chunk', () => {
    const q = serialize.query('SELECT 1');
    const s = serialize.sync();
    const first = Buffer.alloc(7);
    q.copy(first, 0, 0, 7);
    const second = Buffer.alloc(q.length - 7 + s.length + q.length); // not from the shared pool
    Buffer.concat([q.subarray(7), s, q]).copy(second);
    const r = new FrontendReader(1 << 20);
    r.push(first);
    expect(r.next()).toBeNull();
    r.push(second);
    expect(r.buffered).toBe(q.length + s.length + q.length);
    expectFrame(r.next(), q);
    expect(r.copied).toBe(q.length);
    const f2 = r.next()!;
    const f3 = r.next()!;
    expectFrame(f2, s);
    expectFrame(f3, q);
    expect(f2.raw.buffer).toBe(second.buffer);
    expect(f3.raw.byteOffset).toBe(second.byteOffset + q.length - 7 + s.length);
    expect(r.copied).toBe(q.length);
    expect(r.buffered).toBe(0);
  });

  it('bytes pushed while nothing is read (the session waiting on an audit write) all come out, in order', () => {
    const rand = prng(7);
    const big = msg('d', Buffer.alloc(300_000, 'x'));
    const stream = Buffer.concat([all, big, all, big, all]);
    for (let n = 0; n < 20; n++) {
      const r = new FrontendReader(1 << 20);
      const chunks = randomChunks(stream, 2 + Math.floor(rand() * 40), rand);
      // Read after some pushes only: a frame completed with bytes after it, then more pushed behind it.
      const got: Buffer[] = [];
      let fed = 0;
      for (const c of chunks) {
        r.push(Buffer.from(c));
        fed += c.length;
        expect(r.buffered).toBe(fed - Buffer.concat(got).length);
        if (rand() < 0.3) readAll(r, got);
      }
      readAll(r, got);
      expect(got.map((f) => f.length)).toEqual(splitFrames(stream).map((f) => f.length));
      expectBytes(Buffer.concat(got), stream);
      expect(r.buffered).toBe(0);
      expect(r.copied).toBeLessThanOrEqual(3 * stream.length);
    }
  });

  it('drain hands over every unread byte, including those after a joined frame', () => {
    const q = serialize.query('SELECT 1');
    const tail = Buffer.concat([serialize.sync(), q.subarray(0, 3)]);
    const r = new FrontendReader(1 << 20);
    r.push(Buffer.from(q.subarray(0, 4)));
    r.push(Buffer.concat([q.subarray(4), tail]));
    expect(r.buffered).toBe(q.length + tail.length);
    expect(r.drain()).toEqual(Buffer.concat([q, tail]));
    expect(r.buffered).toBe(0);
    expect(r.next()).toBeNull();
  });

  it('a declared length above maxBytes never sizes the store, even before next() refuses it', () => {
    // The session may be waiting on an audit write, not calling next(), while the bytes come in.
    const r = new FrontendReader(1 << 20);
    const alloc = vi.spyOn(Buffer, 'allocUnsafe');
    try {
      const chunk = Buffer.alloc(64 << 10, 'x');
      r.push(Buffer.concat([header('d', 0x7fffffff), chunk]));
      for (let i = 0; i < 40; i++) r.push(chunk);
      expect(r.buffered).toBe(5 + 41 * chunk.length);
      const largest = Math.max(...alloc.mock.calls.map(([n]) => n));
      expect(largest).toBeLessThanOrEqual(2 * r.buffered);
    } finally {
      alloc.mockRestore();
    }
    expectPgError(() => r.next(), '54000', 'message of 2147483647 bytes exceeds the limit of 1048576 bytes');
  });

  it('a length above maxBytes is 54000 when its header arrives in pieces behind a frame', () => {
    const r = new FrontendReader(1000);
    const q = serialize.query('SELECT 1');
    r.push(Buffer.concat([q, header('d', 1001).subarray(0, 2)]));
    expectFrame(r.next(), q);
    expect(r.next()).toBeNull();
    r.push(header('d', 1001).subarray(2));
    expectPgError(() => r.next(), '54000', 'message of 1001 bytes exceeds the limit of 1000 bytes');
  });
});

// --- BackendScanner -------------------------------------------------------------

const frames = splitFrames(serverStream);

interface Seen { type: string; payload: Buffer; raw: Buffer }

type Result = Buffer | null | undefined | typeof WRITTEN;

function scanner(capture: string, handler?: (type: string, raw: Buffer, out: FrameWriter) => Result) {
  const seen: Seen[] = [];
  const s = new BackendScanner(capture, (type, src, start, end, out) => {
    // The frame's 5-byte header sits just before its payload.
    const raw = src.subarray(start - 5, end);
    expect(raw[0]).toBe(type);
    expect(raw.readInt32BE(1)).toBe(end - start + 4);
    seen.push({ type: String.fromCharCode(type), payload: Buffer.from(src.subarray(start, end)), raw: Buffer.from(raw) });
    return handler?.(String.fromCharCode(type), raw, out);
  });
  return { s, seen };
}

/** Writes `frame` into the writer as a handler does. */
function write(out: FrameWriter, frame: Buffer): typeof WRITTEN {
  frame.copy(out.reserve(frame.length), out.pos);
  out.pos += frame.length;
  return WRITTEN;
}

/** A DataRow with every value upper-cased (an independent stand-in for a masked row). */
function upper(raw: Buffer): Buffer {
  const out = Buffer.from(raw);
  for (let i = 7; i < out.length; i++) if (out[i]! >= 0x61 && out[i]! <= 0x7a) out[i]! -= 0x20;
  return out;
}

/** Feeds the chunks; returns the concatenated output (copying each chunk, so views can't alias). */
function feedAll(s: BackendScanner, chunks: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const c of chunks) s.feed(Buffer.from(c), out);
  return Buffer.concat(out);
}

/**
 * How many stream bytes must have been forwarded once the first `fed` bytes were fed:
 * every whole frame; of a partial frame, nothing if captured or its header is
 * incomplete, else everything received (pass-through bodies are not held back).
 */
function forwardedAfter(capture: string, fed: number): number {
  let start = 0;
  for (const f of frames) {
    const end = start + f.length;
    if (end <= fed) { start = end; continue; }
    const passThrough = !capture.includes(String.fromCharCode(f[0]!));
    return passThrough && fed - start >= 5 ? fed : start;
  }
  return start;
}

function check(capture: string, chunks: Buffer[], label: string): void {
  const { s, seen } = scanner(capture);
  const out: Buffer[] = [];
  let fed = 0;
  for (const c of chunks) {
    s.feed(Buffer.from(c), out);
    fed += c.length;
    // Nothing complete is held back: a frame the server sent last must reach the client now.
    expectBytes(Buffer.concat(out), serverStream.subarray(0, forwardedAfter(capture, fed)), `${label}, after ${fed} bytes`);
  }
  const want = frames.filter((f) => capture.includes(String.fromCharCode(f[0]!)));
  expect(seen.map((x) => x.raw), label).toEqual(want);
  expect(seen.map((x) => x.payload), label).toEqual(want.map((f) => f.subarray(5)));
  expect(seen.map((x) => x.type), label).toEqual(want.map((f) => String.fromCharCode(f[0]!)));
}

describe('BackendScanner: forwarding is byte-exact', () => {
  it.each(['CEZ', 'CEZ12nS', 'D', ''])('capture "%s": every two-way split', (capture) => {
    check(capture, [serverStream], 'whole');
    for (let i = 1; i < serverStream.length; i++) {
      check(capture, [serverStream.subarray(0, i), serverStream.subarray(i)], `split at ${i}`);
    }
  });

  it.each(['CEZ', 'CEZ12nS', 'TDN'])('capture "%s": seeded random splits and byte-at-a-time', (capture) => {
    const rand = prng(capture.length * 7919);
    for (let n = 0; n < 300; n++) {
      check(capture, randomChunks(serverStream, 1 + Math.floor(rand() * 80), rand), `round ${n}`);
    }
    check(capture, randomChunks(serverStream, serverStream.length, rand), 'one byte per chunk');
  });

  it('pass-through bytes of a whole chunk are forwarded as views, not copies', () => {
    const chunk = Buffer.alloc(serverStream.length); // not from the shared pool
    serverStream.copy(chunk);
    const { s } = scanner('CEZ');
    const out: Buffer[] = [];
    s.feed(chunk, out);
    expectBytes(Buffer.concat(out), serverStream);
    let offset = 0;
    for (const b of out) {
      expect(b.buffer).toBe(chunk.buffer);
      expect(b.byteOffset).toBe(offset);
      offset += b.length;
    }
  });

  it('a 1 MB pass-through DataRow split at a few points is forwarded and never captured', () => {
    const big = dataRow([Buffer.alloc(1024 * 1024, 0x61), 'tail']);
    const stream = Buffer.concat([big, commandComplete('SELECT 1'), readyForQuery('I')]);
    for (const cuts of [[1], [3, 5], [6, 500_000], [big.length - 1, big.length + 3], [2, 4, 700_000, big.length]]) {
      const bounds = [0, ...cuts, stream.length];
      const chunks = bounds.slice(1).map((end, k) => stream.subarray(bounds[k], end));
      const { s, seen } = scanner('CZ');
      expectBytes(feedAll(s, chunks), stream, `cuts ${cuts.join(',')}`);
      expect(seen.map((x) => x.type)).toEqual(['C', 'Z']);
      expect(seen[0]!.payload.toString()).toBe('SELECT 1\0');
    }
  });
});

describe('BackendScanner: capture handler results', () => {
  const replacement = errorResponse({ S: 'ERROR', C: '42501', M: 'refused by dbward policy' });
  const replaced = Buffer.concat(frames.map((f) => (f[0] === 0x45 ? replacement : f)));
  const dropped = Buffer.concat(frames.filter((f) => f[0] !== 0x4e));

  it('a returned Buffer replaces exactly that frame, at every split', () => {
    for (let i = 0; i <= serverStream.length; i++) {
      const { s, seen } = scanner('CEZ', (t) => (t === 'E' ? replacement : undefined));
      expectBytes(feedAll(s, [serverStream.subarray(0, i), serverStream.subarray(i)]), replaced, `split at ${i}`);
      expect(seen.filter((x) => x.type === 'E')).toHaveLength(1);
    }
  });

  it('null drops exactly that frame, at every split', () => {
    for (let i = 0; i <= serverStream.length; i++) {
      const { s } = scanner('CEZN', (t) => (t === 'N' ? null : undefined));
      expectBytes(feedAll(s, [serverStream.subarray(0, i), serverStream.subarray(i)]), dropped, `split at ${i}`);
    }
  });

  it('WRITTEN replaces exactly that frame with what the handler wrote, at every split', () => {
    // Rows rewritten in the writer, an error replaced by a returned buffer, a notice dropped, the rest unchanged: in order.
    const want = Buffer.concat(frames.filter((f) => f[0] !== 0x4e).map((f) => (f[0] === 0x44 ? upper(f) : f[0] === 0x45 ? replacement : f)));
    const handler = (t: string, raw: Buffer, out: FrameWriter): Result =>
      t === 'D' ? write(out, upper(raw)) : t === 'E' ? replacement : t === 'N' ? null : undefined;
    for (const capture of ['DEN', 'DENCZ']) {
      for (let i = 0; i <= serverStream.length; i++) {
        const { s } = scanner(capture, handler);
        expectBytes(feedAll(s, [serverStream.subarray(0, i), serverStream.subarray(i)]), want, `capture ${capture}, split at ${i}`);
      }
      const rand = prng(4242);
      for (let n = 0; n < 200; n++) {
        const { s } = scanner(capture, handler);
        expectBytes(feedAll(s, randomChunks(serverStream, 1 + Math.floor(rand() * 60), rand)), want, `capture ${capture}, round ${n}`);
      }
      const { s } = scanner(capture, handler);
      expectBytes(feedAll(s, randomChunks(serverStream, serverStream.length, rand)), want, `capture ${capture}, one byte per chunk`);
    }
  });

  it('a chunk of rewritten rows goes out as one buffer, apart from the writer and the chunk', () => {
    const rows = Array.from({ length: 500 }, (_, i) => dataRow([String(i), `name ${i}`, `user${i}@example.com`]));
    const chunk = Buffer.concat(rows);
    const { s } = scanner('D', (_t, raw, out) => write(out, upper(raw)));
    const out: Buffer[] = [];
    s.feed(chunk, out);
    expect(out).toHaveLength(1);
    expectBytes(out[0]!, Buffer.concat(rows.map(upper)));
    expect(out[0]!.buffer).not.toBe(chunk.buffer);
    // The next chunk's rows never overwrite bytes already handed out.
    const first = Buffer.from(out[0]!);
    s.feed(Buffer.concat(rows.slice(0, 100)), out);
    expect(out).toHaveLength(2);
    expectBytes(out[0]!, first);
  });

  it('a chunk whose rewritten rows outgrow one buffer goes out in a few, in order', () => {
    const rows = Array.from({ length: 4000 }, (_, i) => dataRow([String(i), `user${i}@example.com`]));
    const { s } = scanner('D', (_t, raw, out) => write(out, upper(raw)));
    const out: Buffer[] = [];
    s.feed(Buffer.concat(rows), out);
    expect(out.length).toBeLessThanOrEqual(3);
    expectBytes(Buffer.concat(out), Buffer.concat(rows.map(upper)));
  });

  it('a replacement larger than the writer has room for moves the pending bytes along', () => {
    const small = dataRow(['a']);
    const big = dataRow([Buffer.alloc(200 * 1024, 0x62)]);
    const stream = Buffer.concat([small, small, big, small]);
    const { s } = scanner('D', (_t, raw, out) => write(out, upper(raw)));
    expectBytes(feedAll(s, [stream]), Buffer.concat([upper(small), upper(small), upper(big), upper(small)]));
  });

  it('setCapture starts holding back a type mid-stream', () => {
    const { s, seen } = scanner('Z');
    const out: Buffer[] = [];
    s.feed(Buffer.concat([dataRow(['a']), readyForQuery('I')]), out);
    s.setCapture('D', true);
    s.feed(Buffer.concat([dataRow(['b']), readyForQuery('I')]), out);
    s.setCapture('D', false);
    s.feed(dataRow(['c']), out);
    expect(seen.map((x) => x.raw)).toEqual([readyForQuery('I'), dataRow(['b']), readyForQuery('I')]);
  });
});

describe('FrameWriter', () => {
  it('keeps pending bytes when it grows, hands each byte out once, and lets go of an outgrown buffer', () => {
    const w = new FrameWriter();
    const out: Buffer[] = [];
    w.append(Buffer.from('abc'));
    w.flushTo(out);
    w.append(Buffer.from('xdefx'), 1, 4);
    const first = w.buf;
    w.reserve(300 * 1024);
    expect(w.buf).not.toBe(first);
    expect(w.view.byteLength).toBe(w.buf.length);
    w.append(Buffer.from('ghi'));
    w.flushTo(out, 3);
    expect(out.map(String)).toEqual(['abc', 'def']);
    expect(w.pending).toBe(3);
    w.settle(); // bytes still pending: the buffer stays
    expect(w.buf.length).toBeGreaterThan(300 * 1024);
    w.flushTo(out);
    w.flushTo(out);
    expect(out.map(String)).toEqual(['abc', 'def', 'ghi']);
    w.settle();
    expect(w.buf.length).toBe(0);
    expect(out.map(String)).toEqual(['abc', 'def', 'ghi']);
  });

  it('makeRoom hands out what is pending when a frame would not fit, so nothing is moved', () => {
    const w = new FrameWriter();
    const out: Buffer[] = [];
    w.append(Buffer.from('a')); // a buffer of the usual 64 KiB
    w.append(Buffer.alloc(60 * 1024 - 1, 0x61));
    const full = w.buf;
    expect(full.length).toBe(64 * 1024);
    w.makeRoom(1024, out);
    expect(out).toHaveLength(0);
    w.makeRoom(8 * 1024, out);
    expect(out).toHaveLength(1);
    expect(out[0]!.length).toBe(60 * 1024);
    expect(out[0]!.buffer).toBe(full.buffer);
    expect(w.pending).toBe(0);
    w.append(Buffer.from('b'));
    expect(w.buf).not.toBe(full);
    w.flushTo(out);
    expect(out.map((b) => b.length)).toEqual([60 * 1024, 1]);
  });

  it('viewOf makes one DataView per source buffer, until settle', () => {
    const w = new FrameWriter();
    const a = Buffer.from('0123456789').subarray(2, 8);
    const v = w.viewOf(a);
    expect(w.viewOf(a)).toBe(v);
    expect(v.getUint8(0)).toBe(0x32);
    expect(v.byteLength).toBe(6);
    w.settle();
    expect(w.viewOf(a)).not.toBe(v);
  });
});

describe('BackendScanner: split headers and bad frames', () => {
  it('a captured frame whose header is split across chunks is assembled', () => {
    const cc = commandComplete('UPDATE 7');
    for (const cut of [1, 2, 3, 4]) {
      const { s, seen } = scanner('C');
      const prefix = dataRow(['x']);
      expect(feedAll(s, [Buffer.concat([prefix, cc.subarray(0, cut)]), cc.subarray(cut)])).toEqual(Buffer.concat([prefix, cc]));
      expect(seen).toHaveLength(1);
      expect(seen[0]!.payload.toString()).toBe('UPDATE 7\0');
    }
  });

  // ParseComplete, BindComplete, CloseComplete, NoData, PortalSuspended, EmptyQueryResponse:
  // captured by the tracker, 4-byte length, no body. After Parse+Flush (or Execute with a
  // row limit + Flush) such a frame is the last thing the server sends, so holding it
  // until more bytes arrive stalls the client.
  it('a captured empty frame whose split header ends a chunk is emitted at once', () => {
    for (const type of '123nsI') for (const cut of [1, 2, 3, 4]) {
      const m = msg(type);
      const { s, seen } = scanner('123nsICEZ');
      const out: Buffer[] = [];
      s.feed(Buffer.concat([dataRow(['x']), m.subarray(0, cut)]), out);
      s.feed(m.subarray(cut), out);
      expectBytes(Buffer.concat(out), Buffer.concat([dataRow(['x']), m]), `'${type}' header split at ${cut}`);
      expect(seen.map((x) => x.type), `'${type}' header split at ${cut}`).toEqual([type]);
    }
  });

  it('a pass-through frame whose header is split across three chunks is forwarded', () => {
    const d = dataRow(['hello', 'world']);
    const stream = Buffer.concat([d, readyForQuery('I')]);
    const { s, seen } = scanner('Z');
    expect(feedAll(s, [stream.subarray(0, 2), stream.subarray(2, 4), stream.subarray(4)])).toEqual(stream);
    expect(seen.map((x) => x.type)).toEqual(['Z']);
  });

  it.each(['D', 'C'])('a length below 4 is 08P01 (type %s), also with a split header', (type) => {
    expectPgError(() => scanner('C').s.feed(header(type, 3), []), '08P01', 'upstream protocol violation: invalid message length 3');
    const { s } = scanner('C');
    s.feed(header(type, -5).subarray(0, 2), []);
    expectPgError(() => s.feed(header(type, -5).subarray(2), []), '08P01', /invalid message length -5/);
  });

  it('a captured frame above MAX_CAPTURED_FRAME is refused at its header', () => {
    expectPgError(() => scanner('E').s.feed(header('E', MAX_CAPTURED_FRAME), []), '08P01', /too large/);
    const { s } = scanner('E');
    s.feed(header('E', 0x7fffffff).subarray(0, 3), []);
    expectPgError(() => s.feed(header('E', 0x7fffffff).subarray(3), []), '08P01', /too large/);
  });

  it('the same length on a pass-through type is forwarded without buffering', () => {
    const { s, seen } = scanner('E');
    const out: Buffer[] = [];
    s.feed(Buffer.concat([header('D', MAX_CAPTURED_FRAME), Buffer.alloc(10)]), out);
    expect(Buffer.concat(out).length).toBe(15);
    expect(seen).toHaveLength(0);
  });
});

describe('BackendScanner HOLD (a frame that must wait for the catalog)', () => {
  it('stops before the held frame at every split, keeps later bytes, and resumes in order', () => {
    const stream = Buffer.concat(frames);
    const holdAt = frames.findIndex((f) => f[0] === 'C'.charCodeAt(0));
    expect(holdAt).toBeGreaterThan(0);
    for (let cut = 0; cut <= stream.length; cut++) {
      let held = false;
      const s = new BackendScanner('C', () => {
        if (!held) {
          held = true;
          return HOLD;
        }
        return undefined;
      });
      const out: Buffer[] = [];
      s.feed(Buffer.from(stream.subarray(0, cut)), out);
      s.feed(Buffer.from(stream.subarray(cut)), out);
      const before = frames.slice(0, holdAt).reduce((n, f) => n + f.length, 0);
      expect(Buffer.concat(out).equals(stream.subarray(0, before)), `cut ${cut}`).toBe(true);
      expect(s.holding).toBe(true);
      for (const chunk of s.release()) s.feed(chunk, out);
      expect(s.holding).toBe(false);
      expect(Buffer.concat(out).equals(stream), `cut ${cut}`).toBe(true);
    }
  });

  it('rows rewritten before the held frame go out before it stops, at every split', () => {
    const stream = Buffer.concat(frames);
    const holdAt = frames.findIndex((f) => f[0] === 'C'.charCodeAt(0));
    const rewritten = frames.map((f) => (f[0] === 0x44 ? upper(f) : f));
    for (let cut = 0; cut <= stream.length; cut++) {
      let held = false;
      const s = new BackendScanner('CD', (type, src, start, end, w) => {
        if (type === 0x44) return write(w, upper(src.subarray(start - 5, end)));
        if (held) return undefined;
        held = true;
        return HOLD;
      });
      const out: Buffer[] = [];
      s.feed(Buffer.from(stream.subarray(0, cut)), out);
      s.feed(Buffer.from(stream.subarray(cut)), out);
      expectBytes(Buffer.concat(out), Buffer.concat(rewritten.slice(0, holdAt)), `cut ${cut}`);
      for (const chunk of s.release()) s.feed(chunk, out);
      expectBytes(Buffer.concat(out), Buffer.concat(rewritten), `cut ${cut}`);
    }
  });
});

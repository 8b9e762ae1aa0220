// Shared helpers for the PostgreSQL codec unit tests: a tiny backend-message
// encoder written independently of src/ (so tests don't round-trip our own
// encoders), a seeded PRNG for random chunking, and a PgError assertion.

import { serialize } from 'pg-protocol';
import { expect } from 'vitest';
import { PgError } from '../../src/proxy/postgres/errors.js';

export const cstr = (s: string): Buffer => Buffer.from(s + '\0', 'utf8');

export function i16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
}

export function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** A typed message: type byte, self-inclusive int32 length, body. */
export function msg(type: string, ...parts: (Buffer | string)[]): Buffer {
  const body = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
  return Buffer.concat([Buffer.from(type, 'latin1'), i32(body.length + 4), body]);
}

/** Just a 5-byte header with an arbitrary declared length. */
export function header(type: string, len: number): Buffer {
  return Buffer.concat([Buffer.from(type, 'latin1'), i32(len)]);
}

// --- backend (server -> client) messages ---------------------------------

export function rowDescription(cols: string[]): Buffer {
  const fields = cols.map((name, i) =>
    Buffer.concat([cstr(name), i32(16384 + i), i16(i + 1), i32(25), i16(-1), i32(-1), i16(0)]));
  return msg('T', i16(cols.length), ...fields);
}

export function dataRow(values: (string | Buffer | null)[]): Buffer {
  const cols = values.map((v) => {
    if (v === null) return i32(-1);
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    return Buffer.concat([i32(b.length), b]);
  });
  return msg('D', i16(values.length), ...cols);
}

export const commandComplete = (tag: string): Buffer => msg('C', cstr(tag));
export const readyForQuery = (status: 'I' | 'T' | 'E'): Buffer => msg('Z', status);
export const parameterStatus = (name: string, value: string): Buffer => msg('S', cstr(name), cstr(value));

/** ErrorResponse ('E') or NoticeResponse ('N') from field code -> value. */
export function errorFields(fields: Record<string, string>): Buffer {
  return Buffer.concat([...Object.entries(fields).map(([k, v]) => Buffer.concat([Buffer.from(k), cstr(v)])), Buffer.from([0])]);
}
export const errorResponse = (fields: Record<string, string>): Buffer => msg('E', errorFields(fields));
export const noticeResponse = (fields: Record<string, string>): Buffer => msg('N', errorFields(fields));

/** Splits a stream of typed frames (independent reference parser). */
export function splitFrames(stream: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  let i = 0;
  while (i < stream.length) {
    const len = stream.readInt32BE(i + 1);
    frames.push(stream.subarray(i, i + 1 + len));
    i += 1 + len;
  }
  return frames;
}

// --- randomness and chunking ----------------------------------------------

/** mulberry32: small deterministic PRNG in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cuts `buf` into `pieces` non-empty chunks (fewer if buf is shorter) at random points. */
export function randomChunks(buf: Buffer, pieces: number, rand: () => number): Buffer[] {
  const cuts = new Set<number>();
  const want = Math.min(pieces - 1, buf.length - 1);
  while (cuts.size < want) cuts.add(1 + Math.floor(rand() * (buf.length - 1)));
  const sorted = [0, ...[...cuts].sort((a, b) => a - b), buf.length];
  const out: Buffer[] = [];
  for (let k = 0; k + 1 < sorted.length; k++) out.push(buf.subarray(sorted[k], sorted[k + 1]));
  return out;
}

// --- assertions ------------------------------------------------------------

/** Runs fn, expects a PgError with that SQLSTATE (and message, if given); returns it. */
export function expectPgError(fn: () => unknown, sqlstate: string, message?: string | RegExp): PgError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a PgError to be thrown').toBeInstanceOf(PgError);
  const err = thrown as PgError;
  expect(err.sqlstate).toBe(sqlstate);
  if (typeof message === 'string') expect(err.message).toBe(message);
  else if (message) expect(err.message).toMatch(message);
  return err;
}

/** Byte equality that stays fast on large buffers; shows hex on failure. */
export function expectBytes(got: Buffer, want: Buffer, label?: string): void {
  if (got.equals(want)) return;
  expect(got.length > 4096 ? `${got.length} bytes` : got.toString('hex'), label)
    .toBe(want.length > 4096 ? `${want.length} bytes (different)` : want.toString('hex'));
}

// --- fixtures ---------------------------------------------------------------

/** One of every frontend message, as node-postgres's pg-protocol serializes it. */
export const clientMessages: [string, Buffer][] = [
  ['Query', serialize.query('SELECT * FROM orders WHERE note = \'héllo\'')],
  ['Parse', serialize.parse({ name: 's1', text: 'SELECT $1::int, $2::text', types: [23, 25] })],
  ['Bind', serialize.bind({ portal: 'p1', statement: 's1', values: ['42', Buffer.from([1, 2, 3]), null], binary: true })],
  ['Describe P', serialize.describe({ type: 'P', name: 'p1' })],
  ['Describe S', serialize.describe({ type: 'S' })],
  ['Execute', serialize.execute({ portal: 'p1', rows: 100 })],
  ['Execute unnamed', serialize.execute()],
  ['Close S', serialize.close({ type: 'S', name: 's1' })],
  ['Close P', serialize.close({ type: 'P' })],
  ['Flush', serialize.flush()],
  ['Sync', serialize.sync()],
  ['CopyData', serialize.copyData(Buffer.from('1\tone\n2\ttwo\n'))],
  ['CopyDone', serialize.copyDone()],
  ['CopyFail', serialize.copyFail('client gave up')],
  ['Password', serialize.password('token-abc')],
  ['SASLInitialResponse', serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=abcdef')],
  ['SASLResponse', serialize.sendSCRAMClientFinalMessage('c=biws,r=abcdefXYZ,p=cHJvb2Y=')],
  ['Terminate', serialize.end()],
];

/** A realistic server stream: auth, parameters, a result set, notices, extended-protocol acks, an error. */
export const serverStream = Buffer.concat([
  msg('R', Buffer.from([0, 0, 0, 0])),
  parameterStatus('TimeZone', 'UTC'),
  msg('K', Buffer.from([0, 0, 1, 2, 3, 4, 5, 6])),
  readyForQuery('I'),
  rowDescription(['id', 'name', 'note']),
  dataRow(['1', 'alice', null]),
  dataRow(['2', 'bob', 'x'.repeat(300)]),
  dataRow(['3', '', Buffer.from([0, 0, 0, 0, 0])]),
  commandComplete('SELECT 3'),
  noticeResponse({ S: 'NOTICE', C: '00000', M: 'relation exists, skipping' }),
  msg('1'), msg('2'), msg('n'),
  commandComplete('INSERT 0 1'),
  errorResponse({ S: 'ERROR', V: 'ERROR', C: '22012', M: 'division by zero' }),
  readyForQuery('E'),
  parameterStatus('application_name', 'psql'),
  dataRow([]),
  readyForQuery('I'),
]);

// StartupReader / decodeStartupPacket: the untyped packets a client sends before
// authentication, built with pg-protocol's serializer or by hand, fed in every
// possible split; and every refusal with its exact SQLSTATE and message.

import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE,
  StartupReader, decodeStartupPacket, encodeStartup, type StartupPacket,
} from '../../src/proxy/postgres/startup.js';
import { cstr, expectPgError, i32 } from './pg-test-encode.js';

/** An untyped packet: int32 length (self-inclusive), int32 code, body. */
function packet(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([i32(8 + body.length), i32(code), body]);
}
const version = (major: number, minor: number): number => (major << 16) | minor;
const params = (...kv: string[]): Buffer => Buffer.concat([...kv.map(cstr), Buffer.from([0])]);

const gssenc = packet(GSSENC_REQUEST_CODE);
const cancel = serialize.cancel(4242, 0x5eadbeef);
const startup30 = serialize.startup({ user: 'alice', database: 'orders', application_name: 'psql' });
const startup32 = packet(version(3, 2), params('user', 'bob', 'database', 'db2', '_pq_.some_option', 'x'));

const cases: [string, Buffer, StartupPacket][] = [
  ['SSLRequest', serialize.requestSsl(), { kind: 'ssl' }],
  ['GSSENCRequest', gssenc, { kind: 'gssenc' }],
  ['CancelRequest', cancel, { kind: 'cancel', pid: 4242, secret: i32(0x5eadbeef) }],
  ['StartupMessage 3.0', startup30, {
    kind: 'startup', major: 3, minor: 0,
    params: new Map([['user', 'alice'], ['database', 'orders'], ['application_name', 'psql'], ['client_encoding', 'UTF8']]),
  }],
  ['StartupMessage 3.2', startup32, {
    kind: 'startup', major: 3, minor: 2,
    params: new Map([['user', 'bob'], ['database', 'db2'], ['_pq_.some_option', 'x']]),
  }],
];

describe('StartupReader: whole packets', () => {
  it.each(cases)('%s decodes in one chunk', (_name, bytes, expected) => {
    const r = new StartupReader(10_000);
    r.push(bytes);
    expect(r.next()).toEqual(expected);
    expect(r.next()).toBeNull();
    expect(r.pending).toBe(0);
  });

  it.each(cases)('%s decodes when split at every byte boundary', (_name, bytes, expected) => {
    for (let i = 1; i < bytes.length; i++) {
      const r = new StartupReader(10_000);
      r.push(Buffer.from(bytes.subarray(0, i)));
      expect(r.next(), `split at ${i}`).toBeNull();
      expect(r.pending).toBe(i);
      r.push(Buffer.from(bytes.subarray(i)));
      expect(r.next(), `split at ${i}`).toEqual(expected);
      expect(r.next()).toBeNull();
      expect(r.pending).toBe(0);
    }
  });

  it('decodes several packets from one chunk, and from that chunk split anywhere', () => {
    const all = Buffer.concat(cases.map((c) => c[1]));
    const expected = cases.map((c) => c[2]);
    const drain = (r: StartupReader, into: StartupPacket[]): void => {
      for (let p = r.next(); p; p = r.next()) into.push(p);
    };
    const one = new StartupReader(10_000);
    one.push(all);
    const got: StartupPacket[] = [];
    drain(one, got);
    expect(got).toEqual(expected);
    for (let i = 1; i < all.length; i++) {
      const r = new StartupReader(10_000);
      const seen: StartupPacket[] = [];
      r.push(Buffer.from(all.subarray(0, i)));
      drain(r, seen);
      r.push(Buffer.from(all.subarray(i)));
      drain(r, seen);
      expect(seen, `split at ${i}`).toEqual(expected);
      expect(r.pending).toBe(0);
    }
  });

  it('the protocol codes are the ones PostgreSQL uses', () => {
    expect(serialize.requestSsl().readInt32BE(4)).toBe(SSL_REQUEST_CODE);
    expect(cancel.readInt32BE(4)).toBe(CANCEL_REQUEST_CODE);
    expect(GSSENC_REQUEST_CODE).toBe((1234 << 16) | 5680);
  });

  it('encodeStartup produces the same bytes as pg-protocol', () => {
    expect(encodeStartup({ user: 'alice', database: 'orders', client_encoding: 'UTF8' }))
      .toEqual(serialize.startup({ user: 'alice', database: 'orders' }));
    const p = decodeStartupPacket(encodeStartup({ user: 'u' }, 2));
    expect(p).toEqual({ kind: 'startup', major: 3, minor: 2, params: new Map([['user', 'u']]) });
  });

  it('a 3.2 CancelRequest with a longer secret keeps the whole secret', () => {
    const secret = Buffer.alloc(32, 0xab);
    expect(decodeStartupPacket(packet(CANCEL_REQUEST_CODE, Buffer.concat([i32(7), secret]))))
      .toEqual({ kind: 'cancel', pid: 7, secret });
    const max = Buffer.alloc(256, 1);
    expect(decodeStartupPacket(packet(CANCEL_REQUEST_CODE, Buffer.concat([i32(7), max]))))
      .toMatchObject({ kind: 'cancel', secret: max });
  });

  it('the cancel secret is a copy, not a view of the received chunk', () => {
    const bytes = Buffer.from(cancel);
    const r = new StartupReader(100);
    r.push(bytes);
    const p = r.next();
    bytes.fill(0);
    expect(p).toEqual({ kind: 'cancel', pid: 4242, secret: i32(0x5eadbeef) });
  });
});

describe('StartupReader: pending bytes after SSLRequest', () => {
  it('counts and drains bytes sent after the SSLRequest', () => {
    const extra = serialize.query('SELECT 1');
    const r = new StartupReader(10_000);
    r.push(Buffer.concat([serialize.requestSsl(), extra]));
    expect(r.next()).toEqual({ kind: 'ssl' });
    expect(r.pending).toBe(extra.length);
    expect(r.drain()).toEqual(extra);
    expect(r.pending).toBe(0);
    expect(r.next()).toBeNull();
  });

  it('counts and drains bytes sent after the SSLRequest, split at every point', () => {
    const extra = serialize.query('SELECT 1');
    const bytes = Buffer.concat([serialize.requestSsl(), extra]);
    for (let i = 1; i < bytes.length; i++) {
      const r = new StartupReader(10_000);
      r.push(Buffer.from(bytes.subarray(0, i)));
      if (i >= 8) expect(r.next(), `split at ${i}`).toEqual({ kind: 'ssl' });
      r.push(Buffer.from(bytes.subarray(i)));
      if (i < 8) expect(r.next(), `split at ${i}`).toEqual({ kind: 'ssl' });
      expect(r.pending, `split at ${i}`).toBe(extra.length);
      expect(r.drain()).toEqual(extra);
      expect(r.pending).toBe(0);
    }
  });

  it('pending is 0 after a lone SSLRequest, and counts a partial next packet', () => {
    const r = new StartupReader(10_000);
    r.push(serialize.requestSsl());
    expect(r.next()).toEqual({ kind: 'ssl' });
    expect(r.pending).toBe(0);
    r.push(startup30.subarray(0, 3));
    expect(r.next()).toBeNull();
    expect(r.pending).toBe(3);
  });
});

describe('StartupReader: a packet in many chunks', () => {
  it('a packet at the limit, byte at a time: decoded whole, pending counts each byte, copies stay linear', () => {
    // 8 bytes of length and code, 'user\0alice\0pad\0', the value's NUL and the terminator: 25 bytes around the pad.
    const pad = 'x'.repeat(10_000 - 25);
    const big = packet(version(3, 0), params('user', 'alice', 'pad', pad));
    expect(big.length).toBe(10_000);
    const r = new StartupReader(10_000);
    for (let i = 0; i < big.length - 1; i++) {
      r.push(Buffer.from(big.subarray(i, i + 1)));
      expect(r.next()).toBeNull();
      expect(r.pending).toBe(i + 1);
    }
    r.push(Buffer.concat([big.subarray(-1), startup30]));
    expect(r.next()).toEqual({ kind: 'startup', major: 3, minor: 0, params: new Map([['user', 'alice'], ['pad', pad]]) });
    expect(r.pending).toBe(startup30.length);
    expect(r.next()).toEqual(cases[3]![2]);
    expect(r.pending).toBe(0);
    // Re-concatenating per byte would copy 50 MB.
    expect(r.copied).toBeLessThanOrEqual(2 * big.length);
  });
});

describe('StartupReader: refusals', () => {
  it.each([7, 4, 0, -1, -2147483648])('declared length %i < 8 is 08P01', (len) => {
    const r = new StartupReader(10_000);
    r.push(i32(len));
    expectPgError(() => r.next(), '08P01', `invalid length of startup packet: ${len}`);
  });

  it('a declared length above the limit is 54000, before the body arrives', () => {
    const r = new StartupReader(10_000);
    r.push(i32(10_001));
    const err = expectPgError(() => r.next(), '54000', 'message of 10001 bytes exceeds the limit of 10000 bytes');
    expect(err.severity).toBe('FATAL');
  });

  it('a declared length equal to the limit is accepted (waits for the body)', () => {
    const r = new StartupReader(10_000);
    r.push(i32(10_000));
    expect(r.next()).toBeNull();
  });

  it('fewer than 4 bytes never throw', () => {
    const r = new StartupReader(10_000);
    r.push(Buffer.from([0xff, 0xff, 0xff]));
    expect(r.next()).toBeNull();
  });

  const bad: [string, Buffer, string, string][] = [
    ['no terminator after the last value', packet(version(3, 0), Buffer.concat([cstr('user'), cstr('alice')])),
      '08P01', 'startup packet is not terminated'],
    ['an empty body', packet(version(3, 0)), '08P01', 'startup packet is not terminated'],
    ['an unterminated value', packet(version(3, 0), Buffer.concat([cstr('user'), Buffer.from('alice')])),
      '08P01', 'startup parameter value is not terminated'],
    ['an unterminated name', packet(version(3, 0), Buffer.concat([cstr('user'), cstr('a'), Buffer.from('database')])),
      '08P01', 'startup parameter name is not terminated'],
    ['a duplicate parameter', packet(version(3, 0), params('user', 'a', 'database', 'd', 'user', 'b')),
      '08P01', 'startup parameter "user" given twice'],
    ['no user', packet(version(3, 0), params('database', 'orders')),
      '28000', 'no PostgreSQL user name specified in startup packet'],
    ['an empty user', packet(version(3, 0), params('user', '', 'database', 'orders')),
      '28000', 'no PostgreSQL user name specified in startup packet'],
    ['protocol 2.0', packet(version(2, 0), params('user', 'a')),
      '0A000', 'unsupported frontend protocol 2.0: dbward supports 3.0'],
    ['protocol 4.1', packet(version(4, 1), params('user', 'a')),
      '0A000', 'unsupported frontend protocol 4.1: dbward supports 3.0'],
    ['bytes after the terminator', packet(version(3, 0), Buffer.concat([params('user', 'a'), Buffer.from('xyz\0')])),
      '08P01', 'bytes after the end of the startup packet'],
    ['an 12-byte SSLRequest', packet(SSL_REQUEST_CODE, i32(0)), '08P01', 'invalid length of startup packet'],
    ['an 12-byte GSSENCRequest', packet(GSSENC_REQUEST_CODE, i32(0)), '08P01', 'invalid length of startup packet'],
    ['a 12-byte CancelRequest', packet(CANCEL_REQUEST_CODE, i32(1)), '08P01', 'invalid length of cancel request'],
    ['a CancelRequest with a 257-byte secret', packet(CANCEL_REQUEST_CODE, Buffer.concat([i32(1), Buffer.alloc(257)])),
      '08P01', 'invalid length of cancel request'],
  ];

  it.each(bad)('%s is refused', (_name, bytes, sqlstate, message) => {
    const r = new StartupReader(10_000);
    r.push(bytes);
    const err = expectPgError(() => r.next(), sqlstate, message);
    expect(err.severity).toBe('FATAL');
    expectPgError(() => decodeStartupPacket(bytes), sqlstate, message);
  });
});

// Frontend message decoders on messages serialized by pg-protocol (and a
// hand-built FunctionCall); every truncation, trailing byte and negative count
// must be an 08P01 PgError, never a RangeError or a silently wrong value.

import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import {
  F, decodeBind, decodeDescribeOrClose, showBindParams, decodeExecute, decodeFunctionCall, decodeParse, decodePassword, decodeQuery,
} from '../../src/proxy/postgres/frontend.js';
import { cstr, expectPgError, i16, i32 } from './pg-test-encode.js';

/** Payload of a serialized message, after checking its type byte and length. */
function payloadOf(bytes: Buffer, type: number): Buffer {
  expect(bytes[0]).toBe(type);
  expect(bytes.readInt32BE(1)).toBe(bytes.length - 1);
  return Buffer.from(bytes.subarray(5));
}

function functionCall(oid: number, formats: number[], args: (Buffer | null)[], resultFormat: number): Buffer {
  return Buffer.concat([
    i32(oid | 0), i16(formats.length), ...formats.map(i16), i16(args.length),
    ...args.map((a) => (a === null ? i32(-1) : Buffer.concat([i32(a.length), a]))), i16(resultFormat),
  ]);
}

const query = payloadOf(serialize.query('SELECT \'ünïcode\', 1; SELECT 2'), F.Query);
const parse = payloadOf(serialize.parse({ name: 'stmt_1', text: 'SELECT $1::int4, $2::text, $3::jsonb', types: [23, 25, 3802] }), F.Parse);
const bind = payloadOf(serialize.bind({
  portal: 'portal_1', statement: 'stmt_1', values: ['42', Buffer.from([0xde, 0xad, 0xbe, 0xef]), null, ''], binary: true,
}), F.Bind);
const execute = payloadOf(serialize.execute({ portal: 'portal_1', rows: 250 }), F.Execute);
const fcall = functionCall(0xfffffff0, [1, 0], [Buffer.from([0, 0, 0, 7]), null, Buffer.alloc(0)], 1);

describe('decoders on pg-protocol messages', () => {
  it('Query', () => {
    expect(decodeQuery(query)).toBe('SELECT \'ünïcode\', 1; SELECT 2');
    expect(decodeQuery(payloadOf(serialize.query(''), F.Query))).toBe('');
  });

  it('Parse with parameter types', () => {
    expect(decodeParse(parse)).toEqual({ name: 'stmt_1', sql: 'SELECT $1::int4, $2::text, $3::jsonb', paramTypes: [23, 25, 3802] });
    expect(decodeParse(payloadOf(serialize.parse({ text: 'SELECT 1' }), F.Parse)))
      .toEqual({ name: '', sql: 'SELECT 1', paramTypes: [] });
  });

  it('Parse reads OIDs as unsigned', () => {
    const p = Buffer.concat([cstr(''), cstr('SELECT $1'), i16(1), i32(-294967296)]);
    expect(decodeParse(p).paramTypes).toEqual([4000000000]);
  });

  it('Bind with text, binary, null and empty parameters', () => {
    expect(decodeBind(bind)).toMatchObject({ portal: 'portal_1', statement: 'stmt_1' });
    expect(decodeBind(payloadOf(serialize.bind(), F.Bind))).toMatchObject({ portal: '', statement: '' });
  });

  it('Bind keeps the parameters as sent, and shows them for people to read', () => {
    const text = decodeBind(payloadOf(serialize.bind({ values: ['42', null, '', 'x'.repeat(300)] }), F.Bind));
    expect(showBindParams(text.params)).toEqual(['42', null, '', `${'x'.repeat(200)}…`]);
    const binary = decodeBind(payloadOf(serialize.bind({ values: [Buffer.from([0, 1, 0xff])], binary: true }), F.Bind));
    expect(showBindParams(binary.params)).toEqual(['\\x0001ff']);
    // Per-parameter format codes: text, then binary.
    const mixed = Buffer.concat([cstr(''), cstr(''), i16(2), i16(0), i16(1), i16(2), i32(1), Buffer.from('7'), i32(1), Buffer.from([9]), i16(0)]);
    expect(showBindParams(decodeBind(mixed).params)).toEqual(['7', '\\x09']);
    expect(showBindParams(decodeBind(payloadOf(serialize.bind(), F.Bind)).params)).toEqual([]);
  });

  it('Execute with a row limit, and unnamed without one', () => {
    expect(decodeExecute(execute)).toEqual({ portal: 'portal_1', maxRows: 250 });
    expect(decodeExecute(payloadOf(serialize.execute(), F.Execute))).toEqual({ portal: '', maxRows: 0 });
  });

  it.each([
    ['Describe', 'S', 'stmt_1'], ['Describe', 'P', 'portal_1'], ['Describe', 'S', ''], ['Describe', 'P', ''],
    ['Close', 'S', 'stmt_1'], ['Close', 'P', 'portal_1'], ['Close', 'S', ''], ['Close', 'P', ''],
  ] as const)('%s %s "%s"', (what, kind, name) => {
    const bytes = what === 'Describe' ? serialize.describe({ type: kind, name }) : serialize.close({ type: kind, name });
    const payload = payloadOf(bytes, what === 'Describe' ? F.Describe : F.Close);
    expect(decodeDescribeOrClose(payload, what)).toEqual({ kind, name });
  });

  it('FunctionCall built by hand', () => {
    expect(decodeFunctionCall(fcall)).toEqual({ oid: 0xfffffff0, argCount: 3 });
    expect(decodeFunctionCall(functionCall(1598, [], [], 0))).toEqual({ oid: 1598, argCount: 0 });
  });

  it('PasswordMessage', () => {
    expect(decodePassword(payloadOf(serialize.password('eyJhbGciOi.token'), F.Password))).toBe('eyJhbGciOi.token');
  });
});

type Decoder = (p: Buffer) => unknown;
const valid: [string, Decoder, Buffer][] = [
  ['Query', decodeQuery, query],
  ['Parse', decodeParse, parse],
  ['Bind', decodeBind, bind],
  ['Execute', decodeExecute, execute],
  ['Describe', (p) => decodeDescribeOrClose(p, 'Describe'), payloadOf(serialize.describe({ type: 'P', name: 'p1' }), F.Describe)],
  ['Close', (p) => decodeDescribeOrClose(p, 'Close'), payloadOf(serialize.close({ type: 'S', name: 's1' }), F.Close)],
  ['FunctionCall', decodeFunctionCall, fcall],
  ['PasswordMessage', decodePassword, payloadOf(serialize.password('pw'), F.Password)],
];

describe('malformed payloads are 08P01', () => {
  it.each(valid)('%s: every truncation', (what, decode, payload) => {
    for (let n = 0; n < payload.length; n++) {
      const err = expectPgError(() => decode(Buffer.from(payload.subarray(0, n))), '08P01');
      expect(err.message, `truncated to ${n}`).toMatch(new RegExp(`^${what}: `));
      expect(err.severity).toBe('FATAL');
    }
  });

  it.each(valid)('%s: a trailing byte', (what, decode, payload) => {
    expect(() => decode(payload)).not.toThrow();
    for (const extra of [Buffer.from([0]), Buffer.from('x'), Buffer.alloc(9, 1)]) {
      expectPgError(() => decode(Buffer.concat([payload, extra])), '08P01', `${what}: unexpected trailing bytes`);
    }
  });

  const negative: [string, Decoder, Buffer, string][] = [
    ['Parse parameter count', decodeParse, Buffer.concat([cstr(''), cstr('SELECT 1'), i16(-1)]),
      'Parse: negative parameter count'],
    ['Bind format count', decodeBind, Buffer.concat([cstr(''), cstr(''), i16(-1), i16(0), i16(0)]),
      'Bind: negative format count'],
    ['Bind parameter count', decodeBind, Buffer.concat([cstr(''), cstr(''), i16(0), i16(-2), i16(0)]),
      'Bind: negative parameter count'],
    ['Bind result format count', decodeBind, Buffer.concat([cstr(''), cstr(''), i16(0), i16(0), i16(-1)]),
      'Bind: negative result format count'],
    ['Bind parameter length', decodeBind, Buffer.concat([cstr(''), cstr(''), i16(0), i16(1), i32(-2), i16(0)]),
      'Bind: invalid parameter length'],
    ['FunctionCall format count', decodeFunctionCall, Buffer.concat([i32(1), i16(-1), i16(0), i16(0)]),
      'FunctionCall: negative format count'],
    ['FunctionCall argument count', decodeFunctionCall, Buffer.concat([i32(1), i16(0), i16(-32768), i16(0)]),
      'FunctionCall: negative argument count'],
    ['FunctionCall argument length', decodeFunctionCall, Buffer.concat([i32(1), i16(0), i16(1), i32(-100), i16(0)]),
      'FunctionCall: invalid argument length'],
  ];

  it.each(negative)('negative %s', (_name, decode, payload, message) => {
    expectPgError(() => decode(payload), '08P01', message);
  });

  it('counts larger than the payload are truncation, not over-reads', () => {
    expectPgError(() => decodeBind(Buffer.concat([cstr(''), cstr(''), i16(0), i16(0x7fff), i32(1), Buffer.from('a')])),
      '08P01', 'Bind: message is truncated');
    expectPgError(() => decodeBind(Buffer.concat([cstr(''), cstr(''), i16(0), i16(1), i32(0x7fffffff), i16(0)])),
      '08P01', 'Bind: message is truncated');
    expectPgError(() => decodeParse(Buffer.concat([cstr(''), cstr('x'), i16(3), i32(23)])), '08P01', 'Parse: message is truncated');
    expectPgError(() => decodeFunctionCall(Buffer.concat([i32(1), i16(100), i16(0)])), '08P01', 'FunctionCall: message is truncated');
  });

  it('a Describe/Close target other than S or P is refused', () => {
    expectPgError(() => decodeDescribeOrClose(Buffer.from('Xname\0'), 'Describe'), '08P01', 'Describe: invalid target type');
    expectPgError(() => decodeDescribeOrClose(Buffer.from('s\0'), 'Close'), '08P01', 'Close: invalid target type');
  });

  it('an unterminated string says so', () => {
    expectPgError(() => decodeQuery(Buffer.from('SELECT 1')), '08P01', 'Query: unterminated string');
    expectPgError(() => decodeExecute(Buffer.from('portal')), '08P01', 'Execute: unterminated string');
  });
});

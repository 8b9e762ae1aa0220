//! Frontend (F) messages: client -> server, after startup.
// Decoders for the fields the session reads. Each checks bounds and throws an
// 08P01 PgError on a malformed payload; nothing is trusted from the client.

import { pgErrors } from './errors.js';

/** Frontend message type bytes. ('D' here is Describe; from the server it is DataRow.) */
export const F = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Describe: 0x44, // D
  Execute: 0x45, // E
  Sync: 0x53, // S
  Flush: 0x48, // H
  Close: 0x43, // C
  FunctionCall: 0x46, // F
  Terminate: 0x58, // X
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Password: 0x70, // p (also SASLInitialResponse / SASLResponse)
} as const;

/** Reads text from bytes[start, end) in the session's client encoding. */
export type TextReader = (bytes: Buffer, start: number, end: number) => string;

const UTF8: TextReader = (b, start, end) => b.toString('utf8', start, end);

/** A cursor over a payload that fails closed on any overrun. */
class Cursor {
  private i = 0;
  constructor(private readonly b: Buffer, private readonly what: string) {}

  cstring(read: TextReader = UTF8): string {
    const end = this.b.indexOf(0, this.i);
    if (end < 0) throw pgErrors.protocolViolation(`${this.what}: unterminated string`);
    const s = read(this.b, this.i, end);
    this.i = end + 1;
    return s;
  }

  int16(): number {
    this.need(2);
    const v = this.b.readInt16BE(this.i);
    this.i += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.b.readInt32BE(this.i);
    this.i += 4;
    return v;
  }

  byte(): number {
    this.need(1);
    return this.b[this.i++]!;
  }

  /** A count-prefixed list of int16 format codes, skipped. */
  formatCodes(what: string): void {
    const n = this.int16();
    if (n < 0) throw pgErrors.protocolViolation(`${this.what}: negative ${what} count`);
    this.skip(2 * n);
  }

  /** A count-prefixed list of length-prefixed values (-1 = NULL), skipped; returns the count. */
  values(what: string): number {
    const n = this.int16();
    if (n < 0) throw pgErrors.protocolViolation(`${this.what}: negative ${what} count`);
    for (let i = 0; i < n; i++) {
      const len = this.int32();
      if (len > 0) this.skip(len);
      else if (len < -1) throw pgErrors.protocolViolation(`${this.what}: invalid ${what} length`);
    }
    return n;
  }

  skip(n: number): void {
    this.need(n);
    this.i += n;
  }

  /** Where the next read starts. */
  get pos(): number {
    return this.i;
  }

  end(): void {
    if (this.i !== this.b.length) throw pgErrors.protocolViolation(`${this.what}: unexpected trailing bytes`);
  }

  private need(n: number): void {
    if (n < 0 || this.i + n > this.b.length) throw pgErrors.protocolViolation(`${this.what}: message is truncated`);
  }
}

/** Query: the SQL text of a simple-protocol query, read by `read` (default UTF-8). */
export function decodeQuery(payload: Buffer, read?: TextReader): string {
  const c = new Cursor(payload, 'Query');
  const sql = c.cstring(read);
  c.end();
  return sql;
}

export interface ParseMessage {
  name: string;
  sql: string;
  paramTypes: number[];
}

/** Parse: prepared statement name, SQL text (read by `read`, default UTF-8), parameter type OIDs. */
export function decodeParse(payload: Buffer, read?: TextReader): ParseMessage {
  const c = new Cursor(payload, 'Parse');
  const name = c.cstring();
  const sql = c.cstring(read);
  const n = c.int16();
  if (n < 0) throw pgErrors.protocolViolation('Parse: negative parameter count');
  const paramTypes: number[] = [];
  for (let i = 0; i < n; i++) paramTypes.push(c.int32() >>> 0);
  c.end();
  return { name, sql, paramTypes };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** The parameter format codes and values as sent (a view into the payload): what the portal runs with. */
  params: Buffer;
}

/** Bind: portal and statement names; parameter values are validated for shape, not decoded. */
export function decodeBind(payload: Buffer): BindMessage {
  const c = new Cursor(payload, 'Bind');
  const portal = c.cstring();
  const statement = c.cstring();
  const from = c.pos;
  c.formatCodes('format');
  c.values('parameter');
  const params = payload.subarray(from, c.pos);
  c.formatCodes('result format');
  c.end();
  return { portal, statement, params };
}

/** A parameter value for people to read: text-format values as text, binary ones as `\x` hex; both cut at `max` characters. */
export type ShownParam = string | null;

/** The values of a Bind's `params` (as decodeBind returns them, so already checked for shape), for people to read. */
export function showBindParams(params: Buffer, max = 200): ShownParam[] {
  const c = new Cursor(params, 'Bind');
  const formats = Array.from({ length: c.int16() }, () => c.int16());
  const n = c.int16();
  const out: ShownParam[] = [];
  for (let i = 0; i < n; i++) {
    const len = c.int32();
    if (len < 0) {
      out.push(null);
      continue;
    }
    // One format code applies to every parameter; none means text.
    const binary = (formats.length === 1 ? formats[0] : formats[i]) === 1;
    const v = params.subarray(c.pos, c.pos + len);
    c.skip(len);
    const shown = binary ? `\\x${v.subarray(0, max).toString('hex')}` : v.toString('utf8', 0, Math.min(len, max * 4));
    out.push(shown.length > max ? `${shown.slice(0, max)}…` : shown);
  }
  return out;
}

export interface TargetedMessage {
  kind: 'S' | 'P';
  name: string;
}

/** Describe or Close: 'S' statement or 'P' portal, and its name. */
export function decodeDescribeOrClose(payload: Buffer, what: 'Describe' | 'Close'): TargetedMessage {
  const c = new Cursor(payload, what);
  const k = c.byte();
  if (k !== 0x53 && k !== 0x50) throw pgErrors.protocolViolation(`${what}: invalid target type`);
  const name = c.cstring();
  c.end();
  return { kind: k === 0x53 ? 'S' : 'P', name };
}

export interface ExecuteMessage {
  portal: string;
  maxRows: number;
}

/** Execute: portal name and row limit (0 = all). */
export function decodeExecute(payload: Buffer): ExecuteMessage {
  const c = new Cursor(payload, 'Execute');
  const portal = c.cstring();
  const maxRows = c.int32();
  c.end();
  return { portal, maxRows };
}

/** FunctionCall: the OID of the function the client asks the server to run. */
export function decodeFunctionCall(payload: Buffer): { oid: number; argCount: number } {
  const c = new Cursor(payload, 'FunctionCall');
  const oid = c.int32() >>> 0;
  c.formatCodes('format');
  const argCount = c.values('argument');
  c.int16(); // result format
  c.end();
  return { oid, argCount };
}

/** PasswordMessage: a NUL-terminated password (for dbward, the OIDC access token). */
export function decodePassword(payload: Buffer): string {
  const c = new Cursor(payload, 'PasswordMessage');
  const pw = c.cstring();
  c.end();
  return pw;
}

//! Backend (B) messages: server -> client.
// Encoders for the messages dbward itself speaks to clients, and decoders for the
// few server messages the session must read (CommandComplete, ErrorResponse,
// ReadyForQuery, BackendKeyData). Pure: bytes in, values out.

import type { PgError } from './errors.js';

/** Frames a backend message: type byte, int32 length (self-inclusive), payload. */
export function frame(type: string, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + payload.length, 1);
  payload.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

/** ErrorResponse ('E') or NoticeResponse ('N') for a PgError. */
export function errorResponse(err: PgError, type: 'E' | 'N' = 'E'): Buffer {
  const parts: Buffer[] = [
    Buffer.from('S'), cstr(err.severity),
    Buffer.from('V'), cstr(err.severity),
    Buffer.from('C'), cstr(err.sqlstate),
    Buffer.from('M'), cstr(err.message),
  ];
  if (err.detail) parts.push(Buffer.from('D'), cstr(err.detail));
  if (err.hint) parts.push(Buffer.from('H'), cstr(err.hint));
  if (err.position !== undefined) parts.push(Buffer.from('P'), cstr(String(err.position)));
  parts.push(Buffer.from([0]));
  return frame(type, Buffer.concat(parts));
}

/** AuthenticationCleartextPassword: asks the client for its password (for dbward, the OIDC access token). */
export function authenticationCleartextPassword(): Buffer {
  return frame('R', int32(3));
}

/** AuthenticationOk. */
export function authenticationOk(): Buffer {
  return frame('R', int32(0));
}

/** ParameterStatus (name, value). */
export function parameterStatus(name: string, value: string): Buffer {
  return frame('S', Buffer.concat([cstr(name), cstr(value)]));
}

/** BackendKeyData: the cancel key the client will present in a CancelRequest. */
export function backendKeyData(pid: number, secret: number): Buffer {
  return frame('K', Buffer.concat([int32(pid), int32(secret)]));
}

/** ReadyForQuery with transaction status I, T or E. */
export function readyForQuery(status: TxStatus): Buffer {
  return frame('Z', Buffer.from(status, 'latin1'));
}

/** NegotiateProtocolVersion: the newest minor we support and the options we ignored. */
export function negotiateProtocolVersion(minor: number, unsupported: string[]): Buffer {
  return frame('v', Buffer.concat([int32(minor), int32(unsupported.length), ...unsupported.map(cstr)]));
}

export type TxStatus = 'I' | 'T' | 'E';

/** Fields of an ErrorResponse/NoticeResponse payload, keyed by field code. */
export function decodeErrorFields(payload: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let i = 0;
  while (i < payload.length && payload[i] !== 0) {
    const code = String.fromCharCode(payload[i]!);
    const end = payload.indexOf(0, i + 1);
    if (end < 0) break;
    fields.set(code, payload.toString('utf8', i + 1, end));
    i = end + 1;
  }
  return fields;
}

/** The command tag of a CommandComplete payload ("SELECT 3", "INSERT 0 1"). */
export function decodeCommandTag(payload: Buffer): string {
  const end = payload.indexOf(0);
  return payload.toString('utf8', 0, end < 0 ? payload.length : end);
}

/** Rows returned or affected, from a command tag; null for tags without a count. */
export function rowsFromTag(tag: string): number | null {
  const sp = tag.lastIndexOf(' ');
  if (sp < 0) return null;
  const n = Number(tag.slice(sp + 1));
  return Number.isInteger(n) ? n : null;
}

/** The transaction status of a ReadyForQuery payload. */
export function decodeTxStatus(payload: Buffer): TxStatus {
  const c = String.fromCharCode(payload[0] ?? 73);
  return c === 'T' || c === 'E' ? c : 'I';
}

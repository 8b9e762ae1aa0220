//! Startup-phase (F) packets: client -> server before authentication.
// Untyped frames (int32 length, int32 code). The first packet of a connection is
// one of SSLRequest, GSSENCRequest, CancelRequest or StartupMessage.

import { PgError, pgErrors } from './errors.js';
import { FrameAssembler } from './frames.js';

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_3 = 3;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: Buffer }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> };

/** Splits startup-phase bytes into whole packets; keeps a partial packet for the next chunk. */
export class StartupReader extends FrameAssembler {
  constructor(maxBytes: number) {
    super(0, maxBytes);
  }

  /** The next whole packet, or null. Throws PgError on a bad length. */
  next(): StartupPacket | null {
    const avail = this.buf.length - this.off;
    if (avail < 4) return null;
    const len = this.buf.readInt32BE(this.off);
    if (len < 8) throw pgErrors.protocolViolation(`invalid length of startup packet: ${len}`);
    if (len > this.maxBytes) throw pgErrors.messageTooLarge(len, this.maxBytes);
    if (avail < len) return null;
    return decodeStartupPacket(this.take(len));
  }

  /** Bytes received past the last whole packet (must be none after SSLRequest). */
  get pending(): number {
    return this.buffered;
  }
}

/** Decodes one whole startup-phase packet (length prefix included). */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE) return expectLength(packet, 8, { kind: 'ssl' });
  if (code === GSSENC_REQUEST_CODE) return expectLength(packet, 8, { kind: 'gssenc' });
  if (code === CANCEL_REQUEST_CODE) {
    // Protocol 3.2 allows secrets up to 256 bytes; dbward issues 4-byte ones.
    if (packet.length < 16 || packet.length > 12 + 256) {
      throw pgErrors.protocolViolation('invalid length of cancel request');
    }
    return { kind: 'cancel', pid: packet.readInt32BE(8), secret: Buffer.from(packet.subarray(12)) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== PROTOCOL_3) {
    throw new PgError('0A000', `unsupported frontend protocol ${major}.${minor}: dbward supports 3.0`, 'FATAL');
  }
  return { kind: 'startup', major, minor, params: decodeParams(packet.subarray(8)) };
}

function expectLength<T>(packet: Buffer, len: number, value: T): T {
  if (packet.length !== len) throw pgErrors.protocolViolation('invalid length of startup packet');
  return value;
}

function decodeParams(body: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let i = 0;
  for (;;) {
    if (i >= body.length) throw pgErrors.protocolViolation('startup packet is not terminated');
    if (body[i] === 0) {
      if (i !== body.length - 1) throw pgErrors.protocolViolation('bytes after the end of the startup packet');
      break;
    }
    const nameEnd = body.indexOf(0, i);
    if (nameEnd < 0) throw pgErrors.protocolViolation('startup parameter name is not terminated');
    const valueEnd = body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) throw pgErrors.protocolViolation('startup parameter value is not terminated');
    const name = body.toString('utf8', i, nameEnd);
    if (params.has(name)) throw pgErrors.protocolViolation(`startup parameter "${name}" given twice`);
    params.set(name, body.toString('utf8', nameEnd + 1, valueEnd));
    i = valueEnd + 1;
  }
  if (!params.get('user')) {
    throw new PgError('28000', 'no PostgreSQL user name specified in startup packet', 'FATAL');
  }
  return params;
}

/** Encodes a StartupMessage with exactly these parameters and any 3.x minor (pg-protocol's serializer fixes 3.0 and adds client_encoding). */
export function encodeStartup(params: Record<string, string>, minor = 0): Buffer {
  const body = Buffer.concat([
    ...Object.entries(params).flatMap(([k, v]) => [Buffer.from(k + '\0'), Buffer.from(v + '\0')]),
    Buffer.from([0]),
  ]);
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE((PROTOCOL_3 << 16) | minor, 4);
  body.copy(out, 8);
  return out;
}

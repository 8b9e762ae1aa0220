// The keyed hash chain that makes the audit trail tamper-evident. Each written
// line ends with `"chain":{"seq":N,"prev":"<mac of line N-1>","mac":"<mac>"}`,
// where mac = HMAC-SHA256(key, "N\nprev\n" + the line as it was before sealing).
// Changing a line breaks its mac; removing, inserting or reordering lines breaks
// the seq/prev links; only the key holder can re-seal. Carrying `prev` in every
// line lets a verifier start at any file of a rotated set.

import { createHmac } from 'node:crypto';

/** The `prev` of the first event of a chain. */
export const GENESIS = '0'.repeat(64);

/** The latest sealed event of a chain: what the next one links to. */
export interface ChainHead {
  seq: number;
  mac: string;
}

/** A sealed line taken apart. */
export interface Sealed {
  /** The line as it was before sealing (the bytes the mac covers). */
  body: string;
  seq: number;
  prev: string;
  mac: string;
}

const SUFFIX = ',"chain":{"seq":';
const TAIL = /,"chain":\{"seq":(\d{1,15}),"prev":"([0-9a-f]{64})","mac":"([0-9a-f]{64})"\}\}$/;

/** The mac of one event line. */
export function macOf(key: Buffer, seq: number, prev: string, body: string): string {
  return createHmac('sha256', key).update(`${seq}\n${prev}\n`).update(body).digest('hex');
}

/** Seals lines in order; one per process and sink, as lines are actually written. */
export class Chain {
  private seq: number;
  private mac: string;

  constructor(private readonly key: Buffer, head: ChainHead | null = null) {
    this.seq = head?.seq ?? 0;
    this.mac = head?.mac ?? GENESIS;
  }

  /** The last sealed event. */
  get head(): ChainHead {
    return { seq: this.seq, mac: this.mac };
  }

  /** Returns `line` (one JSON object) with its chain field appended, and advances the chain. */
  seal(line: string): string {
    return `${line.slice(0, -1)}${this.advance(macOf(this.key, this.seq + 1, this.mac, line))}`;
  }

  /**
   * Seals the line whose UTF-8 bytes are `buf[start, end)` (ending in `}`) and
   * returns what replaces that final `}`. For a writer that has the line encoded
   * already: the mac is taken over the bytes, with no second encoding.
   */
  sealBytes(buf: Buffer, start: number, end: number): string {
    const mac = createHmac('sha256', this.key).update(`${this.seq + 1}\n${this.mac}\n`).update(buf.subarray(start, end)).digest('hex');
    return this.advance(mac);
  }

  private advance(mac: string): string {
    const prev = this.mac;
    this.seq++;
    this.mac = mac;
    return `${SUFFIX}${this.seq},"prev":"${prev}","mac":"${mac}"}}`;
  }

  /** Moves the chain back to `head` (lines sealed after it were never written). */
  rewind(head: ChainHead): void {
    this.seq = head.seq;
    this.mac = head.mac;
  }
}

/** Splits a sealed line into its body and chain fields; null when it carries no well-formed chain field. */
export function unseal(line: string): Sealed | null {
  const m = TAIL.exec(line);
  if (!m) return null;
  return { body: `${line.slice(0, m.index)}}`, seq: Number(m[1]), prev: m[2]!, mac: m[3]! };
}

/** True when `s` was sealed with `key`. */
export function macValid(key: Buffer, s: Sealed): boolean {
  return macOf(key, s.seq, s.prev, s.body) === s.mac;
}

/** Reads the chain key: at least 32 bytes, from a file or an environment variable's value. */
export function keyFrom(value: string, origin: string, what = 'the audit chain key'): Buffer {
  const key = Buffer.from(value.trim(), 'utf8');
  if (key.length < 32) throw new Error(`${what} from ${origin} is ${key.length} bytes; it must be at least 32`);
  return key;
}

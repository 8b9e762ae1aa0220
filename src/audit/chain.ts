// The keyed hash chain that makes the audit trail tamper-evident. Each written
// line ends with `"chain":{"seq":N,"prev":"<mac of line N-1>","mac":"<mac>"}`,
// where mac = HMAC-SHA256(key, "N\nprev\n" + the line as it was before sealing).
// Changing a line breaks its mac; removing, inserting or reordering lines breaks
// the seq/prev links; only the key holder can re-seal. Carrying `prev` in every
// line lets a verifier start at any file of a rotated set.

import { createHash, createHmac, hash } from 'node:crypto';

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
/** The longest chain field a line gains in place of its final `}` (a 15-digit seq, two 64-hex macs). */
export const CHAIN_FIELD_BYTES = 200;
const TAIL = /,"chain":\{"seq":(\d{1,15}),"prev":"([0-9a-f]{64})","mac":"([0-9a-f]{64})"\}\}$/;

/** The mac of one event line. */
export function macOf(key: Buffer, seq: number, prev: string, body: string): string {
  return createHmac('sha256', key).update(`${seq}\n${prev}\n`).update(body).digest('hex');
}

/**
 * HMAC-SHA256 (RFC 2104) under one key, for the writer's hot path: the padded
 * keys are computed once, and each mac is two one-shot hashes,
 * H(K^opad || H(K^ipad || m)), over bytes assembled in buffers kept for the
 * purpose. The same macs as `createHmac`, which costs about 2 µs more per line in
 * setting up a context per call (most of it OpenSSL's HMAC_Init_ex and digest
 * lookup); this runs for every event line written.
 */
class KeyedMac {
  /** `K^ipad`, then the message: the inner hash's input is built here. */
  private inner = Buffer.allocUnsafe(INNER_BYTES);
  /** `K^opad`, then the inner hash. */
  private readonly outer = Buffer.allocUnsafe(BLOCK + 32);

  constructor(key: Buffer) {
    const k = key.length > BLOCK ? createHash('sha256').update(key).digest() : key;
    for (let i = 0; i < BLOCK; i++) {
      const b = i < k.length ? k[i]! : 0;
      this.inner[i] = b ^ 0x36;
      this.outer[i] = b ^ 0x5c;
    }
  }

  /** The hex mac of a line's chain input: `seq\nprev\n` followed by the line's bytes src[start, end). */
  line(seq: number, prev: string, src: Buffer, start: number, end: number): string {
    const need = BLOCK + 18 + prev.length + (end - start);
    if (need > this.inner.length) this.resize(Math.max(need, this.inner.length * 2));
    const at = BLOCK + this.inner.write(`${seq}\n${prev}\n`, BLOCK, 'latin1');
    const n = at + src.copy(this.inner, at, start, end);
    // The inner hash as a latin1 string, one char per byte: a Buffer result costs a fresh allocation, about twice the hashing.
    this.outer.write(hash('sha256', this.inner.subarray(0, n), 'binary'), BLOCK, 'latin1');
    const mac = hash('sha256', this.outer, 'hex');
    // An inner buffer grown for one huge line is not kept.
    if (this.inner.length > MAX_KEPT_INNER) this.resize(INNER_BYTES);
    return mac;
  }

  private resize(bytes: number): void {
    const next = Buffer.allocUnsafe(bytes);
    this.inner.copy(next, 0, 0, BLOCK);
    this.inner = next;
  }
}

/** SHA-256's block size: HMAC pads its key to it. */
const BLOCK = 64;
const INNER_BYTES = 4096;
const MAX_KEPT_INNER = 1024 * 1024;

/** Seals lines in order; one per process and sink, as lines are actually written. */
export class Chain {
  private seq: number;
  private mac: string;
  private keyed: KeyedMac | null = null;

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
   * Seals the line whose UTF-8 bytes are `buf[start, end)` (ending in `}`), in
   * place: its chain field is written over that final `}`, and the new end is
   * returned. `buf` must have CHAIN_FIELD_BYTES to spare after `end`. For a writer
   * that has the line encoded already: the mac is taken over the bytes, with no
   * second encoding of the line.
   */
  sealInto(buf: Buffer, start: number, end: number): number {
    this.keyed ??= new KeyedMac(this.key);
    const seq = this.seq + 1;
    const prev = this.mac;
    const mac = this.keyed.line(seq, prev, buf, start, end);
    const at = end - 1 + buf.write(`${SUFFIX}${seq},"prev":"${prev}","mac":"${mac}"}}`, end - 1, 'latin1');
    this.seq = seq;
    this.mac = mac;
    return at;
  }

  /** The seq of the last sealed event (with `lastMac`, a head without building one). */
  get lastSeq(): number {
    return this.seq;
  }

  get lastMac(): string {
    return this.mac;
  }

  private advance(mac: string): string {
    const prev = this.mac;
    this.seq++;
    this.mac = mac;
    return `${SUFFIX}${this.seq},"prev":"${prev}","mac":"${mac}"}}`;
  }

  /** Moves the chain back to `head` (lines sealed after it were never written). */
  rewind(head: ChainHead): void {
    this.rewindTo(head.seq, head.mac);
  }

  /** rewind() to a head given as its parts. */
  rewindTo(seq: number, mac: string): void {
    this.seq = seq;
    this.mac = mac;
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

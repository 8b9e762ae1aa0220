// The byte-level maskers that rewrite one cell. They run per cell on streamed
// results, so they work on the UTF-8 bytes directly and never decode to a string.
// A MaskWriter writes the masked form straight into the caller's output buffer
// (the DataRow being built), which is never the buffer holding the clear value; the
// Buffer-returning Masker built on it returns a fresh buffer, never a view into the
// clear value, so nothing downstream can reach the original bytes through it.

import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { Masker, MaskSpec, MaskWriter } from './types.js';

const STAR = 0x2a;
const AT = 0x40;
const HEX = Buffer.from('0123456789abcdef');
/** Hex characters of the HMAC kept: 128 bits is plenty to keep joins collision-free. */
const HASH_HEX_CHARS = 32;
/** Below this many bytes a loop beats Buffer#copy, whose fixed cost is that of ~50 bytes copied one by one. */
const LOOP_COPY_MAX = 48;

/** No MaskWriter writes more than the value's length plus this many bytes. */
export const MASK_SLACK = 32;

/**
 * The writer for one spec. Throws when the spec is 'hash' and no (non-empty) hash key
 * is configured.
 */
export function makeMaskWriter(spec: MaskSpec, hashKey: Buffer | null): MaskWriter {
  switch (spec.strategy) {
    case 'redact':
      return (_src, _start, _end, out, at) => writeStars(out, at);
    case 'null':
      return () => -1;
    case 'email':
      return writeEmail;
    case 'partial': {
      const first = keepCount(spec.keepFirst);
      const last = keepCount(spec.keepLast);
      return (src, start, end, out, at) => writePartial(src, start, end, out, at, first, last);
    }
    case 'hash': {
      // An empty key would make the "keyed" hash a plain, dictionary-attackable one.
      if (hashKey === null || hashKey.length === 0) {
        throw new Error(
          `masking rule "${spec.rule}" uses the 'hash' strategy: a masking hash key is required (config masking.hash_key)`,
        );
      }
      // A KeyObject copies the key once, instead of on every createHmac call.
      const key = createSecretKey(Buffer.from(hashKey));
      return (src, start, end, out, at) => writeHash(key, src, start, end, out, at);
    }
    default: {
      const unknown: never = spec.strategy;
      throw new Error(`masking rule "${spec.rule}": unknown strategy ${JSON.stringify(unknown)}`);
    }
  }
}

/** The masker for one spec: each call returns a fresh buffer. Throws as makeMaskWriter does. */
export function makeMasker(spec: MaskSpec, hashKey: Buffer | null): Masker {
  return toMasker(makeMaskWriter(spec, hashKey));
}

/** A Buffer-returning masker around a writer, for callers that mask values one by one (COPY rows). */
export function toMasker(write: MaskWriter): Masker {
  return (value) => {
    const out = Buffer.allocUnsafe(value.length + MASK_SLACK);
    const end = write(value, 0, value.length, out, 0);
    return end < 0 ? null : out.subarray(0, end);
  };
}

/**
 * The spec for a column computed from a masked one (lower(email), row_to_json(u)).
 * Partial and email masks would keep parts of a value whose shape is no longer known,
 * so they become redact; hash and null stay safe (and hash keeps joins working).
 */
export function derivedSpec(spec: MaskSpec): MaskSpec {
  if (spec.strategy === 'hash' || spec.strategy === 'null') return spec;
  return { strategy: 'redact', rule: spec.rule };
}

/** Masks one text value; convenience for callers outside the hot path (tests, previews). */
export function maskText(spec: MaskSpec, hashKey: Buffer | null, text: string): string | null {
  const out = makeMasker(spec, hashKey)(Buffer.from(text, 'utf8'));
  return out === null ? null : out.toString('utf8');
}

/** Copies src[start, end) to out[at]; returns the end in `out`. */
function copyBytes(src: Buffer, start: number, end: number, out: Buffer, at: number): number {
  if (end - start > LOOP_COPY_MAX) return at + src.copy(out, at, start, end);
  while (start < end) out[at++] = src[start++]!;
  return at;
}

function keepCount(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function isLead(byte: number): boolean {
  // Counting only non-continuation bytes counts code points and never splits one.
  return (byte & 0xc0) !== 0x80;
}

function writeStars(out: Buffer, at: number): number {
  out[at] = STAR;
  out[at + 1] = STAR;
  out[at + 2] = STAR;
  out[at + 3] = STAR;
  return at + 4;
}

function writePartial(src: Buffer, start: number, end: number, out: Buffer, at: number, first: number, last: number): number {
  let chars = 0;
  for (let i = start; i < end; i++) if (isLead(src[i]!)) chars++;
  if (chars <= first + last) return writeStars(out, at);
  // head: byte where code point #first starts; tail: byte where the last `last` start.
  let head = start;
  for (let seen = 0; head < end; head++) {
    if (isLead(src[head]!) && seen++ === first) break;
  }
  let tail = end;
  for (let seen = 0; seen < last; ) if (isLead(src[--tail]!)) seen++;
  at = copyBytes(src, start, head, out, at);
  const stars = at + chars - first - last;
  if (stars - at > LOOP_COPY_MAX) {
    out.fill(STAR, at, stars);
    at = stars;
  }
  while (at < stars) out[at++] = STAR;
  return copyBytes(src, tail, end, out, at);
}

function writeEmail(src: Buffer, start: number, end: number, out: Buffer, at: number): number {
  let i = end - 1;
  while (i >= start && src[i] !== AT) i--; // the last '@'
  if (i < start || i === end - 1) return writeStars(out, at);
  writeStars(out, at);
  out[at + 4] = AT;
  return copyBytes(src, i + 1, end, out, at + 5);
}

function writeHash(key: KeyObject, src: Buffer, start: number, end: number, out: Buffer, at: number): number {
  const mac = createHmac('sha256', key).update(src.subarray(start, end)).digest();
  for (let i = 0; i < HASH_HEX_CHARS / 2; i++) {
    const b = mac[i]!;
    out[at++] = HEX[b >> 4]!;
    out[at++] = HEX[b & 0x0f]!;
  }
  return at;
}

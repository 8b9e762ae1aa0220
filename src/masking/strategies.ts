// The byte-level maskers that rewrite one cell. They run per cell on streamed
// results, so they work on the UTF-8 bytes directly and never decode to a string.
// Every output is built in a fresh or constant buffer, never as a view into the
// clear value, so nothing downstream can reach the original bytes through it.

import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { Masker, MaskSpec } from './types.js';

// Shared constants: callers write maskers' output to sockets and never mutate it.
const STARS = Buffer.from('****');
const STARS_AT = Buffer.from('****@');
const HEX = Buffer.from('0123456789abcdef');
const STAR = 0x2a;
const AT = 0x40;
/** Hex characters of the HMAC kept: 128 bits is plenty to keep joins collision-free. */
const HASH_HEX_CHARS = 32;

/**
 * The masker for one spec. The buffer it returns may be a shared constant: do not
 * mutate it. Throws when the spec is 'hash' and no (non-empty) hash key is configured.
 */
export function makeMasker(spec: MaskSpec, hashKey: Buffer | null): Masker {
  switch (spec.strategy) {
    case 'redact':
      return () => STARS;
    case 'null':
      return () => null;
    case 'email':
      return maskEmail;
    case 'partial': {
      const first = keepCount(spec.keepFirst);
      const last = keepCount(spec.keepLast);
      return (value) => maskPartial(value, first, last);
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
      return (value) => hashHex(key, value);
    }
    default: {
      const unknown: never = spec.strategy;
      throw new Error(`masking rule "${spec.rule}": unknown strategy ${JSON.stringify(unknown)}`);
    }
  }
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

function keepCount(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function isLead(byte: number): boolean {
  // Counting only non-continuation bytes counts code points and never splits one.
  return (byte & 0xc0) !== 0x80;
}

function maskPartial(value: Buffer, first: number, last: number): Buffer {
  const len = value.length;
  let chars = 0;
  for (let i = 0; i < len; i++) if (isLead(value[i]!)) chars++;
  if (chars <= first + last) return STARS;
  // head: byte where code point #first starts; tail: byte where the last `last` start.
  let head = 0;
  for (let seen = 0; head < len; head++) {
    if (isLead(value[head]!) && seen++ === first) break;
  }
  let tail = len;
  for (let seen = 0; seen < last; ) if (isLead(value[--tail]!)) seen++;
  const stars = chars - first - last;
  const out = Buffer.allocUnsafe(head + stars + (len - tail));
  value.copy(out, 0, 0, head);
  out.fill(STAR, head, head + stars);
  value.copy(out, head + stars, tail, len);
  return out;
}

function maskEmail(value: Buffer): Buffer {
  const at = value.lastIndexOf(AT);
  if (at < 0 || at === value.length - 1) return STARS;
  const out = Buffer.allocUnsafe(STARS_AT.length + value.length - at - 1);
  STARS_AT.copy(out, 0);
  value.copy(out, STARS_AT.length, at + 1);
  return out;
}

function hashHex(key: KeyObject, value: Buffer): Buffer {
  const mac = createHmac('sha256', key).update(value).digest();
  const out = Buffer.allocUnsafe(HASH_HEX_CHARS);
  for (let i = 0; i < HASH_HEX_CHARS / 2; i++) {
    const b = mac[i]!;
    out[2 * i] = HEX[b >> 4]!;
    out[2 * i + 1] = HEX[b & 0x0f]!;
  }
  return out;
}

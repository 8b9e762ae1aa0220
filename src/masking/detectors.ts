// Content detectors for cells no masking rule names: each says whether a value
// holds sensitive content anywhere in it (free text included). They run per cell,
// so each one declares cheap preconditions (digit count, length, a needle) that
// are checked on the raw bytes before anything is decoded or matched.

import type { DetectorName } from './types.js';

/** Every detector, in the order a full scan tries them. */
export const detectorNames: readonly DetectorName[] = ['email', 'card', 'ssn', 'phone', 'iban', 'jwt', 'api_key'];

interface Detector {
  /** At least this many ASCII digits in the value (counting stops at MAX_DIGITS). */
  digits: number;
  minLength: number;
  needle?: Buffer;
  /** Exactly one of bytes / text: text gets the value decoded as latin1 (all patterns are ASCII). */
  bytes?: (b: Buffer) => boolean;
  text?: (s: string) => boolean;
}

const DIGIT = 1;
const ALPHA = 2;
const LOCAL = 4; // characters of an email's local part
const CLASS = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) CLASS[c] = DIGIT | LOCAL;
for (let c = 0x41; c <= 0x5a; c++) CLASS[c] = ALPHA | LOCAL;
for (let c = 0x61; c <= 0x7a; c++) CLASS[c] = ALPHA | LOCAL;
for (const c of '._%+-') CLASS[c.charCodeAt(0)] = LOCAL;

const isDigit = (c: number | undefined): boolean => c !== undefined && (CLASS[c]! & DIGIT) !== 0;
const isAlnum = (c: number | undefined): boolean => c !== undefined && (CLASS[c]! & (DIGIT | ALPHA)) !== 0;
const DOT = 0x2e;
const COMMA = 0x2c;
const DASH = 0x2d;
const SPACE = 0x20;

// ---- email: a local-part character, '@', then labels ending in an alphabetic TLD.
// Scanning from each '@' keeps this linear where an unanchored regex is quadratic.
function hasEmail(b: Buffer): boolean {
  for (let at = b.indexOf(0x40); at >= 0; at = b.indexOf(0x40, at + 1)) {
    if (at > 0 && (CLASS[b[at - 1]!]! & LOCAL) !== 0 && domainAt(b, at + 1)) return true;
  }
  return false;
}

function domainAt(b: Buffer, i: number): boolean {
  for (let labels = 1; isAlnum(b[i]); labels++) {
    const start = i;
    let letters = true;
    for (; isAlnum(b[i]) || b[i] === DASH; i++) if ((CLASS[b[i]!]! & ALPHA) === 0) letters = false;
    if (labels >= 2 && letters && i - start >= 2) return true;
    if (b[i] !== DOT) return false;
    i++;
  }
  return false;
}

// ---- card: runs of digit groups joined by single spaces or dashes; any window of
// whole groups with 13-19 digits that starts like a payment card and passes Luhn.
/** A digit run continues a number or word on this side (3.14159..., id7, x4111...). */
function joinedBefore(b: Buffer, i: number): boolean {
  const c = b[i - 1];
  return isAlnum(c) || ((c === DOT || c === COMMA) && isDigit(b[i - 2]));
}
function joinedAfter(b: Buffer, i: number): boolean {
  const c = b[i];
  return isAlnum(c) || ((c === DOT || c === COMMA) && isDigit(b[i + 1]));
}

function hasCard(b: Buffer): boolean {
  const starts: number[] = [];
  const ends: number[] = [];
  for (let i = 0; i < b.length; ) {
    if (!isDigit(b[i])) {
      i++;
      continue;
    }
    starts.length = 0;
    ends.length = 0;
    const leftOk = !joinedBefore(b, i);
    for (;;) {
      const start = i;
      while (isDigit(b[i])) i++;
      starts.push(start);
      ends.push(i);
      if ((b[i] !== SPACE && b[i] !== DASH) || !isDigit(b[i + 1])) break;
      i++;
    }
    if (cardInRun(b, starts, ends, leftOk, !joinedAfter(b, i))) return true;
  }
  return false;
}

function cardInRun(b: Buffer, starts: number[], ends: number[], leftOk: boolean, rightOk: boolean): boolean {
  const groups = starts.length;
  for (let a = leftOk ? 0 : 1; a < groups; a++) {
    // Major industry identifiers 2-6 are payment cards; this spares epoch-ms timestamps and
    // snowflake ids (which start with 1) and all-zero values, which all pass Luhn often.
    const mii = b[starts[a]!]!;
    if (mii < 0x32 || mii > 0x36) continue;
    let digits = 0;
    for (let z = a; z < groups; z++) {
      const size = ends[z]! - starts[z]!;
      // Real cards are written in groups of 3+; "1 2 3 4 ..." lists are not cards.
      if (z > a && (size < 3 || ends[a]! - starts[a]! < 3)) break;
      digits += size;
      if (digits > 19) break;
      if (digits >= 13 && (z < groups - 1 || rightOk) && luhn(b, starts[a]!, ends[z]!)) return true;
    }
  }
  return false;
}

function luhn(b: Buffer, from: number, to: number): boolean {
  let sum = 0;
  let double = false;
  for (let i = to - 1; i >= from; i--) {
    if (!isDigit(b[i])) continue;
    let d = b[i]! - 0x30;
    if (double && (d *= 2) > 9) d -= 9;
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

// ---- ssn, phone, iban, jwt, api_key: regexes on the latin1 text.
/** True when some match of a global regex passes `valid`. */
function anyMatch(re: RegExp, s: string, valid: (m: RegExpExecArray) => boolean): boolean {
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) if (valid(m)) return true;
  return false;
}

// A separator-joined longer number (1-123-45-6789-0) is not an SSN.
const SSN =
  /(?<![0-9A-Za-z]|[0-9]-)([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9A-Za-z]|-[0-9])|(?<![0-9A-Za-z]|[0-9] )([0-9]{3}) ([0-9]{2}) ([0-9]{4})(?![0-9A-Za-z]| [0-9])/g;
function ssnValid(m: RegExpExecArray): boolean {
  const area = m[1] ?? m[4]!;
  const group = m[2] ?? m[5]!;
  const serial = m[3] ?? m[6]!;
  return area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';
}

// E.164 needs the '+': plain integers, dates and times never match either shape.
const PHONE = new RegExp(
  [
    String.raw`(?<![0-9A-Za-z_+])\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}(?![0-9])`,
    String.raw`(?<![0-9A-Za-z_]|[0-9][-.])(?:1[-. ])?(?:\([0-9]{3}\) ?[0-9]{3}-|[0-9]{3}-[0-9]{3}-|[0-9]{3}\.[0-9]{3}\.)[0-9]{4}(?![0-9A-Za-z_]|[-.][0-9])`,
  ].join('|'),
);

const IBAN =
  /(?<![A-Za-z0-9])([A-Za-z]{2})([0-9]{2})([A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)(?![A-Za-z0-9])/g;
// Countries with (or piloting) IBANs: with mod-97 this keeps random tokens from matching.
const IBAN_COUNTRIES = new Set(
  ('AD AE AL AO AT AZ BA BE BF BG BH BI BJ BR BY CF CG CH CI CM CR CV CY CZ DE DJ DK DO DZ EE EG ES FI FK FO FR ' +
    'GA GB GE GI GL GQ GR GT GW HN HR HU IE IL IQ IR IS IT JO KM KW KZ LB LC LI LT LU LV LY MA MC MD ME MG MK ML ' +
    'MN MR MT MU MZ NE NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SN SO ST SV TD TG TL TN TR UA VA VG XK YE')
    .split(' '),
);
function ibanValid(m: RegExpExecArray): boolean {
  const country = m[1]!.toUpperCase();
  if (!IBAN_COUNTRIES.has(country)) return false;
  const bban = m[3]!.replaceAll(' ', '').toUpperCase();
  if (bban.length < 11 || bban.length > 30) return false;
  // ISO 13616: move country + check digits to the end, letters become 10..35, mod 97 must be 1.
  let rem = 0;
  for (const ch of bban + country + m[2]!) {
    const c = ch.charCodeAt(0);
    rem = c <= 0x39 ? (rem * 10 + c - 0x30) % 97 : (rem * 100 + c - 55) % 97;
  }
  return rem === 1;
}

// Third segment may be empty: an unsigned (alg "none") token still carries its claims.
const JWT = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/;

// Boundaries keep random substrings of base64 blobs from looking like keys.
const API_KEY = new RegExp(
  [
    String.raw`(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])`,
    String.raw`(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}`,
    String.raw`(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{22,}`,
    String.raw`(?<![A-Za-z0-9])xox[abeprs]-[A-Za-z0-9-]{10,}`,
    String.raw`(?<![A-Za-z0-9])[rs]k_(?:live|test)_[A-Za-z0-9]{10,}`,
    String.raw`(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}`,
    String.raw`(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])`,
    String.raw`-----BEGIN [A-Z0-9 ]*PRIVATE KEY`,
  ].join('|'),
);

const DETECTORS: Record<DetectorName, Detector> = {
  email: { digits: 0, minLength: 6, needle: Buffer.from('@'), bytes: hasEmail },
  card: { digits: 13, minLength: 13, bytes: hasCard },
  ssn: { digits: 9, minLength: 11, text: (s) => anyMatch(SSN, s, ssnValid) },
  phone: { digits: 8, minLength: 9, text: (s) => PHONE.test(s) },
  iban: { digits: 2, minLength: 15, text: (s) => anyMatch(IBAN, s, ibanValid) },
  jwt: { digits: 0, minLength: 16, needle: Buffer.from('eyJ'), text: (s) => JWT.test(s) },
  api_key: { digits: 0, minLength: 15, text: (s) => API_KEY.test(s) },
};
const MAX_DIGITS = 13;

function countDigits(b: Buffer): number {
  let n = 0;
  for (let i = 0; i < b.length && n < MAX_DIGITS; i++) if (isDigit(b[i])) n++;
  return n;
}

/**
 * A scanner for the given detectors: returns the first of them (in the order given)
 * that finds sensitive content anywhere in a value, or null.
 */
export function compileDetectors(names: readonly DetectorName[]): (value: Buffer) => DetectorName | null {
  const active = [...new Set(names)].map((name) => {
    // Names may come from unvalidated config; hasOwn also rejects 'toString' and friends.
    if (!Object.hasOwn(DETECTORS, name)) throw new Error(`unknown masking detector ${JSON.stringify(name)}`);
    return { name, ...DETECTORS[name] };
  });
  if (active.length === 0) return () => null;
  const needDigits = active.some((d) => d.digits > 0);
  return (value) => {
    const digits = needDigits ? countDigits(value) : 0;
    let text: string | undefined;
    for (const d of active) {
      if (value.length < d.minLength || digits < d.digits) continue;
      if (d.needle !== undefined && value.indexOf(d.needle) < 0) continue;
      if (d.bytes !== undefined ? d.bytes(value) : d.text!((text ??= value.toString('latin1')))) return d.name;
    }
    return null;
  };
}

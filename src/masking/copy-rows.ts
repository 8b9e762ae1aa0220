// Masking the rows of COPY ... TO STDOUT, text and csv formats. Binary format is not
// handled: its rows carry typed binary values, so the caller refuses binary COPY of
// masked columns (a masker-less CopyRowMasker still passes binary data through).
//
// The bytes are taken as the server writes them in an ASCII-safe encoding (UTF-8 and
// the like): in encodings whose multibyte characters may contain ASCII bytes (SJIS,
// BIG5, GBK, UHC, GB18030 as client_encoding or COPY ENCODING) a trailing byte could
// read as a backslash, quote or delimiter, so the caller must not mask those.
//
// In text format a field is NULL when its raw bytes equal the NULL string, as COPY FROM
// reads it; with a NULL string that a value can also print as (NULL 'x'), a value equal
// to it is indistinguishable from NULL and is passed as NULL.

import { Buffer } from 'node:buffer';
import type { CopyFormat } from './copy-options.js';
import type { Masker } from './types.js';

/** The most a single row may be buffered while waiting for its end. */
export const MAX_COPY_ROW_BYTES = 64 * 1024 * 1024;

const NL = 0x0a;
const CR = 0x0d;
const BACKSLASH = 0x5c;
const NEWLINE = Buffer.from('\n');

// Escapes a text-format value's special bytes as CopyAttributeOutText does.
const TEXT_ESCAPES = new Map<number, number>([
  [0x08, 0x62], // \b
  [0x0c, 0x66], // \f
  [NL, 0x6e], // \n
  [CR, 0x72], // \r
  [0x09, 0x74], // \t
  [0x0b, 0x76], // \v
  [BACKSLASH, BACKSLASH],
]);
const TEXT_UNESCAPES = new Map<number, number>([...TEXT_ESCAPES].map(([k, v]) => [v, k]));

interface Field {
  start: number;
  end: number;
  /** csv: some part of the field was quoted, so it cannot be NULL. */
  quoted: boolean;
}

function singleByte(s: string, what: string): number {
  const b = Buffer.from(s, 'utf8');
  if (b.length !== 1) throw new Error(`COPY ${what} must be a single one-byte character`);
  return b[0]!;
}

/** Rewrites COPY text/csv rows so that masked columns are replaced; see push and end. */
export class CopyRowMasker {
  private readonly passthrough: boolean;
  private readonly csv: boolean;
  private readonly delim: number;
  private readonly quote: number;
  private readonly escape: number;
  private readonly nullBytes: Buffer;
  private header: boolean;
  private pending: Buffer[] = [];
  private pendingLength = 0;
  // Where a csv row scan stands between pushes, as CopyReadLineText tracks it.
  private inQuote = false;
  private lastWasEscape = false;

  constructor(
    format: CopyFormat,
    private readonly masks: readonly (Masker | null)[],
    private readonly maxRowBytes = MAX_COPY_ROW_BYTES,
  ) {
    this.passthrough = masks.every((m) => m === null);
    if (format.kind === 'binary' && !this.passthrough) throw new Error('binary COPY rows cannot be masked');
    this.csv = format.kind === 'csv';
    this.delim = format.kind === 'binary' ? 0 : singleByte(format.delimiter, 'delimiter');
    this.quote = this.csv ? singleByte(format.quote, 'quote') : 0;
    this.escape = this.csv ? singleByte(format.escape, 'escape') : 0;
    this.nullBytes = Buffer.from(format.null, 'utf8');
    this.header = format.header;
  }

  /** Feeds one CopyData payload; appends the rewritten payloads (whole rows only) to `out`. */
  push(data: Buffer, out: Buffer[]): void {
    if (this.passthrough) {
      if (data.length > 0) out.push(data);
      return;
    }
    const parts: Buffer[] = [];
    let start = 0;
    for (let end = this.rowEnd(data, start); end >= 0; end = this.rowEnd(data, start)) {
      let row = data.subarray(start, end);
      if (this.pendingLength > 0) {
        row = Buffer.concat([...this.pending, row]);
        this.pending = [];
        this.pendingLength = 0;
      }
      this.rewrite(row, parts);
      parts.push(NEWLINE);
      start = end + 1;
    }
    if (start < data.length) {
      this.pendingLength += data.length - start;
      if (this.pendingLength > this.maxRowBytes) throw new Error(`COPY row longer than ${this.maxRowBytes} bytes`);
      // Copied: the caller may reuse its read buffer.
      this.pending.push(Buffer.from(data.subarray(start)));
    }
    if (parts.length > 0) out.push(Buffer.concat(parts));
  }

  /** At CopyDone: rewrites bytes left without a final newline as one last row. */
  end(out: Buffer[]): void {
    if (this.passthrough || this.pendingLength === 0) return;
    const row = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingLength = 0;
    this.inQuote = false;
    this.lastWasEscape = false;
    const parts: Buffer[] = [];
    this.rewrite(row, parts);
    out.push(Buffer.concat(parts));
  }

  // The index in `data` of the newline ending the current row, or -1.
  private rowEnd(data: Buffer, from: number): number {
    if (!this.csv) return data.indexOf(NL, from);
    // Only an escape inside quotes that is not itself escaped keeps a quote from
    // toggling; an escape equal to the quote is just the toggle.
    const quote = this.quote;
    const escape = this.escape === quote ? -1 : this.escape;
    let inQuote = this.inQuote;
    let lastWasEscape = this.lastWasEscape;
    for (let i = from; i < data.length; i++) {
      const c = data[i]!;
      if (c === NL && !inQuote) {
        this.inQuote = false;
        this.lastWasEscape = false;
        return i;
      }
      if (inQuote && c === escape) lastWasEscape = !lastWasEscape;
      if (c === quote && !lastWasEscape) inQuote = !inQuote;
      if (c !== escape) lastWasEscape = false;
    }
    this.inQuote = inQuote;
    this.lastWasEscape = lastWasEscape;
    return -1;
  }

  // Appends `row` (without its newline) with the masked fields replaced.
  private rewrite(row: Buffer, parts: Buffer[]): void {
    if (this.header) {
      this.header = false;
      parts.push(row);
      return;
    }
    const fields = this.csv ? this.csvFields(row) : this.textFields(row);
    if (fields.length !== this.masks.length) {
      throw new Error(`COPY row has ${fields.length} fields where ${this.masks.length} were expected`);
    }
    // Unmasked fields and the delimiters go out as spans of the row, byte for byte.
    let copied = 0;
    for (let i = 0; i < fields.length; i++) {
      const mask = this.masks[i]!;
      if (mask === null) continue;
      const f = fields[i]!;
      const raw = row.subarray(f.start, f.end);
      if (!f.quoted && raw.equals(this.nullBytes)) continue;
      const masked = mask(this.csv ? this.csvDecode(raw) : textDecode(raw));
      if (f.start > copied) parts.push(row.subarray(copied, f.start));
      if (masked === null) parts.push(this.nullBytes);
      else parts.push(this.csv ? this.csvEncode(masked, fields.length === 1) : this.textEncode(masked));
      copied = f.end;
    }
    if (copied < row.length) parts.push(row.subarray(copied));
  }

  private textFields(row: Buffer): Field[] {
    const fields: Field[] = [];
    let start = 0;
    for (let i = 0; i < row.length; i++) {
      const c = row[i]!;
      // An escaped byte is never a delimiter; octal and hex digits cannot be one either.
      if (c === BACKSLASH) i++;
      else if (c === this.delim) {
        fields.push({ start, end: i, quoted: false });
        start = i + 1;
      }
    }
    fields.push({ start, end: row.length, quoted: false });
    return fields;
  }

  private textEncode(value: Buffer): Buffer {
    if (!value.some((c) => c === this.delim || TEXT_ESCAPES.has(c)) && !value.equals(this.nullBytes)) return value;
    const out: number[] = [];
    for (const c of value) {
      const e = TEXT_ESCAPES.get(c);
      if (e !== undefined) out.push(BACKSLASH, e);
      else if (c === this.delim) out.push(BACKSLASH, c);
      else out.push(c);
    }
    const encoded = Buffer.from(out);
    if (encoded.length === 0 || !encoded.equals(this.nullBytes)) return encoded;
    // A value that would print as the NULL string is written in octal escapes instead.
    const octal: number[] = [];
    for (const c of value) octal.push(BACKSLASH, ...Buffer.from(c.toString(8).padStart(3, '0')));
    return Buffer.from(octal);
  }

  // CopyReadAttributesCSV: quoted sections may start anywhere in a field.
  private csvFields(row: Buffer): Field[] {
    const { delim, quote, escape } = this;
    const fields: Field[] = [];
    let start = 0;
    let quoted = false;
    let inQuote = false;
    for (let i = 0; i < row.length; i++) {
      const c = row[i]!;
      if (inQuote) {
        if (c === escape && i + 1 < row.length && (row[i + 1] === escape || row[i + 1] === quote)) i++;
        else if (c === quote) inQuote = false;
      } else if (c === delim) {
        fields.push({ start, end: i, quoted });
        start = i + 1;
        quoted = false;
      } else if (c === quote) {
        inQuote = true;
        quoted = true;
      }
    }
    fields.push({ start, end: row.length, quoted });
    return fields;
  }

  private csvDecode(raw: Buffer): Buffer {
    const { quote, escape } = this;
    if (!raw.includes(quote)) return raw;
    const out: number[] = [];
    let inQuote = false;
    for (let i = 0; i < raw.length; i++) {
      const c = raw[i]!;
      if (!inQuote) {
        if (c === quote) inQuote = true;
        else out.push(c);
      } else if (c === escape && i + 1 < raw.length && (raw[i + 1] === escape || raw[i + 1] === quote)) {
        out.push(raw[++i]!);
      } else if (c === quote) inQuote = false;
      else out.push(c);
    }
    return Buffer.from(out);
  }

  // CopyAttributeOutCSV: quoted when it holds a delimiter, quote or line break, reads as
  // the NULL string, or is `\.` alone on its line (COPY FROM's old end-of-data marker).
  private csvEncode(value: Buffer, single: boolean): Buffer {
    const { delim, quote, escape } = this;
    let needsQuote = value.equals(this.nullBytes) || (single && value.equals(END_MARKER));
    for (let i = 0; i < value.length && !needsQuote; i++) {
      const c = value[i]!;
      needsQuote = c === delim || c === quote || c === NL || c === CR;
    }
    if (!needsQuote) return value;
    const out: number[] = [quote];
    for (const c of value) {
      if (c === quote || c === escape) out.push(escape);
      out.push(c);
    }
    out.push(quote);
    return Buffer.from(out);
  }
}

const END_MARKER = Buffer.from('\\.');

const isOctal = (c: number | undefined): c is number => c !== undefined && c >= 0x30 && c <= 0x37;

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

// CopyReadAttributesText's escapes; a backslash before any other byte stands for that byte.
function textDecode(raw: Buffer): Buffer {
  if (!raw.includes(BACKSLASH)) return raw;
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== BACKSLASH || i + 1 >= raw.length) {
      out.push(c);
      continue;
    }
    const e = raw[++i]!;
    if (isOctal(e)) {
      let v = e - 0x30;
      for (let n = 0; n < 2 && isOctal(raw[i + 1]); n++) v = v * 8 + (raw[++i]! - 0x30);
      out.push(v & 0xff);
    } else if (e === 0x78 && hexValue(raw[i + 1]) >= 0) {
      let v = hexValue(raw[++i]);
      if (hexValue(raw[i + 1]) >= 0) v = v * 16 + hexValue(raw[++i]);
      out.push(v);
    } else {
      out.push(TEXT_UNESCAPES.get(e) ?? e);
    }
  }
  return Buffer.from(out);
}

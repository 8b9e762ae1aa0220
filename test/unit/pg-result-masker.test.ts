// ResultMasker's DataRow rewrite, fed as the relay feeds it (BackendScanner ->
// ResponseTracker -> ResultMasker, rows built in the scanner's FrameWriter): masked
// cells, NULLs, the 'null' strategy, detector-scanned cells, split at every byte
// boundary; and malformed rows, which must never pull in the next frame's bytes.

import { describe, expect, it } from 'vitest';
import type { CatalogSnapshot, ColumnInfo, TargetCatalog } from '../../src/masking/catalog.js';
import type { CompiledMaskRule } from '../../src/masking/policy.js';
import { CLEAN, SessionMasking } from '../../src/masking/session.js';
import type { DetectorName, MaskSpec } from '../../src/masking/types.js';
import { BackendScanner, FrameWriter } from '../../src/proxy/postgres/frames.js';
import { ResultMasker, type MaskState } from '../../src/proxy/postgres/result-masker.js';
import { MASKED_TYPES, ResponseTracker, TRACKED_TYPES } from '../../src/proxy/postgres/tracker.js';
import {
  commandComplete, dataRow, expectBytes, expectPgError, i16, i32, msg, prng, randomChunks, readyForQuery, rowDescription,
} from './pg-test-encode.js';

const OID = 16384;
// Column names as rowDescription() encodes them: attnum i + 1, type text.
const COLUMNS = ['id', 'email', 'ssn', 'gone', 'digest', 'note'];

function snapshot(): CatalogSnapshot {
  const columns = new Map<number, ColumnInfo>(COLUMNS.map((name, i) => [i + 1, { att: i + 1, name, printed: `public.people.${name}`, typeOid: 25, tags: [] }]));
  const rel = { oid: OID, kind: 'r', printed: 'public.people', columns, byName: new Map([...columns.values()].map((c) => [c.name, c])) };
  return { version: 1, relations: new Map([[OID, rel]]), byName: new Map([['public.people', rel]]), routines: new Map(), operators: new Map(), builtins: new Set(['lower', 'upper', 'pg_catalog.lower']) };
}

function rule(id: string, strategy: MaskSpec['strategy'], column: string | null, detect: DetectorName[] = []): CompiledMaskRule {
  return { id, spec: { strategy, rule: id }, columns: column ? new RegExp(`^public\\.people\\.${column}$`) : null, classes: null, detect, match: null, exempt: null };
}

const RULES = [
  rule('mask-email', 'email', 'email'), rule('mask-ssn', 'redact', 'ssn'), rule('drop', 'null', 'gone'),
  rule('digest', 'hash', 'digest'), rule('found', 'redact', null, ['email']),
];

/** Every column of the table: rowDescription() gives each column relation OID, attnum i + 1, and type text. */
function described(): Buffer {
  const t = rowDescription(COLUMNS);
  for (let i = 0, pos = 7; i < COLUMNS.length; i++) {
    pos = t.indexOf(0, pos) + 1;
    t.writeUInt32BE(OID, pos);
    pos += 18;
  }
  return t;
}

function session(rules = RULES) {
  const catalog = { isStale: false, current: snapshot() } as unknown as TargetCatalog;
  const masking = new SessionMasking(rules, { strict: false, derived: 'mask' }, catalog, Buffer.from('k'.repeat(32)));
  const masker = new ResultMasker(() => masking);
  const tracker = new ResponseTracker();
  tracker.masker = masker;
  const st: MaskState = masker.state([], 'SELECT * FROM people', CLEAN, 1, null);
  tracker.push({ kind: 'query', mask: st });
  const scanner = new BackendScanner(TRACKED_TYPES + MASKED_TYPES, (type, src, start, end, out) => tracker.onMessage(type, src, start, end, out));
  return { masker, scanner, st };
}

function feedAll(scanner: BackendScanner, chunks: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const c of chunks) scanner.feed(Buffer.from(c), out);
  return Buffer.concat(out);
}

const row = (v: (string | null)[]): (string | null)[] => v;
const ROWS = [
  row(['1', 'alice@example.com', '123-45-6789', 'x', 'a', 'nothing here']),
  row(['2', null, null, null, null, null]),
  row(['3', 'no-at-sign', '', '', '', 'write to bob@example.org please']),
  row([null, 'jürgen@bücher.de', 'ß', 'y', 'b', '']),
];
const HASH = /^[0-9a-f]{32}$/;

describe('ResultMasker.dataRow', () => {
  const stream = Buffer.concat([described(), ...ROWS.map(dataRow), commandComplete('SELECT 4'), readyForQuery('I')]);

  function expected(hashes: (string | null)[]): Buffer {
    const masked = ROWS.map((r, i) => {
      const [id = null, email = null, ssn = null, , , note = null] = r;
      return dataRow([
        id, email === null ? null : email.includes('@') ? `****@${email.slice(email.lastIndexOf('@') + 1)}` : '****',
        ssn === null ? null : '****', null, hashes[i] ?? null, note !== null && note.includes('@') ? '****' : note,
      ]);
    });
    return Buffer.concat([described(), ...masked, commandComplete('SELECT 4'), readyForQuery('I')]);
  }

  /** The digests the masker wrote, read from its output (they are checked for shape; the hash itself is tested with the strategies). */
  function digests(out: Buffer): (string | null)[] {
    const found: (string | null)[] = [];
    for (let pos = 0; pos < out.length; pos += 1 + out.readInt32BE(pos + 1)) {
      if (out[pos] !== 0x44) continue;
      let p = pos + 7;
      for (let c = 0; c < 4; c++) p += 4 + Math.max(0, out.readInt32BE(p));
      const len = out.readInt32BE(p);
      found.push(len < 0 ? null : out.toString('latin1', p + 4, p + 4 + len));
    }
    return found;
  }

  it('masks each masked column, keeps NULLs, and masks only what the detectors find, at every split', () => {
    const { scanner, st } = session();
    const whole = feedAll(scanner, [stream]);
    const hashes = digests(whole);
    expect(hashes.map((h) => h === null || HASH.test(h))).toEqual([true, true, true, true]);
    expect(hashes[1]).toBeNull();
    const want = expected(hashes);
    expectBytes(whole, want);
    expect(Object.fromEntries([...st.applied.values()].map((m) => [m.column, m.cells]))).toEqual({
      'public.people.email': 3, 'public.people.ssn': 3, 'public.people.gone': 3, 'public.people.digest': 3, '(detected: email)': 1,
    });
    for (let i = 1; i < stream.length; i++) {
      expectBytes(feedAll(session().scanner, [stream.subarray(0, i), stream.subarray(i)]), want, `split at ${i}`);
    }
    const rand = prng(77);
    for (let n = 0; n < 100; n++) {
      expectBytes(feedAll(session().scanner, randomChunks(stream, 2 + Math.floor(rand() * 40), rand)), want, `round ${n}`);
    }
    expectBytes(feedAll(session().scanner, randomChunks(stream, stream.length, rand)), want, 'one byte per chunk');
  });

  it('writes nothing into the chunk it reads: the clear bytes are left as they came', () => {
    const { scanner } = session();
    const chunk = Buffer.from(stream);
    scanner.feed(chunk, []);
    expectBytes(chunk, stream);
  });

  it('passes rows with nothing to mask unchanged, as views of the chunk', () => {
    const { scanner } = session([rule('found', 'redact', null, ['email'])]);
    const rows = [dataRow(['1', 'a', 'b', 'c', 'd', 'plain text']), dataRow(['2', null, null, null, null, null])];
    const chunk = Buffer.concat([described(), ...rows, commandComplete('SELECT 2')]);
    const out: Buffer[] = [];
    scanner.feed(chunk, out);
    expectBytes(Buffer.concat(out), chunk);
    for (const b of out) expect(b.buffer).toBe(chunk.buffer);
  });

  it('a row the detectors find nothing in, after a masked one, is copied as it came', () => {
    const { scanner } = session([rule('found', 'redact', null, ['email'])]);
    const rows = [['1', 'a', 'b', 'c', 'd', 'x@example.com'], ['2', 'a', 'b', 'c', 'd', 'plain']];
    const out = feedAll(scanner, [Buffer.concat([described(), ...rows.map(dataRow)])]);
    expectBytes(out, Buffer.concat([described(), dataRow(['1', 'a', 'b', 'c', 'd', '****']), dataRow(rows[1]!)]));
  });

  it("strategy 'null' gives NULL for every value, NULL included", () => {
    const { scanner } = session([rule('drop', 'null', 'gone')]);
    const out = feedAll(scanner, [Buffer.concat([described(), dataRow(['1', 'e', 's', 'x', 'd', 'n']), dataRow(['2', 'e', 's', null, 'd', 'n'])])]);
    expectBytes(out, Buffer.concat([described(), dataRow(['1', 'e', 's', null, 'd', 'n']), dataRow(['2', 'e', 's', null, 'd', 'n'])]));
  });

  it.each([
    ['a masked cell', msg('D', i16(2), i32(1), '1', i32(40), 'alice@example.com')],
    ['the last cell', msg('D', i16(6), i32(1), '1', i32(1), 'e', i32(1), 's', i32(1), 'g', i32(1), 'd', i32(60), 'note')],
  ])('%s longer than its frame is 08P01, never filled from the next frame', (_label, bad) => {
    // The next frame's bytes would supply what the cell claims.
    const next = dataRow(['2', 'bob@example.com', 'secret-ssn', 'x', 'y', 'z']);
    const { scanner } = session();
    scanner.feed(described(), []);
    expectPgError(() => scanner.feed(Buffer.concat([bad, next]), []), '08P01', 'upstream protocol violation: malformed DataRow');
  });

  it.each([
    ['a row shorter than its column count', msg('D', i16(6), i32(1), '1')],
    ['a length word cut by the frame end', msg('D', i16(6), i32(1), '1', Buffer.from([0, 0]))],
    ['no column count', msg('D', Buffer.from([0]))],
  ])('%s is 08P01', (_label, bad) => {
    const { scanner } = session();
    scanner.feed(described(), []);
    expectPgError(() => scanner.feed(Buffer.concat([bad, readyForQuery('I')]), []), '08P01', 'upstream protocol violation: malformed DataRow');
  });

  it('a row outside any statement is 08P01', () => {
    const { masker } = session();
    const d = dataRow(['1']);
    expectPgError(() => masker.dataRow(undefined, d, 5, d.length, new FrameWriter()), '08P01', /data row outside any statement/);
  });

  it('a row of a statement with nothing masked is left to pass', () => {
    const { masker } = session();
    const st = masker.state([], 'SELECT 1', CLEAN, 1, null);
    const d = dataRow(['1']);
    const w = new FrameWriter();
    expect(masker.dataRow(st, d, 5, d.length, w)).toBeUndefined();
    expect(w.pending).toBe(0);
    const t = msg('T', i16(1), 'x\0', i32(0), i16(0), i32(23), i16(4), i32(-1), i16(0));
    expect(masker.rowDescription(st, t.subarray(5))).toBeUndefined();
    expect(masker.dataRow(st, d, 5, d.length, w)).toBeUndefined();
  });
});

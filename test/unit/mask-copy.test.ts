// COPY ... TO STDOUT options read from the AST, and COPY text/csv rows rewritten with
// masked columns: against outputs captured from PostgreSQL 15 (psql), fed whole and
// split at every byte, plus the edge cases PostgreSQL's own encoders produce.

import { Buffer } from 'node:buffer';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadPgParser } from '../../src/analysis/pg/parser.js';
import { copyOptions, type CopyFormat } from '../../src/masking/copy-options.js';
import { CopyRowMasker } from '../../src/masking/copy-rows.js';
import type { Masker } from '../../src/masking/types.js';

beforeAll(async () => {
  await loadPgParser();
});

const stars: Masker = () => Buffer.from('****');
const nullify: Masker = () => null;
const wrap: Masker = (v) => Buffer.concat([Buffer.from('<'), v, Buffer.from('>')]);
// Every byte some format must escape or quote.
const spice: Masker = (v) => Buffer.concat([v, Buffer.from('|,;"\'\\\t\n')]);

const TEXT: CopyFormat = { kind: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false };
const CSV: CopyFormat = { kind: 'csv', delimiter: ',', null: '', quote: '"', escape: '"', header: false };

function formatOf(sql: string): CopyFormat {
  const s = copyOptions(sql);
  expect(s).not.toBeNull();
  return s!.format;
}

/** Runs `chunks` through a fresh masker; checks every output buffer holds whole rows. */
function run(format: CopyFormat, masks: (Masker | null)[], chunks: Buffer[]): string {
  const m = new CopyRowMasker(format, masks);
  const out: Buffer[] = [];
  for (const c of chunks) {
    const before = out.length;
    m.push(c, out);
    for (const b of out.slice(before)) expect(b[b.length - 1]).toBe(0x0a);
  }
  m.end(out);
  return Buffer.concat(out).toString('utf8');
}

/** The input cut at every byte boundary, and byte by byte. */
function splits(bytes: Buffer): Buffer[][] {
  const all: Buffer[][] = [];
  for (let i = 0; i <= bytes.length; i++) all.push([bytes.subarray(0, i), bytes.subarray(i)]);
  all.push([...bytes].map((b) => Buffer.of(b)));
  return all;
}

// Captured with psql from
//   COPY (SELECT * FROM (VALUES (1, E'tab\there', E'line1\nline2\r\nx', E'back\\slash',
//     'quote "q" and ''apos''', NULL::text, 'ünïcødé 日本 🎉', 'a,b;c|d'), (2, NULL, '', E'\\N',
//     '\.', 'plain', E'\x01ctl\x7f', NULL)) v(id, a, b, c, d, e, f, g)) TO STDOUT <options>
// and `masked` from the same query with the masks applied in SQL ('<' || a || '>',
// CASE WHEN b IS NULL THEN NULL ELSE '****' END, c || E'|,;"''\\\t\n', ..., NULL::text AS g).
const FIXTURE_MASKS: (Masker | null)[] = [null, wrap, stars, spice, wrap, null, spice, nullify];
const FIXTURES: { options: string; original: string; masked: string }[] = [
  {"options":"","original":"1\ttab\\there\tline1\\nline2\\r\\nx\tback\\\\slash\tquote \"q\" and 'apos'\t\\N\tünïcødé 日本 🎉\ta,b;c|d\n2\t\\N\t\t\\\\N\t\\\\.\tplain\t\u0001ctl\u007f\t\\N\n","masked":"1\t<tab\\there>\t****\tback\\\\slash|,;\"'\\\\\\t\\n\t<quote \"q\" and 'apos'>\t\\N\tünïcødé 日本 🎉|,;\"'\\\\\\t\\n\t\\N\n2\t\\N\t****\t\\\\N|,;\"'\\\\\\t\\n\t<\\\\.>\tplain\t\u0001ctl\u007f|,;\"'\\\\\\t\\n\t\\N\n"},
  {"options":"WITH (FORMAT csv)","original":"1,tab\there,\"line1\nline2\r\nx\",back\\slash,\"quote \"\"q\"\" and 'apos'\",,ünïcødé 日本 🎉,\"a,b;c|d\"\n2,,\"\",\\N,\\.,plain,\u0001ctl\u007f,\n","masked":"1,<tab\there>,****,\"back\\slash|,;\"\"'\\\t\n\",\"<quote \"\"q\"\" and 'apos'>\",,\"ünïcødé 日本 🎉|,;\"\"'\\\t\n\",\n2,,****,\"\\N|,;\"\"'\\\t\n\",<\\.>,plain,\"\u0001ctl\u007f|,;\"\"'\\\t\n\",\n"},
  {"options":"WITH (FORMAT csv, HEADER)","original":"id,a,b,c,d,e,f,g\n1,tab\there,\"line1\nline2\r\nx\",back\\slash,\"quote \"\"q\"\" and 'apos'\",,ünïcødé 日本 🎉,\"a,b;c|d\"\n2,,\"\",\\N,\\.,plain,\u0001ctl\u007f,\n","masked":"id,a,b,c,d,e,f,g\n1,<tab\there>,****,\"back\\slash|,;\"\"'\\\t\n\",\"<quote \"\"q\"\" and 'apos'>\",,\"ünïcødé 日本 🎉|,;\"\"'\\\t\n\",\n2,,****,\"\\N|,;\"\"'\\\t\n\",<\\.>,plain,\"\u0001ctl\u007f|,;\"\"'\\\t\n\",\n"},
  {"options":"WITH (FORMAT text, HEADER true)","original":"id\ta\tb\tc\td\te\tf\tg\n1\ttab\\there\tline1\\nline2\\r\\nx\tback\\\\slash\tquote \"q\" and 'apos'\t\\N\tünïcødé 日本 🎉\ta,b;c|d\n2\t\\N\t\t\\\\N\t\\\\.\tplain\t\u0001ctl\u007f\t\\N\n","masked":"id\ta\tb\tc\td\te\tf\tg\n1\t<tab\\there>\t****\tback\\\\slash|,;\"'\\\\\\t\\n\t<quote \"q\" and 'apos'>\t\\N\tünïcødé 日本 🎉|,;\"'\\\\\\t\\n\t\\N\n2\t\\N\t****\t\\\\N|,;\"'\\\\\\t\\n\t<\\\\.>\tplain\t\u0001ctl\u007f|,;\"'\\\\\\t\\n\t\\N\n"},
  {"options":"WITH CSV DELIMITER AS ';' NULL AS 'NULL' QUOTE AS '''' ESCAPE AS '\\'","original":"1;tab\there;'line1\nline2\r\nx';back\\slash;'quote \"q\" and \\'apos\\'';NULL;ünïcødé 日本 🎉;'a,b;c|d'\n2;NULL;;\\N;\\.;plain;\u0001ctl\u007f;NULL\n","masked":"1;<tab\there>;****;'back\\\\slash|,;\"\\'\\\\\t\n';'<quote \"q\" and \\'apos\\'>';NULL;'ünïcødé 日本 🎉|,;\"\\'\\\\\t\n';NULL\n2;NULL;****;'\\\\N|,;\"\\'\\\\\t\n';<\\.>;plain;'\u0001ctl\u007f|,;\"\\'\\\\\t\n';NULL\n"},
  {"options":"WITH (DELIMITER '|', NULL 'x')","original":"1|tab\\there|line1\\nline2\\r\\nx|back\\\\slash|quote \"q\" and 'apos'|x|ünïcødé 日本 🎉|a,b;c\\|d\n2|x||\\\\N|\\\\.|plain|\u0001ctl\u007f|x\n","masked":"1|<tab\\there>|****|back\\\\slash\\|,;\"'\\\\\\t\\n|<quote \"q\" and 'apos'>|x|ünïcødé 日本 🎉\\|,;\"'\\\\\\t\\n|x\n2|x|****|\\\\N\\|,;\"'\\\\\\t\\n|<\\\\.>|plain|\u0001ctl\u007f\\|,;\"'\\\\\\t\\n|x\n"},
];

describe('copyOptions', () => {
  it('reads the parenthesized option list', () => {
    const s = copyOptions(`COPY s.t (a, "B", Cc) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'x', QUOTE '''', ESCAPE '\\')`);
    expect(s).toEqual({
      direction: 'to', target: 'stdout', relation: { schema: 's', name: 't' }, columns: ['a', 'B', 'cc'], query: null,
      format: { kind: 'csv', delimiter: ';', null: 'x', quote: "'", escape: '\\', header: true }, encoding: null,
    });
  });

  it('reads the legacy option syntax', () => {
    expect(formatOf(`COPY t TO STDOUT WITH CSV HEADER DELIMITER AS ';' NULL AS 'x'`))
      .toEqual({ kind: 'csv', delimiter: ';', null: 'x', quote: '"', escape: '"', header: true });
    expect(formatOf(`COPY t TO STDOUT CSV QUOTE AS '|'`)).toMatchObject({ quote: '|', escape: '|', header: false });
    expect(formatOf('COPY t TO STDOUT BINARY').kind).toBe('binary');
    expect(formatOf('COPY t TO STDOUT WITH BINARY').kind).toBe('binary');
    expect(formatOf(`COPY t TO STDOUT DELIMITER '|'`)).toEqual({ ...TEXT, delimiter: '|' });
  });

  it('applies PostgreSQL defaults', () => {
    expect(formatOf('COPY t TO STDOUT')).toEqual(TEXT);
    expect(formatOf('copy t to stdout (format csv)')).toEqual(CSV);
    expect(formatOf(`COPY t TO STDOUT (FORMAT text, HEADER)`)).toEqual({ ...TEXT, header: true });
  });

  it('reads HEADER values as PostgreSQL does, unknown ones as false', () => {
    expect(formatOf('COPY t FROM STDIN (FORMAT csv, HEADER MATCH)').header).toBe(true);
    for (const v of ['true', 'on', '1', "'TRUE'"]) expect(formatOf(`COPY t TO STDOUT (FORMAT csv, HEADER ${v})`).header).toBe(true);
    for (const v of ['false', 'off', '0', "'nope'"]) expect(formatOf(`COPY t TO STDOUT (FORMAT csv, HEADER ${v})`).header).toBe(false);
  });

  it('tells targets and directions apart', () => {
    expect(copyOptions('COPY t FROM STDIN')).toMatchObject({ direction: 'from', target: 'stdin', relation: { schema: null, name: 't' } });
    expect(copyOptions(`COPY t TO '/tmp/x'`)).toMatchObject({ direction: 'to', target: 'file' });
    expect(copyOptions(`COPY t FROM PROGRAM 'cat'`)).toMatchObject({ direction: 'from', target: 'program' });
    expect(copyOptions(`COPY t TO STDOUT ENCODING 'latin1'`)?.encoding).toBe('latin1');
  });

  it('slices the inner query of COPY (query) TO STDOUT', () => {
    const s = copyOptions(`/* é */ COPY (SELECT 'ü', x FROM t WHERE y IN (1, 2)) TO STDOUT WITH (FORMAT csv);`);
    expect(s).toMatchObject({ direction: 'to', target: 'stdout', relation: null, columns: null, query: `SELECT 'ü', x FROM t WHERE y IN (1, 2)` });
    const tricky = `COPY ( SELECT ')' AS "a)", E'\\')', $$)$$, $q$)$q$ /* ) /* ) */ */ FROM t -- )\n ) TO STDOUT`;
    expect(copyOptions(tricky)?.query).toBe(`SELECT ')' AS "a)", E'\\')', $$)$$, $q$)$q$ /* ) /* ) */ */ FROM t -- )`);
    expect(copyOptions('COPY (WITH w AS (SELECT 1) SELECT * FROM w) TO STDOUT')?.query).toBe('WITH w AS (SELECT 1) SELECT * FROM w');
  });

  it('answers null for anything but one COPY statement', () => {
    expect(copyOptions('SELECT 1')).toBeNull();
    expect(copyOptions('COPY t TO STDOUT; SELECT 1')).toBeNull();
    expect(copyOptions('COPY t TO')).toBeNull();
    expect(copyOptions('')).toBeNull();
    expect(copyOptions(`COPY t TO STDOUT (FORMAT xml)`)).toBeNull();
  });
});

describe('CopyRowMasker on PostgreSQL output', () => {
  for (const f of FIXTURES) {
    describe(f.options || 'default text', () => {
      const sql = `COPY (SELECT 1) TO STDOUT ${f.options}`;

      it('replaces masked columns and keeps the rest byte for byte', () => {
        expect(run(formatOf(sql), FIXTURE_MASKS, [Buffer.from(f.original)])).toBe(f.masked);
      });

      it('gives the same output however the rows are split', () => {
        for (const chunks of splits(Buffer.from(f.original))) expect(run(formatOf(sql), FIXTURE_MASKS, chunks)).toBe(f.masked);
      });

      it('passes everything through when nothing is masked', () => {
        const data = Buffer.from(f.original);
        const out: Buffer[] = [];
        new CopyRowMasker(formatOf(sql), FIXTURE_MASKS.map(() => null)).push(data, out);
        expect(out).toEqual([data]);
      });
    });
  }
});

describe('CopyRowMasker', () => {
  function seen(format: CopyFormat, fields: number, row: string): string[] {
    const values: string[] = [];
    const record: Masker = (v) => {
      values.push(v.toString('latin1'));
      return v;
    };
    run(format, Array.from({ length: fields }, () => record), [Buffer.from(row, 'latin1')]);
    return values;
  }

  it('decodes every text escape before masking', () => {
    expect(seen(TEXT, 2, '\\101\\x41\\x4a\\7\\08x\\q\\\\\\b\\f\\n\\r\\t\\v\\xg\tok\n')).toEqual(['AAJ\x07\x008xq\\\b\f\n\r\t\vxg', 'ok']);
    expect(seen(TEXT, 2, '\\N\t\n')).toEqual(['']);
  });

  it('decodes csv quoting before masking', () => {
    expect(seen(CSV, 3, 'a"b,c""d"e,"",x\n')).toEqual(['ab,c"de', '', 'x']);
    const esc = { ...CSV, escape: '\\' };
    expect(seen(esc, 2, '"a\\"b\\\\",c\\d\n')).toEqual(['a"b\\', 'c\\d']);
  });

  it('writes the NULL string for a masker returning null, and leaves NULLs alone', () => {
    expect(run(TEXT, [nullify, stars], [Buffer.from('a\t\\N\n')])).toBe('\\N\t\\N\n');
    expect(run(CSV, [nullify, stars, stars], [Buffer.from('a,,""\n')])).toBe(',,****\n');
  });

  it('keeps masked values from reading as the NULL string', () => {
    expect(run({ ...TEXT, null: 'x' }, [() => Buffer.from('x')], [Buffer.from('secret\n')])).toBe('\\170\n');
    expect(run(CSV, [() => Buffer.alloc(0)], [Buffer.from('secret\n')])).toBe('""\n');
    expect(run({ ...CSV, null: 'NULL' }, [() => Buffer.from('NULL'), stars], [Buffer.from('a,b\n')])).toBe('"NULL",****\n');
    expect(run(CSV, [() => Buffer.from('\\.')], [Buffer.from('a\n')])).toBe('"\\."\n');
  });

  it('handles multi-byte UTF-8 values', () => {
    const upper: Masker = (v) => Buffer.from(v.toString('utf8').toUpperCase());
    expect(run(TEXT, [upper, null], [Buffer.from('ünï 日本\t🎉\n')])).toBe('ÜNÏ 日本\t🎉\n');
    const input = Buffer.from('"é,\n🎉",日本\nü,x\n');
    for (const chunks of splits(input)) expect(run(CSV, [stars, null], chunks)).toBe('****,日本\n****,x\n');
  });

  it('passes a header row unchanged', () => {
    expect(run({ ...CSV, header: true }, [stars, null], [Buffer.from('"a,b",c\n1,2\n')])).toBe('"a,b",c\n****,2\n');
  });

  it('rewrites several rows in one payload and rows split across payloads', () => {
    const out: Buffer[] = [];
    const m = new CopyRowMasker(TEXT, [null, stars]);
    m.push(Buffer.from('1\ta\n2\tb\n3\t'), out);
    expect(out.map(String)).toEqual(['1\t****\n2\t****\n']);
    m.push(Buffer.from('c'), out);
    m.push(Buffer.from('\n4\td'), out);
    m.end(out);
    expect(out.map(String)).toEqual(['1\t****\n2\t****\n', '3\t****\n', '4\t****']);
  });

  it('throws on a row with the wrong number of fields', () => {
    expect(() => run(TEXT, [stars, null, null], [Buffer.from('1\t2\n')])).toThrow(/2 fields where 3/);
    expect(() => run(CSV, [stars], [Buffer.from('1,"2\n')])).toThrow(/fields/);
    expect(() => run(TEXT, [stars], [Buffer.from('a\nb\tc')])).toThrow(/fields/);
  });

  it('bounds the bytes held for one row', () => {
    const m = new CopyRowMasker(TEXT, [stars], 16);
    const out: Buffer[] = [];
    m.push(Buffer.from('0123456789\n0123456789'), out);
    expect(() => m.push(Buffer.from('0123456789'), out)).toThrow(/longer than 16 bytes/);
  });

  it('refuses to mask binary rows', () => {
    const binary: CopyFormat = { ...TEXT, kind: 'binary' };
    expect(() => new CopyRowMasker(binary, [stars])).toThrow(/binary/);
    const out: Buffer[] = [];
    new CopyRowMasker(binary, [null]).push(Buffer.from('PGCOPY\n\xff'), out);
    expect(out).toHaveLength(1);
  });
});

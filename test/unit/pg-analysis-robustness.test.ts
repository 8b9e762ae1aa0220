// The PostgreSQL analyzer never throws and never lets a hostile input degrade it:
// random text, deep nesting that exhausts the stack inside WASM (the parser instance
// is replaced), huge statements, positions and text slices in non-ASCII text.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Analysis } from '../../src/analysis/facts.js';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { PG_HOSTILE_STATEMENTS } from '../fixtures/pg-hostile-statements.js';
import { DEFAULT_CTX } from '../fixtures/pg-statements.js';

beforeAll(async () => {
  await loadPgParser();
});

// Deterministic PRNG (mulberry32) so a failure can be replayed.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKENS = [
  'SELECT', 'FROM', 'WHERE', 'INSERT', 'INTO', 'VALUES', 'UPDATE', 'SET', 'DELETE', 'WITH', 'AS', 'DO', 'COPY',
  'PROGRAM', 'ROLE', 'EXPLAIN', 'ANALYZE', 'PREPARE', 'EXECUTE', 'CREATE', 'RULE', 'TABLE', 'DROP', 'UNION', 'JOIN',
  'ON', 'LIMIT', 'RETURNING', '(', ')', ',', ';', '*', '.', '=', '+', '::', "'", "E'", "U&'", 'U&"', '"', '$$', '$a$',
  '/*', '*/', '--', '\n', ' ', '\\', 'users', 'pg_read_file', 'set_config', 'dblink', '$1', '1', "'x'", 'NULL',
  'é', '😀', '\u0000', '\uD800', '\u00a0',
];

function randomText(r: () => number): string {
  const mode = r();
  const len = Math.floor(r() * 60);
  let s = '';
  if (mode < 0.3) {
    for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(r() * 256));
  } else if (mode < 0.4) {
    for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(r() * 0x10000));
  } else if (mode < 0.8) {
    for (let i = 0; i < len; i++) s += TOKENS[Math.floor(r() * TOKENS.length)]! + (r() < 0.5 ? ' ' : '');
  } else {
    // A hostile statement with a few characters changed, dropped or inserted.
    s = PG_HOSTILE_STATEMENTS[Math.floor(r() * PG_HOSTILE_STATEMENTS.length)]!.sql;
    for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) {
      const at = Math.floor(r() * (s.length + 1));
      const tok = TOKENS[Math.floor(r() * TOKENS.length)]!;
      const op = r();
      s = op < 0.33 ? s.slice(0, at) + tok + s.slice(at) : op < 0.66 ? s.slice(0, at) + s.slice(at + 1) : s.slice(0, at) + tok + s.slice(at + tok.length);
    }
  }
  return s;
}

/** Shape every analysis must have, whatever the input. */
function wellFormed(sql: string, a: Analysis): string | null {
  if (!a.ok) return typeof a.error === 'string' && a.error.length > 0 ? null : 'refusal without a message';
  for (const s of a.statements) {
    if (!sql.includes(s.text)) return `text ${JSON.stringify(s.text)} is not part of the input`;
    if (s.kinds.length === 0) return 'a statement without a kind';
    if (new Set(s.kinds).size !== s.kinds.length) return 'duplicate kinds';
    for (const r of [...s.reads, ...s.writes]) if (r.candidates.length === 0) return `table ${r.name} without candidates`;
  }
  return null;
}

describe('analyzePg: fuzz', () => {
  it('never throws and always answers in shape, on 10,000 random inputs', () => {
    const r = rng(0x5eed);
    const failures: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const sql = randomText(r);
      try {
        const problem = wellFormed(sql, analyzePg(sql, DEFAULT_CTX));
        if (problem) failures.push(`${JSON.stringify(sql)}: ${problem}`);
      } catch (e) {
        failures.push(`${JSON.stringify(sql)}: threw ${String(e)}`);
      }
    }
    expect(failures.slice(0, 10)).toEqual([]);
  });

  it('refuses non-strings without throwing', () => {
    expect(analyzePg(undefined as unknown as string, DEFAULT_CTX).ok).toBe(false);
    expect(analyzePg(42 as unknown as string, DEFAULT_CTX).ok).toBe(false);
  });

  it('accepts empty and whitespace-only text as no statements', () => {
    for (const sql of ['', ' ', '\n\t\r\f\v', '-- x', '/* x */']) expect(analyzePg(sql, DEFAULT_CTX)).toMatchObject({ ok: true, statements: [] });
  });
});

describe('analyzePg: nesting and size', () => {
  const plus = (n: number): string => 'SELECT 1' + '+1'.repeat(n);

  it('refuses parentheses nested deeper than the grammar allows', () => {
    const a = analyzePg('SELECT ' + '('.repeat(100_000) + '1' + ')'.repeat(100_000), DEFAULT_CTX);
    expect(a.ok).toBe(false);
  });

  it('refuses trees too deep to walk', () => {
    for (const sql of [
      plus(3_000),
      'SELECT ' + '(SELECT '.repeat(900) + '1' + ')'.repeat(900),
      'SELECT 1 FROM t0' + Array.from({ length: 3_000 }, (_, i) => ` JOIN t${i + 1} ON true`).join(''),
      Array.from({ length: 3_000 }, (_, i) => `SELECT ${i}`).join(' UNION '),
    ]) {
      // A limit of dbward's, which the client is told as PostgreSQL's 54001, not a refusal.
      expect(analyzePg(sql, DEFAULT_CTX)).toMatchObject({ ok: false, tooComplex: true });
    }
  });

  it('walks a deep but reasonable expression', () => {
    const a = analyzePg(plus(1_000) + ' FROM t LIMIT 1', DEFAULT_CTX);
    expect(a.ok && a.statements[0]!.reads.map((r) => r.name)).toEqual(['t']);
  });

  it('replaces a parser instance broken by a stack overflow inside WASM, and keeps answering right', async () => {
    for (let i = 0; i < 40; i++) {
      const broken = analyzePg(plus(20_000), DEFAULT_CTX);
      expect(broken.ok).toBe(false);
      // A second blow before the spare is in place is still only a refusal.
      expect(analyzePg(plus(20_000), DEFAULT_CTX).ok).toBe(false);
      await loadPgParser();
      const a = analyzePg("SELECT pg_read_file('x') FROM users WHERE id = 1", DEFAULT_CTX);
      expect(a.ok && a.statements[0]).toMatchObject({ kinds: ['select'], functions: ['pg_read_file'], flags: expect.arrayContaining(['server_file_access']) });
    }
  });

  it('analyzes a large multi-row INSERT', () => {
    const sql = 'INSERT INTO t VALUES ' + Array(20_000).fill("(1, 'abc', now())").join(',');
    const a = analyzePg(sql, DEFAULT_CTX);
    expect(a.ok && a.statements[0]).toMatchObject({ kinds: ['insert'], writes: [{ name: 't' }], functions: ['now'] });
  });

  it('refuses a large garbage string', () => {
    expect(analyzePg('x'.repeat(2_000_000) + ' (', DEFAULT_CTX).ok).toBe(false);
  });
});

describe('analyzePg: text and positions', () => {
  it('slices statements by character in non-ASCII text', () => {
    const a = analyzePg("  SELECT 'é€😀' AS x ;\n/* ü */ SELECT 2;SELECT 3", DEFAULT_CTX);
    expect(a.ok && a.statements.map((s) => s.text)).toEqual(["SELECT 'é€😀' AS x", '/* ü */ SELECT 2', 'SELECT 3']);
  });

  it('reports 1-based character positions of syntax errors', () => {
    expect(analyzePg('SELECT 1 FRM t', DEFAULT_CTX)).toMatchObject({ ok: false, position: 14 });
    // Characters as PostgreSQL counts them: 😀 is one.
    expect(analyzePg("SELECT '😀é' FRM t", DEFAULT_CTX)).toMatchObject({ ok: false, position: 17 });
    expect(analyzePg('SELECT 1\u0000', DEFAULT_CTX)).toMatchObject({ ok: false, position: 9 });
    expect(analyzePg("SELECT '😀' \u0000", DEFAULT_CTX)).toMatchObject({ ok: false, position: 12 });
  });
});

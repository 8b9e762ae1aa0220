import { beforeAll, describe, expect, it } from 'vitest';
import { AnalysisCache, shapeOf } from '../../src/analysis/cache.js';
import type { AnalysisContext } from '../../src/analysis/facts.js';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';

const ctx: AnalysisContext = { searchPath: ['$user', 'public'], user: 'alice' };
let calls = 0;
const counting = (sql: string, c: AnalysisContext) => { calls++; return analyzePg(sql, c); };

beforeAll(() => loadPgParser());

describe('shapeOf', () => {
  it('blanks integer tokens of plain texts only', () => {
    expect(shapeOf('SELECT abalance FROM pgbench_accounts WHERE aid = 12345')).toBe('SELECT abalance FROM pgbench_accounts WHERE aid = \u0001');
    // Digits in names, floats, exponents, parameters, strings, comments and dollar quotes are left alone (no shape).
    for (const sql of ['SELECT x1 FROM t2', 'SELECT 1.5', 'SELECT 1e5', 'SELECT $1', "SELECT '5'", 'SELECT 5 -- 6', 'SELECT 5 /* 6 */', 'SELECT $$5$$', 'SELECT "a5"', 'SELECT 1_000']) {
      expect(shapeOf(sql), sql).toBeNull();
    }
  });
});

describe('AnalysisCache', () => {
  it('parses a repeated text once, and texts differing only in integers once', () => {
    const cache = new AnalysisCache(counting);
    calls = 0;
    for (let i = 0; i < 50; i++) cache.get(`SELECT abalance FROM pgbench_accounts WHERE aid = ${i}`, ctx);
    cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 7', ctx);
    expect(calls).toBe(1);
    expect(cache.hits).toBe(50);
  });

  it('never shares facts that depend on a literal', () => {
    const cache = new AnalysisCache(counting);
    const a = cache.get('SET statement_timeout = 5', ctx);
    const b = cache.get('SET statement_timeout = 6', ctx);
    expect(a.ok && a.statements[0]!.values).toEqual(['5']);
    expect(b.ok && b.statements[0]!.values).toEqual(['6']);
  });

  it('keys by search_path and user, and does not cache EXECUTE (its facts come from the session)', () => {
    const cache = new AnalysisCache(counting);
    const one = cache.get('SELECT * FROM users', ctx);
    const two = cache.get('SELECT * FROM users', { searchPath: ['evil'], user: 'alice' });
    expect(one.ok && one.statements[0]!.reads[0]!.candidates).toContain('public.users');
    expect(two.ok && two.statements[0]!.reads[0]!.candidates).toContain('evil.users');
    calls = 0;
    cache.get('EXECUTE p', ctx);
    cache.get('EXECUTE p', ctx);
    expect(calls).toBe(2);
  });

  it('stays within its bound', () => {
    const cache = new AnalysisCache(counting, 10);
    for (let i = 0; i < 100; i++) cache.get(`SELECT ${i}.5`, ctx);
    expect(cache.size).toBe(10);
  });
});

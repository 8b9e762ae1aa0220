// Fingerprints and normalized texts for the audit trail: texts that differ only in
// literals, white space, comments or keyword case group together; different tables or
// columns do not; unparsable text gets null; and a parser instance broken by a stack
// overflow inside WASM is replaced, as for parsing.

import { beforeAll, describe, expect, it, vi } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { fingerprintPg, normalizePg } from '../../src/analysis/pg/normalize.js';
import { DEFAULT_CTX } from '../fixtures/pg-statements.js';

beforeAll(async () => {
  await loadPgParser();
});

const HEX16 = /^[0-9a-f]{16}$/;

describe('fingerprintPg', () => {
  it('is 16 hex digits, shared by texts that differ in literals, white space, comments or keyword case', () => {
    const group = [
      "SELECT a, b FROM users WHERE id = 1 AND name = 'bob'",
      "select a, b from users where id = 42 and name = 'alice'",
      "SELECT  a,b\n  FROM users -- who\n WHERE id = -7 AND name = E'x\\'y'",
      'SELECT a, b FROM users WHERE id = $1 AND name = $2',
      "SELECT a, b FROM USERS WHERE id = 1.5 AND name = $$bob$$",
    ];
    const fps = group.map(fingerprintPg);
    expect(fps[0]).toMatch(HEX16);
    expect(new Set(fps)).toEqual(new Set([fps[0]]));
  });

  it('groups IN lists of any length', () => {
    expect(fingerprintPg('SELECT 1 FROM t WHERE id IN (1, 2, 3)')).toBe(fingerprintPg('SELECT 1 FROM t WHERE id IN (4)'));
  });

  it('differs for different tables, columns, schemas, quoted names and statements', () => {
    const texts = [
      'SELECT a FROM t',
      'SELECT b FROM t',
      'SELECT a FROM u',
      'SELECT a FROM s.t',
      'SELECT a FROM "T"',
      'SELECT a FROM t WHERE a = 1',
      'DELETE FROM t',
      'SELECT a FROM t; SELECT a FROM t',
    ];
    const fps = texts.map(fingerprintPg);
    for (const fp of fps) expect(fp).toMatch(HEX16);
    expect(new Set(fps).size).toBe(texts.length);
  });

  it('is the same for a role password whatever the password (it must not let one be guessed)', () => {
    for (const [a, b] of [
      ["CREATE ROLE r PASSWORD 'hunter2'", "CREATE ROLE r PASSWORD 'correct horse'"],
      ["ALTER SERVER s OPTIONS (SET password 'hunter2')", "ALTER SERVER s OPTIONS (SET password 'x')"],
      ["CREATE USER MAPPING FOR u SERVER s OPTIONS (password 'hunter2')", "CREATE USER MAPPING FOR u SERVER s OPTIONS (password 'x')"],
      ["CREATE SUBSCRIPTION s CONNECTION 'password=hunter2' PUBLICATION p", "CREATE SUBSCRIPTION s CONNECTION 'password=x' PUBLICATION p"],
    ]) {
      expect(fingerprintPg(a!)).toMatch(HEX16);
      expect(fingerprintPg(a!)).toBe(fingerprintPg(b!));
    }
  });

  it('is null for text that does not parse or that the parser cannot read whole', () => {
    for (const sql of [
      'SELECT 1 FRM t',
      "SELECT 'unterminated",
      'SELECT $$unterminated',
      'SELECT "unterminated',
      'SELECT 1 /* unterminated',
      'SELECT 1\u0000; DROP TABLE t',
      'SELECT \uD800',
      '',
    ]) {
      expect(fingerprintPg(sql), sql).toBeNull();
    }
    expect(fingerprintPg(undefined as unknown as string)).toBeNull();
  });
});

describe('normalizePg', () => {
  it('replaces every constant with $n, numbering after the parameters already there', () => {
    expect(normalizePg("SELECT * FROM t WHERE a = 1 AND b = 'x' AND c = -2.5")).toBe('SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3');
    expect(normalizePg("SELECT $1, 'x' FROM t WHERE b = $2")).toBe('SELECT $1, $3 FROM t WHERE b = $2');
    expect(normalizePg("INSERT INTO t (a, b) VALUES (1, 'x'), (2, E'y')")).toBe('INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)');
    expect(normalizePg("UPDATE t SET a = 'x' WHERE id = 1")).toBe('UPDATE t SET a = $1 WHERE id = $2');
    expect(normalizePg("SET search_path = 'a'")).toBe('SET search_path = $1');
  });

  it('keeps the text around the constants as written, comments and all', () => {
    expect(normalizePg("select  *\nfrom T -- note\nwhere a=$$x$$")).toBe('select  *\nfrom T -- note\nwhere a=$1');
    expect(normalizePg("SELECT 1; SELECT 'a'")).toBe('SELECT $1; SELECT $2');
    expect(normalizePg("SELECT 'é😀' AS x")).toBe('SELECT $1 AS x');
  });

  it('keeps GROUP BY and ORDER BY positions, which are not values', () => {
    expect(normalizePg('SELECT a, count(*) FROM t WHERE b > 5 GROUP BY 1 ORDER BY 2')).toBe('SELECT a, count(*) FROM t WHERE b > $1 GROUP BY 1 ORDER BY 2');
  });

  it('replaces role and user mapping passwords, and scrubs what libpg_query leaves in place', () => {
    expect(normalizePg("ALTER USER bob WITH ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:abc'")).toBe('ALTER USER bob WITH ENCRYPTED PASSWORD $1');
    expect(normalizePg("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 'hunter2')"))
      .toBe('CREATE USER MAPPING FOR bob SERVER s OPTIONS (user $1, password $2)');
    // libpg_query does not normalize CREATE SERVER options: the host stays, the password does not.
    expect(normalizePg("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db', password 'hunter2')"))
      .toBe("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db', password '***')");
    expect(normalizePg("CREATE VIEW v AS SELECT * FROM dblink('host=h password=hunter2', 'select 1') AS t(a int)"))
      .toBe("CREATE VIEW v AS SELECT * FROM dblink('***', '***') AS t(a int)");
    expect(normalizePg('SELECT 1 /* the password is hunter2 */')).toBe('SELECT $1 /* *** */');
  });

  it('is null for text that does not parse, rather than the error message', () => {
    // libpg_query returns some errors as if they were the normalized text.
    for (const sql of ["SELECT 'hunter2", 'SELECT 1 FRM t', 'SELECT $$x', 'SELECT 1\u0000', '']) expect(normalizePg(sql), sql).toBeNull();
    expect(normalizePg(42 as unknown as string)).toBeNull();
  });

  it('gives the same answer whether or not the text was fingerprinted first', () => {
    const sql = "SELECT * FROM t WHERE a = 'x'";
    const cold = normalizePg(sql);
    fingerprintPg(sql);
    expect(normalizePg(sql)).toBe(cold);
    fingerprintPg("SELECT 'other");
    expect(normalizePg(sql)).toBe(cold);
  });
});

describe('fingerprintPg and normalizePg before loadPgParser', () => {
  it('throw a clear error (a programming error, as for analyzePg)', async () => {
    vi.resetModules();
    const fresh = await import('../../src/analysis/pg/normalize.js');
    expect(() => fresh.fingerprintPg('SELECT 1')).toThrow(/loadPgParser/);
    expect(() => fresh.normalizePg('SELECT 1')).toThrow(/loadPgParser/);
  });
});

describe('fingerprintPg and normalizePg: a broken parser instance', () => {
  // Deep enough to exhaust the JS stack inside WASM (libpg_query's normalizer recurses).
  const deep = 'SELECT 1' + '+1'.repeat(20_000);

  it('is replaced after a stack overflow inside WASM, and answers stay right', async () => {
    const fp = fingerprintPg("SELECT a FROM t WHERE id = 1");
    for (let i = 0; i < 10; i++) {
      expect(normalizePg(deep)).toBeNull();
      // A second blow before the spare is in place is still only a null.
      expect(normalizePg(deep)).toBeNull();
      await loadPgParser();
      expect(normalizePg("SELECT a FROM t WHERE id = 1 AND b = 'x'")).toBe('SELECT a FROM t WHERE id = $1 AND b = $2');
      expect(fingerprintPg('SELECT a FROM t WHERE id = 99')).toBe(fp);
      const a = analyzePg("SELECT pg_read_file('x') FROM users", DEFAULT_CTX);
      expect(a.ok && a.statements[0]).toMatchObject({ kinds: ['select'], functions: ['pg_read_file'] });
    }
  });

  it('shares the instance with parsing: an overflow while parsing does not break fingerprints', async () => {
    expect(analyzePg(deep, DEFAULT_CTX).ok).toBe(false);
    await loadPgParser();
    expect(fingerprintPg('SELECT 1')).toMatch(HEX16);
    expect(normalizePg('SELECT 1')).toBe('SELECT $1');
  });
});

describe('Analysis.fingerprint (the audit trail grouping key, from the tree)', () => {
  const fp = (sql: string): string | undefined => {
    const a = analyzePg(sql, DEFAULT_CTX);
    return a.ok ? a.fingerprint : undefined;
  };

  it('is shared by texts differing only in constants, layout, comments and keyword case', () => {
    const base = fp('SELECT a FROM t WHERE id = 1 AND name = \'x\'');
    expect(base).toMatch(/^[0-9a-f]{16}$/);
    expect(fp('select a\n  from t /* c */ where id = 42 and name = \'other\'')).toBe(base);
  });

  it('differs for different tables, columns and operators', () => {
    const base = fp('SELECT a FROM t WHERE id = 1');
    expect(fp('SELECT b FROM t WHERE id = 1')).not.toBe(base);
    expect(fp('SELECT a FROM u WHERE id = 1')).not.toBe(base);
    expect(fp('SELECT a FROM t WHERE id > 1')).not.toBe(base);
  });

  it('does not depend on a password or connection-string option, so it cannot confirm a guess', () => {
    expect(fp("ALTER ROLE r PASSWORD 'guess-1'")).toBe(fp("ALTER ROLE r PASSWORD 'the-real-one'"));
    expect(fp("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'x', password 'a')")).toBe(fp("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'x', password 'b')"));
  });
});

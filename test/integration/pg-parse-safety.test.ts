// dbward must read SQL exactly as the server does. Statements that would change
// that (standard_conforming_strings off, a client encoding that can hide quotes)
// are refused whatever the policy says, and if the server reports such a change
// anyway (a function that calls set_config), the session is ended.

import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';

let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  const c = new pg.Client({ ...PG });
  await c.connect();
  await c.query(`CREATE OR REPLACE FUNCTION dbward_scs_off() RETURNS int LANGUAGE plpgsql AS $$
    BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); RETURN 1; END $$`);
  await c.end();
  d = await startTestDaemon(); // allow-all policy: what refuses below is dbward itself
});

afterAll(async () => {
  await d?.stop();
});

const client = async () => {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'alice' });
  await c.connect();
  return c;
};

it('refuses visible changes under an allow-all policy, and the session goes on', async () => {
  const c = await client();
  try {
    for (const sql of ['SET standard_conforming_strings = off', "SET NAMES 'SJIS'", "SELECT set_config('standard_conforming_strings', 'off', false)",
      "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'"]) {
      const err = await c.query(sql).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code, sql).toBe('42501');
      expect(err?.message, sql).toContain('dbward.parse-safety');
    }
    expect((await c.query('SHOW standard_conforming_strings')).rows).toEqual([{ standard_conforming_strings: 'on' }]);
  } finally {
    await c.end();
  }
});

it('ends the session when the server reports such a change that dbward could not see', async () => {
  const c = await client();
  const errors: (Error & { code?: string })[] = [];
  c.on('error', (e) => errors.push(e));
  const queryError = await c.query('SELECT dbward_scs_off()').then(() => null, (e: Error & { code?: string }) => e);
  // node-postgres reports the FATAL on the pending query or as a client error, depending on timing.
  await expect.poll(() => (queryError ? [queryError] : []).concat(errors).find((e) => e.code === '0A000')?.message).toMatch(/standard_conforming_strings = off/);
  await c.end().catch(() => undefined);
  // Other sessions are unaffected.
  const other = await client();
  expect((await other.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  await other.end();
});

it('reports text the parser rejects as PostgreSQL does: 42601 at the position of the error, and nothing runs', async () => {
  const c = await client();
  try {
    const direct = new pg.Client({ ...PG });
    await direct.connect();
    const native = await direct.query('SELECT 1 +;').then(() => null, (e: Error & { code?: string; position?: string }) => e);
    await direct.end();
    const err = await c.query('SELECT 1 +;').then(() => null, (e: Error & { code?: string; position?: string }) => e);
    expect(err?.code).toBe('42601');
    expect(err?.position).toBe(native?.position);
    expect(err?.message).toMatch(/^statement could not be parsed: syntax error/);
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  } finally {
    await c.end();
  }
});

it('refuses a statement too deep for dbward to analyze with 54001 (too complex), not as a policy denial; the session goes on', async () => {
  const c = await client();
  try {
    const deep = 'SELECT 1' + '+1'.repeat(3_000);
    const err = await c.query(deep).then(() => null, (e: Error & { code?: string; hint?: string }) => e);
    expect(err?.code).toBe('54001');
    expect(err?.message).toMatch(/nested too deeply to analyze/);
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  } finally {
    await c.end();
  }
});

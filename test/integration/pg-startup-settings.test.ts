// Settings a client asks for at startup (node-postgres's statement_timeout, libpq's
// PGOPTIONS) reach the real PostgreSQL through dbward, so a client's own safety
// settings hold; those that would change the session's identity, load code or make
// the server read SQL differently than dbward parses it refuse the connection.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conninfo, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { requirePostgres } from '../helpers/services.js';

let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  d = await startTestDaemon();
});

afterAll(async () => {
  await d?.stop();
});

const withOptions = (options: string, sql: string) => psql(conninfo(d.port), ['-Atc', sql], { env: { PGOPTIONS: options } });

describe('startup settings through dbward', () => {
  it("applies node-postgres's statement_timeout: a long statement is cancelled by the server", async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'alice', statement_timeout: 200 });
    await c.connect();
    try {
      expect((await c.query('SHOW statement_timeout')).rows).toEqual([{ statement_timeout: '200ms' }]);
      await expect(c.query('SELECT pg_sleep(3)')).rejects.toMatchObject({ code: '57014' });
    } finally {
      await c.end();
    }
  });

  it('applies -c settings from PGOPTIONS: a read-only session cannot write', async () => {
    const r = await withOptions('-c default_transaction_read_only=on --lock-timeout=1s', "SHOW default_transaction_read_only; SHOW lock_timeout; CREATE TEMP TABLE t_ro (x int)");
    expect(r.stdout.trim().split('\n')).toEqual(['on', '1s']);
    expect(r.stderr).toMatch(/cannot execute CREATE TABLE in a read-only transaction/);
  });

  it('keeps a value with escaped spaces whole', async () => {
    const r = await withOptions(String.raw`-c search_path=public,\ pg_catalog`, 'SHOW search_path');
    expect(r.stdout.trim()).toBe('public, pg_catalog');
  });

  it.each([
    ['-c role=postgres', /startup setting "role" is not accepted/],
    ['-c session_authorization=postgres', /startup setting "session_authorization" is not accepted/],
    ['-c local_preload_libraries=auto_explain', /loads code before dbward can record anything/],
    ['-c standard_conforming_strings=off', /reads SQL text differently than dbward parses it/],
    ['-B 100', /startup options other than -c name=value are not supported/],
  ])('refuses the connection for %s, naming why', async (options, why) => {
    const r = await withOptions(options, 'SELECT 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(why);
  });

  it("passes on the server's own error for a setting it refuses", async () => {
    const bad = await withOptions('-c statement_timeout=soon', 'SELECT 1');
    expect(bad.stderr).toMatch(/invalid value for parameter "statement_timeout": "soon"/);
    const unknown = await withOptions('-c no_such_setting=1', 'SELECT 1');
    expect(unknown.stderr).toMatch(/unrecognized configuration parameter "no_such_setting"/);
  });

  it('still sets the role dbward maps, and the application name it records', async () => {
    const r = await withOptions('-c application_name=sneaky', "SELECT current_setting('application_name')");
    // application_name is dbward's (it names the identity); a client's -c cannot replace it.
    expect(r.stdout.trim()).toMatch(/^dbward:alice/);
  });
});

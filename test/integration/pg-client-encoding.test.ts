// SQL text in the session's client_encoding, against the real PostgreSQL: dbward reads
// it as the server does, or refuses it. A name the parser read differently from the
// server could slip past a rule that names it.

import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStartup } from '../../src/proxy/postgres/startup.js';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { RawPg, type Msg } from '../helpers/rawpg.js';
import { PG, requirePostgres } from '../helpers/services.js';

const POLICY = `default: allow
rules:
  - id: no-donnees
    match: { statement: { tables: { any: ["dbward_enc.données"] } } }
    action: deny
`;

let d: TestDaemon;

beforeAll(async () => {
  await requirePostgres();
  const c = new pg.Client({ ...PG });
  await c.connect();
  await c.query('DROP SCHEMA IF EXISTS dbward_enc CASCADE; CREATE SCHEMA dbward_enc; CREATE TABLE dbward_enc."données" (v text); INSERT INTO dbward_enc."données" VALUES (\'secret\')');
  await c.end();
  d = await startTestDaemon({ policy: POLICY });
});

afterAll(async () => {
  await d?.stop();
});

async function session(encoding: string): Promise<RawPg> {
  const c = await RawPg.connect(d.port);
  c.send(encodeStartup({ user: 'alice', database: 'test', client_encoding: encoding }));
  await c.until('readyForQuery');
  return c;
}

/** A simple Query whose text is these bytes. */
function query(bytes: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write('Q');
  head.writeInt32BE(bytes.length + 5, 1);
  return Buffer.concat([head, bytes, Buffer.from([0])]);
}

async function run(c: RawPg, bytes: Buffer): Promise<Msg[]> {
  c.send(query(bytes));
  return c.until('readyForQuery');
}

describe('client_encoding', () => {
  it('reads LATIN1 text exactly: a rule naming a table with accents holds, and the trail records the text', async () => {
    const c = await session('LATIN1');
    try {
      const denied = await run(c, Buffer.from('SELECT v FROM dbward_enc.données', 'latin1'));
      expect(denied.find((m) => m.name === 'error')?.message).toContain('no-donnees');
      expect(denied.some((m) => m.name === 'dataRow')).toBe(false);
      const ok = await run(c, Buffer.from("SELECT 'café' AS w", 'latin1'));
      expect(ok.find((m) => m.name === 'dataRow')?.fields).toEqual([Buffer.from('café', 'latin1').toString('utf8')]);
    } finally {
      c.end();
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(d.audit().some((e) => e.type === 'statement' && e.statement.text === "SELECT 'café' AS w")).toBe(true);
  });

  it('refuses text beyond ASCII in an encoding dbward does not read (22021), and runs ASCII text', async () => {
    const c = await session('KOI8R');
    try {
      const refused = await run(c, Buffer.from([...Buffer.from('SELECT v FROM dbward_enc.'), 0xe4, ...Buffer.from('onn'), 0xc5, ...Buffer.from('es')]));
      expect(refused.find((m) => m.name === 'error')?.code).toBe('22021');
      expect(refused.some((m) => m.name === 'dataRow')).toBe(false);
      expect((await run(c, Buffer.from('SELECT 1 AS one'))).some((m) => m.name === 'dataRow')).toBe(true);
    } finally {
      c.end();
    }
  });

  it('refuses text that is not valid UTF-8 in a UTF8 session, as the server would', async () => {
    const c = await session('UTF8');
    try {
      const refused = await run(c, Buffer.from([...Buffer.from("SELECT 'caf"), 0xe9, ...Buffer.from("'")]));
      expect(refused.find((m) => m.name === 'error')?.code).toBe('22021');
    } finally {
      c.end();
    }
  });

  it('reads only ASCII behind a statement that changes client_encoding until it has completed', async () => {
    const c = await session('UTF8');
    try {
      c.send(Buffer.concat([serialize.query("SET client_encoding TO 'LATIN1'"), query(Buffer.from('SELECT v FROM dbward_enc.données', 'latin1'))]));
      await c.until('readyForQuery');
      const second = await c.until('readyForQuery');
      expect(second.find((m) => m.name === 'error')?.code).toBe('22021');
      expect(second.some((m) => m.name === 'dataRow')).toBe(false);
      // Once the change is reported, LATIN1 text reads exactly, and the rule holds.
      const after = await run(c, Buffer.from('SELECT v FROM dbward_enc.données', 'latin1'));
      expect(after.find((m) => m.name === 'error')?.message).toContain('no-donnees');
    } finally {
      c.end();
    }
  });
});

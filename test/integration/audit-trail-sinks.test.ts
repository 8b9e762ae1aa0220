// The daemon with several sinks at once, against the real PostgreSQL and NATS:
// a file primary feeding a PostgreSQL table and a JetStream stream with the same
// sealed lines; and PostgreSQL as the primary, so a statement waits for its row.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, StringCodec, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unseal } from '../../src/audit/chain.js';
import { readHeadFile } from '../../src/audit/head.js';
import type { AuditConfig } from '../../src/config/types.js';
import { startTestDaemon, testAuditConfig, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres, requireService } from '../helpers/services.js';

const suffix = randomBytes(4).toString('hex');
const TABLE = `dbward_audit_trail_${suffix}`;
const STREAM = `DBWARD_TRAIL_${suffix}`;
const SUBJECT = `dbward.trail${suffix}`;
const pgSink = { host: PG.host, port: PG.port, database: PG.database, user: PG.user, password: { none: true as const }, tls: { mode: 'disable' as const }, maxQueue: 100_000 };
let admin: pg.Client;
let nc: NatsConnection;

beforeAll(async () => {
  await requirePostgres();
  await requireService('NATS (JetStream)', '127.0.0.1', 4222);
  admin = new pg.Client({ ...PG });
  await admin.connect();
  nc = await connect({ servers: '127.0.0.1:4222' });
});
afterAll(async () => {
  for (const t of [TABLE, `${TABLE}_p`]) await admin?.query(`DROP TABLE IF EXISTS ${t}, ${t}_heads`);
  await admin?.end();
  const jsm = await nc?.jetstreamManager();
  await jsm?.streams.delete(STREAM).catch(() => undefined);
  await nc?.close();
});

async function run(d: TestDaemon, app: string): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: PG.database, user: 'sinks', application_name: app });
  await c.connect();
  for (let i = 0; i < 20; i++) await c.query(`SELECT ${i} AS n`);
  await c.end();
}

function daemonWith(audit: (dir: string) => Partial<AuditConfig>): Promise<TestDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-sinks-'));
  return startTestDaemon({ auditPath: path.join(dir, 'audit.jsonl'), audit: (file) => testAuditConfig(file, dir, audit(dir)) });
}

describe('file primary with PostgreSQL and NATS secondaries', () => {
  it('gives every sink the same sealed lines, in chain order, and exports the head', async () => {
    let headFile = '';
    const d = await daemonWith((dir) => {
      headFile = path.join(dir, 'head.json');
      return {
        chain: { key: { generate: path.join(dir, 'chain.key') }, headFile, headIntervalMs: 100 },
        postgres: { ...pgSink, table: TABLE },
        nats: { servers: ['nats://127.0.0.1:4222'], stream: STREAM, subject: SUBJECT, credentials: null, maxQueue: 100_000 },
      };
    });
    try {
      await run(d, 'sinks-file');
    } finally {
      await d.stop();
    }
    const fileLines = fs.readFileSync(d.auditPath, 'utf8').split('\n').filter(Boolean);
    expect(fileLines.length).toBeGreaterThan(40);

    const rows = (await admin.query(`SELECT seq, line FROM ${TABLE} WHERE node = 'test' ORDER BY seq`)).rows as { seq: string; line: string }[];
    expect(rows.map((r) => r.line)).toEqual(fileLines);
    const head = (await admin.query(`SELECT seq, mac FROM ${TABLE}_heads WHERE node = 'test'`)).rows[0] as { seq: string; mac: string };
    const last = unseal(fileLines.at(-1)!)!;
    expect({ seq: Number(head.seq), mac: head.mac }).toEqual({ seq: last.seq, mac: last.mac });
    expect(readHeadFile(headFile)).toMatchObject({ node: 'test', seq: last.seq, mac: last.mac });

    const js = nc.jetstream();
    const consumer = await js.consumers.get(STREAM);
    const got: string[] = [];
    const sc = StringCodec();
    while (got.length < fileLines.length) {
      const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
      let n = 0;
      for await (const m of batch) {
        got.push(sc.decode(m.data));
        expect(m.subject).toBe(`${SUBJECT}.${(JSON.parse(sc.decode(m.data)) as { type: string }).type}`);
        n++;
      }
      if (n === 0) break;
    }
    expect(got).toEqual(fileLines);
  });
});

describe('PostgreSQL as the primary', () => {
  it('writes each statement event to the table before the statement runs, and refuses statements while it cannot', async () => {
    const table = `${TABLE}_p`;
    const d = await daemonWith(() => ({ primary: 'postgres', file: null, postgres: { ...pgSink, table } }));
    try {
      await run(d, 'sinks-pg');
      const statements = (await admin.query(`SELECT event FROM ${table} WHERE type = 'statement' ORDER BY seq`)).rows as { event: { statement: { text: string } } }[];
      expect(statements.map((r) => r.event.statement.text)).toEqual(Array.from({ length: 20 }, (_, i) => `SELECT ${i} AS n`));

      // The table goes away: statements are refused (58030), not run unrecorded.
      await admin.query(`ALTER TABLE ${table} RENAME TO ${table}_gone`);
      const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: PG.database, user: 'sinks' });
      try {
        await c.connect().then(() => c.query('SELECT 1'));
        throw new Error('the statement ran');
      } catch (err) {
        expect((err as { code?: string }).code).toBe('58030');
      } finally {
        await admin.query(`ALTER TABLE ${table}_gone RENAME TO ${table}`);
        await c.end().catch(() => undefined);
      }
      await run(d, 'sinks-pg-again');
    } finally {
      await d.stop();
    }
    const seqs = (await admin.query(`SELECT seq FROM ${table} ORDER BY seq`)).rows.map((r: { seq: string }) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  });
});

// Secrets never reach the trail, against the real PostgreSQL: a role password
// is recorded normalized, an unparsable text with a password is scrubbed (its
// parse error and refusal message too, and nothing of it reaches dbward's log), and
// with audit.redact_literals every literal goes; fingerprints group texts.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultApprovals } from '../../src/config/build.js';
import type { Config } from '../../src/config/types.js';
import { startDaemon } from '../../src/daemon.js';
import { pgTarget, startTestDaemon, testAuditConfig, type TestDaemon } from '../helpers/dbward.js';
import { PG, requirePostgres } from '../helpers/services.js';

type Event = Record<string, any>;

const ROLE = `dbward_audit_secret_${process.pid}`;
const SECRET = 'hunter2-Zq9';

beforeAll(requirePostgres);

async function run(d: TestDaemon, texts: string[]): Promise<Event[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: PG.database, user: 'redact' });
  await c.connect();
  for (const t of texts) await c.query(t).catch(() => undefined);
  await c.end();
  // The session end is appended within a few ms of the close.
  for (let i = 0; i < 200 && !d.audit().some((e) => e.type === 'session_end'); i++) await new Promise((r) => setTimeout(r, 10));
  return d.audit();
}

const statement = (events: Event[], match: RegExp): Event => events.find((e) => e.type === 'statement' && match.test(e.statement.text))!;

describe('default settings', () => {
  let d: TestDaemon;
  let events: Event[];
  beforeAll(async () => {
    d = await startTestDaemon();
    events = await run(d, [
      `CREATE ROLE ${ROLE} LOGIN PASSWORD '${SECRET}'`,
      `ALTER ROLE ${ROLE} PASSWORD '${SECRET}' VALID UNTIL 'infinity' garbage`,
      `DROP ROLE ${ROLE}`,
      `PREPARE setpw(text) AS SELECT set_config('app.password', $1, false)`,
      `EXECUTE setpw('${SECRET}')`,
      'SELECT 1 AS n', 'SELECT 2 AS n', `SELECT 'x' AS s`, 'SELECT now()',
    ]);
  });
  afterAll(async () => d?.stop());

  it('records a role password statement normalized, and never the password', () => {
    expect(fs.readFileSync(d.auditPath, 'utf8')).not.toContain(SECRET);
    const created = statement(events, /^CREATE ROLE/);
    expect(created.statement).toMatchObject({ text: `CREATE ROLE ${ROLE} LOGIN PASSWORD $1`, redacted: true });
    const outcome = events.find((e) => e.type === 'statement_outcome' && e.statement_id === created.id)!;
    expect(outcome.outcome.tags).toEqual(['CREATE ROLE']);
  });

  it('withholds an EXECUTE whose arguments fill a credential, as libpg_query leaves them in place', () => {
    const withheld = events.filter((e) => e.type === 'statement' && e.statement.text.startsWith('(text withheld'));
    const executed = withheld.find((e) => e.facts[0].kinds[0] === 'execute');
    expect(executed?.statement.redacted).toBe(true);
    expect(executed?.statement.fingerprint).toMatch(/^[0-9a-f]{16}$/);
  });

  it('scrubs a text that does not parse, and denies it', () => {
    const broken = statement(events, /^ALTER ROLE/);
    expect(broken.statement.redacted).toBe(true);
    expect(broken.decision.action).toBe('deny');
    expect(broken.statement.text).toContain('***');
  });

  it('gives texts that differ only in literals one fingerprint, and keeps plain texts as sent', () => {
    const one = statement(events, /^SELECT 1 AS n$/);
    const two = statement(events, /^SELECT 2 AS n$/);
    expect(one.statement.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(two.statement.fingerprint).toBe(one.statement.fingerprint);
    expect(statement(events, /^SELECT now/).statement.fingerprint).not.toBe(one.statement.fingerprint);
    expect(one.statement.redacted).toBeUndefined();
    expect(statement(events, /^SELECT 'x' AS s$/)).toBeDefined();
  });
});

describe('audit.redact_literals', () => {
  it('records every text normalized, so no literal reaches the trail', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-redact-'));
    const d = await startTestDaemon({ auditPath: path.join(dir, 'audit.jsonl'), audit: (file) => testAuditConfig(file, dir, { redactLiterals: true }) });
    try {
      const events = await run(d, [`SELECT 'ssn-123-45-6789' AS s, 42 AS n`]);
      expect(fs.readFileSync(d.auditPath, 'utf8')).not.toContain('ssn-123');
      expect(statement(events, /^SELECT/).statement).toMatchObject({ text: 'SELECT $1 AS s, $2 AS n', redacted: true, fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/) });
    } finally {
      await d.stop();
    }
  });
});

describe('a password in a text that does not parse', () => {
  // Realistic typos: no quotes, the wrong quotes, a quote left open; and the other
  // forms that carry a credential. Each holds MARK, which must appear nowhere.
  const MARK = `Zq9w${process.pid}`;
  const TEXTS = [
    `ALTER ROLE hx1 PASSWORD ${MARK}NoQuotes`,
    `CREATE USER hx9 PASSWORD "${MARK}DoubleQuoted"`,
    `CREATE ROLE hx7 PASSWORD '${MARK}Unterminated`,
    `ALTER USER hx2 WITH ENCRYPTED PASSWORD ${MARK}-dash VALID UNTIL 'infinity'`,
    `CREATE ROLE hx3 LOGIN PASSWORD $$${MARK}Dollar`,
    `CREATE USER MAPPING FOR hx4 SERVER s OPTIONS (user 'hx4', password ${MARK}Mapping)`,
    `CREATE USER MAPPING FOR hx4 SERVER s OPTIONS (password '${MARK}Open`,
    `CREATE SUBSCRIPTION hx5 CONNECTION 'host=db password=${MARK}Sub' PUBLICATON p`,
    `CREATE SUBSCRIPTION hx5 CONNECTION 'host=db password=${MARK}Sub PUBLICATION p`,
    `SELECT set_config('app.password', '${MARK}SetConfig', false`,
    `SET app.password TO "${MARK}Set" oops`,
    `SELECT dblink_connect('host=db password=${MARK}Dblink' oops`,
    `SELECT dblink_connect(host=db password=${MARK}Dblink)`,
  ];
  let dir: string;
  let auditPath: string;
  const logs: string[] = [];
  const refusals: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-redact-'));
    auditPath = path.join(dir, 'audit.jsonl');
    const policyPath = path.join(dir, 'policy.yaml');
    fs.writeFileSync(policyPath, 'default: allow\n');
    const config: Config = {
      source: '(test)',
      listeners: [{ name: 'pg', engine: 'postgres', host: '127.0.0.1', port: 0, requireTls: false, allowPlaintextToken: false }],
      targets: [pgTarget()],
      identity: { mode: 'unverified' },
      policy: { paths: [policyPath], watch: false },
      audit: testAuditConfig(auditPath, dir),
      masking: { hashKey: null, catalogMaxAgeMs: 30_000 },
      approvals: defaultApprovals(),
      admin: { host: '127.0.0.1', port: 0, auditGroups: [] },
      limits: { maxMessageBytes: 64 * 1024 * 1024, maxStartupBytes: 10_000, startupTimeoutMs: 5_000 },
      log: { level: 'trace' },
      shutdown: { drainTimeoutMs: 2_000 },
    };
    // Everything dbward logs, at its most verbose.
    const log = pino({ level: 'trace' }, { write: (line: string) => void logs.push(line) });
    const daemon = await startDaemon(config, { log });
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: daemon.ports.pg!, database: PG.database, user: 'redact' });
      await c.connect();
      let n = 0;
      for (const text of TEXTS) {
        // Simple protocol, then extended (a named Parse).
        for (const query of [text, { name: `p${n++}`, text }]) {
          await c.query(query).then(() => refusals.push('(ran)'), (e: Error & { code?: string }) => refusals.push(`${e.code}`));
        }
      }
      await c.end();
      for (let i = 0; i < 200 && !fs.readFileSync(auditPath, 'utf8').includes('"session_end"'); i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      await daemon.stop();
    }
  });

  it('refuses each of them, in both protocols', () => {
    // 42601: a syntax error, as PostgreSQL reports it; nothing ran.
    expect(refusals).toEqual(TEXTS.flatMap(() => ['42601', '42601']));
  });

  it('records each, scrubbed, with no trace of the password anywhere in the trail', () => {
    const trail = fs.readFileSync(auditPath, 'utf8');
    const events = trail.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Event);
    const statements = events.filter((e) => e.type === 'statement');
    expect(statements).toHaveLength(TEXTS.length * 2);
    for (const e of statements) {
      expect(e.decision.action).toBe('deny');
      expect(e.statement.redacted).toBe(true);
      expect(e.analysis_error).toEqual(expect.any(String));
    }
    expect(trail).not.toContain(MARK);
  });

  it('logs nothing of the password', () => {
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.join('')).not.toContain(MARK);
  });
});

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

/** Runs each text through a daemon with `policy` (simple protocol, then a named Parse) and returns its audit events. */
async function runBoth(policy: string, texts: string[]): Promise<{ d: TestDaemon; events: Event[] }> {
  const d = await startTestDaemon({ policy });
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: PG.database, user: 'redact' });
  await c.connect();
  let n = 0;
  for (const text of texts) {
    // Transaction control and ALTER SYSTEM once: its failure in a block is the point.
    const queries = /^(BEGIN|ROLLBACK|ALTER SYSTEM)/.test(text) ? [text] : [text, { name: `s${n++}`, text }];
    for (const q of queries) await c.query(q).catch(() => undefined);
  }
  await c.end();
  for (let i = 0; i < 200 && !d.audit().some((e) => e.type === 'session_end'); i++) await new Promise((r) => setTimeout(r, 10));
  return { d, events: d.audit() };
}

// A rule whose message a denied statement carries.
const NO_UPPER = 'default: allow\nrules:\n  - { id: no-upper, match: { statement: { functions: [upper] } }, action: deny, message: no upper here }\n';

describe('a value given to a setting named like a credential', () => {
  // SET and ALTER ... SET, set_config with an expression for a value, texts that do not
  // parse (whose parse error quotes the text), one that a policy rule denies: none may
  // leave `hunter2`, or a part of it, anywhere in the audit file.
  const TEXTS = [
    "SELECT pg_catalog.set_config('app.password', 'hun' || 'ter2', false)",
    "SELECT set_config(new_value => md5('hunter2'), setting_name => 'App.Api_Token', is_local => true)",
    'SET app.password = hunter2',
    'SET LOCAL app.password TO "hunter2"',
    'ALTER ROLE dbward_no_such_role SET app.password = hunter2',
    'ALTER DATABASE dbward_no_such_db SET "App.PassWord" TO "hunter2"',
    // ALTER SYSTEM refuses to run in a transaction block, before it writes anything.
    'BEGIN',
    'ALTER SYSTEM SET app.password = hunter2',
    'ROLLBACK',
    "SELECT set_config('app.password', hunter2",
    "SELECT set_config('app.password', 'hun' || 'ter2' oops",
    'SELECT set_config($1, hun ter2)',
    "SELECT set_config('app.password', upper('hunter2'), false)",
  ];
  let d: TestDaemon;
  let events: Event[];
  beforeAll(async () => {
    ({ d, events } = await runBoth(NO_UPPER, TEXTS));
  });
  afterAll(async () => d?.stop());

  it('leaves no trace of the value anywhere in the audit file', () => {
    expect(events.filter((e) => e.type === 'statement').length).toBeGreaterThanOrEqual(TEXTS.length);
    const trail = fs.readFileSync(d.auditPath, 'utf8');
    expect(trail).not.toContain('hunter2');
    expect(trail).not.toMatch(/ter2/);
  });

  it('records a text that does not parse scrubbed, with its error and refusal scrubbed too', () => {
    const broken = events.filter((e) => e.type === 'statement' && e.analysis_error !== undefined);
    expect(broken.map((e) => e.statement.text)).toEqual([
      "SELECT set_config('***', ***", "SELECT set_config('***', ***",
      "SELECT set_config('***', ***", "SELECT set_config('***', ***",
      'SELECT set_config(***)', 'SELECT set_config(***)',
    ]);
    for (const e of broken) expect(e.decision.action).toBe('deny');
    // The parser stops at `ter2`, which its error quotes; the text names no credential.
    for (const e of broken.slice(4)) {
      expect(e.analysis_error).toBe('syntax error at or near "***"');
      expect(e.decision.message).toContain('syntax error at or near "***"');
    }
  });

  it('records a statement a policy rule denies normalized, with the rule\'s message', () => {
    const denied = events.filter((e) => e.type === 'statement' && e.decision.rules.includes('no-upper'));
    expect(denied).toHaveLength(2);
    for (const e of denied) expect(e).toMatchObject({ statement: { text: 'SELECT set_config($1, $2, $3)', redacted: true }, decision: { action: 'deny', message: 'no upper here' } });
  });
});

describe('a set_config value written as a name', () => {
  // PostgreSQL reads each value as a column (the statement then fails with 42703),
  // normalization leaves it in place.
  const TEXTS = [
    "SELECT set_config('app.password', hunter2, false)",
    'SELECT set_config(\'App.PassWord\', "hunter2", false)',
    "SELECT set_config('app.password', t.hunter2, false) FROM (SELECT 1) t",
    "SELECT set_config('app.password', upper(hunter2), false)",
  ];
  let d: TestDaemon;
  let events: Event[];
  beforeAll(async () => {
    ({ d, events } = await runBoth(NO_UPPER, TEXTS));
  });
  afterAll(async () => d?.stop());

  // Each event without the analyzer's facts, which still name the column (below).
  const withoutFacts = (): string => JSON.stringify(events.map(({ facts: _facts, ...rest }) => rest));

  it('records each normalized, and its failure on the server', () => {
    const statements = events.filter((e) => e.type === 'statement');
    expect(statements.map((e) => e.statement.text)).toEqual([
      ...Array<string>(4).fill('SELECT set_config($1, $2, $3)'),
      ...Array<string>(2).fill('SELECT set_config($1, $2, $3) FROM (SELECT $4) t'),
      ...Array<string>(2).fill('SELECT set_config($1, $2, $3)'),
    ]);
    const first = events.find((e) => e.type === 'statement_outcome' && e.statement_id === statements[0]!.id);
    expect(first?.outcome.sqlstate).toBe('42703');
    expect(statements[6]!.decision).toMatchObject({ action: 'deny', message: 'no upper here' });
  });

  it('keeps the value out of every statement text, error and decision message', () => {
    expect(withoutFacts()).not.toContain('hunter2');
  });

  it('keeps the value out of the facts and the fingerprint too', () => {
    expect(fs.readFileSync(d.auditPath, 'utf8')).not.toContain('hunter2');
    const statements = events.filter((e) => e.type === 'statement');
    // The facts' names may spell the value, and a fingerprint hashes them: ['***'] for each list that held any, and none.
    for (const e of statements) {
      expect(e.statement.fingerprint).toBeUndefined();
      expect(e.facts[0].columns).toEqual(['***']);
      expect(e.facts[0].kinds).toEqual(['select']);
    }
  });
});

describe('a set_config whose setting is named by an expression', () => {
  // Any setting, a credential among them: recorded normalized.
  const TEXTS = [
    "SELECT set_config('app.' || 'password', 'hunter2', false)",
    "SELECT set_config(lower('APP.PASSWORD'), 'hunter2', false)",
  ];
  let d: TestDaemon;
  let events: Event[];
  beforeAll(async () => {
    ({ d, events } = await runBoth('default: allow\n', TEXTS));
  });
  afterAll(async () => d?.stop());

  it('records each normalized, with its facts', () => {
    expect(fs.readFileSync(d.auditPath, 'utf8')).not.toContain('hunter2');
    const statements = events.filter((e) => e.type === 'statement');
    expect(statements.map((e) => e.statement.text)).toEqual([
      'SELECT set_config($1 || $2, $3, $4)', 'SELECT set_config($1 || $2, $3, $4)',
      'SELECT set_config(lower($1), $2, $3)', 'SELECT set_config(lower($1), $2, $3)',
    ]);
    expect(statements[2]!.facts[0].functions).toEqual(['set_config', 'lower']);
  });
});

// The hand-assembled statement/outcome lines (SessionFragments) must be exactly
// the JSON of the typed events, and valid against the published schema.

import fs from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { normalizePg } from '../../src/analysis/pg/normalize.js';
import { scrubSecrets } from '../../src/analysis/secrets.js';
import {
  isoMicros,
  type ClientRecord,
  type IdentityRecord,
  type StatementEvent,
  type StatementOutcomeEvent,
  type TargetRecord,
} from '../../src/audit/events.js';
import { eventId, eventLine, numberJson, SessionFragments, timeNow } from '../../src/audit/serialize.js';
import type { Decision } from '../../src/policy/decide.js';
import { policyFromTexts } from '../../src/policy/load.js';
import { DEFAULT_CTX } from '../fixtures/pg-statements.js';

const schema = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../../schemas/audit-event.schema.json'), 'utf8'));
const validate = new Ajv({ allErrors: true }).compile(schema);

function expectSchemaValid(event: unknown): void {
  expect(validate(event), JSON.stringify(validate.errors)).toBe(true);
}

const SESSION = 's-0001';
const IDENTITY: IdentityRecord = { user: 'alice', verified: false };
const TARGET: TargetRecord = { name: 'app', engine: 'postgres', database: 'appdb', environment: 'prod' };
const CLIENT: ClientRecord = { address: '10.0.0.7', port: 51234, application: 'psql "x"\n', tls: true };

const TEXTS: [string, string][] = [
  ['plain', 'SELECT 1'],
  ['quotes', `SELECT "col", 'it''s' FROM "t"`],
  ['backslashes', String.raw`SELECT E'a\\b\n' -- \ \" \u0041`],
  ['newlines and tabs', 'SELECT 1\n\tFROM t\r\n\tWHERE x = 1\r'],
  ['unicode and emoji', 'SELECT \'héllo wörld — 日本語 🐘🔥👩‍💻\''],
  ['lone surrogates', 'SELECT \'\ud800 then \udc00 and \udbff\''],
  ['line/paragraph separators', 'SELECT \'\u2028\u2029\''],
  ['NUL and control chars', 'SELECT \'\u0000\u0001\u001f\u007f\''],
  ['empty', ''],
  ['100 KB', 'SELECT \'' + 'x"\\\n🐘'.repeat(20_000) + '\''],
];

const STATEMENT_SHAPES: [string, Omit<StatementEvent['statement'], 'text'>][] = [
  ['text only', {}],
  ['named', { name: 'stmt_1' }],
  ['named with portal', { name: '', portal: 'p"1\n' }],
  ['function call', { function_oid: 2147483647 }],
  ['everything', { name: 'n\\"', portal: 'ü', function_oid: 0 }],
];

const DECISIONS: [string, Decision][] = [
  ['allow by default', { action: 'allow', ruleIds: [], default: true }],
  ['allow by rule', { action: 'allow', ruleIds: ['read-only'], default: false }],
  ['deny with message and rules', { action: 'deny', ruleIds: ['no-ddl', 'prod"guard\n'], default: false, message: 'DDL is "not" allowed\nhere 🚫' }],
  ['deny by default without message', { action: 'deny', ruleIds: [], default: true }],
];

const PROTOCOLS: StatementEvent['protocol'][] = ['simple', 'extended', 'function_call'];

/** The event decision as documented: rules from ruleIds, message only when present. */
function eventDecision(d: Decision): StatementEvent['decision'] {
  return { action: d.action, rules: d.ruleIds, default: d.default, ...(d.message !== undefined ? { message: d.message } : {}) };
}

function statementEvent(
  parsed: { id: string; time: string },
  frag: { session: string; identity: IdentityRecord; target: TargetRecord },
  protocol: StatementEvent['protocol'],
  statement: StatementEvent['statement'],
  decision: Decision,
): StatementEvent {
  return {
    v: 1, id: parsed.id, time: parsed.time, session: frag.session, type: 'statement',
    identity: frag.identity, client: CLIENT, target: frag.target, protocol, statement, decision: eventDecision(decision),
  };
}

describe('SessionFragments.statement', () => {
  const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT);
  const frag = { session: SESSION, identity: IDENTITY, target: TARGET };
  let n = 0;
  for (const [textName, text] of TEXTS) {
    for (const [shapeName, shape] of STATEMENT_SHAPES) {
      for (const [decisionName, decision] of DECISIONS) {
        const protocol = PROTOCOLS[n++ % PROTOCOLS.length]!;
        it(`${textName} / ${shapeName} / ${decisionName} (${protocol})`, () => {
          const statement = { text, ...shape };
          const { id, line } = fragments.statement(protocol, statement, decision);
          const parsed = JSON.parse(line) as StatementEvent;
          expect(parsed.id).toBe(id);
          const expected = statementEvent(parsed, frag, protocol, statement, decision);
          expect(parsed).toStrictEqual(expected);
          // Byte-identical to the general path (the hash chain covers these bytes).
          expect(line).toBe(eventLine(expected));
          expectSchemaValid(parsed);
        });
      }
    }
  }

  it('gives each statement a fresh id', () => {
    const d = DECISIONS[0]![1];
    const ids = new Set(Array.from({ length: 100 }, () => fragments.statement('simple', { text: 'SELECT 1' }, d).id));
    expect(ids.size).toBe(100);
  });
});

const OUTCOMES: StatementOutcomeEvent['outcome'][] = [
  { status: 'ok', tags: ['SELECT 3'], rows: 3, sqlstate: null, duration_ms: 0.123 },
  { status: 'ok', tags: [], rows: null, sqlstate: null, duration_ms: 0 },
  { status: 'ok', tags: ['INSERT 0 1', 'UPDATE 2', 'SET'], rows: 3, sqlstate: null, duration_ms: 1234.567 },
  { status: 'error', tags: [], rows: null, sqlstate: '42P01', duration_ms: 1.5 },
  { status: 'error', tags: ['SELECT 1'], rows: 1, sqlstate: '57014', duration_ms: 30000.001 },
  { status: 'skipped', tags: [], rows: null, sqlstate: null, duration_ms: 0.001 },
  { status: 'lost', tags: [], rows: 0, sqlstate: null, duration_ms: 99.999 },
  { status: 'ok', tags: ['tag "quoted"\n', '🐘'], rows: 9007199254740991, sqlstate: null, duration_ms: 1e-7 },
];

describe('SessionFragments.outcome', () => {
  const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT);
  for (const outcome of OUTCOMES) {
    it(`${outcome.status} tags=${JSON.stringify(outcome.tags)} rows=${outcome.rows} sqlstate=${outcome.sqlstate} duration=${outcome.duration_ms}`, () => {
      const { id: statementId } = fragments.statement('simple', { text: 'SELECT 1' }, DECISIONS[0]![1]);
      const line = fragments.outcome(statementId, outcome, 7);
      const parsed = JSON.parse(line) as StatementOutcomeEvent;
      const expected: StatementOutcomeEvent = {
        v: 1, id: parsed.id, time: parsed.time, session: SESSION, type: 'statement_outcome', statement_id: statementId, outcome, txn: 7,
      };
      expect(parsed).toStrictEqual(expected);
      expect(line).toBe(eventLine(expected));
      expect(parsed.id).not.toBe(statementId);
      expectSchemaValid(parsed);
    });
  }
});

describe('session fields with awkward characters', () => {
  const cases: [string, IdentityRecord, TargetRecord][] = [
    ['se"ss\nion\\', { user: 'bob"\n\u2028', verified: true }, { name: 'ta"rg\net', engine: 'postgres', database: 'd\tb"', environment: 'e\u0000nv' }],
    ['🐘\ud800', { user: '', verified: false }, { name: '\\', engine: 'postgres', database: '', environment: '' }],
  ];
  for (const [session, identity, target] of cases) {
    it(`stays valid JSON for session ${JSON.stringify(session)}`, () => {
      const fragments = new SessionFragments(session, identity, target, CLIENT);
      const decision = DECISIONS[2]![1];
      const statement = { text: 'SELECT "x"' };
      const { id, line } = fragments.statement('extended', statement, decision);
      const parsed = JSON.parse(line) as StatementEvent;
      const expected = statementEvent(parsed, { session, identity, target }, 'extended', statement, decision);
      expect(parsed).toStrictEqual(expected);
      expectSchemaValid(parsed);

      const outcomeLine = fragments.outcome(id, OUTCOMES[0]!, 1);
      const outcome = JSON.parse(outcomeLine) as StatementOutcomeEvent;
      expect(outcome.session).toBe(session);
      expect(outcome.statement_id).toBe(id);
      expectSchemaValid(outcome);
    });
  }
});

describe('decision cache', () => {
  const decisionPart = (line: string): string => line.slice(line.indexOf('"decision":'));

  it('serializes the same Decision object identically twice', () => {
    const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT);
    const d: Decision = { action: 'deny', ruleIds: ['r1', 'r2'], default: false, message: 'no' };
    const a = fragments.statement('simple', { text: 'SELECT 1' }, d).line;
    const b = fragments.statement('simple', { text: 'SELECT 2' }, d).line;
    expect(decisionPart(a)).toBe(decisionPart(b));
    expect((JSON.parse(b) as StatementEvent).decision).toStrictEqual(eventDecision(d));
  });

  it('does not share an entry between different Decision objects', () => {
    const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT);
    const d1: Decision = { action: 'deny', ruleIds: ['r1'], default: false, message: 'first' };
    const d2: Decision = { action: 'deny', ruleIds: ['r1'], default: false, message: 'second' };
    const d3: Decision = { action: 'allow', ruleIds: [], default: true };
    for (let i = 0; i < 2; i++) {
      for (const d of [d1, d2, d3]) {
        const parsed = JSON.parse(fragments.statement('simple', { text: 'SELECT 1' }, d).line) as StatementEvent;
        expect(parsed.decision).toStrictEqual(eventDecision(d));
      }
    }
  });

  it('works with a frozen Decision (like the allow-all default)', () => {
    const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT);
    const d = Object.freeze({ action: 'allow', ruleIds: [], default: true }) as Decision;
    const parsed = JSON.parse(fragments.statement('simple', { text: 'SELECT 1' }, d).line) as StatementEvent;
    expect(parsed.decision).toStrictEqual({ action: 'allow', rules: [], default: true });
  });
});

describe('a statement that does not parse', () => {
  // As the daemon records texts, and as its policy refuses what it cannot parse.
  const texts = { normalize: normalizePg, scrub: scrubSecrets, redactLiterals: false };
  const engine = policyFromTexts([{ file: 'p.yaml', text: 'default: allow\n' }]);
  const who = { subject: 's', user: 'alice', groups: [], kind: 'human', issuer: 'i', claims: {}, expiresAt: 4102444800, verified: true } as const;
  const where = { name: 'app', engine: 'postgres', database: 'app', environment: 'prod', labels: {} } as const;
  const SECRET = 'Secr3t-Zq9';

  beforeAll(async () => {
    await loadPgParser();
  });

  const record = (text: string): { line: string; event: StatementEvent } => {
    const analysis = analyzePg(text, DEFAULT_CTX);
    expect(analysis.ok).toBe(false);
    const decision = engine.decide({ ...who, groups: [...who.groups] }, { ...where }, analysis);
    const line = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT, texts).statement('simple', { text }, decision, analysis).line;
    return { line, event: JSON.parse(line) as StatementEvent };
  };

  it.each([
    `ALTER ROLE app PASSWORD ${SECRET}`,
    `CREATE USER app PASSWORD "${SECRET}"`,
    `CREATE ROLE app PASSWORD '${SECRET}`,
    `CREATE USER MAPPING FOR app SERVER s OPTIONS (password ${SECRET})`,
    `CREATE SUBSCRIPTION s CONNECTION 'host=db password=${SECRET} PUBLICATION p`,
    `SET app.password TO "${SECRET}" oops`,
    `SELECT dblink_connect(host=db password=${SECRET})`,
  ])('keeps the password of %s out of the whole line', (text) => {
    const { line, event } = record(text);
    expect(line).not.toContain(SECRET);
    expect(event.statement.redacted).toBe(true);
    expect(event.decision).toMatchObject({ action: 'deny', rules: [] });
    expect(event.decision.message).toMatch(/^statement could not be parsed: /);
    expect(event.analysis_error).toMatch(/\S/);
    expectSchemaValid(event);
  });

  it('says where the parser stopped, without the token it stopped at', () => {
    const { event } = record(`ALTER ROLE app PASSWORD ${SECRET}`);
    expect(event.statement.text).toBe('ALTER ROLE app PASSWORD ***');
    expect(event.analysis_error).toBe('syntax error at or near "***"');
    expect(event.decision.message).toBe('statement could not be parsed: syntax error at or near "***"');
  });

  it('scrubs the message of any decision on such a text, not only the refusal', () => {
    const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT, texts);
    const d: Decision = { action: 'require_approval', ruleIds: ['unparsable-needs-dba'], default: false, message: 'a DBA must look (near "x")' };
    const line = (text: string): StatementEvent => JSON.parse(fragments.statement('simple', { text }, d, analyzePg(text, DEFAULT_CTX)).line) as StatementEvent;
    expect(line(`ALTER ROLE app PASSWORD ${SECRET}`).decision.message).toBe('a DBA must look (***)');
    // The same Decision again, about a text without credentials: not a cached scrubbed copy.
    expect(line('SELECT name FRM users').decision.message).toBe('a DBA must look (near "x")');
  });

  it('records the error about a text without credentials as the parser gave it', () => {
    const { event } = record('SELECT name FRM users');
    expect(event.statement).toStrictEqual({ text: 'SELECT name FRM users' });
    expect(event.analysis_error).toBe('syntax error at or near "users"');
    expect(event.decision.message).toBe('statement could not be parsed: syntax error at or near "users"');
  });
});

describe('isoMicros', () => {
  const PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

  it('is ISO-8601 UTC with six fractional digits', () => {
    for (let i = 0; i < 1000; i++) expect(isoMicros()).toMatch(PATTERN);
  });

  it('is within a few ms of Date.now()', () => {
    const before = Date.now();
    const t = isoMicros();
    const after = Date.now();
    const ms = Date.parse(t);
    expect(ms).toBeGreaterThanOrEqual(before - 5);
    expect(ms).toBeLessThanOrEqual(after + 5);
  });

  it('is non-decreasing over successive calls', () => {
    let prev = isoMicros();
    let backwards: string | null = null;
    for (let i = 0; i < 20_000 && backwards === null; i++) {
      const next = isoMicros();
      if (next < prev) backwards = `${next} < ${prev}`;
      prev = next;
    }
    expect(backwards).toBeNull();
  });
});

describe('timeNow (the hot-path time formatter)', () => {
  const PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

  it('has the format of isoMicros and agrees with it', () => {
    for (let i = 0; i < 1000; i++) {
      const a = isoMicros();
      const t = timeNow();
      const b = isoMicros();
      expect(t).toMatch(PATTERN);
      expect(t >= a.slice(0, 23) && t.slice(0, 23) <= b.slice(0, 23)).toBe(true);
    }
  });

  it('is non-decreasing across second boundaries', async () => {
    let prev = timeNow();
    const until = Date.now() + 1100;
    let backwards: string | null = null;
    while (Date.now() < until && backwards === null) {
      const next = timeNow();
      if (next < prev) backwards = `${next} < ${prev}`;
      prev = next;
      await Promise.resolve();
    }
    expect(backwards).toBeNull();
  });
});

describe('numberJson', () => {
  it('is JSON.stringify for millisecond durations with up to three decimals', () => {
    for (let k = 0; k < 200_000; k++) {
      const n = Math.round(k * 7.3) / 1000;
      expect(numberJson(n)).toBe(JSON.stringify(n));
    }
  });

  it('is JSON.stringify for anything else', () => {
    for (const n of [0, -0, 1, -1, -0.5, 0.1 + 0.2, 1e-7, 1.0005, 2147483.647, 2147483.648, 1e21, 123456789.123, Number.MAX_SAFE_INTEGER]) {
      expect(numberJson(n)).toBe(JSON.stringify(n));
    }
  });
});

describe('outcome tags cache', () => {
  it('gives the same JSON for repeated, changing and many distinct tags', () => {
    const fragments = new SessionFragments(SESSION, IDENTITY, TARGET, CLIENT);
    const tagsOf = (line: string): unknown => (JSON.parse(line) as StatementOutcomeEvent).outcome.tags;
    const outcome = (tags: string[]): string => fragments.outcome('00000000-0000-4000-8000-000000000000', { status: 'ok', tags, rows: null, sqlstate: null, duration_ms: 1 }, 1);
    for (let i = 0; i < 300; i++) {
      const tags = [i % 3 === 0 ? 'SELECT 1' : `INSERT 0 ${i}"\n`];
      expect(tagsOf(outcome(tags))).toStrictEqual(tags);
    }
    expect(tagsOf(outcome(['BEGIN', 'SELECT 1', 'COMMIT']))).toStrictEqual(['BEGIN', 'SELECT 1', 'COMMIT']);
    expect(tagsOf(outcome([]))).toStrictEqual([]);
  });
});

describe('eventId', () => {
  it('gives distinct version 4 UUIDs, across batches, with every variant digit', () => {
    const ids = Array.from({ length: 2000 }, () => eventId());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids.map((id) => id[19])).size).toBe(4);
    // Every hex digit turns up in every random position: the bytes are formatted, not left stale.
    for (const pos of [0, 9, 15, 20, 35]) expect(new Set(ids.map((id) => id[pos])).size, `position ${pos}`).toBe(16);
  });
});

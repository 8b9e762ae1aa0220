// The masking section of policy files: what it refuses to load, which rules apply
// to which sessions, and how a statement's column references taint its computed
// outputs (against a hand-made catalog snapshot; the real catalog is covered by
// test/integration/pg-masking.test.ts).

import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import type { StatementFacts } from '../../src/analysis/facts.js';
import { TargetCatalog, type CatalogSnapshot, type ColumnInfo, type RelationInfo } from '../../src/masking/catalog.js';
import { rulesFor } from '../../src/masking/policy.js';
import { SessionMasking } from '../../src/masking/session.js';
import { specTarget } from '../../src/policy/cases.js';
import { policyFromTexts } from '../../src/policy/load.js';
import { policyProblems } from '../helpers/policy.js';

const POLICY = `default: allow
masking:
  strict: true
  classifications:
    pii: [public.users.email]
  rules:
    - id: email
      classifications: [pii]
      strategy: email
      exempt: { identity: { users: [officer] }, target: { environment: staging } }
    - id: ssn
      columns: ["*.ssn"]
      strategy: redact
      match: { target: { environment: "prod*" } }
    - id: tagged
      classifications: [secret]
      strategy: "null"
`;

function rel(oid: number, printed: string, cols: [string, number?][]): RelationInfo {
  const columns = new Map<number, ColumnInfo>();
  cols.forEach(([name, typeOid], i) => columns.set(i + 1, { att: i + 1, name, printed: `${printed}.${name}`, typeOid: typeOid ?? 25, tags: name === 'token' ? ['secret'] : [] }));
  return { oid, kind: 'r', printed, columns, byName: new Map([...columns.values()].map((c) => [c.name, c])) };
}

function snapshot(): CatalogSnapshot {
  const users = rel(20000, 'public.users', [['id', 23], ['email'], ['ssn'], ['token'], ['name']]);
  const view = rel(20001, 'public.v', [['contact'], ['n']]);
  view.kind = 'v';
  view.columns.get(1)!.lineage = { rel: 20000, att: 2 };
  view.columns.get(2)!.lineage = { sources: [{ rel: 20000, column: 'name' }], calls: [] };
  const relations = new Map([[users.oid, users], [view.oid, view]]);
  return {
    version: 1, relations, byName: new Map([...relations.values()].map((r) => [r.printed, r])),
    routines: new Map([['get_email', ['public.get_email', 'util.get_email']], ['public.get_email', ['public.get_email']], ['fmt', ['util.fmt']], ['util.fmt', ['util.fmt']]]),
    operators: new Map([['###', ['public.get_email']], ['@@@', ['pg_catalog.ts_stat']]]),
    builtins: new Set(['lower', 'upper', 'pg_catalog.lower', 'query_to_xml']),
  };
}

const facts = (sql: string): StatementFacts[] => {
  const a = analyzePg(sql, { searchPath: ['public'], user: 'u' });
  if (!a.ok) throw new Error(a.error);
  return a.statements;
};

beforeAll(loadPgParser);

describe('masking policy', () => {
  it('refuses rules that cannot work, with positions', () => {
    expect(policyProblems(`masking:
  rules:
    - { id: b, strategy: redact }
    - { id: c, columns: [a.b.c.d], strategy: blur }
    - { id: d, columns: [x], strategy: redact, keep_last: 2 }
`)).toEqual([
      'p.yaml:3:7: masking.rules[0]: give at least one of columns, classifications, detect',
      'p.yaml:4:46: masking.rules[1].strategy: must be one of: redact, partial, hash, null, email',
    ]);
    expect(policyProblems(`rules:
  - { id: a, action: allow }
masking:
  rules:
    - { id: a, columns: [x], strategy: redact }
    - { id: c, columns: [a.b.c.d], strategy: partial }
    - { id: d, columns: [x], strategy: redact, keep_last: 2 }
`)).toEqual([
      'p.yaml:5:13: masking.rules[0].id: duplicate rule id "a"',
      'p.yaml:6:7: masking.rules[1]: "a.b.c.d": a column pattern is column, table.column or schema.table.column',
      'p.yaml:7:59: masking.rules[2].keep_last: only used with strategy partial, not redact',
    ]);
  });

  it('applies a rule where match holds, and exempts only where every exempt section holds', () => {
    const m = policyFromTexts([{ file: 'p.yaml', text: POLICY }]).masking;
    const ids = (user: string, environment: string) => rulesFor(m, { user, verified: false }, specTarget({ environment })).map((r) => r.id);
    expect(ids('alice', 'production')).toEqual(['email', 'ssn', 'tagged']);
    expect(ids('alice', 'staging')).toEqual(['email', 'tagged']);
    expect(ids('officer', 'staging')).toEqual(['tagged']);
    expect(ids('officer', 'production')).toEqual(['email', 'ssn', 'tagged']);
  });

  it('resolves columns by origin, through views, whole rows and comment tags', () => {
    const m = policyFromTexts([{ file: 'p.yaml', text: POLICY }]).masking;
    const s = snapshot();
    const masking = new SessionMasking(rulesFor(m, { user: 'alice', verified: false }, specTarget({ environment: 'prod' })), m,
      new TargetCatalog({} as never, pino({ level: 'silent' })), null);
    expect(masking.spec(s, 20000, 1)).toBeNull();
    expect(masking.spec(s, 20000, 2)).toMatchObject({ rule: 'email', strategy: 'email' });
    expect(masking.spec(s, 20000, 3)).toMatchObject({ rule: 'ssn', strategy: 'redact' });
    expect(masking.spec(s, 20000, 4)).toMatchObject({ rule: 'tagged', strategy: 'null' });
    expect(masking.spec(s, 20000, 0)).toMatchObject({ rule: 'email', strategy: 'redact' });
    expect(masking.spec(s, 20001, 1)).toMatchObject({ rule: 'email' });
    expect(masking.spec(s, 20001, 2)).toBeNull();
    expect(masking.spec(s, 99999, 1)).toBeUndefined();
  });

  it('taints computed outputs, and refuses inference (strict) and copies', () => {
    const m = policyFromTexts([{ file: 'p.yaml', text: POLICY }]).masking;
    const s = snapshot();
    const masking = new SessionMasking(rulesFor(m, { user: 'alice', verified: false }, specTarget({ environment: 'prod' })), m,
      new TargetCatalog({} as never, pino({ level: 'silent' })), null);
    const taint = (sql: string) => masking.taint(s, facts(sql));
    expect(taint('SELECT lower(email) FROM users').flow).toMatchObject({ rule: 'email' });
    expect(taint('SELECT u::text FROM users u').flow).not.toBeNull();
    expect(taint('SELECT upper(contact) FROM v').flow).toMatchObject({ rule: 'email' });
    expect(taint('SELECT upper(name), id FROM users').flow).toBeNull();
    expect(taint('SELECT id FROM users WHERE ssn = $1')).toMatchObject({ flow: null, inferred: ['public.users.ssn'], sensitive: true });
    const check = (sql: string) => masking.check({ ok: true, statements: facts(sql) }, taint(sql))?.message ?? null;
    expect(check('SELECT id FROM users ORDER BY email')).toMatch(/strict mode/);
    expect(check('INSERT INTO users (name) SELECT email FROM users')).toMatch(/copies values of masked columns/);
    expect(check('UPDATE users SET name = ssn')).toMatch(/copies values/);
    expect(check('UPDATE users SET ssn = $1 WHERE id = 1 RETURNING email')).toBeNull();
    expect(check('COPY users TO STDOUT WITH (FORMAT binary)')).toMatch(/text or csv/);
    expect(check('SELECT id, name FROM users')).toBeNull();
  });

  it('treats code it cannot read as reading every masked column, unless the policy trusts it', () => {
    const m = policyFromTexts([{ file: 'p.yaml', text: `${POLICY}  trusted_functions: [util.fmt]\n` }]).masking;
    const s = snapshot();
    const masking = new SessionMasking(rulesFor(m, { user: 'alice', verified: false }, specTarget({ environment: 'prod' })), m,
      new TargetCatalog({} as never, pino({ level: 'silent' })), null);
    const taint = (sql: string) => masking.taint(s, facts(sql));
    const opaque = { flow: { rule: 'masking.opaque', strategy: 'redact' }, sensitive: true, copied: true };
    expect(taint('SELECT get_email(1)')).toMatchObject(opaque);
    expect(taint('SELECT public.get_email(1)')).toMatchObject(opaque);
    expect(taint('SELECT OPERATOR(public.###) 1')).toMatchObject(opaque);
    expect(taint("SELECT query_to_xml('SELECT ssn FROM users', true, false, '')")).toMatchObject(opaque);
    expect(taint("DO $$ BEGIN RAISE NOTICE 'x'; END $$")).toMatchObject(opaque);
    expect(taint("SELECT 'a' @@@ 'b'")).toMatchObject(opaque); // a built-in that runs SQL text, behind an operator
    expect(taint('SELECT not_there(1)')).toMatchObject(opaque); // unknown: perhaps created since the reading
    // Written into the database, what such code returns would reach the next reader unmasked.
    const check = (sql: string) => masking.check({ ok: true, statements: facts(sql) }, taint(sql))?.message ?? null;
    expect(check('INSERT INTO users (name) SELECT get_email(1)')).toMatch(/may write what code dbward cannot read returns/);
    expect(check('CREATE TABLE leak AS SELECT get_email(1)')).toMatch(/may write/);
    expect(check("DO $$ BEGIN INSERT INTO leak SELECT ssn FROM users; END $$")).toMatch(/may write/);
    expect(check('SELECT get_email(1)')).toBeNull();
    // Trusted, built-in, and operators over built-ins that read only their arguments.
    expect(taint('SELECT util.fmt(name), fmt(name), lower(name) FROM users')).toMatchObject({ flow: null });
    expect(taint("SELECT 'a' === 'b'")).toMatchObject({ flow: null });
    // A statement that also reads a column masked with null keeps null.
    expect(taint('SELECT token, get_email(1) FROM users').flow).toMatchObject({ strategy: 'null' });
    // Nothing masked for the session: nothing such code could leak.
    const none = new SessionMasking(rulesFor(m, { user: 'alice', verified: false }, specTarget({ environment: 'dev' })).filter((r) => r.id === 'ssn'), m,
      new TargetCatalog({} as never, pino({ level: 'silent' })), null);
    expect(none.taint({ ...s, relations: new Map(), byName: new Map(), version: 2 }, facts('SELECT get_email(1)')).flow).toBeNull();
  });

  it('rejects trusted_functions patterns that are not functions', () => {
    expect(policyProblems(`masking:
  trusted_functions: [a.b.c]
  rules:
    - { id: r, columns: [x], strategy: redact }
`)).toEqual(['p.yaml:2:23: masking.trusted_functions[0]: "a.b.c": a function pattern is function or schema.function']);
  });
});

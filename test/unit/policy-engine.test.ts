// decide() against hand-made facts: the matching semantics (deny-side over-approximation,
// allow-side under-approximation), strictest-wins, defaults, multi-statement strings,
// unparsable strings and fast-path calls. The analyzer is not involved here.

import { describe, expect, it } from 'vitest';
import type { Analysis, ColumnRef, StatementFacts, TableRef } from '../../src/analysis/facts.js';
import type { Identity, SessionIdentity } from '../../src/identity/types.js';
import { fastPathAnalysis } from '../../src/policy/cases.js';
import { policyFromTexts } from '../../src/policy/load.js';
import type { TargetInfo } from '../../src/proxy/session.js';

const policy = (yaml: string) => policyFromTexts([{ file: 'p.yaml', text: yaml }]);

function who(over: Partial<Identity> = {}): Identity {
  return {
    subject: 'sub-1', user: 'alice@example.com', email: 'alice@example.com', groups: [], kind: 'human',
    issuer: 'https://issuer.test', claims: {}, expiresAt: 4102444800, verified: true, ...over,
  };
}
const target = (over: Partial<TargetInfo> = {}): TargetInfo => ({ name: 'app', engine: 'postgres', database: 'app', environment: 'production', labels: {}, ...over });

/** A TableRef as the analyzer gives it for an unqualified name under `"$user", public`. */
const unqualified = (name: string): TableRef => ({ name, candidates: [`pg_temp.${name}`, `pg_catalog.${name}`, `alice.${name}`, `public.${name}`] });
const qualified = (q: string): TableRef => ({ name: q, candidates: [q] });

function stmt(over: Partial<StatementFacts>): StatementFacts {
  return { text: '', kinds: ['select'], reads: [], writes: [], columns: [], functions: [], flags: [], ...over };
}
const one = (over: Partial<StatementFacts>): Analysis => ({ ok: true, statements: [stmt(over)] });
const many = (...s: Partial<StatementFacts>[]): Analysis => ({ ok: true, statements: s.map(stmt) });
const col = (table: string | null, column: string, use: ColumnRef['use'] = 'select'): ColumnRef => ({ table, column, use });

describe('table patterns and search_path candidates', () => {
  const deny = policy(`
default: allow
rules:
  - id: no-users
    match: { statement: { tables: { read: [public.users] } } }
    action: deny
`);
  const allow = policy(`
default: deny
rules:
  - id: read-public-users
    match: { statement: { tables: { read: [public.users] } } }
    action: allow
  - id: read-orders-any-schema
    match: { statement: { tables: { read: [orders] } } }
    action: allow
  - id: read-listed-schemas
    match: { statement: { tables: { read: ["{pg_temp,pg_catalog,alice,public}.items"] } } }
    action: allow
`);

  it('deny-side: a pattern matches when ANY candidate does (unqualified name)', () => {
    expect(deny.decide(who(), target(), one({ reads: [unqualified('users')] }))).toMatchObject({ action: 'deny', ruleIds: ['no-users'] });
    expect(deny.decide(who(), target(), one({ reads: [qualified('public.users')] })).action).toBe('deny');
    expect(deny.decide(who(), target(), one({ reads: [qualified('other.users')] })).action).toBe('allow');
  });

  it('deny-side: the unknown schema * matches any schema', () => {
    expect(deny.decide(who(), target(), one({ reads: [{ name: 'users', candidates: ['*.users'] }] })).action).toBe('deny');
  });

  it('allow-side: a schema-qualified pattern does not allow an unqualified name (pg_temp, pg_catalog, $user count)', () => {
    const d = allow.decide(who(), target(), one({ reads: [unqualified('users')] }));
    expect(d).toMatchObject({ action: 'deny', ruleIds: [], default: true });
    expect(allow.decide(who(), target(), one({ reads: [qualified('public.users')] }))).toMatchObject({ action: 'allow', ruleIds: ['read-public-users'] });
  });

  it('allow-side: a pattern without schema means any schema, including the unknown *', () => {
    expect(allow.decide(who(), target(), one({ reads: [unqualified('orders')] })).action).toBe('allow');
    expect(allow.decide(who(), target(), one({ reads: [{ name: 'orders', candidates: ['*.orders'] }] })).action).toBe('allow');
    expect(allow.decide(who(), target(), one({ reads: [{ name: 'users', candidates: ['*.users'] }] })).action).toBe('deny');
  });

  it('allow-side: listing every candidate schema allows the unqualified name', () => {
    expect(allow.decide(who(), target(), one({ reads: [unqualified('items')] })).action).toBe('allow');
    expect(allow.decide(who(), target(), one({ reads: [{ name: 'items', candidates: ['pg_temp.items', 'bob.items'] }] })).action).toBe('deny');
  });

  it('allow-side: every table read must be covered, and there must be one', () => {
    expect(allow.decide(who(), target(), one({ reads: [qualified('public.users'), qualified('public.secrets')] })).action).toBe('deny');
    expect(allow.decide(who(), target(), one({ reads: [] })).action).toBe('deny');
  });

  it('read, write and any look at the right tables', () => {
    const p = policy(`
default: allow
rules:
  - { id: w, match: { statement: { tables: { write: [audit_log] } } }, action: deny }
  - { id: a, match: { statement: { tables: { any: [secrets] } } }, action: require_approval, approvers: [sec] }
`);
    expect(p.decide(who(), target(), one({ reads: [qualified('public.audit_log')] })).action).toBe('allow');
    expect(p.decide(who(), target(), one({ kinds: ['delete'], writes: [qualified('public.audit_log')] })).ruleIds).toEqual(['w']);
    expect(p.decide(who(), target(), one({ reads: [unqualified('secrets')] })).ruleIds).toEqual(['a']);
    expect(p.decide(who(), target(), one({ writes: [unqualified('secrets')] })).ruleIds).toEqual(['a']);
  });
});

describe('names as facts print them (quote_ident form)', () => {
  // For user alice@example.com the `$user` schema prints quoted, dot and all.
  const emailUser = (name: string): TableRef => ({ name, candidates: [`pg_temp.${name}`, `pg_catalog.${name}`, `"alice@example.com".${name}`, `public.${name}`] });

  it('a pattern without schema covers quoted schema names (allow-side)', () => {
    const p = policy('rules:\n  - { id: r, match: { statement: { tables: { read: [orders] } } }, action: allow }\n');
    expect(p.decide(who(), target(), one({ reads: [emailUser('orders')] })).action).toBe('allow');
    expect(p.decide(who(), target(), one({ reads: [qualified('"My Schema".orders')] })).action).toBe('allow');
  });

  it('unquoted pattern parts fold to lower case; quoted parts are exact', () => {
    const p = policy(`
default: allow
rules:
  - { id: folded, match: { statement: { tables: { write: [Public.Users] } } }, action: deny }
  - { id: exact, match: { statement: { tables: { write: ['public."Users"'] } } }, action: require_approval, approvers: [x] }
  - { id: dotted, match: { statement: { tables: { write: ['"a.b".c*'] } } }, action: require_approval, approvers: [x] }
`);
    expect(p.decide(who(), target(), one({ writes: [qualified('public.users')] })).ruleIds).toEqual(['folded']);
    expect(p.decide(who(), target(), one({ writes: [qualified('public."Users"')] })).ruleIds).toEqual(['exact']);
    expect(p.decide(who(), target(), one({ writes: [qualified('"a.b".cx')] })).ruleIds).toEqual(['dotted']);
    expect(p.decide(who(), target(), one({ writes: [qualified('"a.b".c')] })).ruleIds).toEqual(['dotted']);
    expect(p.decide(who(), target(), one({ writes: [qualified('a.bc')] })).ruleIds).toEqual([]);
  });

  it('a glob matches quoted names too, by their real text', () => {
    const p = policy('default: allow\nrules:\n  - { id: g, match: { statement: { tables: { any: ["public.u*"] } } }, action: deny }\n');
    expect(p.decide(who(), target(), one({ reads: [qualified('public."Users"')] })).action).toBe('allow');
    expect(p.decide(who(), target(), one({ reads: [qualified('public."u-x"')] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ reads: [qualified('public.u_x')] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ reads: [qualified('"public.u".x')] })).action).toBe('allow');
  });

  it('every table of a schema (s.*) meets deny-side table patterns of that schema, allow-side only s.*', () => {
    const p = policy(`
rules:
  - { id: billing-all, match: { statement: { tables: { write: ["billing.*"] } } }, action: allow }
  - { id: invoices, match: { statement: { tables: { write: [billing.invoices] } } }, action: require_approval, approvers: [x] }
  - { id: one-table, match: { statement: { kinds: [grant] } }, action: allow }
`);
    const schemaWide = { name: 'billing.*', candidates: ['billing.*'] };
    expect(p.decide(who(), target(), one({ kinds: ['drop'], writes: [schemaWide] })).ruleIds).toEqual(['invoices']);
    const q = policy('rules:\n  - { id: inv, match: { statement: { tables: { write: [billing.invoices] } } }, action: allow }\n');
    expect(q.decide(who(), target(), one({ kinds: ['grant'], writes: [schemaWide] })).action).toBe('deny');
    expect(q.decide(who(), target(), one({ kinds: ['grant'], writes: [qualified('billing.invoices')] })).action).toBe('allow');
  });

  it('quoted function names: "oid:1" is a SQL function, not a fast-path call', () => {
    const p = policy(`
rules:
  - { id: fast, match: { statement: { functions: ["oid:*"] } }, action: allow }
  - { id: upper, match: { statement: { functions: ['"Upper"'] } }, action: allow }
`);
    expect(p.decide(who(), target(), one({ functions: ['"oid:1"'] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ functions: ['"Upper"'] })).ruleIds).toEqual(['upper']);
    expect(p.decide(who(), target(), one({ functions: ['public."Upper"'] })).ruleIds).toEqual(['upper']);
    expect(p.decide(who(), target(), one({ functions: ['upper'] })).action).toBe('deny');
  });
});

describe('kinds, flags and writes', () => {
  const p = policy(`
default: deny
rules:
  - id: read
    match: { statement: { kinds: [select] } }
    action: allow
  - id: ro
    match: { identity: { kind: agent }, statement: { writes: false } }
    action: allow
  - id: agent-writes
    match: { identity: { kind: agent }, statement: { writes: true } }
    action: deny
  - id: where
    match: { statement: { kinds: [update, delete], flags: [no_where] } }
    action: deny
`);

  it('allow kinds need every kind of the statement listed (a data-modifying WITH is not a select)', () => {
    expect(p.decide(who(), target(), one({ kinds: ['select'] })).ruleIds).toEqual(['read']);
    expect(p.decide(who(), target(), one({ kinds: ['select', 'delete'], writes: [unqualified('t')], flags: ['writes'] }))).toMatchObject({ action: 'deny', default: true });
  });

  it('deny kinds match any kind, nested ones included', () => {
    expect(p.decide(who(), target(), one({ kinds: ['select', 'delete'], flags: ['writes', 'no_where'] })).ruleIds).toEqual(['where']);
    expect(p.decide(who(), target(), one({ kinds: ['update'], flags: ['writes'] })).ruleIds).toEqual([]);
  });

  it('writes: true catches what might write on the deny side; writes: false allows only what cannot', () => {
    const agent = who({ kind: 'agent' });
    expect(p.decide(agent, target(), one({ kinds: ['select'], flags: ['dynamic_sql'] }))).toMatchObject({ action: 'deny', ruleIds: ['agent-writes'] });
    expect(p.decide(agent, target(), one({ kinds: ['do'], flags: ['anonymous_code'] })).ruleIds).toEqual(['agent-writes']);
    expect(p.decide(agent, target(), one({ kinds: ['call'] })).ruleIds).toEqual(['agent-writes']);
    expect(p.decide(agent, target(), one({ kinds: ['show'] }))).toMatchObject({ action: 'allow', ruleIds: ['ro'] });
    expect(p.decide(agent, target(), one({ kinds: ['insert'], writes: [qualified('public.t')] })).ruleIds).toEqual(['agent-writes']);
  });
});

describe('strictest wins', () => {
  const p = policy(`
default: deny
rules:
  - { id: all, action: allow }
  - { id: cap-big, match: { statement: { tables: { read: [big] } } }, action: limit_rows, rows: 500 }
  - { id: cap-all, match: { statement: { kinds: [select] } }, action: limit_rows, rows: 1000 }
  - { id: appr-a, match: { statement: { tables: { write: [pay] } } }, action: require_approval, approvers: [dba, finance], ttl: 2h, approvals: 2, mode: retry, timeout: 5m, grant: window }
  - { id: appr-b, match: { statement: { tables: { write: ["*.pay"] } } }, action: require_approval, approvers: [finance, sec], ttl: 10m, message: pay is sensitive, mode: retry }
  - { id: appr-c, match: { statement: { tables: { write: [ledger] } } }, action: require_approval, approvers: [audit] }
  - { id: no-drop, match: { statement: { kinds: [drop] } }, action: deny, message: no drops }
  - { id: no-drop-2, match: { statement: { kinds: [drop] } }, action: deny }
`);

  it('deny > require_approval > allow, naming every rule at the winning level', () => {
    const d = p.decide(who(), target(), one({ kinds: ['drop'], writes: [qualified('public.pay')], flags: ['ddl'] }));
    expect(d).toEqual({ action: 'deny', ruleIds: ['no-drop', 'no-drop-2'], default: false, message: 'no drops' });
  });

  it('several approval rules: only common approvers, the strictest terms, first message', () => {
    const d = p.decide(who(), target(), one({ kinds: ['update'], writes: [qualified('public.pay')], flags: ['writes'] }));
    // Most approvers, shortest ttl and timeout (appr-b's default 10m), single use if any rule says so, retry only if all do.
    expect(d).toEqual({
      action: 'require_approval', ruleIds: ['appr-a', 'appr-b'], default: false, message: 'pay is sensitive',
      approval: { approvers: ['finance'], ttlSec: 600, required: 2, timeoutSec: 300, mode: 'retry', grant: 'once' },
    });
  });

  it('approval rules with no common approver deny', () => {
    const d = p.decide(who(), target(), one({ kinds: ['update'], writes: [qualified('public.pay'), qualified('public.ledger')] }));
    expect(d.action).toBe('deny');
    expect(d.ruleIds).toEqual(['appr-a', 'appr-b', 'appr-c']);
    expect(d.message).toMatch(/no one can approve/);
  });

  it('limit_rows: smallest cap of the matching rules; a cap that only might apply still caps', () => {
    expect(p.decide(who(), target(), one({ reads: [qualified('public.t')] }))).toEqual({ action: 'allow', ruleIds: ['all', 'cap-all'], default: false, limitRows: 1000 });
    expect(p.decide(who(), target(), one({ reads: [unqualified('big')] }))).toMatchObject({ ruleIds: ['all', 'cap-big', 'cap-all'], limitRows: 500 });
  });

  it('limit_rows allows only what it covers; an ambiguous table gets the cap but needs another allow', () => {
    const q = policy(`
default: deny
rules:
  - { id: cap, match: { statement: { tables: { read: [public.big] } } }, action: limit_rows, rows: 10 }
`);
    expect(q.decide(who(), target(), one({ reads: [qualified('public.big')] }))).toEqual({ action: 'allow', ruleIds: ['cap'], default: false, limitRows: 10 });
    expect(q.decide(who(), target(), one({ reads: [unqualified('big')] }))).toMatchObject({ action: 'deny', default: true });
  });
});

describe('multi-statement strings', () => {
  const p = policy(`
default: deny
rules:
  - { id: tx, match: { statement: { flags: [transaction_control] } }, action: allow }
  - { id: read, match: { statement: { kinds: [select] } }, action: allow }
  - { id: upd, match: { statement: { kinds: [update] } }, action: require_approval, approvers: [dba] }
  - { id: del, match: { statement: { kinds: [delete] } }, action: deny }
`);
  const begin = { kinds: ['begin' as const], flags: ['transaction_control' as const] };
  const commit = { kinds: ['commit' as const], flags: ['transaction_control' as const] };

  it('the strictest statement decides; ids of all statements at that level are listed', () => {
    expect(p.decide(who(), target(), many(begin, { kinds: ['select'] }, commit))).toEqual({ action: 'allow', ruleIds: ['tx', 'read'], default: false });
    expect(p.decide(who(), target(), many(begin, { kinds: ['update'] }, commit)).ruleIds).toEqual(['upd']);
    expect(p.decide(who(), target(), many({ kinds: ['delete'] }, { kinds: ['update'] }, { kinds: ['delete'] }))).toMatchObject({ action: 'deny', ruleIds: ['del'] });
  });

  it('a statement no rule matches denies the string under default deny, and says the default decided', () => {
    const d = p.decide(who(), target(), many({ kinds: ['select'] }, { kinds: ['vacuum'] }));
    expect(d).toMatchObject({ action: 'deny', ruleIds: [], default: true });
  });

  it('under default allow, a string partly allowed by default names its rules and default: true', () => {
    const q = policy(`
default: allow
rules:
  - { id: read, match: { statement: { kinds: [select] } }, action: allow }
`);
    expect(q.decide(who(), target(), many({ kinds: ['select'] }, { kinds: ['vacuum'] }))).toEqual({ action: 'allow', ruleIds: ['read'], default: true });
    expect(q.decide(who(), target(), many({ kinds: ['vacuum'] }))).toEqual({ action: 'allow', ruleIds: [], default: true });
  });

  it('an empty string gets the default', () => {
    expect(p.decide(who(), target(), { ok: true, statements: [] })).toMatchObject({ action: 'deny', default: true });
  });
});

describe('unparsable strings', () => {
  const bad: Analysis = { ok: false, error: 'syntax error at or near "SELEC"', position: 1 };

  it('are denied with the parse error, no rule id and default false, even under default allow', () => {
    const p = policy('default: allow\nrules:\n  - { id: all, action: allow }\n  - { id: d, action: deny }\n');
    expect(p.decide(who(), target(), bad)).toEqual({ action: 'deny', ruleIds: [], default: false, message: 'statement could not be parsed: syntax error at or near "SELEC"' });
  });

  it('are decided by rules that say unparsable: true, and only by those', () => {
    const p = policy(`
rules:
  - { id: legacy, match: { identity: { users: [legacy-etl] }, statement: { unparsable: true } }, action: allow }
  - { id: select, match: { statement: { kinds: [select] } }, action: allow }
`);
    expect(p.decide(who({ user: 'legacy-etl' }), target(), bad)).toEqual({ action: 'allow', ruleIds: ['legacy'], default: false });
    expect(p.decide(who(), target(), bad).action).toBe('deny');
    expect(p.decide(who({ user: 'legacy-etl' }), target(), one({ kinds: ['select'] })).ruleIds).toEqual(['select']);
  });
});

describe('fast-path function calls', () => {
  it('are denied by default even under default allow, and by allow rules that do not name oids', () => {
    const p = policy(`
default: allow
rules:
  - { id: everything, action: allow }
  - { id: calls, match: { statement: { kinds: [call] } }, action: allow }
  - { id: all-functions, match: { statement: { functions: ["*"] } }, action: allow }
`);
    const d = p.decide(who(), target(), fastPathAnalysis(764));
    expect(d).toMatchObject({ action: 'deny', ruleIds: [], default: true });
    expect(d.message).toMatch(/fast-path/);
  });

  it('are allowed by explicit oid patterns only', () => {
    const p = policy(`
rules:
  - { id: lo, match: { statement: { functions: ["oid:764"] } }, action: allow }
  - { id: any-oid, match: { identity: { groups: [etl] }, statement: { functions: ["oid:*"] } }, action: allow }
`);
    expect(p.decide(who(), target(), fastPathAnalysis(764)).ruleIds).toEqual(['lo']);
    expect(p.decide(who(), target(), fastPathAnalysis(765)).action).toBe('deny');
    expect(p.decide(who({ groups: ['etl'] }), target(), fastPathAnalysis(765)).ruleIds).toEqual(['any-oid']);
    // oid patterns do not match SQL function names, nor the reverse.
    expect(p.decide(who({ groups: ['etl'] }), target(), one({ functions: ['lo_import'] })).action).toBe('deny');
  });

  it('are matched by deny-side rules like any statement', () => {
    const p = policy(`
rules:
  - { id: any-oid, match: { statement: { functions: ["oid:*"] } }, action: allow }
  - { id: no-writes, match: { statement: { writes: true } }, action: deny }
`);
    expect(p.decide(who(), target(), fastPathAnalysis(1))).toMatchObject({ action: 'deny', ruleIds: ['no-writes'] });
  });
});

describe('functions and columns', () => {
  it('an unqualified call may be the schema-qualified function (deny-side) but is not allowed by it', () => {
    const p = policy(`
default: deny
rules:
  - { id: no-set-config, match: { statement: { functions: [pg_catalog.set_config] } }, action: deny }
  - { id: now, match: { statement: { functions: [pg_catalog.now] } }, action: allow }
  - { id: lower, match: { statement: { functions: [lower] } }, action: allow }
`);
    expect(p.decide(who(), target(), one({ functions: ['set_config'] })).ruleIds).toEqual(['no-set-config']);
    expect(p.decide(who(), target(), one({ functions: ['public.set_config'] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ functions: ['public.set_config'] })).ruleIds).toEqual([]);
    expect(p.decide(who(), target(), one({ functions: ['pg_catalog.now'] })).ruleIds).toEqual(['now']);
    expect(p.decide(who(), target(), one({ functions: ['now'] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ functions: ['lower', 'public.lower'] })).ruleIds).toEqual(['lower']);
  });

  it('columns resolve through their table candidates; unknown tables and * are handled safely', () => {
    const p = policy(`
default: allow
rules:
  - { id: ssn, match: { statement: { columns: ["*.ssn", public.users.email] } }, action: deny }
`);
    const users = unqualified('users');
    expect(p.decide(who(), target(), one({ reads: [users], columns: [col('users', 'email')] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ reads: [qualified('crm.users')], columns: [col('crm.users', 'email')] })).action).toBe('allow');
    expect(p.decide(who(), target(), one({ reads: [qualified('hr.people')], columns: [col('hr.people', 'ssn')] })).action).toBe('deny');
    // SELECT * from a table the pattern names: the star may be the column.
    expect(p.decide(who(), target(), one({ reads: [users], columns: [col('users', '*')] })).action).toBe('deny');
    // Unattributed column in a join: could be public.users.email.
    expect(p.decide(who(), target(), one({ reads: [qualified('crm.x'), users], columns: [col(null, 'email')] })).action).toBe('deny');
  });

  it('allow-side columns need every column certainly covered', () => {
    const p = policy(`
default: deny
rules:
  - { id: safe, match: { statement: { columns: ["*.id", "*.name", public.orders.total] } }, action: allow }
`);
    const orders = qualified('public.orders');
    expect(p.decide(who(), target(), one({ reads: [orders], columns: [col('public.orders', 'id'), col('public.orders', 'total')] })).action).toBe('allow');
    expect(p.decide(who(), target(), one({ reads: [unqualified('orders')], columns: [col('orders', 'total')] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ reads: [orders], columns: [col('public.orders', '*')] })).action).toBe('deny');
    expect(p.decide(who(), target(), one({ reads: [orders], columns: [] })).action).toBe('deny');
  });
});

describe('identity and target conditions', () => {
  const p = policy(`
default: deny
rules:
  - id: email-ci
    match: { identity: { users: ["*@EXAMPLE.com"] }, statement: { kinds: [show] } }
    action: allow
  - id: groups-any
    match: { identity: { groups: [dba, "ops-*"] }, statement: { kinds: [vacuum] } }
    action: allow
  - id: claims
    match: { identity: { claims: { model: "gpt-4*", "realm_access.roles": [admin], "https://x.test/tier": 3 } }, statement: { kinds: [analyze] } }
    action: allow
  - id: eu-prod
    match: { target: { environment: [production, staging], labels: { region: "eu-*" }, name: "app*" }, statement: { kinds: [lock] } }
    action: allow
  - id: contractors
    match: { identity: { groups: [contractors] } }
    action: deny
`);

  it('users: globs against user or email, case-insensitive for emails', () => {
    expect(p.decide(who({ user: 'Alice', email: 'Alice@Example.COM' }), target(), one({ kinds: ['show'] })).ruleIds).toEqual(['email-ci']);
    expect(p.decide(who({ user: 'svc', email: undefined }), target(), one({ kinds: ['show'] })).action).toBe('deny');
  });

  it('groups: any of, with globs', () => {
    expect(p.decide(who({ groups: ['x', 'ops-eu'] }), target(), one({ kinds: ['vacuum'] })).action).toBe('allow');
    expect(p.decide(who({ groups: ['opsy'] }), target(), one({ kinds: ['vacuum'] })).action).toBe('deny');
  });

  it('claims: dotted paths, whole dotted names, list claims, numbers by text', () => {
    const claims = { model: 'gpt-4o', realm_access: { roles: ['user', 'admin'] }, 'https://x.test/tier': '3' };
    expect(p.decide(who({ claims }), target(), one({ kinds: ['analyze'] })).action).toBe('allow');
    expect(p.decide(who({ claims: { ...claims, model: 'claude' } }), target(), one({ kinds: ['analyze'] })).action).toBe('deny');
    expect(p.decide(who({ claims: { ...claims, realm_access: { roles: ['user'] } } }), target(), one({ kinds: ['analyze'] })).action).toBe('deny');
  });

  it('target: name, environment list, labels', () => {
    expect(p.decide(who(), target({ name: 'app-eu', labels: { region: 'eu-west-1' } }), one({ kinds: ['lock'] })).action).toBe('allow');
    expect(p.decide(who(), target({ name: 'app-eu', labels: { region: 'us-east-1' } }), one({ kinds: ['lock'] })).action).toBe('deny');
    expect(p.decide(who(), target({ name: 'app-eu', labels: {} }), one({ kinds: ['lock'] })).action).toBe('deny');
    expect(p.decide(who(), target({ name: 'app', environment: 'dev', labels: { region: 'eu-1' } }), one({ kinds: ['lock'] })).action).toBe('deny');
  });

  it('unverified sessions: unknown groups/kind/claims match deny-side rules and never allow rules', () => {
    const anon: SessionIdentity = { user: 'alice@example.com', verified: false };
    expect(p.decide(anon, target(), one({ kinds: ['show'] }))).toMatchObject({ action: 'deny', ruleIds: ['contractors'] });
    const q = policy(`
default: deny
rules:
  - { id: by-name, match: { identity: { users: [alice@example.com] } }, action: allow }
  - { id: by-group, match: { identity: { groups: [dba] } }, action: allow }
`);
    expect(q.decide(anon, target(), one({ kinds: ['vacuum'] })).ruleIds).toEqual(['by-name']);
    expect(q.decide({ user: 'bob', verified: false }, target(), one({ kinds: ['vacuum'] })).action).toBe('deny');
  });
});

describe('hot-path behaviour', () => {
  const p = policy(`
rules:
  - { id: read, match: { statement: { kinds: [select] } }, action: allow }
  - { id: cap, match: { statement: { kinds: [select] } }, action: limit_rows, rows: 5 }
`);

  it('returns the same frozen Decision for the same combination of rules', () => {
    const a = p.decide(who(), target(), one({}));
    const b = p.decide(who({ subject: 'other' }), target(), one({ reads: [qualified('public.x')] }));
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.ruleIds)).toBe(true);
  });

  it('re-evaluates identity conditions when the same identity object meets another target', () => {
    const q = policy(`
rules:
  - { id: prod, match: { target: { environment: production } }, action: allow }
`);
    const id = who();
    expect(q.decide(id, target(), one({})).action).toBe('allow');
    expect(q.decide(id, target({ environment: 'dev' }), one({})).action).toBe('deny');
  });

  it('exposes rule count and sources', () => {
    expect(p.ruleCount).toBe(2);
    expect(p.sources).toEqual(['p.yaml']);
  });
});

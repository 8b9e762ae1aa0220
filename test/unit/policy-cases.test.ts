// Cases files: parsing, defaults, validation messages, and how failures are reported.
// A stand-in analyzer keeps this independent of the parser (the CLI test uses the real one).

import { describe, expect, it } from 'vitest';
import type { Analysis } from '../../src/analysis/facts.js';
import { formatFailure, parseCases, runCases, specIdentity, type Analyzer } from '../../src/policy/cases.js';
import { policyFromTexts } from '../../src/policy/load.js';

const analyze: Analyzer = (sql): Analysis => {
  if (sql.startsWith('BAD')) return { ok: false, error: 'syntax error' };
  const kind = sql.split(' ')[0]!.toLowerCase() as 'select';
  return { ok: true, statements: [{ text: sql, kinds: [kind], reads: [], writes: [], columns: [], functions: [], flags: kind === 'select' ? [] : ['writes'] }] };
};

const policy = policyFromTexts([{ file: 'p.yaml', text: `
rules:
  - { id: read, match: { statement: { kinds: [select] } }, action: allow }
  - { id: cap, match: { identity: { kind: agent }, statement: { kinds: [select] } }, action: limit_rows, rows: 10 }
  - { id: no-writes, match: { identity: { kind: agent }, statement: { writes: true } }, action: deny, message: read-only }
` }]);

describe('cases files', () => {
  const text = `policy: [a.yaml, ../b]
defaults:
  identity: { user: bot, kind: agent }
  target: { environment: production }
cases:
  - name: reads
    sql: SELECT 1
    expect: allow
    rules: [cap, read]
    limit_rows: 10
  - sql: DELETE x
    expect: deny
    message: read-only
  - name: people
    identity: { user: alice@example.com }
    sql: SELECT 1
    expect: allow
    limit_rows: 10
  - name: wrong
    sql: BAD
    expect: allow
    rules: [read]
    default: true
`;

  it('resolves policy paths, merges defaults and runs every case', () => {
    const { cases, problems } = parseCases(text, '/work/x/t.cases.yaml');
    expect(problems).toEqual([]);
    expect(cases!.policy).toEqual(['/work/x/a.yaml', '/work/b']);
    expect(cases!.cases[0]!.identity).toMatchObject({ user: 'bot', kind: 'agent', verified: true });
    expect(cases!.cases[0]!.target).toEqual({ name: 'app', engine: 'postgres', database: 'app', environment: 'production', labels: {} });
    expect(cases!.cases[1]!.name).toBe('cases[1]');
    const results = runCases(cases!.cases, policy, analyze);
    expect(results.map((r) => r.mismatches)).toEqual([
      [],
      [],
      ['expected limit_rows 10, got none'],
      ['expected allow, got deny', 'expected rules [read], got []', 'expected default: true, got false'],
    ]);
    expect(formatFailure(results[3]!)).toBe(
      '/work/x/t.cases.yaml:19:5: case "wrong": expected allow, got deny; expected rules [read], got []; expected default: true, got false (decision: deny []: statement could not be parsed: syntax error)',
    );
  });

  it('validates with positions', () => {
    const { cases, problems } = parseCases(`cases:
  - { expect: maybe, sql: x }
  - { expect: deny }
  - { expect: deny, sql: x, function_call: 1 }
  - { expect: deny, sql: x, identity: { kind: human } }
`, 'c.yaml');
    expect(cases).toBeNull();
    expect(problems.map((p) => `${p.line}:${p.column}: ${p.field}: ${p.message}`)).toEqual([
      '2:15: cases[0].expect: must be one of: allow, deny, require_approval',
      '3:5: cases[1]: give exactly one of sql or function_call',
      '4:5: cases[2]: give exactly one of sql or function_call',
      '5:39: cases[3].identity.user: required field is missing',
    ]);
  });

  it('builds identities: email from the user name, unverified on request', () => {
    expect(specIdentity({ user: 'a@b.c' })).toMatchObject({ user: 'a@b.c', email: 'a@b.c', kind: 'human', groups: [], verified: true });
    expect(specIdentity({ user: 'svc', kind: 'service', claims: { x: 1 } })).toMatchObject({ claims: { sub: 'svc', groups: [], x: 1 } });
    expect(specIdentity({ user: 'svc', verified: false })).toEqual({ user: 'svc', verified: false });
  });
});

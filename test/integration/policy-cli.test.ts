// `dbward policy check|test|explain` as a user runs them: a child process, the real
// PostgreSQL parser, the shipped example policies and their cases files.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const EXAMPLES = path.join(ROOT, 'examples/policies');
// The policy subcommands through their entry point, without depending on main.ts's dispatch.
const ENTRY = `const { policyCommand } = await import(${JSON.stringify(path.join(ROOT, 'src/cli/policy.ts'))});
process.exitCode = await policyCommand(process.argv.slice(1));`;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbward-policy-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number; stdout: string; stderr: string }

function policy(...args: string[]): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', ENTRY, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

describe('dbward policy check', () => {
  it('passes every example (with the baseline) and says what it loaded', async () => {
    const names = ['read-only-agents', 'no-destructive-ddl-in-prod', 'where-required', 'pii-approval'];
    const runs = await Promise.all(names.map((name) => policy('check', path.join(EXAMPLES, 'baseline.yaml'), path.join(EXAMPLES, `${name}.yaml`))));
    runs.forEach((r, i) => {
      expect(r, names[i]).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout).toMatch(/^ok: \d+ rules from 2 files, default (allow|deny)\n$/);
    });
  });

  it('prints every problem as file:line:col: field: message and exits 1', async () => {
    const bad = file('bad.yaml', `rules:
  - { id: a, action: deny, match: { statement: { kinds: [delet] } } }
  - { id: a, action: allow }
  - { id: b, action: deny, match: { identity: { groups: [contractors] } } }
  - { id: c, action: allow, match: { identity: { groups: [contractors] }, statement: { kinds: [select] } } }
`);
    const schema = await policy('check', bad);
    expect(schema.code).toBe(1);
    expect(schema.stdout).toBe(`${bad}:2:58: rules[0].match.statement.kinds[0]: unknown value "delet"; did you mean "delete"? (the list is in docs/policy.md)\n1 problem\n`);

    writeFileSync(bad, readFileSync(bad, 'utf8').replace('delet', 'delete'));
    const lint = await policy('check', bad);
    expect(lint.code).toBe(1);
    expect(lint.stdout.split('\n')).toEqual([
      `${bad}:3:11: rules[1].id: duplicate rule id "a" (first defined at ${bad}:2:5)`,
      `${bad}:5:11: rules[3].id: rule "c" can never allow: every statement it matches is also matched by deny rule "b" (${bad}:4:5), and the stricter action wins`,
      '2 problems',
      '',
    ]);
  });

  it('refuses a directory mixing examples whose defaults disagree', async () => {
    const r = await policy('check', EXAMPLES);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/default: conflicts with default: allow in .*; files loaded together must agree/);
  });
});

describe('dbward policy test', () => {
  it('passes every example cases file', async () => {
    const cases = readdirSync(EXAMPLES).filter((n) => n.endsWith('.cases.yaml')).map((n) => path.join(EXAMPLES, n));
    expect(cases).toHaveLength(5);
    const r = await policy('test', ...cases);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^\d+ cases, 0 failed\n$/);
    expect(r.code).toBe(0);
  });

  it('prints a line per failing case and exits 1', async () => {
    const cases = file('t.cases.yaml', `policy: ${JSON.stringify(path.join(EXAMPLES, 'where-required.yaml'))}
cases:
  - name: passes
    sql: DELETE FROM t WHERE id = 1
    expect: allow
  - name: wrong action
    sql: DELETE FROM t
    expect: allow
  - name: wrong rules
    sql: UPDATE t SET a = 1
    expect: deny
    rules: [something-else]
`);
    const r = await policy('test', cases);
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')).toEqual([
      `${cases}:6:5: case "wrong action": expected allow, got deny (decision: deny [update-delete-need-where]: UPDATE and DELETE need a WHERE clause (write WHERE true to mean every row))`,
      `${cases}:9:5: case "wrong rules": expected rules [something-else], got [update-delete-need-where] (decision: deny [update-delete-need-where]: UPDATE and DELETE need a WHERE clause (write WHERE true to mean every row))`,
      '3 cases, 2 failed',
      '',
    ]);
  });

  it('-p overrides the policy the file names; invalid files are reported', async () => {
    const cases = file('p.cases.yaml', 'cases:\n  - { sql: "DROP TABLE t", expect: deny, rules: [prod-no-drop-truncate] }\n');
    const ok = await policy('test', cases, '-p', path.join(EXAMPLES, 'no-destructive-ddl-in-prod.yaml'));
    expect(ok).toMatchObject({ code: 1 }); // the default target's environment is not production
    const prod = file('prod.cases.yaml', 'defaults: { target: { environment: production } }\ncases:\n  - { sql: "DROP TABLE t", expect: deny, rules: [prod-no-drop-truncate] }\n');
    expect(await policy('test', prod, '-p', path.join(EXAMPLES, 'no-destructive-ddl-in-prod.yaml'))).toMatchObject({ code: 0, stdout: '1 case, 0 failed\n' });
    const none = await policy('test', prod);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('no policy: name one in the file (policy: ...) or with -p');
    const invalid = file('i.cases.yaml', 'cases:\n  - { expect: maybe }\n');
    const r = await policy('test', invalid, '-p', path.join(EXAMPLES, 'baseline.yaml'));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${invalid}:2:5: cases[0]: give exactly one of sql or function_call`);
    expect(r.stdout).toContain(`${invalid}:2:15: cases[0].expect: must be one of: allow, deny, require_approval`);
  });
});

describe('dbward policy explain', () => {
  const p = ['-p', path.join(EXAMPLES, 'baseline.yaml'), '-p', path.join(EXAMPLES, 'read-only-agents.yaml')];

  it('prints facts per statement, matched rules and the decision', async () => {
    const r = await policy('explain', ...p, '--user', 'bot@example.com', '--kind', 'agent', '--groups', 'ai,readers', '--target-env', 'production',
      'SELECT email FROM users LIMIT 5; DELETE FROM orders');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toContain('session: bot@example.com (agent, verified; groups: ai, readers) on target app (environment production)');
    expect(r.stdout).toContain('statement 1: SELECT email FROM users LIMIT 5');
    expect(r.stdout).toContain('  reads:     users [pg_temp.users pg_catalog.users "bot@example.com".users public.users]');
    expect(r.stdout).toContain('  matched:   agents-read (allow), agents-row-cap (limit_rows, allows and caps)');
    expect(r.stdout).toContain('statement 2: DELETE FROM orders');
    expect(r.stdout).toContain('  flags:     writes, no_where');
    expect(r.stdout).toContain('  matched:   agents-no-writes (deny)\n  result:    deny');
    expect(r.stdout).toMatch(/\ndecision: deny by agents-no-writes; AI agents have read-only access\n$/);
  });

  it('explains unparsable statements and fast-path calls', async () => {
    const bad = await policy('explain', ...p, '--user', 'alice@example.com', 'SELEC 1');
    expect(bad.stdout).toContain('unparsable: syntax error at or near "SELEC"');
    expect(bad.stdout).toMatch(/decision: deny; statement could not be parsed: syntax error at or near "SELEC"/);
    const fast = await policy('explain', ...p, '--user', 'alice@example.com', '--function-call', '764');
    expect(fast.stdout).toContain('statement 1: (no SQL text: a fast-path function call)');
    expect(fast.stdout).toContain('  functions: oid:764');
    expect(fast.stdout).toMatch(/decision: deny \(default\); fast-path function calls are denied/);
  });

  it('rejects incomplete invocations with usage and exit 2', async () => {
    const r = await policy('explain', ...p, 'SELECT 1');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('dbward policy explain: missing --user USER');
    expect((await policy('frobnicate')).code).toBe(2);
    expect((await policy('explain', ...p, '--user', 'a', '--nope', 'SELECT 1')).code).toBe(2);
  });
});

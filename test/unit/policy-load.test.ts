// Loading policy files: YAML and schema problems positioned as file:line:col, problems
// the schema cannot express, directories, several files, and the typed error.

import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { globCovers, globsRegex, expandBraces, GlobError } from '../../src/policy/glob.js';
import { partSource, splitName } from '../../src/policy/names.js';
import { loadPolicy, PolicyError, policyFromTexts } from '../../src/policy/load.js';
import { policyProblems } from '../helpers/policy.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbward-policy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(rel: string, text: string): string {
  const file = path.join(tmp, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

describe('schema problems', () => {
  it('positions every problem and words it for people', () => {
    expect(policyProblems(`default: maybe
rules:
  - id: a
    match:
      statement: { kinds: [selct], flags: [nowhere], tables: { reads: [x] } }
      identity: { kind: robot, groups: [] }
    action: block
  - id: b
    action: require_approval
  - action: limit_rows
    rows: 0
    ttl: 5 minutes
`)).toEqual([
      'p.yaml:1:10: default: must be one of: allow, deny',
      'p.yaml:5:28: rules[0].match.statement.kinds[0]: unknown value "selct"; did you mean "select"? (the list is in docs/policy.md)',
      'p.yaml:5:44: rules[0].match.statement.flags[0]: unknown value "nowhere"; did you mean "no_where"? (the list is in docs/policy.md)',
      'p.yaml:5:64: rules[0].match.statement.tables.reads: unknown field (allowed: read, write, any)',
      'p.yaml:6:25: rules[0].match.identity.kind: must be one of: human, service, agent',
      'p.yaml:6:40: rules[0].match.identity.groups: must not be empty (an empty list matches nothing; remove the field to match anything)',
      'p.yaml:7:13: rules[0].action: must be one of: allow, deny, require_approval, limit_rows',
      'p.yaml:8:5: rules[1].approvers: required with action require_approval',
      'p.yaml:10:5: rules[2].id: required field is missing',
      'p.yaml:11:11: rules[2].rows: must be >= 1',
      'p.yaml:12:10: rules[2].ttl: must be a number of seconds or a duration such as 30s, 15m, 2h, 1d',
    ]);
  });

  it('words scalar-or-list fields', () => {
    expect(policyProblems('rules:\n  - { id: a, action: deny, match: { target: { environment: 5, name: [ok, 7] } } }\n')).toEqual([
      'p.yaml:2:60: rules[0].match.target.environment: must be a string or a list of strings (got an integer)',
      'p.yaml:2:74: rules[0].match.target.name[1]: must be a string (got an integer)',
    ]);
  });

  it('reports YAML syntax, duplicate keys, empty files and non-mappings', () => {
    expect(policyProblems('rules:\n  - id: a\n    id: b\n    action: deny\n')).toEqual(['p.yaml:3:5: duplicate key "id"']);
    expect(policyProblems('# nothing\n')).toEqual(['p.yaml:1:1: policy file is empty; expected a mapping']);
    expect(policyProblems('- id: a\n')).toEqual(['p.yaml:1:1: top level must be a mapping, got a list']);
    expect(policyProblems('rules: [\n')[0]).toMatch(/^p\.yaml:\d+:\d+: /);
  });
});

describe('problems beyond the schema', () => {
  it('duplicate ids, bad patterns, fields that do not fit the action, unparsable with facts', () => {
    expect(policyProblems(`rules:
  - { id: a, action: deny, rows: 3 }
  - { id: a, action: allow, message: hi }
  - id: c
    match: { statement: { tables: { read: [a.b.c, "{x"] }, columns: [a.b.c.d], functions: [a.b.c, "oid:x"] } }
    action: allow
  - { id: d, action: limit_rows, rows: 1, approvers: [x], ttl: 1m }
  - { id: e, action: deny, match: { statement: { unparsable: true, kinds: [select] } } }
  - { id: f, action: deny, match: { statement: { tables: { read: ["{a.b,c}.x"] } } } }
`)).toEqual([
      'p.yaml:2:34: rules[0].rows: only used with action limit_rows, not deny',
      'p.yaml:3:11: rules[1].id: duplicate rule id "a" (first defined at p.yaml:2:5)',
      'p.yaml:3:38: rules[1].message: only used with action deny or require_approval, not allow',
      'p.yaml:5:44: rules[2].match.statement.tables.read[0]: "a.b.c": a table pattern is table or schema.table',
      'p.yaml:5:51: rules[2].match.statement.tables.read[1]: "{x": unclosed {',
      'p.yaml:5:70: rules[2].match.statement.columns[0]: "a.b.c.d": a column pattern is column, table.column or schema.table.column',
      'p.yaml:5:92: rules[2].match.statement.functions[0]: "a.b.c": a function pattern is name or schema.name',
      'p.yaml:5:99: rules[2].match.statement.functions[1]: "oid:x": a fast-path pattern is oid:* or oid:<number>',
      'p.yaml:7:54: rules[3].approvers: only used with action require_approval, not limit_rows',
      'p.yaml:7:64: rules[3].ttl: only used with action require_approval, not limit_rows',
      'p.yaml:8:62: rules[4].match.statement.unparsable: cannot be combined with kinds: an unparsable statement has no facts',
      'p.yaml:9:67: rules[5].match.statement.tables.read[0]: "{a.b,c}.x": {a,b} alternatives cannot contain a dot; write one per part',
    ]);
  });
});

describe('files and directories', () => {
  it('loads a directory in name order, skipping cases files, and several paths together', () => {
    const dir = path.join(tmp, 'dir');
    write('dir/b.yaml', 'rules:\n  - { id: b, action: deny }\n');
    write('dir/a.yml', 'default: allow\nrules:\n  - { id: a, action: allow }\n');
    write('dir/a.cases.yaml', 'cases: []\n');
    write('dir/notes.txt', 'not yaml');
    const extra = write('extra.yaml', 'rules:\n  - { id: z, action: deny }\n');
    const p = loadPolicy([dir, extra]);
    expect(p.sources).toEqual([path.join(dir, 'a.yml'), path.join(dir, 'b.yaml'), extra]);
    expect(p.ruleCount).toBe(3);
    expect(p.rules.map((r) => r.id)).toEqual(['a', 'b', 'z']);
    expect(p.defaultAction).toBe('allow');
  });

  it('defaults to deny, and files must agree on default', () => {
    expect(policyFromTexts([{ file: 'x.yaml', text: 'rules: []\n' }]).defaultAction).toBe('deny');
    const a = write('conflict/a.yaml', 'default: allow\n');
    const b = write('conflict/b.yaml', 'default: deny\n');
    expect(() => loadPolicy([a, b])).toThrow(`${b}:1:10: default: conflicts with default: allow in ${a}; files loaded together must agree`);
  });

  it('duplicate ids across files name the first definition', () => {
    const a = write('dup/a.yaml', 'rules:\n  - { id: same, action: deny }\n');
    const b = write('dup/b.yaml', 'rules:\n  - { id: same, action: deny }\n');
    expect(() => loadPolicy([a, b])).toThrow(`${b}:2:11: rules[0].id: duplicate rule id "same" (first defined at ${a}:2:5)`);
  });

  it('collects problems from every file, and unreadable paths', () => {
    const bad = write('many/bad.yaml', 'rules:\n  - { id: x, action: nope }\n');
    const missing = path.join(tmp, 'missing.yaml');
    const empty = path.join(tmp, 'emptydir');
    mkdirSync(empty, { recursive: true });
    try {
      loadPolicy([bad, missing, empty]);
      expect.unreachable();
    } catch (err) {
      // Path problems come first: they are found before any file is read.
      expect((err as PolicyError).problems.map((p) => `${p.file}:${p.message}`)).toEqual([
        `${missing}:cannot read policy path (ENOENT)`,
        `${empty}:directory holds no policy files (*.yaml, *.yml)`,
        `${bad}:must be one of: allow, deny, require_approval, limit_rows`,
      ]);
    }
  });
});

describe('globs', () => {
  it('compiles *, ?, {a,b} and escapes', () => {
    expect(globsRegex(['*@example.com']).test('a.b@example.com')).toBe(true);
    expect(globsRegex(['{eu,us}-?']).test('eu-1')).toBe(true);
    expect(globsRegex(['{eu,us}-?']).test('ap-1')).toBe(false);
    expect(globsRegex(['a\\*']).test('a*')).toBe(true);
    expect(globsRegex(['a\\*']).test('ab')).toBe(false);
    expect(globsRegex(['a+b(c)']).test('a+b(c)')).toBe(true);
    expect(globsRegex(['line*'], 'i').test('LINE\nbreak')).toBe(true);
    expect(() => globsRegex(['{a,{b}}'])).toThrow(GlobError);
    expect(() => globsRegex(['a}'])).toThrow(GlobError);
    expect(() => globsRegex(['a\\'])).toThrow(GlobError);
  });

  it('expands braces and decides coverage conservatively', () => {
    expect(expandBraces('{a,b}.{x,y}')).toEqual(['a.x', 'a.y', 'b.x', 'b.y']);
    expect(globCovers('*', 'anything*')).toBe(true);
    expect(globCovers('ops-*', '{ops-eu,ops-us}')).toBe(true);
    expect(globCovers('ops-*', 'ops*')).toBe(false);
    expect(globCovers('p?', 'p*')).toBe(false);
    expect(globCovers('*@EXAMPLE.com', 'bob@example.com', true)).toBe(true);
  });
});

describe('SQL name patterns (names.ts)', () => {
  const re = (pattern: string, unknown = false) => new RegExp(`^${splitName(pattern).map((p) => partSource(p, unknown)).join('\\.')}$`);

  it('split at unquoted dots, fold unquoted parts, keep quoted ones exact', () => {
    expect(splitName('Public."My.Table"')).toEqual([{ text: 'public', quoted: false }, { text: 'My.Table', quoted: true }]);
    expect(splitName('"a""b"')).toEqual([{ text: 'a"b', quoted: true }]);
    for (const bad of ['a..b', '"a', 'a"b"', '""', '{a.b}', '.a']) expect(() => splitName(bad), bad).toThrow(GlobError);
  });

  it('match names as facts print them (quote_ident form)', () => {
    expect(re('public.users').test('public.users')).toBe(true);
    expect(re('public."Users"').test('public."Users"')).toBe(true);
    expect(re('public.Users').test('public."Users"')).toBe(false);
    expect(re('*.users').test('"alice@example.com".users')).toBe(true);
    expect(re('"a""b".t').test('"a""b".t')).toBe(true);
    expect(re('u*').test('"u.x"')).toBe(true);
    expect(re('u*').test('u_x')).toBe(true);
    expect(re('u*').test('"U"')).toBe(false);
  });

  it('accept the unknown * only deny-side or for a * part', () => {
    expect(re('public.users').test('*.users')).toBe(false);
    expect(re('public.users', true).test('*.users')).toBe(true);
    expect(re('*.users').test('*.users')).toBe(true);
    expect(re('p*.users').test('*.users')).toBe(false);
    expect(re('"*".users').test('*.users')).toBe(false);
    expect(re('"*".users').test('"*".users')).toBe(true);
  });
});

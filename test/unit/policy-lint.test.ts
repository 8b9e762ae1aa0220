// `policy check` findings beyond load errors: rules that can never match, patterns that
// only meet quoted identifiers, and shadowed rules (both when they are and are not).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem } from '../../src/config/errors.js';
import { checkPolicy, covers } from '../../src/policy/lint.js';
import type { RawRule } from '../../src/policy/types.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbward-lint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function check(yaml: string): string[] {
  const file = path.join(tmp, `p${n++}.yaml`);
  writeFileSync(file, yaml);
  return checkPolicy([file]).map((p) => formatProblem({ ...p, file: 'p.yaml' }));
}

describe('rules that can never match', () => {
  it('finds contradictory writes conditions', () => {
    expect(check(`rules:
  - { id: a, action: allow, match: { statement: { kinds: [select], writes: true } } }
  - { id: b, action: deny, match: { statement: { kinds: [select, show], writes: true } } }
  - { id: b2, action: deny, match: { statement: { kinds: [show, begin], writes: true } } }
  - { id: c, action: deny, match: { statement: { writes: false, flags: [ddl, dcl] } } }
  - { id: d, action: allow, match: { statement: { writes: false, flags: [dynamic_sql] } } }
  - { id: e, action: deny, match: { statement: { writes: false, tables: { write: [x] } } } }
  - { id: f, action: deny, match: { statement: { writes: false, flags: [dynamic_sql] } } }
`).filter((l) => !l.includes('rule "'))).toEqual([
      'p.yaml:2:76: rules[0].match.statement.writes: writes: true with kinds [select], which do not write by themselves, matches only a SELECT that writes through a writing function such as nextval(); to match writes, list the write kinds (insert, update, delete, merge)',
      'p.yaml:3:81: rules[1].match.statement.writes: writes: true with kinds [select, show], which do not write by themselves, matches only a SELECT that writes through a writing function such as nextval() or a data-modifying WITH; to match writes, list the write kinds (insert, update, delete, merge)',
      'p.yaml:4:81: rules[2].match.statement.writes: can never match: writes: true with kinds [show, begin], which do not write',
      'p.yaml:5:58: rules[3].match.statement.writes: can never match: writes: false with flags [ddl, dcl], which mean writing',
      'p.yaml:6:59: rules[4].match.statement.writes: can never match: writes: false with flags [dynamic_sql], which mean writing',
      'p.yaml:7:58: rules[5].match.statement.writes: can never match: writes: false with tables.write',
    ]);
  });

  it('finds allow rules limited to oid: functions that also need facts fast-path calls lack', () => {
    expect(check(`rules:
  - { id: a, action: allow, match: { statement: { functions: ["oid:*"], tables: { read: [t] } } } }
  - { id: b, action: allow, match: { statement: { functions: ["oid:*"], kinds: [select] } } }
  - { id: ok, action: allow, match: { statement: { functions: ["oid:*"], kinds: [call] } } }
`)).toEqual([
      'p.yaml:2:62: rules[0].match.statement.functions: can never match: oid: patterns match only fast-path calls, which have no tables as written here',
      'p.yaml:3:62: rules[1].match.statement.functions: can never match: oid: patterns match only fast-path calls, which have no kinds other than call as written here',
    ]);
  });

  it('warns that unquoted capitals fold to lower case, and says how to quote', () => {
    expect(check('rules:\n  - { id: a, action: deny, match: { statement: { tables: { any: [public.Users] }, columns: ["*.SSN"] } } }\n')).toEqual([
      'p.yaml:2:66: rules[0].match.statement.tables.any[0]: "public.Users" matches public.users: unquoted names fold to lower case as in SQL; for names with capitals write public."Users"',
      'p.yaml:2:93: rules[0].match.statement.columns[0]: "*.SSN" matches *.ssn: unquoted names fold to lower case as in SQL; for names with capitals write *."SSN"',
    ]);
  });

  it('is quiet on a clean policy', () => {
    expect(check(`default: deny
rules:
  - { id: r, action: allow, match: { identity: { kind: agent }, statement: { kinds: [select], writes: false } } }
  - { id: w, action: deny, match: { identity: { kind: agent }, statement: { writes: true } } }
  - { id: c, action: limit_rows, rows: 10, match: { statement: { kinds: [select] } } }
`)).toEqual([]);
  });
});

describe('shadowed rules', () => {
  it('reports an allow (or limit_rows, or approval) that a stricter rule always overrides', () => {
    expect(check(`rules:
  - { id: no-contractor-writes, action: deny, match: { identity: { groups: ["contract*"] }, statement: { kinds: [insert, update, delete] } } }
  - { id: contractor-deletes, action: allow, match: { identity: { groups: [contractors] }, statement: { kinds: [delete], tables: { write: [public.t] } } } }
  - { id: pay-approval, action: require_approval, approvers: [fin], match: { statement: { tables: { write: ["*.pay"] } } } }
  - { id: pay-insert, action: limit_rows, rows: 5, match: { statement: { kinds: [insert], tables: { write: [pay] } } } }
  - { id: prod-drop, action: deny, match: { target: { environment: production }, statement: { kinds: [drop] } } }
  - { id: prod-drop-approval, action: require_approval, approvers: [dba], match: { target: { environment: [production] }, statement: { kinds: [drop] } } }
`)).toEqual([
      'p.yaml:3:11: rules[1].id: rule "contractor-deletes" can never allow: every statement it matches is also matched by deny rule "no-contractor-writes" (p.yaml:2:5), and the stricter action wins'.replace('(p.yaml', `(${path.join(tmp, `p${n - 1}.yaml`)}`),
      'p.yaml:5:11: rules[3].id: rule "pay-insert" can never allow: every statement it matches is also matched by require_approval rule "pay-approval" (p.yaml:4:5), and the stricter action wins'.replace('(p.yaml', `(${path.join(tmp, `p${n - 1}.yaml`)}`),
      'p.yaml:7:11: rules[5].id: rule "prod-drop-approval" can never ask for approval: every statement it matches is also matched by deny rule "prod-drop" (p.yaml:6:5), and the stricter action wins'.replace('(p.yaml', `(${path.join(tmp, `p${n - 1}.yaml`)}`),
    ]);
  });

  const rule = (match: RawRule['match'], action: RawRule['action'] = 'allow'): RawRule => ({ id: 'x', action, ...(match && { match }) });

  it('does not report what a deny rule covers only partly', () => {
    const deny = rule({ identity: { groups: ['contractors'] }, statement: { kinds: ['delete'] } }, 'deny');
    // A wider identity, a wider statement, and a statement that may not be a delete.
    expect(covers(deny, rule({ statement: { kinds: ['delete'] } }))).toBe(false);
    expect(covers(deny, rule({ identity: { groups: ['contractors'] }, statement: { kinds: ['delete', 'update'] } }))).toBe(false);
    expect(covers(deny, rule({ identity: { groups: ['contractors'] } }))).toBe(false);
    expect(covers(deny, rule({ identity: { groups: ['contractors', 'staff'] }, statement: { kinds: ['delete'] } }))).toBe(false);
    expect(covers(deny, rule({ identity: { groups: ['contractors'] }, statement: { kinds: ['delete'], writes: true } }))).toBe(true);
  });

  it('compares patterns in full form and respects schemas', () => {
    const deny = rule({ statement: { tables: { read: ['public.users'] } } }, 'deny');
    expect(covers(deny, rule({ statement: { tables: { read: ['public.users'] } } }))).toBe(true);
    expect(covers(deny, rule({ statement: { tables: { read: ['users'] } } }))).toBe(false);
    expect(covers(rule({ statement: { tables: { any: ['users'] } } }, 'deny'), rule({ statement: { tables: { write: ['public.users'] } } }))).toBe(true);
    expect(covers(rule({ statement: { functions: ['set_config'] } }, 'deny'), rule({ statement: { functions: ['pg_catalog.set_config'] } }))).toBe(true);
    expect(covers(rule({ statement: { functions: ['pg_catalog.set_config'] } }, 'deny'), rule({ statement: { functions: ['set_config'] } }))).toBe(false);
    expect(covers(rule({ statement: { tables: { read: ['"My Schema".*'] } } }, 'deny'), rule({ statement: { tables: { read: ['"My Schema".t'] } } }))).toBe(true);
    expect(covers(rule({ statement: { tables: { read: ['"my schema".*'] } } }, 'deny'), rule({ statement: { tables: { read: ['"My Schema".t'] } } }))).toBe(false);
    expect(covers(rule({ statement: { tables: { read: ['Public.T'] } } }, 'deny'), rule({ statement: { tables: { read: ['public.t'] } } }))).toBe(true);
    expect(covers(rule({ statement: { functions: ['oid:*'] } }, 'deny'), rule({ statement: { functions: ['oid:7'] } }))).toBe(true);
    expect(covers(rule({ statement: { functions: ['oid:7'] } }, 'deny'), rule({ statement: { functions: ['oid:*'] } }))).toBe(false);
  });

  it('keeps unparsable rules apart from the others', () => {
    expect(covers(rule(undefined, 'deny'), rule({ statement: { unparsable: true } }))).toBe(false);
    expect(covers(rule({ statement: { unparsable: true } }, 'deny'), rule({ statement: { unparsable: true } }))).toBe(true);
    expect(covers(rule(undefined, 'deny'), rule(undefined))).toBe(true);
  });

  it('treats writes: true as covering any rule that certainly writes', () => {
    const deny = rule({ identity: { kind: 'agent' }, statement: { writes: true } }, 'deny');
    expect(covers(deny, rule({ identity: { kind: 'agent' }, statement: { tables: { write: ['x'] } } }))).toBe(true);
    expect(covers(deny, rule({ identity: { kind: 'agent' }, statement: { flags: ['ddl'] } }))).toBe(true);
    expect(covers(deny, rule({ identity: { kind: ['agent', 'human'] }, statement: { flags: ['ddl'] } }))).toBe(false);
    expect(covers(deny, rule({ identity: { kind: 'agent' }, statement: { kinds: ['insert'] } }))).toBe(false);
  });
});

// The policy schema, its reference page and the code agree: every property is
// documented in docs/policy.md and described in the schema, every object is closed,
// and the kind and flag vocabularies equal the analyzer's.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fastPathAnalysis, specTarget } from '../../src/policy/cases.js';
import { ttlSeconds } from '../../src/policy/compile.js';
import { policyFromTexts } from '../../src/policy/load.js';
import { STATEMENT_FLAGS, STATEMENT_KINDS } from '../../src/policy/types.js';
import { readSchema, schemaProperties } from '../helpers/schema.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

const schema = readSchema('policy.schema.json');
const doc = readFileSync(path.join(root, 'docs/policy.md'), 'utf8');

const all = schemaProperties(schema);

describe('policy schema and docs stay in sync', () => {
  it('walks the whole format', () => {
    const paths = all.map(([p]) => p);
    expect(paths).toEqual(expect.arrayContaining([
      'default', 'rules', 'rules[].id', 'rules[].match.identity.claims', 'rules[].match.target.labels',
      'rules[].match.statement.tables.any', 'rules[].match.statement.unparsable', 'rules[].ttl', 'rules[].rows',
    ]));
    expect(paths.length).toBeGreaterThanOrEqual(30);
  });

  it('documents every schema property in docs/policy.md', () => {
    expect(all.map(([p]) => p).filter((p) => !doc.includes(`\`${p}\``))).toEqual([]);
  });

  it('gives every property a description and closes every object', () => {
    expect(all.filter(([, s]) => !s.description).map(([p]) => p)).toEqual([]);
    const open = all.filter(([p, s]) => {
      const node = s.items ?? s;
      // claims, labels and classifications are maps from names the user chooses.
      return node.type === 'object' && node.additionalProperties !== false && !p.endsWith('.claims') && !p.endsWith('.labels') && p !== 'masking.classifications';
    });
    expect(open.map(([p]) => p)).toEqual([]);
  });

  it('lists exactly the analyzer kinds and flags, in the schema and the docs', () => {
    const statement = all.find(([p]) => p === 'rules[].match.statement')![1].properties!;
    expect(statement.kinds!.items!.enum).toEqual([...STATEMENT_KINDS]);
    expect(statement.flags!.items!.enum).toEqual([...STATEMENT_FLAGS]);
    for (const k of STATEMENT_KINDS) expect(doc, k).toContain(`\`${k}\``);
    for (const f of STATEMENT_FLAGS) expect(doc, f).toMatch(new RegExp(`\\| \`${f}\` \\|`));
  });

  it('documents the defaults the loader applies', () => {
    expect(all.find(([p]) => p === 'default')![1].default).toBe('deny');
    expect(all.find(([p]) => p === 'rules[].ttl')![1].default).toBe('1h');
    const p = policyFromTexts([{ file: 'p.yaml', text: 'rules:\n  - { id: a, action: require_approval, approvers: [x] }\n' }]);
    expect(p.defaultAction).toBe('deny');
    expect(p.decide({ user: 'u', verified: false }, specTarget({}), fastPathAnalysis(1))).toMatchObject({ approval: { ttlSec: ttlSeconds('1h') } });
    expect(ttlSeconds('1h')).toBe(3600);
    expect(doc).toMatch(/\| `default` \| `allow` \\\| `deny` \| `deny` \|/);
    expect(doc).toMatch(/\| `rules\[\]\.ttl` \|[^|]+\| `1h` \|/);
  });

  it('every example policy declares the schema for editors', () => {
    const dir = path.join(root, 'examples/policies');
    for (const name of ['baseline', 'read-only-agents', 'no-destructive-ddl-in-prod', 'where-required', 'pii-approval']) {
      expect(readFileSync(path.join(dir, `${name}.yaml`), 'utf8').split('\n')[0]).toBe('# yaml-language-server: $schema=../../schemas/policy.schema.json');
    }
  });
});

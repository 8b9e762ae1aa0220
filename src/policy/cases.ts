// `dbward policy test`: YAML cases (identity + target + SQL -> expected decision)
// run against a policy. The analyzer is passed in, so this module stays free of the
// parser and tests can run it with hand-made facts.

import path from 'node:path';
import { readFileSync } from 'node:fs';
import type { ConfigProblem } from '../config/errors.js';
import { fieldPath, type Locator } from '../config/locate.js';
import type { Analysis, AnalysisContext } from '../analysis/facts.js';
import type { Identity, IdentityKind, SessionIdentity } from '../identity/types.js';
import type { TargetInfo } from '../proxy/session.js';
import { decideWithBuiltins } from './builtin.js';
import type { Decision, PolicyEngine } from './decide.js';
import { parseYaml } from './load.js';
import { validateAgainst } from './schema.js';

/** Turns SQL into facts (analyzePg, or a stand-in in tests). */
export type Analyzer = (sql: string, ctx: AnalysisContext) => Analysis;

/** A session's identity as cases and `policy explain` write it. */
export interface IdentitySpec {
  user: string;
  email?: string;
  groups?: string[];
  kind?: IdentityKind;
  claims?: Record<string, unknown>;
  /** false: an unverified session (identity.mode: unverified) that only claims `user`. */
  verified?: boolean;
}

/** A target as cases and `policy explain` write it; unset fields get harmless defaults. */
export interface TargetSpec {
  name?: string;
  engine?: 'postgres';
  database?: string;
  environment?: string;
  labels?: Record<string, string>;
}

interface RawCase {
  name?: string;
  identity?: IdentitySpec;
  target?: TargetSpec;
  search_path?: string[];
  sql?: string;
  function_call?: number;
  expect: Decision['action'];
  rules?: string[];
  default?: boolean;
  limit_rows?: number;
  message?: string;
}

interface RawCases {
  policy?: string | string[];
  defaults?: { identity?: IdentitySpec; target?: TargetSpec; search_path?: string[] };
  cases: RawCase[];
}

const identitySchema = {
  type: 'object', additionalProperties: false, required: ['user'],
  properties: {
    user: { type: 'string', minLength: 1 },
    email: { type: 'string' },
    groups: { type: 'array', items: { type: 'string' } },
    kind: { type: 'string', enum: ['human', 'service', 'agent'] },
    claims: { type: 'object' },
    verified: { type: 'boolean' },
  },
};
const targetSchema = {
  type: 'object', additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1 },
    engine: { type: 'string', enum: ['postgres'] },
    database: { type: 'string', minLength: 1 },
    environment: { type: 'string', minLength: 1 },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
  },
};
const searchPathSchema = { type: 'array', items: { type: 'string', minLength: 1 } };

/** The format of a cases file (documented in docs/policy.md). */
export const casesSchema = {
  type: 'object', additionalProperties: false, required: ['cases'],
  properties: {
    policy: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }] },
    defaults: {
      type: 'object', additionalProperties: false,
      properties: { identity: identitySchema, target: targetSchema, search_path: searchPathSchema },
    },
    cases: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', additionalProperties: false, required: ['expect'],
        properties: {
          name: { type: 'string' },
          identity: identitySchema,
          target: targetSchema,
          search_path: searchPathSchema,
          sql: { type: 'string' },
          function_call: { type: 'integer', minimum: 1 },
          expect: { type: 'string', enum: ['allow', 'deny', 'require_approval'] },
          rules: { type: 'array', items: { type: 'string' } },
          default: { type: 'boolean' },
          limit_rows: { type: 'integer', minimum: 1 },
          message: { type: 'string' },
        },
        oneOf: [{ required: ['sql'] }, { required: ['function_call'] }],
      },
    },
  },
};

/** One case, ready to run. */
export interface PolicyCase {
  name: string;
  file: string;
  line: number;
  column: number;
  identity: SessionIdentity;
  target: TargetInfo;
  searchPath: string[];
  sql: string | null;
  functionCall: number | null;
  expect: RawCase['expect'];
  rules: string[] | null;
  default: boolean | null;
  limitRows: number | null;
  message: string | null;
}

/** A cases file: its cases and the policy paths it names (resolved against its directory). */
export interface CasesFile {
  file: string;
  policy: string[];
  cases: PolicyCase[];
}

/** Reads and validates a cases file; problems instead of cases when it is invalid. */
export function loadCases(file: string): { cases: CasesFile | null; problems: ConfigProblem[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { cases: null, problems: [{ file, line: 0, column: 0, field: '', message: `cannot read cases file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` }] };
  }
  return parseCases(text, file);
}

/** Parses cases text as if read from `file`. */
export function parseCases(text: string, file: string): { cases: CasesFile | null; problems: ConfigProblem[] } {
  const parsed = parseYaml(text, file, 'cases');
  if (!parsed.data) return { cases: null, problems: parsed.problems };
  const problems = validateAgainst(casesSchema, parsed.data, parsed.locate).map((p) => ({ file, ...p }));
  if (problems.length > 0) return { cases: null, problems };
  const raw = parsed.data as RawCases;
  const dir = path.dirname(file);
  const d = raw.defaults ?? {};
  const cases = raw.cases.map((c, i) => toCase(c, i, d, file, parsed.locate));
  return { cases: { file, policy: [raw.policy ?? []].flat().map((p) => path.resolve(dir, p)), cases }, problems: [] };
}

function toCase(c: RawCase, i: number, d: NonNullable<RawCases['defaults']>, file: string, locate: Locator): PolicyCase {
  const pos = locate.value(['cases', i]);
  // A case's identity or target replaces the default one whole: merging would let a
  // case for a person inherit the default agent's kind and groups unnoticed.
  const identity = specIdentity(c.identity ?? d.identity ?? { user: 'test@example.com' });
  return {
    name: c.name ?? fieldPath(['cases', i]),
    file, line: pos.line, column: pos.column,
    identity,
    target: specTarget(c.target ?? d.target ?? {}),
    searchPath: c.search_path ?? d.search_path ?? ['$user', 'public'],
    sql: c.sql ?? null,
    functionCall: c.function_call ?? null,
    expect: c.expect,
    rules: c.rules ?? null,
    default: c.default ?? null,
    limitRows: c.limit_rows ?? null,
    message: c.message ?? null,
  };
}

/** A session identity from a spec: verified unless `verified: false`. */
export function specIdentity(spec: IdentitySpec): SessionIdentity {
  if (spec.verified === false) return { user: spec.user, verified: false };
  const email = spec.email ?? (spec.user.includes('@') ? spec.user : undefined);
  const groups = spec.groups ?? [];
  const id: Identity = {
    subject: spec.user, user: spec.user, groups, kind: spec.kind ?? 'human', issuer: 'https://policy-test.invalid',
    claims: { sub: spec.user, ...(email !== undefined && { email }), groups, ...spec.claims },
    expiresAt: 4102444800, verified: true,
  };
  if (email !== undefined) id.email = email;
  return id;
}

/** A target from a spec. */
export function specTarget(spec: TargetSpec): TargetInfo {
  const name = spec.name ?? 'app';
  return { name, engine: 'postgres', database: spec.database ?? name, environment: spec.environment ?? 'default', labels: spec.labels ?? {} };
}

import { fastPathAnalysis } from '../analysis/fast-path.js';

export { fastPathAnalysis };

/** The analysis a case's statement gets. */
export function caseAnalysis(c: PolicyCase, analyze: Analyzer): Analysis {
  if (c.functionCall !== null) return fastPathAnalysis(c.functionCall);
  return analyze(c.sql ?? '', { searchPath: c.searchPath, user: c.identity.user });
}

/** What a case got, and what is wrong with it (empty when it passed). */
export interface CaseResult {
  case: PolicyCase;
  decision: Decision;
  mismatches: string[];
}

/** Runs every case; a result per case. */
export function runCases(cases: PolicyCase[], policy: PolicyEngine, analyze: Analyzer): CaseResult[] {
  return cases.map((c) => {
    // As the daemon decides: dbward's built-in refusals first, then the policy.
    const decision = decideWithBuiltins(policy, c.identity, c.target, caseAnalysis(c, analyze));
    const mismatches: string[] = [];
    if (decision.action !== c.expect) mismatches.push(`expected ${c.expect}, got ${decision.action}`);
    if (c.rules !== null && !sameSet(c.rules, decision.ruleIds)) mismatches.push(`expected rules [${c.rules.join(', ')}], got [${decision.ruleIds.join(', ')}]`);
    if (c.default !== null && c.default !== decision.default) mismatches.push(`expected default: ${c.default}, got ${decision.default}`);
    if (c.limitRows !== null && c.limitRows !== decision.limitRows) mismatches.push(`expected limit_rows ${c.limitRows}, got ${decision.limitRows ?? 'none'}`);
    if (c.message !== null && !(decision.message ?? '').includes(c.message)) mismatches.push(`expected a message containing "${c.message}", got "${decision.message ?? ''}"`);
    return { case: c, decision, mismatches };
  });
}

/** One line for a failed case: `file:line:col: case "name": what differs (decision)`. */
export function formatFailure(r: CaseResult): string {
  const d = r.decision;
  const got = `${d.action} [${d.ruleIds.join(', ')}]${d.default ? ' (default)' : ''}${d.message ? `: ${d.message}` : ''}`;
  return `${r.case.file}:${r.case.line}:${r.case.column}: case "${r.case.name}": ${r.mismatches.join('; ')} (decision: ${got})`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

// Validates policy (and policy test case) YAML against JSON Schemas and words ajv's
// errors for operators, with positions from src/config/locate.ts. The wording follows
// src/config/schema.ts; its translator is private to the config schema, so the
// policy-specific cases (scalar-or-list fields, i.e. anyOf) live here.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Locator, PathSegment } from '../config/locate.js';
import { article, kindOf, translateAjvError, type SchemaProblem } from '../config/schema.js';

/** Where the policy schema ships (outside src/, so editors can use it too). */
export const policySchemaPath = fileURLToPath(new URL('../../schemas/policy.schema.json', import.meta.url));

const compiled = new Map<object | string, ValidateFunction>();

function validator(schema: object | string): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    const json = typeof schema === 'string' ? (JSON.parse(readFileSync(schema, 'utf8')) as object) : schema;
    // verbose: the messages below need the offending data and the rejecting schema.
    v = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true }).compile(json);
    compiled.set(schema, v);
  }
  return v;
}

/** Validates `data` against the policy schema; every problem, positioned. */
export function validatePolicySchema(data: unknown, locate: Locator): SchemaProblem[] {
  return validateAgainst(policySchemaPath, data, locate);
}

/** Validates `data` against a schema (a file path or a schema object); every problem, positioned. */
export function validateAgainst(schema: object | string, data: unknown, locate: Locator): SchemaProblem[] {
  const validate = validator(schema);
  if (validate(data)) return [];
  return reduceAnyOf(validate.errors ?? [])
    // An if/then failure is also reported as the then-branch's own errors.
    .filter((e) => e.keyword !== 'if')
    .map((e) => translateAjvError(e, locate, { describe, required: requiredMessage }));
}

// A scalar-or-list field that fails both branches yields one error per branch plus
// the anyOf. When the data went deeper into a branch (a list with a bad entry), or
// had the type of one branch (a string not matching its pattern), that branch's
// errors say what is wrong; otherwise one "must be X or a list of X" does.
function reduceAnyOf(errors: ErrorObject[]): ErrorObject[] {
  const drop = new Set<ErrorObject>();
  for (const any of errors) {
    if (any.keyword !== 'anyOf' && any.keyword !== 'oneOf') continue;
    const within = (e: ErrorObject): boolean => e.instancePath === any.instancePath || e.instancePath.startsWith(`${any.instancePath}/`);
    const children = errors.filter((e) => e !== any && e.schemaPath.startsWith(`${any.schemaPath}/`) && within(e));
    const branch = (e: ErrorObject): string => e.schemaPath.slice(any.schemaPath.length + 1).split('/')[0] ?? '';
    let keep = children.filter((e) => e.instancePath.length > any.instancePath.length);
    if (keep.length === 0) {
      const typeFailed = new Set(children.filter((e) => e.keyword === 'type').map(branch));
      const fitting = [...new Set(children.map(branch))].filter((b) => !typeFailed.has(b));
      if (fitting.length === 1) keep = children.filter((e) => branch(e) === fitting[0]);
    }
    for (const c of children) if (!keep.includes(c)) drop.add(c);
    if (keep.length > 0) drop.add(any);
  }
  return errors.filter((e) => !drop.has(e));
}

function requiredMessage(key: string, at: PathSegment[], e: ErrorObject): string {
  const action = (e.data as { action?: unknown } | null)?.action;
  if (at[0] === 'rules' && (key === 'approvers' || key === 'rows') && typeof action === 'string') {
    return `required with action ${action}`;
  }
  return 'required field is missing';
}

function describe(e: ErrorObject, at: PathSegment[]): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type':
      return `must be ${String(p.type).split(',').map(article).join(' or ')} (got ${kindOf(e.data)})`;
    case 'anyOf': {
      const required = (e.schema as { required?: string[] }[]).map((b) => b.required?.[0]);
      if (required.every((r) => r !== undefined)) return `give at least one of ${required.join(', ')}`;
      return `must be ${branches(e.schema as Branch[])} (got ${kindOf(e.data)})`;
    }
    case 'oneOf': {
      const required = (e.schema as { required?: string[] }[]).map((b) => b.required?.[0]);
      if (required.every((r) => r !== undefined)) return `give exactly one of ${required.join(' or ')}`;
      return e.message ?? 'must match exactly one form';
    }
    case 'enum':
      return enumMessage(e.data, (p.allowedValues as unknown[]).map(String));
    case 'const':
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'minItems':
      // An empty condition list would match nothing, so its rule could never apply.
      return at.includes('match') ? 'must not be empty (an empty list matches nothing; remove the field to match anything)'
        : `must have at least ${String(p.limit)} ${p.limit === 1 ? 'entry' : 'entries'}`;
    case 'minProperties':
      return 'must not be empty (remove the field to match anything)';
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`;
    case 'maxLength':
      return `must be at most ${String(p.limit)} characters`;
    case 'pattern':
      if (at[at.length - 1] === 'ttl' || at[at.length - 1] === 'timeout') return 'must be a number of seconds or a duration such as 30s, 15m, 2h, 1d';
      if (at[at.length - 1] === 'id') return 'must start with a letter or digit and hold only letters, digits and . _ : -';
      return `must match ${String(p.pattern)}`;
  }
  return e.message ?? `failed ${e.keyword} check`;
}

// Long vocabularies (statement kinds) are not worth listing; the nearest name is.
function enumMessage(data: unknown, allowed: string[]): string {
  if (allowed.length <= 8 || typeof data !== 'string') return `must be one of: ${allowed.join(', ')}`;
  const near = allowed
    .map((a) => ({ a, d: distance(data.toLowerCase(), a) }))
    .sort((x, y) => x.d - y.d)[0];
  const hint = near && near.d <= Math.max(2, Math.floor(data.length / 3)) ? `; did you mean "${near.a}"?` : '';
  return `unknown value "${data}"${hint} (the list is in docs/policy.md)`;
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

interface Branch {
  type?: string | string[];
  enum?: unknown[];
  items?: Branch;
}

// Words a scalar-or-list anyOf: "a string or a list of strings", or the enum values.
function branches(list: Branch[]): string {
  const scalar = list.find((b) => b.type !== 'array');
  if (scalar?.enum) return `one of ${scalar.enum.map(String).join(', ')}, or a list of them`;
  const words = list.map((b) => {
    if (b.type === 'array') {
      const t = b.items?.type;
      return t === undefined ? 'a list' : `a list of ${[t].flat().map((x) => `${x}s`).join(' or ')}`;
    }
    return [b.type ?? 'value'].flat().map(article).join(' or ');
  });
  return words.join(' or ');
}



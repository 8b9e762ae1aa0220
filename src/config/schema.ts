// Validates parsed YAML against schemas/dbward.config.schema.json and turns ajv's errors
// into operator-facing messages (ajv's defaults read like "must NOT have additional properties").
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { fieldPath, pointerSegments, type Locator, type PathSegment, type Position } from './locate.js';

// Read at runtime rather than imported: the schema lives outside src/ (it ships for editors too),
// and this relative URL holds both from src/config/ and from the built dist/config/.
export const schemaPath = fileURLToPath(new URL('../../schemas/dbward.config.schema.json', import.meta.url));

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  if (!compiled) {
    const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as object;
    // verbose: the messages below need the offending data and the schema that rejected it.
    const ajv = new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true });
    compiled = ajv.compile(schema);
  }
  return compiled;
}

/** A schema violation with its position, before the file name is attached. */
export interface SchemaProblem extends Position {
  field: string;
  message: string;
}

/** Validate `data` against the config schema; returns every problem found (empty when valid). */
export function validateSchema(data: unknown, locate: Locator): SchemaProblem[] {
  const validate = validator();
  if (validate(data)) return [];
  // An if/then failure is also reported as the then-branch's own errors; the summary adds nothing.
  return (validate.errors ?? []).filter((e) => e.keyword !== 'if').map((e) => translateAjvError(e, locate, { describe: describeError }));
}

/** How a schema words its own problems; unknown fields and their positions are worded alike for every schema. */
export interface SchemaWording {
  describe(e: ErrorObject, at: PathSegment[]): string;
  /** The message for a missing required key (default "required field is missing"). */
  required?(key: string, at: PathSegment[], e: ErrorObject): string;
}

/** One ajv error as an operator-facing problem, positioned at the key or value it concerns. */
export function translateAjvError(e: ErrorObject, locate: Locator, wording: SchemaWording): SchemaProblem {
  const at = pointerSegments(e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      const props = (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
      const allowed = Object.keys(props).join(', ');
      return { ...locate.key(at, key), field: fieldPath([...at, key]), message: `unknown field (allowed: ${allowed})` };
    }
    case 'required': {
      // The missing key has no position of its own; the mapping that should hold it does.
      const key = String(p.missingProperty);
      return { ...locate.value(at), field: fieldPath([...at, key]), message: wording.required?.(key, at, e) ?? 'required field is missing' };
    }
    default:
      return { ...locate.value(at), field: fieldPath(at), message: wording.describe(e, at) };
  }
}

/** Fields that hold a { env } | { file } secret reference (their values are never echoed). */
const SECRET_REFS = new Set(['targets.[].password', 'audit.chain.key', 'audit.postgres.password']);

function describeError(e: ErrorObject, at: PathSegment[]): string {
  const p = e.params as Record<string, unknown>;
  const isPassword = SECRET_REFS.has(at.map((s) => (typeof s === 'number' ? '[]' : s)).join('.'));
  switch (e.keyword) {
    case 'type':
      if (isPassword) {
        // Never echo the value: it is probably the password.
        return e.data !== null && typeof e.data !== 'object'
          ? `a literal ${at[at.length - 1] === 'key' ? 'key' : 'password'} is not allowed; use { env: NAME } or { file: PATH }`
          : 'must be { env: NAME } or { file: PATH }';
      }
      return `must be ${String(p.type).split(',').map(article).join(' or ')} (got ${kindOf(e.data)})`;
    case 'minProperties':
    case 'maxProperties':
      if (isPassword) return 'must have exactly one of env or file';
      break;
    case 'enum':
      return `must be one of: ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'minItems':
      return `must have at least ${String(p.limit)} ${p.limit === 1 ? 'entry' : 'entries'}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters`;
    case 'maxLength':
      return `must be at most ${String(p.limit)} characters`;
    case 'pattern':
      if (at[at.length - 1] === 'env') return 'must be an environment variable name (letters, digits and _, not starting with a digit)';
      return `must match ${String(p.pattern)}`;
  }
  // ajv's own wording is fine for the rest, e.g. "must be <= 65535".
  return e.message ?? `failed ${e.keyword} check`;
}

/** A JSON Schema type name in the YAML vocabulary operators know ("a mapping", "a list"). */
export function article(type: string): string {
  const names: Record<string, string> = { object: 'a mapping', array: 'a list', integer: 'an integer', null: 'null' };
  return names[type] ?? `a ${type}`;
}

/** What kind of value was found, without repeating it (it might be a misplaced secret). */
export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return `a ${typeof v}`;
}

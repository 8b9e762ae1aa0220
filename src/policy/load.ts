// Policy files -> a PolicyEngine: read (files, or directories of *.yaml), parse YAML
// with positions, validate against schemas/policy.schema.json, compile. Every stage
// collects all of its problems, so one run shows everything to fix.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { formatProblem, type ConfigProblem } from '../config/errors.js';
import { yamlProblem } from '../config/load.js';
import { Locator } from '../config/locate.js';
import { compilePolicy, type CompiledPolicy, type PolicySource } from './compile.js';
import { CompiledPolicyEngine } from './engine.js';
import { validatePolicySchema } from './schema.js';
import type { RawPolicy } from './types.js';

export { formatProblem, type ConfigProblem as PolicyProblem } from '../config/errors.js';

/** Policy files are unreadable, malformed or invalid; `problems` lists everything found. */
export class PolicyError extends Error {
  readonly code = 'POLICY_INVALID' as const;
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'PolicyError';
    this.problems = problems;
  }
}

/** A loaded policy: decides statements, and says how many rules from which files. */
export type LoadedPolicy = CompiledPolicyEngine & { origin: PolicyOrigin };

/** Which files a policy came from, and a digest of them, for the audit trail. */
export interface PolicyOrigin {
  files: string[];
  /** SHA-256 over each file's name and contents, in load order. */
  digest: string;
}

/** Loads policy files and directories (their *.yaml and *.yml, except *.cases.yaml); throws PolicyError listing every problem. */
export function loadPolicy(paths: string[]): LoadedPolicy {
  const { policy, problems, origin } = compilePolicyFiles(paths);
  if (problems.length > 0) throw new PolicyError(problems);
  return Object.assign(new CompiledPolicyEngine(policy), { origin });
}

/** Builds a policy from in-memory texts (tests, and `policy test` with inline policies); throws PolicyError. */
export function policyFromTexts(files: { file: string; text: string }[]): LoadedPolicy {
  const sources: PolicySource[] = [];
  const problems: ConfigProblem[] = [];
  const digest = createHash('sha256');
  for (const f of files) {
    digest.update(`${f.file}\0${f.text}\0`);
    const r = parsePolicyText(f.text, f.file);
    problems.push(...r.problems);
    if (r.source) sources.push(r.source);
  }
  const compiled = compilePolicy(sources);
  problems.push(...compiled.problems);
  if (problems.length > 0) throw new PolicyError(sortProblems(problems));
  return Object.assign(new CompiledPolicyEngine(compiled.policy), { origin: { files: files.map((f) => f.file), digest: digest.digest('hex') } });
}

/** Reads, validates and compiles; returns the policy so far and the problems that stop a load. */
export function compilePolicyFiles(paths: string[]): { policy: CompiledPolicy; sources: PolicySource[]; problems: ConfigProblem[]; origin: PolicyOrigin } {
  const { files, problems } = policyFiles(paths);
  const sources: PolicySource[] = [];
  const digest = createHash('sha256');
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ file, line: 0, column: 0, field: '', message: `cannot read policy file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
      continue;
    }
    digest.update(`${file}\0${text}\0`);
    const r = parsePolicyText(text, file);
    problems.push(...r.problems);
    if (r.source) sources.push(r.source);
  }
  const compiled = compilePolicy(sources);
  return { policy: compiled.policy, sources, problems: sortProblems([...problems, ...compiled.problems]), origin: { files, digest: digest.digest('hex') } };
}

/** Cases files sit next to the policies they test and are not policies themselves. */
export function isCasesFile(name: string): boolean {
  return /\.cases\.ya?ml$/.test(name);
}

/** Expands directories to their policy files, sorted by name; files named directly are kept as given. */
export function policyFiles(paths: string[]): { files: string[]; problems: ConfigProblem[] } {
  const files: string[] = [];
  const problems: ConfigProblem[] = [];
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      problems.push({ file: p, line: 0, column: 0, field: '', message: `cannot read policy path (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
      continue;
    }
    if (!isDir) {
      files.push(p);
      continue;
    }
    const found = readdirSync(p)
      .filter((n) => /\.ya?ml$/.test(n) && !isCasesFile(n))
      .sort()
      .map((n) => path.join(p, n));
    if (found.length === 0) problems.push({ file: p, line: 0, column: 0, field: '', message: 'directory holds no policy files (*.yaml, *.yml)' });
    files.push(...found);
  }
  if (paths.length === 0) problems.push({ file: '(none)', line: 0, column: 0, field: '', message: 'no policy files given' });
  return { files, problems };
}

/** Parses and schema-checks one policy file's text. */
export function parsePolicyText(text: string, file: string): { source: PolicySource | null; problems: ConfigProblem[] } {
  const parsed = parseYaml(text, file, 'policy');
  if (!parsed.data) return { source: null, problems: parsed.problems };
  const problems = validatePolicySchema(parsed.data, parsed.locate).map((p): ConfigProblem => ({ file, ...p }));
  if (problems.length > 0) return { source: null, problems };
  return { source: { file, data: parsed.data as RawPolicy, locate: parsed.locate }, problems: [] };
}

/** YAML text -> a mapping with a Locator for positions, or problems (syntax, empty, not a mapping). */
export function parseYaml(text: string, file: string, what: string): { data: unknown; locate: Locator; problems: ConfigProblem[] } {
  const lines = new LineCounter();
  // prettyErrors off: positions are printed as file:line:col, not as yaml's excerpts.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  const locate = new Locator(doc, lines);
  const fail = (problems: Omit<ConfigProblem, 'file'>[]) => ({ data: null, locate, problems: problems.map((p) => ({ file, ...p })) });
  if (doc.errors.length > 0) return fail(doc.errors.map((e) => yamlProblem(e, locate)));
  const top = doc.contents;
  if (top === null || (isScalar(top) && top.value === null)) return fail([{ line: 1, column: 1, field: '', message: `${what} file is empty; expected a mapping` }]);
  if (!isMap(top)) return fail([{ ...locate.value([]), field: '', message: `top level must be a mapping, got ${isSeq(top) ? 'a list' : 'a single value'}` }]);
  try {
    return { data: doc.toJS({ maxAliasCount: 100 }) as unknown, locate, problems: [] };
  } catch (err) {
    // Alias bombs are refused rather than expanded.
    return fail([{ line: 1, column: 1, field: '', message: `cannot expand YAML: ${(err as Error).message}` }]);
  }
}


/** Problems in file, then position order. */
export function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  const order = new Map<string, number>();
  for (const p of problems) if (!order.has(p.file)) order.set(p.file, order.size);
  return [...problems].sort((a, b) => order.get(a.file)! - order.get(b.file)! || a.line - b.line || a.column - b.column);
}

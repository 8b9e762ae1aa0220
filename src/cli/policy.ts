// `dbward policy check|test|explain`: lint policy files, run YAML test cases against
// them, and show how one SQL string is decided. Loaded by main.ts only for these
// commands; the statement parser is loaded only by test and explain.

import { parseArgs } from 'node:util';
import type { Analysis, StatementFacts, TableRef } from '../analysis/facts.js';
import type { IdentityKind } from '../identity/types.js';
import type { Analyzer } from '../policy/cases.js';
import { fastPathAnalysis, formatFailure, loadCases, runCases, specIdentity, specTarget } from '../policy/cases.js';
import { decideWithBuiltins } from '../policy/builtin.js';
import type { Decision } from '../policy/decide.js';
import type { Explanation } from '../policy/engine.js';
import { checkPolicy } from '../policy/lint.js';
import { formatProblem, loadPolicy, PolicyError, type LoadedPolicy } from '../policy/load.js';
import { IDENTITY_KINDS } from '../identity/types.js';

const HELP = `Usage:
  dbward policy check FILE|DIR...
      Validate and lint policy files (directories: their *.yaml). Exit 0 clean, 1 problems.
  dbward policy test CASES.yaml... [-p POLICY]...
      Run test cases; -p overrides the policy the cases file names. Exit 1 on any failure.
  dbward policy explain -p POLICY [-p POLICY]... --user USER [--email EMAIL] [--groups a,b]
        [--kind human|service|agent] [--claim PATH=VALUE]... [--unverified]
        [--target NAME] [--target-env ENV] [--label KEY=VALUE]... [--search-path a,b]
        (SQL | --function-call OID)
      Print the facts of each statement, the rules that matched and the decision.
`;

/** Runs `dbward policy ...`; returns the exit code. */
export async function policyCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'check':
        return check(rest);
      case 'test':
        return await test(rest);
      case 'explain':
        return await explain(rest);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(HELP);
        return sub === undefined ? 2 : 0;
      default:
        process.stderr.write(`dbward policy: unknown subcommand "${sub}"\n\n${HELP}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof PolicyError) {
      process.stdout.write(`${err.message}\n`);
      return 1;
    }
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`dbward policy ${sub}: ${(err as Error).message}\n\n${HELP}`);
      return 2;
    }
    throw err;
  }
}

function check(args: string[]): number {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length === 0) return usage('check', 'give one or more policy files or directories');
  const problems = checkPolicy(positionals);
  for (const p of problems) process.stdout.write(`${formatProblem(p)}\n`);
  if (problems.length > 0) {
    process.stdout.write(`${problems.length} problem${problems.length === 1 ? '' : 's'}\n`);
    return 1;
  }
  const policy = loadPolicy(positionals);
  process.stdout.write(`ok: ${policy.ruleCount} rules from ${policy.sources.length} file${policy.sources.length === 1 ? '' : 's'}, default ${policy.defaultAction}\n`);
  return 0;
}

async function test(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true, options: { policy: { type: 'string', short: 'p', multiple: true } },
  });
  if (positionals.length === 0) return usage('test', 'give one or more cases files');
  const analyze = await analyzer();
  let total = 0;
  let failed = 0;
  let broken = false;
  for (const file of positionals) {
    const { cases, problems } = loadCases(file);
    if (!cases) {
      for (const p of problems) process.stdout.write(`${formatProblem(p)}\n`);
      broken = true;
      continue;
    }
    const paths = values.policy ?? cases.policy;
    if (paths.length === 0) {
      process.stdout.write(`${file}: no policy: name one in the file (policy: ...) or with -p\n`);
      broken = true;
      continue;
    }
    const policy = loadPolicy(paths);
    for (const r of runCases(cases.cases, policy, analyze)) {
      total++;
      if (r.mismatches.length === 0) continue;
      failed++;
      process.stdout.write(`${formatFailure(r)}\n`);
    }
  }
  process.stdout.write(`${total} case${total === 1 ? '' : 's'}, ${failed} failed\n`);
  return failed > 0 || broken ? 1 : 0;
}

async function explain(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      policy: { type: 'string', short: 'p', multiple: true },
      user: { type: 'string' },
      email: { type: 'string' },
      groups: { type: 'string' },
      kind: { type: 'string' },
      claim: { type: 'string', multiple: true },
      unverified: { type: 'boolean' },
      target: { type: 'string' },
      'target-env': { type: 'string' },
      label: { type: 'string', multiple: true },
      'search-path': { type: 'string' },
      'function-call': { type: 'string' },
    },
  });
  if (!values.policy?.length) return usage('explain', 'missing -p POLICY');
  if (!values.user) return usage('explain', 'missing --user USER');
  const fnOid = values['function-call'];
  if ((positionals.length === 1) === (fnOid !== undefined)) return usage('explain', 'give one SQL string (quoted) or --function-call OID');
  if (fnOid !== undefined && !/^[1-9][0-9]*$/.test(fnOid)) return usage('explain', '--function-call takes a function oid');
  const kind = values.kind;
  if (kind !== undefined && !(IDENTITY_KINDS as readonly string[]).includes(kind)) return usage('explain', '--kind is human, service or agent');

  const policy = loadPolicy(values.policy);
  const identity = specIdentity({
    user: values.user,
    ...(values.email !== undefined && { email: values.email }),
    groups: list(values.groups),
    ...(kind !== undefined && { kind: kind as IdentityKind }),
    claims: Object.fromEntries((values.claim ?? []).map(pair)),
    verified: !values.unverified,
  });
  const target = specTarget({
    ...(values.target !== undefined && { name: values.target }),
    ...(values['target-env'] !== undefined && { environment: values['target-env'] }),
    labels: Object.fromEntries((values.label ?? []).map(pair)),
  });
  const searchPath = values['search-path'] !== undefined ? list(values['search-path']) : ['$user', 'public'];
  let analysis: Analysis;
  if (fnOid !== undefined) analysis = fastPathAnalysis(Number(fnOid));
  else analysis = (await analyzer())(positionals[0]!, { searchPath, user: identity.user });

  const session = identity.verified
    ? `${identity.user} (${identity.kind}, verified; groups: ${identity.groups.join(', ') || '-'})`
    : `${identity.user} (unverified: groups, kind and claims unknown)`;
  process.stdout.write(`policy:  ${policy.sources.join(', ')} (${policy.ruleCount} rules, default ${policy.defaultAction})\n`);
  process.stdout.write(`session: ${session} on target ${target.name} (environment ${target.environment})\n`);
  process.stdout.write(render(policy, policy.explain(identity, target, analysis)));
  const builtin = decideWithBuiltins(policy, identity, target, analysis);
  if (builtin.ruleIds.some((id) => id.startsWith('dbward.'))) {
    // dbward's own refusals apply before (or over) the policy, in the daemon as here.
    process.stdout.write(`dbward refuses this itself: ${builtin.action} (rule ${builtin.ruleIds.join(', ')}): ${builtin.message ?? ''}\n`);
  }
  return 0;
}

function render(policy: LoadedPolicy, e: Explanation): string {
  const lines: string[] = [`rules for this session: ${e.applicable.map((r) => r.id).join(', ') || 'none'} (${e.applicable.length} of ${policy.ruleCount})`];
  if (e.parseError !== null) lines.push('', `unparsable: ${e.parseError}`);
  e.statements.forEach((s, i) => {
    lines.push('');
    if (s.facts) lines.push(`statement ${i + 1}: ${oneLine(s.facts.text) || '(no SQL text: a fast-path function call)'}`, ...facts(s.facts));
    const matched = s.matched.map((m) => `${m.rule.id} (${m.rule.action}${how(m)})`);
    lines.push(`  matched:   ${matched.join(', ') || 'none'}`);
    lines.push(`  result:    ${s.action}${s.byDefault ? ' (no rule decided: default)' : ''}`);
  });
  lines.push('', `decision: ${describeDecision(e.decision)}`, '');
  return lines.join('\n');
}

// limit_rows matches twice: restrictively for its cap, allowingly for its allowance.
function how(m: Explanation['statements'][number]['matched'][number]): string {
  if (m.rule.action !== 'limit_rows') return '';
  return m.allowing ? ', allows and caps' : ', caps only: not every table is covered for allowing';
}

function facts(f: StatementFacts): string[] {
  const tables = (refs: TableRef[]): string => refs.map((r) => (r.candidates.length === 1 && r.candidates[0] === r.name ? r.name : `${r.name} [${r.candidates.join(' ')}]`)).join(', ') || '-';
  return [
    `  kinds:     ${f.kinds.join(', ') || '-'}`,
    `  reads:     ${tables(f.reads)}`,
    `  writes:    ${tables(f.writes)}`,
    `  columns:   ${f.columns.map((c) => `${c.table === null ? '?' : c.table}.${c.column} (${c.use})`).join(', ') || '-'}`,
    `  functions: ${f.functions.join(', ') || '-'}`,
    `  flags:     ${f.flags.join(', ') || '-'}`,
  ];
}

function describeDecision(d: Decision): string {
  const by = d.ruleIds.length ? ` by ${d.ruleIds.join(', ')}` : '';
  const parts = [`${d.action}${by}${d.default ? ' (default)' : ''}`];
  if (d.limitRows !== undefined) parts.push(`at most ${d.limitRows} rows`);
  if (d.approval) parts.push(`approvers ${d.approval.approvers.join(', ')} (${d.approval.required} needed), ${d.approval.mode} mode, open ${d.approval.timeoutSec}s, grant ${d.approval.grant} valid ${d.approval.ttlSec}s`);
  if (d.message) parts.push(d.message);
  return parts.join('; ');
}

async function analyzer(): Promise<Analyzer> {
  // The parser (WASM) is loaded only by the commands that parse.
  const { analyzePg, loadPgParser } = await import('../analysis/pg/analyze.js');
  await loadPgParser();
  return analyzePg;
}

function usage(sub: string, message: string): number {
  process.stderr.write(`dbward policy ${sub}: ${message}\n\n${HELP}`);
  return 2;
}

function list(s: string | undefined): string[] {
  return (s ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
}

function pair(s: string): [string, string] {
  const eq = s.indexOf('=');
  return eq < 0 ? [s, 'true'] : [s.slice(0, eq), s.slice(eq + 1)];
}

function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 200 ? `${t.slice(0, 197)}...` : t;
}

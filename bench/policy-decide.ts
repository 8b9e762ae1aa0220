// Cost of one policy decision on an already-analyzed statement, against a realistic
// 20-rule policy (the baseline and read-only-agents examples plus rules on tables,
// columns, targets and claims). Prints ns/decision per statement shape:
//
//   npx tsx bench/policy-decide.ts [--iterations 200000] [--rounds 5]
//   node --expose-gc --max-semi-space-size=64 --import tsx bench/policy-decide.ts   # also bytes/decision
//
// "session" is the hot path: the same identity and target objects as a session
// passes them, so identity and target conditions are cached. "first statement" uses a
// new identity object per call, as the first statement of each new session does.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { analyzePg, loadPgParser } from '../src/analysis/pg/analyze.js';
import type { Analysis } from '../src/analysis/facts.js';
import { fastPathAnalysis, specIdentity, specTarget } from '../src/policy/cases.js';
import { policyFromTexts } from '../src/policy/load.js';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { iterations: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' } } });
const iterations = Number(values.iterations);
const rounds = Number(values.rounds);

const example = (name: string): { file: string; text: string } => {
  const file = path.join(root, 'examples/policies', name);
  return { file, text: readFileSync(file, 'utf8') };
};
const extra = {
  file: 'bench.yaml',
  text: `
rules:
  - { id: prod-no-drop, match: { target: { environment: production }, statement: { kinds: [drop, truncate, drop_role] } }, action: deny }
  - { id: prod-alter, match: { target: { environment: production }, statement: { kinds: [alter] } }, action: require_approval, approvers: [dba] }
  - { id: where, match: { statement: { kinds: [update, delete], flags: [no_where] } }, action: deny }
  - { id: pii-writes, match: { statement: { tables: { write: [users, customers, "billing.*"] } } }, action: require_approval, approvers: [privacy] }
  - { id: pii-agents, match: { identity: { kind: agent }, statement: { tables: { any: [users, customers, "billing.*"] } } }, action: deny }
  - { id: ssn, match: { identity: { groups: [contractors] }, statement: { columns: ["*.ssn", "*.tax_id", public.users.email] } }, action: deny }
  - { id: eu-only, match: { identity: { claims: { region: [eu] } }, target: { labels: { region: "us-*" } } }, action: deny }
  - { id: model-pin, match: { identity: { kind: agent, claims: { model: "legacy-*" } } }, action: deny }
  - { id: no-set-config, match: { statement: { functions: [pg_catalog.set_config] } }, action: deny }
  - { id: reports-cap, match: { statement: { tables: { read: ["reporting.*"] } } }, action: limit_rows, rows: 5000 }
  - { id: lo-fastpath, match: { identity: { groups: [etl] }, statement: { functions: ["oid:764", "oid:765"] } }, action: allow }
`,
};
const policy = policyFromTexts([example('baseline.yaml'), example('read-only-agents.yaml'), extra]);

await loadPgParser();
const ctx = { searchPath: ['$user', 'public'], user: 'bot@example.com' };
const shapes: [string, Analysis][] = [
  ['select, 2 unqualified tables', analyzePg('SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval \'1 day\' LIMIT 50', ctx)],
  ['update with where', analyzePg('UPDATE public.orders SET status = $1 WHERE id = $2', ctx)],
  ['BEGIN; INSERT; COMMIT', analyzePg('BEGIN; INSERT INTO events (kind, payload) VALUES ($1, $2); COMMIT', ctx)],
  ['fast-path call', fastPathAnalysis(764)],
];

const agent = specIdentity({ user: 'bot@example.com', kind: 'agent', groups: ['ai-agents'], claims: { model: 'gpt-4o', region: 'eu' } });
const human = specIdentity({ user: 'alice@example.com', kind: 'human', groups: ['staff', 'etl'], claims: { region: 'eu' } });
const target = specTarget({ name: 'app', environment: 'production', labels: { region: 'eu-west-1' } });

console.log(`policy: ${policy.ruleCount} rules; best of ${rounds} x ${iterations} decisions per figure`);
for (const [name, analysis] of shapes) {
  if (!analysis.ok) throw new Error(`${name}: ${analysis.error}`);
  for (const [who, identity] of [['agent', agent], ['human', human]] as const) {
    const d = policy.decide(identity, target, analysis);
    const session = measure(() => policy.decide(identity, target, analysis));
    // A new identity object per call: identity and target conditions run every time.
    const first = measure(() => policy.decide({ ...identity }, target, analysis));
    console.log(`${name.padEnd(30)} ${who.padEnd(6)} ${d.action.padEnd(16)} session ${session.ns.toFixed(0).padStart(5)} ns${bytes(session.bytes)}   first statement ${first.ns.toFixed(0).padStart(5)} ns`);
  }
}

// Best of `rounds` runs: on a shared machine the minimum is the figure least disturbed
// by other processes. Allocation is measured on the last run (needs --expose-gc, and
// a young generation large enough that no scavenge runs during it).
function measure(fn: () => unknown): { ns: number; bytes: number | null } {
  for (let i = 0; i < 50_000; i++) fn(); // warm up the JIT and the decision cache
  const gc = (globalThis as { gc?: () => void }).gc;
  let best = Infinity;
  let bytes: number | null = null;
  for (let r = 0; r < rounds; r++) {
    gc?.();
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / iterations);
    if (gc) bytes = (process.memoryUsage().heapUsed - heap0) / iterations;
  }
  return { ns: best, bytes };
}

function bytes(b: number | null): string {
  return b === null ? '' : ` (${Math.max(0, b).toFixed(1)} B/decision)`;
}

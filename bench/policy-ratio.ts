// The cost of guardrails: pgbench -S through two dbward processes in the same run,
// one with a policy that allows everything (statements are still parsed and
// decided) and one with a realistic policy (the example baseline, WHERE-required,
// PII-approval and no-destructive-DDL files), plus the bare relay for scale.
//
//   npm run bench:policy -- [--duration 10] [--rounds 3] [--clients 8] [--pin]
//
// Legs are interleaved per round, starting leg rotating. Reports TPS, proxy CPU
// per transaction, and the policy-on / policy-off ratio (issue 4 asks >= 0.95).

import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { installSignalCleanup, stopAll } from './lib/children.js';
import { cpuSeconds } from './lib/cpu.js';
import { ensureBenchDb } from './lib/db.js';
import { runPgbench, type Target } from './lib/pgbench.js';
import { setPinning } from './lib/pin.js';
import { freePort, startDbward, startRelayProcess } from './lib/procs.js';

const root = path.resolve(import.meta.dirname, '..');
const DB = 'dbward_bench';
const REALISTIC = ['baseline.yaml', 'where-required.yaml', 'pii-approval.yaml', 'no-destructive-ddl-in-prod.yaml'];

async function dbwardWith(dir: string, name: string, policy: string[]): Promise<{ target: Target; pid: number | undefined }> {
  const [port, admin] = [await freePort(), await freePort()];
  const config = path.join(dir, `${name}.yaml`);
  writeFileSync(config, `listeners:
  - { name: pg, host: 127.0.0.1, port: ${port}, require_tls: false }
targets:
  - { name: ${DB}, host: 127.0.0.1, port: 5432, database: ${DB}, user: root, tls: { mode: disable }, environment: production }
identity: { mode: unverified }
policy: { path: ${JSON.stringify(policy)}, watch: false }
audit:
  file: { path: ${JSON.stringify(path.join(dir, `${name}.audit.jsonl`))}, fsync: none }
admin: { host: 127.0.0.1, port: ${admin} }
log: { level: warn }
`);
  const target: Target = { host: '127.0.0.1', port, user: 'root', database: DB };
  const child = await startDbward(root, config, target, path.join(dir, `${name}.log`));
  return { target, pid: child.pid };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { duration: { type: 'string', default: '10' }, rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '8' }, pin: { type: 'boolean', default: false } },
  });
  setPinning(values.pin);
  installSignalCleanup();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dbward-bench-policy-'));
  const direct: Target = { host: '127.0.0.1', port: 5432, user: 'root', database: DB };
  await ensureBenchDb(direct, 10);
  const allowAll = path.join(dir, 'allow.yaml');
  writeFileSync(allowAll, 'default: allow\n');
  const relay = await startRelayProcess(root, '127.0.0.1:5432', path.join(dir, 'relay.log'));
  const legs = [
    { name: 'relay', target: { ...direct, port: relay.port }, pid: relay.child.pid },
    { name: 'policy off', ...await dbwardWith(dir, 'off', [allowAll]) },
    { name: 'policy on', ...await dbwardWith(dir, 'on', REALISTIC.map((f) => path.join(root, 'examples/policies', f))) },
  ];
  const args = ['-S', '-M', 'simple', '-c', values.clients, '-j', '2', '-T', values.duration];
  for (const l of legs) await runPgbench(l.target, ['-S', '-M', 'simple', '-c', values.clients, '-j', '2', '-T', '2']);
  const results = new Map<string, { tps: number; cpu: number }[]>(legs.map((l) => [l.name, []]));
  for (let r = 0; r < Number(values.rounds); r++) {
    for (let i = 0; i < legs.length; i++) {
      const leg = legs[(i + r) % legs.length]!;
      const c0 = cpuSeconds(leg.pid);
      const res = await runPgbench(leg.target, args);
      const c1 = cpuSeconds(leg.pid);
      results.get(leg.name)!.push({ tps: res.tps, cpu: c0 !== null && c1 !== null ? ((c1 - c0) * 1e6) / res.transactions : NaN });
    }
  }
  await stopAll();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const med = (name: string) => ({ tps: median(results.get(name)!.map((x) => x.tps)), cpu: median(results.get(name)!.map((x) => x.cpu)) });
  const [rl, off, on] = [med('relay'), med('policy off'), med('policy on')];
  console.log(`\npgbench ${args.join(' ')}, ${values.rounds} rounds, medians${values.pin ? ', pinned' : ''}\n`);
  console.log('| leg | TPS | proxy CPU µs/tx |');
  console.log('| --- | ---: | ---: |');
  for (const [n, v] of [['relay', rl], ['dbward, policy off (allow all)', off], ['dbward, realistic policy', on]] as const) console.log(`| ${n} | ${v.tps.toFixed(0)} | ${v.cpu.toFixed(1)} |`);
  console.log(`\npolicy on / policy off: ${(on.tps / off.tps).toFixed(3)}   dbward (policy on) / relay: ${(on.tps / rl.tps).toFixed(3)}   dbward (policy off) / relay: ${(off.tps / rl.tps).toFixed(3)}`);
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});

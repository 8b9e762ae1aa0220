// The cost of a durable audit trail: pgbench -S through three dbward processes
// in the same run, identical but for the audit section:
//   none        audit.primary none: nothing recorded (the baseline; benchmarks only)
//   file        the default file sink, fsync none: each statement's sealed line is
//               written before the statement is forwarded (survives a dbward crash)
//   file+fsync  fsync batch: group commit with fdatasync (survives a host crash)
//
//   npm run bench:audit -- [--duration 10] [--rounds 3] [--pin] [--dbward-root DIR]
//
// --dbward-root runs DIR/dist/cli/main.js (a saved build), as in bench/run.ts.
//
// Legs are interleaved per round, starting leg rotating. Reports TPS and proxy
// CPU per transaction for every leg and round, the medians, and each audited
// leg's TPS over the unaudited one (the issue asks >= 0.90).

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { countTrailLines } from './lib/audit.js';
import { installSignalCleanup, stopAll } from './lib/children.js';
import { cpuSeconds } from './lib/cpu.js';
import { ensureBenchDb } from './lib/db.js';
import { generateConfig, type BenchAudit } from './lib/dbward-config.js';
import { runPgbench, type Target } from './lib/pgbench.js';
import { setPinning } from './lib/pin.js';
import { dbwardCommand, staleBuildWarning, startDbward } from './lib/procs.js';
import { median } from './lib/report.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const DB = 'dbward_bench';
/** bench/run.ts's default scale, so both benches share one initialised database. */
const SCALE = 10;
const LEGS: { name: string; audit: BenchAudit }[] = [
  { name: 'none', audit: { primary: 'none' } },
  { name: 'file', audit: { primary: 'file', fsync: 'none' } },
  { name: 'file+fsync', audit: { primary: 'file', fsync: 'batch' } },
];

interface Leg {
  name: string;
  target: Target;
  pid: number | undefined;
  auditPath: string | null;
  /** Every transaction pgbench ran through this dbward, warm-up included: the audit must hold at least as many lines. */
  transactions: number;
  runs: { tps: number; cpuUsPerTx: number }[];
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} wants a positive integer, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '10' }, rounds: { type: 'string', default: '3' }, pin: { type: 'boolean', default: false },
      'dbward-root': { type: 'string' },
    },
  });
  const root = values['dbward-root'] !== undefined ? path.resolve(values['dbward-root']) : ROOT;
  const duration = positiveInt('duration', values.duration);
  const rounds = positiveInt('rounds', values.rounds);
  setPinning(values.pin);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbward-bench-audit-'));
  installSignalCleanup(() => console.error(`logs kept in ${tmp}`));
  let ok = false;
  try {
    await ensureBenchDb({ host: '127.0.0.1', port: 5432, user: 'root', database: DB }, SCALE);
    console.log(`starting dbward x${LEGS.length}: (cd ${root} && node ${dbwardCommand(root).join(' ')} start -c ${tmp}/<leg>/dbward.bench.yaml)`);
    const stale = staleBuildWarning(root);
    if (stale) console.warn(stale);
    const legs: Leg[] = [];
    for (const l of LEGS) {
      const setup = await generateConfig(path.join(tmp, l.name), DB, l.audit);
      const target: Target = { host: setup.host, port: setup.port, user: 'root', database: DB };
      const child = await startDbward(root, setup.configPath, target, path.join(tmp, `${l.name}.log`));
      legs.push({ name: l.name, target, pid: child.pid, auditPath: setup.auditPath, transactions: 0, runs: [] });
    }

    const args = ['-S', '-M', 'simple', '-c', '8', '-j', '2'];
    console.log('warming up (2 s per leg)');
    for (const l of legs) l.transactions += (await runPgbench(l.target, [...args, '-T', '2'])).transactions;
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < legs.length; i++) {
        const l = legs[(i + round) % legs.length]!;
        const c0 = cpuSeconds(l.pid);
        const r = await runPgbench(l.target, [...args, '-T', String(duration)]);
        const c1 = cpuSeconds(l.pid);
        const cpuUsPerTx = c0 !== null && c1 !== null ? ((c1 - c0) * 1e6) / r.transactions : NaN;
        l.transactions += r.transactions;
        l.runs.push({ tps: r.tps, cpuUsPerTx });
        console.log(`[round ${round + 1}/${rounds}] ${l.name.padEnd(10)} ${r.tps.toFixed(0).padStart(7)} tps, lat ${r.latencyMs.toFixed(3)} ms, proxy CPU ${cpuUsPerTx.toFixed(1)} µs/tx`);
      }
    }
    // Stopping flushes each sink, so the line counts below are final.
    await stopAll();

    const med = new Map(legs.map((l) => [l.name, { tps: median(l.runs.map((r) => r.tps)), cpu: median(l.runs.map((r) => r.cpuUsPerTx)) }]));
    const base = med.get('none')!;
    console.log(`\npgbench ${args.join(' ')} -T ${duration}, ${rounds} round(s), medians${values.pin ? ', pinned' : ''}\n`);
    console.log('| audit | TPS per round | TPS | proxy CPU µs/tx | TPS / none | CPU µs/tx over none |');
    console.log('| --- | --- | ---: | ---: | ---: | ---: |');
    for (const l of legs) {
      const m = med.get(l.name)!;
      const perRound = l.runs.map((r) => r.tps.toFixed(0)).join(', ');
      console.log(`| ${l.name} | ${perRound} | ${m.tps.toFixed(0)} | ${m.cpu.toFixed(1)} | ${(m.tps / base.tps).toFixed(3)} | ${(m.cpu - base.cpu).toFixed(1)} |`);
    }
    const ratio = (name: string): string => (med.get(name)!.tps / base.tps).toFixed(3);
    console.log(`\nfile / none: ${ratio('file')}   file+fsync / none: ${ratio('file+fsync')}   (durable audit within 10%: >= 0.900)`);

    for (const l of legs) {
      if (l.auditPath === null) continue;
      const lines = await countTrailLines(l.auditPath);
      const short = lines === null || lines < l.transactions;
      console.log(`audit ${l.name}: ${lines ?? 'no file'} lines for ${l.transactions} transactions${short ? '  <-- WARNING: fewer audit lines than transactions' : ''}`);
      if (short) process.exitCode = 1;
    }
    ok = true;
  } finally {
    await stopAll();
    // The audit files of a clean run are GBs; keep everything for a post-mortem otherwise.
    if (ok) rmSync(tmp, { recursive: true, force: true });
    else console.error(`logs kept in ${tmp}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});

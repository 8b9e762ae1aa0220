// npm run bench: pgbench against PostgreSQL directly, through a bare TCP relay
// and through dbward, interleaved so all three see the same machine state.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type BenchArgs, type Endpoint } from './lib/args.js';
import { setPinning } from './lib/pin.js';
import { countTrailLines } from './lib/audit.js';
import { ensureBenchDb, resetTpcb } from './lib/db.js';
import { generateConfig, readOperatorConfig, type DbwardSetup } from './lib/dbward-config.js';
import { runPgbench, type Target } from './lib/pgbench.js';
import { cpuSeconds } from './lib/cpu.js';
import { installSignalCleanup, stopAll, stopChild } from './lib/children.js';
import { dbwardCommand, staleBuildWarning, startDbward, startRelayProcess } from './lib/procs.js';
import { connectTable, summarize, throughputTable, type LegResult, type ScenarioResult } from './lib/report.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DB = 'dbward_bench';
const UPSTREAM = { host: '127.0.0.1', port: 5432 };

interface Scenario {
  id: string;
  name: string;
  clients: number;
  args: string[];
  /** TPC-B writes; reset history/vacuum before each leg so legs start equal. */
  writes: boolean;
  connect: boolean;
}

/** The scenario matrix: three -S protocol modes and TPC-B, each at 8 and 1 clients, plus -C. */
function scenarios(a: BenchArgs): Scenario[] {
  const base = [
    { name: 'select-simple', args: ['-S', '-M', 'simple'], writes: false, connect: false },
    { name: 'select-prepared', args: ['-S', '-M', 'prepared'], writes: false, connect: false },
    { name: 'select-extended', args: ['-S', '-M', 'extended'], writes: false, connect: false },
    { name: 'tpcb', args: ['-M', 'simple'], writes: true, connect: false },
  ];
  const all: Scenario[] = [];
  for (const b of base) {
    for (const clients of [8, 1]) {
      const j = clients === 1 ? 1 : 2; // 2 cores: more pgbench threads would just contend with the proxy
      all.push({ ...b, id: `${b.name}/c${clients}`, clients, args: [...b.args, '-c', `${clients}`, '-j', `${j}`] });
    }
  }
  const connect = { id: 'connect/c8', name: 'connect', clients: 8, writes: false, connect: true };
  all.push({ ...connect, args: ['-S', '-C', '-M', 'simple', '-c', '8', '-j', '2'] });
  // -C is opt-in (--connect, or naming it in --only): it measures setup cost, not throughput.
  return all.filter((s) => (a.only ? a.only.test(s.id) : true) && (!s.connect || a.connect || a.only?.test(s.id)));
}

function pgbenchVersion(): string {
  return execFileSync('pgbench', ['--version'], { encoding: 'utf8' }).trim();
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  setPinning(args.pin);
  const list = scenarios(args);
  if (list.length === 0) throw new Error(`--only ${args.only?.source} matches no scenario`);

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbward-bench-'));
  installSignalCleanup(() => console.error(`logs kept in ${tmp}`));
  const targets: Partial<Record<Endpoint, Target>> = {};
  const proxyPids: Partial<Record<Endpoint, number>> = {};
  const direct: Target = { ...UPSTREAM, user: 'root', database: DB };
  let ok = false;
  try {
    await ensureBenchDb(direct, args.scale);
    if (args.endpoints.includes('direct')) targets.direct = direct;

    if (args.endpoints.includes('relay')) {
      const relay = await startRelayProcess(ROOT, `${UPSTREAM.host}:${UPSTREAM.port}`, path.join(tmp, 'relay.log'));
      targets.relay = { ...direct, port: relay.port };
      if (relay.child.pid !== undefined) proxyPids.relay = relay.child.pid;
    }

    let setup: DbwardSetup | null = null;
    let dbwardChild: Awaited<ReturnType<typeof startDbward>> | null = null;
    let auditBefore = 0;
    if (args.endpoints.includes('dbward')) {
      setup = args.dbwardConfig ? readOperatorConfig(args.dbwardConfig) : await generateConfig(tmp, DB);
      const t: Target = { host: setup.host, port: setup.port, user: 'root', database: DB };
      const root = args.dbwardRoot !== null ? path.resolve(args.dbwardRoot) : ROOT;
      console.log(`starting dbward: (cd ${root} && node ${dbwardCommand(root).join(' ')} start -c ${setup.configPath})`);
      const stale = staleBuildWarning(root);
      if (stale) console.warn(stale);
      // An operator's audit file may already hold earlier runs; only count what this run adds.
      auditBefore = (setup.auditPath ? await countTrailLines(setup.auditPath) : null) ?? 0;
      dbwardChild = await startDbward(root, setup.configPath, t, path.join(tmp, 'dbward.log'));
      targets.dbward = t;
      if (dbwardChild.pid !== undefined) proxyPids.dbward = dbwardChild.pid;
    }

    const endpoints = args.endpoints.filter((e) => targets[e] !== undefined);
    let dbwardTxns = 0;

    // Warm caches and V8's JIT in every endpoint so the first scenario is not penalised.
    console.log('warming up (2 s per endpoint)');
    for (const e of endpoints) {
      const r = await runPgbench(targets[e]!, ['-S', '-T', '2', '-c', '8', '-j', '2']);
      if (e === 'dbward') dbwardTxns += r.transactions;
    }

    const results: ScenarioResult[] = [];
    for (const s of list) {
      const rounds: Partial<Record<Endpoint, LegResult[]>> = {};
      for (let round = 0; round < args.rounds; round++) {
        // Rotate who goes first each round so no endpoint always runs on the freshest state.
        const order = endpoints.map((_, i) => endpoints[(i + round) % endpoints.length]!);
        for (const e of order) {
          if (s.writes) await resetTpcb(direct);
          const cpu0 = cpuSeconds(proxyPids[e]);
          const r = await runPgbench(targets[e]!, [...s.args, '-T', String(args.duration)]);
          const cpu1 = cpuSeconds(proxyPids[e]);
          // Includes pgbench's connection setup; over a 10 s leg that is noise.
          const cpuUsPerTx = cpu0 !== null && cpu1 !== null && r.transactions > 0 ? ((cpu1 - cpu0) * 1e6) / r.transactions : null;
          if (e === 'dbward') dbwardTxns += r.transactions;
          (rounds[e] ??= []).push({ ...r, cpuUsPerTx });
          const conn = r.connMs !== null ? `, conn ${r.connMs.toFixed(3)} ms` : '';
          const cpu = cpuUsPerTx !== null ? `, proxy CPU ${cpuUsPerTx.toFixed(1)} µs/tx` : '';
          console.log(`[${s.id} round ${round + 1}/${args.rounds}] ${e.padEnd(6)} ${r.tps.toFixed(0).padStart(7)} tps, lat ${r.latencyMs.toFixed(3)} ms${conn}${cpu}`);
        }
      }
      const med: ScenarioResult['median'] = {};
      for (const e of endpoints) med[e] = summarize(rounds[e]!);
      results.push({ id: s.id, scenario: s.name, clients: s.clients, pgbenchArgs: s.args, rounds, median: med });
    }

    // Stop dbward before counting so buffered audit records are flushed.
    if (dbwardChild) await stopChild(dbwardChild, 15_000);
    let audit: { path: string; lines: number | null; dbwardTransactions: number } | null = null;
    if (setup?.auditPath) {
      const after = await countTrailLines(setup.auditPath);
      audit = { path: setup.auditPath, lines: after === null ? null : after - auditBefore, dbwardTransactions: dbwardTxns };
    }

    const thr = results.filter((r) => r.scenario !== 'connect');
    const con = results.filter((r) => r.scenario === 'connect');
    console.log(`\nmedian of ${args.rounds} round(s), ${args.duration} s each, scale ${args.scale}; ratios are TPS ratios (>1 = faster)\n`);
    if (thr.length) console.log(throughputTable(thr) + '\n');
    if (con.length) console.log(connectTable(con) + '\n');
    if (audit) {
      const short = audit.lines === null || audit.lines < audit.dbwardTransactions;
      console.log(`audit: ${audit.lines ?? 'no file'} lines for ${audit.dbwardTransactions} transactions through dbward${short ? '  <-- WARNING: fewer audit lines than transactions' : ''}`);
      if (short) process.exitCode = 1;
    }

    const outDir = path.join(ROOT, 'bench/results');
    mkdirSync(outDir, { recursive: true });
    const out = path.join(outDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const meta = {
      date: new Date().toISOString(),
      args: { ...args, only: args.only?.source ?? null },
      node: process.version,
      pgbench: pgbenchVersion(),
      cpus: os.cpus().length,
      dbwardCommand: targets.dbward ? dbwardCommand(args.dbwardRoot !== null ? path.resolve(args.dbwardRoot) : ROOT) : null,
    };
    writeFileSync(out, JSON.stringify({ ...meta, results, audit }, null, 2) + '\n');
    console.log(`results written to ${path.relative(process.cwd(), out)}`);
    ok = true;
  } finally {
    await stopAll();
    // Keep logs and the audit file for post-mortems; a clean run's audit file can be GBs.
    if (ok) rmSync(tmp, { recursive: true, force: true });
    else console.error(`logs kept in ${tmp}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});

// Aggregating rounds and printing the comparison tables.
import type { Endpoint } from './args.js';
import type { PgbenchResult } from './pgbench.js';

export interface Summary {
  tps: number;
  latencyMs: number;
  connMs: number | null;
  /** CPU of the proxy process (relay or dbward) per transaction, µs; null for direct. */
  cpuUsPerTx: number | null;
}

/** One pgbench leg, with the proxy's CPU per transaction when there is a proxy. */
export interface LegResult extends PgbenchResult {
  cpuUsPerTx: number | null;
}

export interface ScenarioResult {
  id: string;
  scenario: string;
  clients: number;
  pgbenchArgs: string[];
  rounds: Partial<Record<Endpoint, LegResult[]>>;
  median: Partial<Record<Endpoint, Summary>>;
}

/** Median of a non-empty list (mean of the middle two for even lengths). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Per-metric medians across rounds; metrics are taken independently, as each is noisy on its own. */
export function summarize(runs: LegResult[]): Summary {
  const conn = runs.map((r) => r.connMs).filter((x): x is number => x !== null);
  const cpu = runs.map((r) => r.cpuUsPerTx).filter((x): x is number => x !== null);
  return {
    tps: median(runs.map((r) => r.tps)),
    latencyMs: median(runs.map((r) => r.latencyMs)),
    connMs: conn.length ? median(conn) : null,
    cpuUsPerTx: cpu.length ? median(cpu) : null,
  };
}

const tpsFmt = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(0));
const msFmt = (x: number | null | undefined, digits = 3): string => (x === undefined || x === null ? '-' : x.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || b === 0 ? '-' : (a / b).toFixed(3);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i < 2 ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(header), sep, ...rows.map(line)].join('\n');
}

/** Markdown table of throughput scenarios: TPS and mean latency per endpoint plus the ratios. */
export function throughputTable(results: ScenarioResult[]): string {
  const header = [
    'scenario', 'clients',
    'TPS direct', 'TPS relay', 'TPS dbward',
    'lat ms direct', 'lat ms relay', 'lat ms dbward',
    'relay/direct', 'dbward/direct', 'dbward/relay',
    'CPU µs/tx relay', 'CPU µs/tx dbward',
  ];
  const rows = results.map((r) => {
    const { direct: d, relay: rl, dbward: w } = r.median;
    return [
      r.scenario, String(r.clients),
      tpsFmt(d?.tps), tpsFmt(rl?.tps), tpsFmt(w?.tps),
      msFmt(d?.latencyMs), msFmt(rl?.latencyMs), msFmt(w?.latencyMs),
      ratio(rl?.tps, d?.tps), ratio(w?.tps, d?.tps), ratio(w?.tps, rl?.tps),
      msFmt(rl?.cpuUsPerTx, 1), msFmt(w?.cpuUsPerTx, 1),
    ];
  });
  return table(header, rows);
}

/** Markdown table for pgbench -C: mean connection setup time per endpoint and the extra ms per hop. */
export function connectTable(results: ScenarioResult[]): string {
  const header = [
    'scenario', 'clients',
    'conn ms direct', 'conn ms relay', 'conn ms dbward',
    'relay-direct ms', 'dbward-direct ms', 'TPS direct', 'TPS dbward',
  ];
  const diff = (a: number | null | undefined, b: number | null | undefined): string =>
    a === undefined || a === null || b === undefined || b === null ? '-' : (a - b).toFixed(3);
  const rows = results.map((r) => {
    const { direct: d, relay: rl, dbward: w } = r.median;
    return [
      r.scenario, String(r.clients),
      msFmt(d?.connMs), msFmt(rl?.connMs), msFmt(w?.connMs),
      diff(rl?.connMs, d?.connMs), diff(w?.connMs, d?.connMs), tpsFmt(d?.tps), tpsFmt(w?.tps),
    ];
  });
  return table(header, rows);
}

// Spawning pgbench and turning its text summary into numbers.
import { spawn } from 'node:child_process';
import { pinned } from './pin.js';
import { track } from './children.js';

export interface Target {
  host: string;
  port: number;
  user: string;
  database: string;
}

export interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
  /** Only reported with -C: mean time to open one connection. */
  connMs: number | null;
}

/** Environment for libpq tools pointed at `t`; SSL is off everywhere so all endpoints are alike. */
export function pgEnv(t: Target): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PGHOST: t.host,
    PGPORT: String(t.port),
    PGUSER: t.user,
    PGDATABASE: t.database,
    PGSSLMODE: 'disable',
  };
  // Either of these in the operator's shell would silently route around PGHOST/PGPORT.
  delete env.PGHOSTADDR;
  delete env.PGSERVICE;
  return env;
}

/** Run a command to completion, returning stdout/stderr; rejects on non-zero exit. */
export function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const [c, argv] = cmd === 'pgbench' ? pinned('client', cmd, args) : [cmd, args];
    const child = track(spawn(c, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}\n${stderr}${stdout}`));
    });
  });
}

function num(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (m?.[1] === undefined) throw new Error(`pgbench output has no ${what}:\n${text}`);
  return Number(m[1]);
}

/** Parse pgbench's summary; throws if any transaction failed or the client logged errors. */
export function parsePgbench(stdout: string, stderr: string): PgbenchResult {
  const failed = /number of failed transactions: (\d+)/.exec(stdout);
  if (failed?.[1] !== undefined && Number(failed[1]) > 0) {
    throw new Error(`pgbench reported ${failed[1]} failed transactions:\n${stdout}\n${stderr}`);
  }
  // pgbench prints per-client errors on stderr but may still exit 0 (e.g. a client aborted).
  if (/error|abort|fatal/i.test(stderr)) throw new Error(`pgbench logged errors:\n${stderr}`);
  const tps = num(stdout, /^tps = ([\d.]+) \((?:without initial connection time|including reconnection times)\)/m, 'tps');
  const conn = /^average connection time = ([\d.]+) ms/m.exec(stdout);
  return {
    tps,
    latencyMs: num(stdout, /^latency average = ([\d.]+) ms/m, 'latency average'),
    transactions: num(stdout, /^number of transactions actually processed: (\d+)/m, 'transaction count'),
    connMs: conn?.[1] !== undefined ? Number(conn[1]) : null,
  };
}

/** Run pgbench with `args` against `t` and return the parsed summary. */
export async function runPgbench(t: Target, args: string[]): Promise<PgbenchResult> {
  const { stdout, stderr } = await exec('pgbench', ['--no-vacuum', ...args], pgEnv(t));
  return parsePgbench(stdout, stderr);
}

/** Run SQL with psql (each string its own -c, so VACUUM stays outside a transaction); returns tuples-only output. */
export async function psql(t: Target, ...sql: string[]): Promise<string> {
  const args = ['-X', '-v', 'ON_ERROR_STOP=1', '-At', ...sql.flatMap((s) => ['-c', s])];
  const { stdout } = await exec('psql', args, pgEnv(t));
  return stdout.trim();
}

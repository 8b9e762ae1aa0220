// `dbward audit verify|search|session|tail`: check the audit trail's chain, and
// answer who ran what, when, against which tables, under which decision, with
// what outcome. Sources and the key default to the config file (-c); flags
// override. Loaded by main.ts only for these commands.

import fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type pg from 'pg';
import { keyFrom, type ChainHead } from '../audit/chain.js';
import { readHeadFile } from '../audit/head.js';
import { fileLines, followFile, lastLinesOffset, orderedFiles, tableHead, tableLines, tableNodes, trailFiles, type PgHandle } from '../audit/read.js';
import { filterFrom, Joiner, parseEvent, search, SearchFilterError, sessionTimeline, type AuditRow, type EventSource, type SearchFilter, type SearchStats } from '../audit/search.js';
import { verifyFiles, verifyLines, type VerifyReport } from '../audit/verify.js';
import type { AuditConfig, PostgresAuditConfig } from '../config/types.js';

const HELP = `Usage:
  dbward audit verify [PATH...] [--key-env NAME | --key-file FILE]
        [--head FILE | --head-postgres URL [--table T] [--node N] | --no-head]
        [--postgres URL [--table T] [--node N]] [-c dbward.yaml]
      Verify the keyed hash chain of the trail: files (a directory: its *.jsonl),
      by default the configured file and its rotated siblings; or, with
      --postgres, each node's chain in the audit table (heads from <table>_heads).
      Exit 0 untouched, 1 a problem found (the first is named), 2 usage or I/O error.
  dbward audit search [FILTERS] [--format table|json] [--file PATH]...
        [--postgres URL [--audit-table T] [--node N]] [-c dbward.yaml]
      Statements merged with their outcomes, oldest first. --audit-table names the
      PostgreSQL table (--table is the filter on tables a statement touched).
  dbward audit session ID [--format table|json] [--type T,...] [source as for search]
      Every event of one session, in order.
  dbward audit tail [-f] [-n N] [FILTERS] [--format table|json] [--file ACTIVE] [-c dbward.yaml]
      The last N rows (default 10) of the trail; -f follows the active file across rotations.

FILTERS:
  --user U  --group G  --kind human|service|agent  --target NAME  --env ENVIRONMENT
  --table [SCHEMA.]TABLE  --column [TABLE.]COLUMN  --decision allow|deny|require_approval
  --rule ID  --sqlstate CODE|CLASS  --session ID  --type TYPE[,TYPE...]|all
  --since TIME  --until TIME  --text SUBSTRING  --limit N
  TIME is ISO-8601 (2026-11-23T10:00:00Z) or relative (90s, 30m, 1h, 7d, 2w ago).
`;

type Values = Record<string, string | boolean | string[] | undefined>;

/** A failure the user can fix (bad flag, missing key, unreadable file): exit 2. */
class UsageError extends Error {}

const COMMON = {
  config: { type: 'string', short: 'c' },
  format: { type: 'string' },
  file: { type: 'string', multiple: true },
  postgres: { type: 'string' },
  'audit-table': { type: 'string' },
  node: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/** The search filters as flags: FILTER_PARAMS, with --env for environment. */
const FILTERS = {
  user: { type: 'string' }, group: { type: 'string' }, kind: { type: 'string' }, target: { type: 'string' }, env: { type: 'string' },
  table: { type: 'string' }, column: { type: 'string' }, decision: { type: 'string' }, rule: { type: 'string' }, sqlstate: { type: 'string' },
  session: { type: 'string' }, type: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, text: { type: 'string' },
  limit: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

/** Runs `dbward audit ...`; returns the exit code. */
export async function auditCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'verify': return await verify(rest);
      case 'search': return await searchCommand(rest);
      case 'session': return await session(rest);
      case 'tail': return await tail(rest);
      case undefined: case '-h': case '--help': case 'help':
        process.stdout.write(HELP);
        return sub === undefined ? 2 : 0;
      default:
        process.stderr.write(`dbward audit: unknown subcommand "${sub}"\n\n${HELP}`);
        return 2;
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code?.startsWith('ERR_PARSE_ARGS') || err instanceof UsageError || err instanceof SearchFilterError) {
      process.stderr.write(`dbward audit ${sub}: ${e.message}\n`);
      return 2;
    }
    if (e.code === 'CONFIG_INVALID') {
      process.stderr.write(`dbward audit ${sub}: invalid configuration\n${e.message}\n`);
      return 2;
    }
    // I/O and database errors: say what failed, exit 2 (not "a problem in the trail").
    process.stderr.write(`dbward audit ${sub}: ${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ''}\n`);
    return 2;
  }
}

// --- verify ---

async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      config: COMMON.config, postgres: COMMON.postgres, node: COMMON.node,
      table: { type: 'string' }, 'audit-table': { type: 'string' },
      'key-env': { type: 'string' }, 'key-file': { type: 'string' },
      head: { type: 'string' }, 'head-postgres': { type: 'string' }, 'no-head': { type: 'boolean' },
    },
  });
  if (values['key-env'] !== undefined && values['key-file'] !== undefined) throw new UsageError('give --key-env or --key-file, not both');
  if ([values.head, values['head-postgres'], values['no-head']].filter((v) => v !== undefined).length > 1) throw new UsageError('give one of --head, --head-postgres, --no-head');
  if (positionals.length > 0 && values.postgres !== undefined) throw new UsageError('give PATHs or --postgres, not both');
  const audit = await configAudit(values.config);
  const key = chainKey(values, audit);
  const table = values.table ?? values['audit-table'] ?? audit?.postgres?.table ?? 'dbward_audit';

  // The table when asked for, or when the config has no file trail to default to.
  if (values.postgres !== undefined || (positionals.length === 0 && !audit?.file && audit?.postgres)) {
    const handle = await connect(values.postgres, audit?.postgres ?? null);
    try {
      const nodes = values.node !== undefined ? [values.node] : await tableNodes(handle.client, table);
      if (nodes.length === 0) throw new UsageError(`the audit table ${table} holds no events`);
      let failed = false;
      for (const node of nodes) {
        const head = values['no-head'] ? null : await exportedHead(values, audit, node, true) ?? await tableHead(handle.client, table, node);
        const report = await verifyLines(tableLines(handle.client, table, { node, order: 'seq' }), key, head ? { head } : {});
        failed = printReport(`${table} node ${node}`, report, head) || failed;
      }
      return failed ? 1 : 0;
    } finally {
      await handle.done();
    }
  }

  const paths = positionals.length > 0 ? positionals : audit?.file ? trailFiles(audit.file.path) : [];
  if (paths.length === 0) {
    throw new UsageError(audit?.file ? `no audit files at ${audit.file.path} (nor rotated beside it)` : 'give audit files or directories, --postgres URL, or -c dbward.yaml');
  }
  const head = values['no-head'] ? null : await exportedHead(values, audit, values.node ?? audit?.node, false);
  const report = await verifyFiles(paths, key, head ? { head } : {});
  if (report.files.length === 0) throw new UsageError(`no *.jsonl files in ${paths.join(', ')}`);
  return printReport(`${report.files.length} file${report.files.length === 1 ? '' : 's'}`, report, head) ? 1 : 0;
}

/** Prints a report; returns true when it names a problem. */
function printReport(label: string, r: VerifyReport, head: ChainHead | null): boolean {
  const span = r.first && r.last ? `seq ${r.first.seq}..${r.last.seq}` : 'no events';
  if (r.problem) {
    const p = r.problem;
    process.stdout.write(`${label}: ${p.kind.toUpperCase()} at ${p.file}:${p.line}${p.seq !== undefined ? ` (seq ${p.seq})` : ''}\n  ${p.message}\n`
      + `  verified ${r.events} event${r.events === 1 ? '' : 's'} before it (${span})\n`);
    return true;
  }
  const start = r.events === 0 ? '' : r.startsAtGenesis ? ', from the start of the chain' : `; starts at seq ${r.first!.seq}: earlier events are not in this set (removed by retention?)`;
  const headNote = head === null ? '; no exported head given: events cut off the end would go unnoticed'
    : r.headChecked ? `; matches the exported head (seq ${head.seq})`
      : `; the exported head (seq ${head.seq}) is older than the first event here, so it was not compared`;
  process.stdout.write(`${label}: ok: ${r.events} event${r.events === 1 ? '' : 's'}, ${span}${start}${headNote}\n`);
  return false;
}

function chainKey(values: Values, audit: AuditConfig | null): Buffer {
  const env = values['key-env'] as string | undefined;
  if (env !== undefined) return keyFromEnv(env);
  const file = values['key-file'] as string | undefined;
  if (file !== undefined) return keyFromFile(file);
  const ref = audit?.chain.key;
  if (!ref) throw new UsageError('no chain key: give --key-env NAME, --key-file FILE, or -c dbward.yaml');
  if ('env' in ref) return keyFromEnv(ref.env);
  return keyFromFile('file' in ref ? ref.file : ref.generate);
}

function keyFromEnv(name: string): Buffer {
  const value = process.env[name];
  if (value === undefined || value === '') throw new UsageError(`environment variable ${name} (the chain key) is not set`);
  return wrap(() => keyFrom(value, `environment variable ${name}`));
}

function keyFromFile(file: string): Buffer {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the chain key file ${file} (${(err as NodeJS.ErrnoException).code ?? 'read failed'})`);
  }
  return wrap(() => keyFrom(text, file));
}

/**
 * The head to hold a chain to: --head, --head-postgres, else the configured head
 * file. `node` names the chain; `onlyOwn`: a head file recording another node's
 * head does not apply (the table holds several chains; a file trail holds one).
 */
async function exportedHead(values: Values, audit: AuditConfig | null, node: string | undefined, onlyOwn: boolean): Promise<ChainHead | null> {
  const headPg = values['head-postgres'] as string | undefined;
  if (headPg !== undefined) {
    if (node === undefined) throw new UsageError('--head-postgres needs --node N (or -c dbward.yaml for audit.node)');
    const table = (values.table ?? values['audit-table'] ?? audit?.postgres?.table ?? 'dbward_audit') as string;
    const handle = await connect(headPg, null);
    try {
      const head = await tableHead(handle.client, table, node);
      if (!head) throw new UsageError(`no exported head for node ${node} in ${table}_heads`);
      return head;
    } finally {
      await handle.done();
    }
  }
  const file = (values.head as string | undefined) ?? audit?.chain.headFile ?? null;
  if (file === null) return null;
  const record = wrap(() => readHeadFile(file));
  if (onlyOwn && record.node !== '' && record.node !== node) return null;
  return { seq: record.seq, mac: record.mac };
}

// --- search, session ---

async function searchCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, options: { ...COMMON, ...FILTERS } });
  const filter = filterOf(values);
  const format = formatOf(values);
  const source = await sourceOf(values);
  const stats: SearchStats = { skipped: 0 };
  await print(search(source, filter, stats), format, stats);
  return 0;
}

async function session(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: { ...COMMON, type: { type: 'string' }, limit: { type: 'string' } } });
  if (positionals.length !== 1) throw new UsageError('give one session id');
  const format = formatOf(values);
  const source = await sourceOf(values);
  const id = positionals[0]!;
  const extra = filterFrom((k) => (k === 'type' || k === 'limit' ? values[k] : undefined));
  const stats: SearchStats = { skipped: 0 };
  const rows = extra.types ? search(source, { ...extra, session: id }, stats) : sessionTimeline(source, id, extra.limit);
  if (await print(rows, format, stats) === 0) process.stderr.write(`no events for session ${id}\n`);
  return 0;
}

function filterOf(values: Values): SearchFilter {
  return filterFrom((k) => {
    const v = values[k === 'environment' ? 'env' : k];
    return typeof v === 'string' ? v : undefined;
  });
}

function formatOf(values: Values): 'table' | 'json' {
  const f = values.format ?? 'table';
  if (f !== 'table' && f !== 'json') throw new UsageError(`--format is table or json (got "${String(f)}")`);
  return f;
}

async function sourceOf(values: Values): Promise<EventSource> {
  const files = values.file as string[] | undefined;
  const url = values.postgres as string | undefined;
  if (files && url !== undefined) throw new UsageError('give --file or --postgres, not both');
  const audit = await configAudit(values.config as string | undefined);
  if (files) return { kind: 'files', paths: files };
  const node = values.node as string | undefined;
  if (url !== undefined || (!audit?.file && audit?.postgres)) {
    const table = (values['audit-table'] as string | undefined) ?? audit?.postgres?.table ?? 'dbward_audit';
    const conf = audit?.postgres ?? null;
    return { kind: 'postgres', table, connect: () => connect(url, conf), ...(node !== undefined && { node }) };
  }
  if (audit?.file) {
    const paths = trailFiles(audit.file.path);
    if (paths.length === 0) throw new UsageError(`no audit files at ${audit.file.path}`);
    return { kind: 'files', paths };
  }
  throw new UsageError('give --file PATH, --postgres URL, or -c dbward.yaml');
}

// --- tail ---

/** A row waits this long for its outcome before tail -f prints it without. */
const TAIL_WAIT_MS = 5000;

async function tail(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, strict: true,
    options: { config: COMMON.config, format: COMMON.format, file: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, lines: { type: 'string', short: 'n' }, ...FILTERS },
  });
  const format = formatOf(values);
  const count = values.lines === undefined ? 10 : Number(values.lines);
  if (!Number.isInteger(count) || count < 0) throw new UsageError('-n takes a number of rows');
  const filter = filterOf(values);
  const audit = await configAudit(values.config);
  const active = values.file ?? audit?.file?.path;
  if (active === undefined) throw new UsageError('give --file ACTIVE_FILE or -c dbward.yaml');
  if (!values.follow && !fs.existsSync(active)) throw new UsageError(`${active} does not exist`);

  const out = new RowWriter(format);
  // Follow from the end of the last complete line; a line being written is read whole later.
  const end = fs.existsSync(active) ? lastLinesOffset(active, 0).offset : 0;
  const { rows, joiner } = await lastRows(active, end, count, filter, !values.follow);
  for (const r of rows) await out.write(r);
  if (!values.follow) return 0;

  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    for await (const l of followFile(active, end, stop.signal)) {
      const e = l === null ? null : parseEvent(l.line);
      for (const r of e ? joiner.push(e) : joiner.expire(TAIL_WAIT_MS)) await out.write(r);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}

/**
 * The last `count` rows of the trail ending at byte `end` of the active file,
 * reading backwards into rotated files when the active one is short. Rows are
 * fewer than lines (outcomes merge in, filters drop), so the window widens
 * until it holds enough. Returns the joiner too: a following tail goes on with
 * the statements still waiting for their outcome.
 */
async function lastRows(active: string, end: number, count: number, filter: SearchFilter, finish: boolean): Promise<{ rows: AuditRow[]; joiner: Joiner }> {
  if (count === 0 || end === 0) return { rows: [], joiner: new Joiner(filter) };
  const older = (await orderedFiles(trailFiles(active))).filter((f) => f !== active).reverse();
  for (let want = count * 3 + 32; ; want *= 4) {
    const segments: { file: string; start: number; end: number }[] = [];
    let remaining = want;
    for (const [i, file] of [active, ...older].entries()) {
      const stop = i === 0 ? end : fs.statSync(file).size;
      const { offset, lines } = lastLinesOffset(file, remaining);
      segments.unshift({ file, start: Math.min(offset, stop), end: stop });
      remaining -= lines;
      if (remaining <= 0) break;
    }
    const joiner = new Joiner(filter);
    const rows: AuditRow[] = [];
    for (const seg of segments) {
      for await (const l of fileLines(seg.file, seg.start, seg.end)) {
        const e = parseEvent(l.line);
        if (e) rows.push(...joiner.push(e));
      }
    }
    if (finish) rows.push(...joiner.finish());
    if (rows.length >= count || remaining > 0) return { rows: rows.slice(-count), joiner };
  }
}

// --- output ---

/** Writes the rows; returns how many. */
async function print(rows: AsyncIterable<AuditRow>, format: 'table' | 'json', s: SearchStats): Promise<number> {
  const out = new RowWriter(format);
  let n = 0;
  for await (const r of rows) { await out.write(r); n++; }
  if (s.skipped > 0) process.stderr.write(`${s.skipped} unreadable line${s.skipped === 1 ? '' : 's'} skipped (run dbward audit verify)\n`);
  return n;
}

const WIDTHS = { time: 23, user: 20, target: 10, decision: 8, rows: 6, sqlstate: 8, duration: 8 };

/** Writes rows as a table or JSON lines, waiting for stdout to drain (a pipe to `head` must not buffer a whole search). */
class RowWriter {
  private headed = false;
  private readonly width = process.stdout.isTTY ? process.stdout.columns : Number(process.env.COLUMNS) || Infinity;

  constructor(private readonly format: 'table' | 'json') {}

  async write(row: AuditRow): Promise<void> {
    let text: string;
    if (this.format === 'json') {
      text = `${JSON.stringify(row)}\n`;
    } else {
      text = '';
      if (!this.headed) {
        this.headed = true;
        text += this.line(['TIME', 'USER', 'TARGET', 'DECISION', 'ROWS', 'SQLSTATE', 'DURATION', 'TEXT']);
      }
      text += this.line(cells(row));
    }
    if (!process.stdout.write(text)) await new Promise((r) => process.stdout.once('drain', r));
  }

  private line(c: string[]): string {
    const w = Object.values(WIDTHS);
    const fixed = c.slice(0, w.length).map((x, i) => fit(x, w[i]!, i === 4 || i === 6)).join(' ');
    const room = this.width - fixed.length - 1;
    const last = c[w.length]!;
    return `${fixed} ${room >= 1 && last.length > room ? `${last.slice(0, Math.max(0, room - 1))}…` : last}\n`;
  }
}

function cells(r: AuditRow): string[] {
  const identity = obj(r.identity);
  const target = obj(r.target);
  const time = r.time.replace('T', ' ').slice(0, 23);
  const user = str(identity?.user) ?? str(r.user) ?? '-';
  const targetName = str(target?.name) ?? str(r.target) ?? '-';
  if (r.type === 'statement') {
    const action = str(obj(r.decision)?.action) ?? '-';
    const o = obj(r.outcome);
    const status = str(o?.status);
    const rows = typeof o?.rows === 'number' ? String(o.rows) : '-';
    const sqlstate = str(o?.sqlstate) ?? (status && status !== 'ok' ? status : o ? '' : '?');
    const ms = typeof o?.duration_ms === 'number' ? duration(o.duration_ms) : '-';
    const text = (str(obj(r.statement)?.text) ?? '').replace(/\s+/g, ' ').trim();
    return [time, user, targetName, action === 'require_approval' ? 'approval' : action, rows, sqlstate, ms, text];
  }
  const detail = ['reason', 'status', 'message'].map((k) => r[k]).filter((v) => typeof v === 'string').join(': ');
  const ms = typeof r.duration_ms === 'number' ? duration(r.duration_ms) : '-';
  return [time, user, targetName, '-', '-', str(r.sqlstate) ?? '', ms, `[${r.type}]${detail ? ` ${detail}` : ''}`.replace(/\s+/g, ' ')];
}

function duration(ms: number): string {
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  return `${(ms / 60_000).toFixed(1)}min`;
}

function fit(s: string, w: number, right: boolean): string {
  const t = s.length > w ? `${s.slice(0, w - 1)}…` : s;
  return right ? t.padStart(w) : t.padEnd(w);
}

// --- config, PostgreSQL ---

async function configAudit(file: string | undefined): Promise<AuditConfig | null> {
  if (file === undefined) return null;
  const { loadConfig } = await import('../config/load.js');
  return loadConfig(file).audit;
}

/** Connects to `url`, or to the configured audit database when `url` is undefined. */
async function connect(url: string | undefined, conf: PostgresAuditConfig | null): Promise<PgHandle> {
  if (url === undefined && !conf) throw new UsageError('give --postgres URL or -c dbward.yaml with an audit.postgres section');
  const { auditDbOptions, connectAuditDb } = await import('../audit/postgres-sink.js');
  const options: pg.ClientConfig = url !== undefined ? { connectionString: url } : auditDbOptions(conf!);
  // Reported by the query that fails, not as an unhandled 'error' event.
  return connectAuditDb({ ...options, application_name: 'dbward audit' }, () => undefined);
}

function wrap<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

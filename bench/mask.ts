// The cost of column masking on streamed results, and dbward's memory under a slow
// client while it masks.
//
//   npm run bench:mask -- [--rows 1000000] [--rounds 3] [--slow-gb 1] [--slow-seconds 30]
//
// Setup: schema dbward_bench in database test (dropped and recreated at the start,
// dropped at the end) with people(id, name, email, ssn, city) holding --rows rows.
// dbward runs as a child process (dist/ if built: `npm run build` first) with one
// policy: mask-email (strategy email) and mask-ssn (redact) on people, both exempting
// the user `unmasked`. In unverified identity mode the startup user is the identity,
// so one dbward serves both dbward legs; upstream is always root@127.0.0.1:5432/test.
//
// 1. Throughput: psql (C, result to /dev/null) streams all of
//    SELECT id, name, email, ssn, city FROM dbward_bench.people
//    direct to PostgreSQL, through dbward as `unmasked` (the session has no masking
//    rules: rows pass as bytes) and through dbward as `masked` (email and ssn
//    rewritten in every DataRow). Legs are interleaved per round, the starting leg
//    rotating; reports rows/s (median over rounds), dbward's CPU ns per row, and the
//    ratios. Target: masked >= 0.8 x unmasked. Before measuring, the masked output is
//    checked to be masked and the unmasked output to be clear; the bench aborts if not.
// 2. Memory: a fresh dbward; a raw-socket client (StartupMessage + one simple Query)
//    reads ~--slow-gb GB of masked rows from dbward_bench.big(id, pad, email) at a
//    throttled rate (pausing its socket between bursts) so the transfer takes about
//    --slow-seconds. dbward's VmRSS (/proc/PID/status) is sampled every 250 ms:
//    baseline before the query, peak during, growth. Target: growth < 64 MB.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { installSignalCleanup, stopAll, stopChild } from './lib/children.js';
import { cpuSeconds } from './lib/cpu.js';
import { exec, pgEnv, psql, type Target } from './lib/pgbench.js';
import { dbwardCommand, freePort, staleBuildWarning, startDbward } from './lib/procs.js';
import { median } from './lib/report.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const DIRECT: Target = { host: '127.0.0.1', port: 5432, user: 'root', database: 'test' };
const SCHEMA = 'dbward_bench';
const PEOPLE_SQL = `SELECT id, name, email, ssn, city FROM ${SCHEMA}.people`;
/** Bytes of the pad column of dbward_bench.big: over the TOAST threshold, so it is stored compressed and the table stays small. */
const PAD = 4000;
const MASKED_USER = 'masked';
const UNMASKED_USER = 'unmasked';

const POLICY = `default: allow
masking:
  rules:
    - id: mask-email
      columns: [${SCHEMA}.people.email, ${SCHEMA}.big.email]
      strategy: email
      exempt: { identity: { users: [${UNMASKED_USER}] } }
    - id: mask-ssn
      columns: [${SCHEMA}.people.ssn]
      strategy: redact
      exempt: { identity: { users: [${UNMASKED_USER}] } }
`;

function positive(name: string, v: string, integer: boolean): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`--${name} wants a positive ${integer ? 'integer' : 'number'}, got ${v}`);
  return n;
}

/** Writes the config (plain TCP, unverified identity, the masking policy, audit file without fsync) into `dir`. */
async function writeConfig(dir: string): Promise<{ configPath: string; port: number }> {
  const port = await freePort();
  let admin = await freePort();
  while (admin === port) admin = await freePort();
  const policyPath = path.join(dir, 'policy.yaml');
  writeFileSync(policyPath, POLICY);
  const configPath = path.join(dir, 'dbward.mask.yaml');
  writeFileSync(configPath, `listeners:
  - { name: pg, host: 127.0.0.1, port: ${port}, require_tls: false }
targets:
  - { name: test, host: 127.0.0.1, port: 5432, database: test, user: root, tls: { mode: disable } }
identity: { mode: unverified }
policy: { path: ${JSON.stringify(policyPath)}, watch: false }
audit:
  file: { path: ${JSON.stringify(path.join(dir, 'audit.jsonl'))}, fsync: none }
admin: { host: 127.0.0.1, port: ${admin} }
log: { level: warn }
`);
  return { configPath, port };
}

async function setupTables(rows: number, bigRows: number): Promise<void> {
  console.log(`creating ${SCHEMA}.people (${rows} rows) and ${SCHEMA}.big (${bigRows} rows of ~${PAD + 30} bytes)`);
  await psql(DIRECT,
    `DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`,
    `CREATE SCHEMA ${SCHEMA}`,
    `CREATE TABLE ${SCHEMA}.people (id int, name text, email text, ssn text, city text)`,
    `INSERT INTO ${SCHEMA}.people SELECT g, 'Person ' || g, 'user' || g || '@example.com',
       lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-' || lpad((g % 10000)::text, 4, '0'),
       (ARRAY['Berlin', 'Paris', 'Lisbon', 'Oslo', 'Madrid'])[1 + g % 5] FROM generate_series(1, ${rows}) g`,
    `CREATE TABLE ${SCHEMA}.big (id int, pad text, email text)`,
    `INSERT INTO ${SCHEMA}.big SELECT g, repeat('x', ${PAD}), 'user' || g || '@example.com' FROM generate_series(1, ${bigRows}) g`,
    // Sets hint bits and the visibility map now, so no leg pays for them.
    `VACUUM (ANALYZE) ${SCHEMA}.people`,
    `VACUUM (ANALYZE) ${SCHEMA}.big`,
  );
}

/** Checks that dbward masks for `masked` and passes clear values for `unmasked`; throws otherwise. */
async function checkMasking(port: number): Promise<void> {
  const sql = `SELECT email, ssn FROM ${SCHEMA}.people ORDER BY id LIMIT 3`;
  const masked = await psql({ ...DIRECT, port, user: MASKED_USER }, sql);
  const want = Array(3).fill('****@example.com|****').join('\n');
  if (masked !== want) throw new Error(`masking is not in play: as ${MASKED_USER}, dbward returned\n${masked}\nexpected\n${want}`);
  const clear = await psql({ ...DIRECT, port, user: UNMASKED_USER }, sql);
  if (!clear.startsWith('user1@example.com|001-01-0001')) throw new Error(`the exempt user's output is not clear:\n${clear}`);
  console.log(`masking check ok: ${MASKED_USER} sees ${masked.split('\n')[0]}, ${UNMASKED_USER} sees ${clear.split('\n')[0]}`);
}

interface Leg {
  name: string;
  target: Target;
  pid: number | undefined;
  runs: { rowsPerSec: number; seconds: number; nsPerRow: number }[];
}

/** One full read of the people table with psql into /dev/null. */
async function runLeg(l: Leg, rows: number): Promise<{ rowsPerSec: number; seconds: number; nsPerRow: number }> {
  const c0 = cpuSeconds(l.pid);
  const t0 = performance.now();
  await exec('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-o', '/dev/null', '-c', PEOPLE_SQL], pgEnv(l.target));
  const seconds = (performance.now() - t0) / 1000;
  const c1 = cpuSeconds(l.pid);
  const nsPerRow = c0 !== null && c1 !== null ? ((c1 - c0) * 1e9) / rows : NaN;
  return { rowsPerSec: rows / seconds, seconds, nsPerRow };
}

/** Resident set size of `pid` in bytes (VmRSS, or VmHWM for the kernel's own peak). */
function rss(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m?.[1] === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** Splits a byte stream into protocol messages, keeping bodies only where `keep` says so (DataRows are skipped unread). */
class MessageReader {
  private readonly head = Buffer.alloc(5);
  private headLen = 0;
  private left = -1;
  private type = 0;
  private body: Buffer[] | null = null;

  constructor(private readonly keep: (type: number) => boolean, private readonly onMessage: (type: number, body: Buffer | null) => void) {}

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.left < 0) {
        const n = Math.min(5 - this.headLen, chunk.length - i);
        chunk.copy(this.head, this.headLen, i, i + n);
        this.headLen += n;
        i += n;
        if (this.headLen < 5) return;
        this.type = this.head[0]!;
        this.left = this.head.readInt32BE(1) - 4;
        this.body = this.keep(this.type) ? [] : null;
      }
      const n = Math.min(this.left, chunk.length - i);
      this.body?.push(chunk.subarray(i, i + n));
      i += n;
      this.left -= n;
      if (this.left === 0) {
        this.onMessage(this.type, this.body && Buffer.concat(this.body));
        this.left = -1;
        this.headLen = 0;
      }
    }
  }
}

function startupMessage(user: string, database: string): Buffer {
  const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
  const out = Buffer.alloc(8 + params.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(196608, 4);
  params.copy(out, 8);
  return out;
}

function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const out = Buffer.alloc(5 + text.length);
  out[0] = 0x51; // 'Q'
  out.writeInt32BE(4 + text.length, 1);
  text.copy(out, 5);
  return out;
}

/** The value of column `col` of a DataRow body, as text (null for SQL NULL). */
function cell(body: Buffer, col: number): string | null {
  let pos = 2;
  for (let i = 0; ; i++) {
    const len = body.readInt32BE(pos);
    pos += 4;
    if (i === col) return len < 0 ? null : body.toString('utf8', pos, pos + len);
    if (len > 0) pos += len;
  }
}

interface SlowResult { bytes: number; rows: number; seconds: number; firstEmail: string | null }

/** Reads `sql`'s result through a raw socket at about `bytesPerSec`, pausing between bursts. */
function slowRead(port: number, sql: string, bytesPerSec: number): Promise<SlowResult> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let t0 = 0;
    let querying = false;
    let bytes = 0;
    let rows = 0;
    let firstEmail: string | null = null;
    const fail = (err: Error): void => {
      sock.destroy();
      reject(err);
    };
    const reader = new MessageReader((t) => t !== 0x44 || rows === 0, (type, body) => {
      if (type === 0x45) return fail(new Error(`server error: ${body?.subarray(1).toString('utf8').replace(/\0/g, ' ')}`));
      if (type === 0x52 && body!.readInt32BE(0) !== 0) return fail(new Error(`dbward asked for authentication (${body!.readInt32BE(0)})`));
      if (type === 0x44) {
        if (rows === 0) firstEmail = cell(body!, 2);
        rows++;
      } else if (type === 0x5a) {
        if (!querying) {
          querying = true;
          t0 = performance.now();
          sock.write(queryMessage(sql));
        } else {
          resolve({ bytes, rows, seconds: (performance.now() - t0) / 1000, firstEmail });
          sock.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
        }
      }
    });
    sock.on('connect', () => sock.write(startupMessage(MASKED_USER, 'test')));
    sock.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      if (!querying) return;
      bytes += chunk.length;
      // Ahead of the allowed rate: stop reading (the kernel buffers fill, TCP pushes back) until due.
      const ahead = (bytes / bytesPerSec) * 1000 - (performance.now() - t0);
      if (ahead > 1) {
        sock.pause();
        setTimeout(() => sock.resume(), ahead);
      }
    });
    sock.on('error', fail);
  });
}

const mb = (b: number): string => (b / 2 ** 20).toFixed(1);

async function memoryPhase(root: string, dir: string, bigRows: number, bigBytes: number, seconds: number): Promise<string[]> {
  const { configPath, port } = await writeConfig(dir);
  const child: ChildProcess = await startDbward(root, configPath, { ...DIRECT, port, user: MASKED_USER }, path.join(dir, 'dbward.log'));
  const pid = child.pid!;
  try {
    // Warm the masked path (catalog snapshot, maskers) with a small result first.
    await psql({ ...DIRECT, port, user: MASKED_USER }, `SELECT id, pad, email FROM ${SCHEMA}.big LIMIT 1000`);
    await new Promise((r) => setTimeout(r, 1000));
    const baseline = rss(pid);
    const hwmBefore = rss(pid, 'VmHWM');
    const samples: number[] = [];
    const timer = setInterval(() => {
      try {
        samples.push(rss(pid));
      } catch {
        // dbward exited: the read fails and says so.
      }
    }, 250);
    console.log(`\nmemory: reading ~${mb(bigBytes)} MB of masked rows at ${mb(bigBytes / seconds)} MB/s through dbward (pid ${pid}), RSS baseline ${mb(baseline)} MB`);
    let r: SlowResult;
    try {
      r = await slowRead(port, `SELECT id, pad, email FROM ${SCHEMA}.big`, bigBytes / seconds);
    } finally {
      clearInterval(timer);
    }
    const peak = Math.max(baseline, ...samples);
    const hwmAfter = rss(pid, 'VmHWM');
    if (r.rows !== bigRows) throw new Error(`slow client read ${r.rows} rows, expected ${bigRows}`);
    if (r.firstEmail !== '****@example.com') throw new Error(`slow client's email is not masked: ${r.firstEmail}`);
    const growth = peak - baseline;
    return [
      `slow client: ${r.rows} rows, ${mb(r.bytes)} MB in ${r.seconds.toFixed(1)} s (${mb(r.bytes / r.seconds)} MB/s), email masked (${r.firstEmail}), ${samples.length} RSS samples`,
      '',
      '| dbward RSS | MB |',
      '| --- | ---: |',
      `| baseline (before the query) | ${mb(baseline)} |`,
      `| peak (sampled every 250 ms) | ${mb(peak)} |`,
      `| growth | **${mb(growth)}** |`,
      `| VmHWM before / after | ${mb(hwmBefore)} / ${mb(hwmAfter)} |`,
      `| at 25 / 50 / 75 / 100% of the transfer | ${[1, 2, 3, 4].map((q) => mb(samples[Math.max(0, Math.ceil((samples.length * q) / 4) - 1)] ?? NaN)).join(' / ')} |`,
      '',
      `RSS growth ${mb(growth)} MB: ${growth < 64 * 2 ** 20 ? 'meets' : 'MISSES'} the target (< 64 MB)`,
    ];
  } finally {
    await stopChild(child);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '3' },
      'slow-gb': { type: 'string', default: '1' }, 'slow-seconds': { type: 'string', default: '30' },
    },
  });
  const rows = positive('rows', values.rows, true);
  const rounds = positive('rounds', values.rounds, true);
  const slowGb = positive('slow-gb', values['slow-gb'], false);
  const slowSeconds = positive('slow-seconds', values['slow-seconds'], false);
  // A masked DataRow of big: header 7, three length words, id, pad, '****@example.com'.
  const bigRowBytes = 7 + 12 + 7 + PAD + 16;
  const bigRows = Math.max(1, Math.round((slowGb * 2 ** 30) / bigRowBytes));
  const command = `npm run bench:mask -- --rows ${rows} --rounds ${rounds} --slow-gb ${slowGb} --slow-seconds ${slowSeconds}`;

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'dbward-bench-mask-'));
  installSignalCleanup(() => console.error(`logs kept in ${tmp}`));
  let ok = false;
  try {
    const stale = staleBuildWarning(ROOT);
    if (stale) console.warn(stale);
    await setupTables(rows, bigRows);

    const dir = path.join(tmp, 'throughput');
    mkdirSync(dir);
    const { configPath, port } = await writeConfig(dir);
    console.log(`starting dbward: (cd ${ROOT} && node ${dbwardCommand(ROOT).join(' ')} start -c ${configPath})`);
    const child = await startDbward(ROOT, configPath, { ...DIRECT, port, user: MASKED_USER }, path.join(tmp, 'dbward.log'));
    await checkMasking(port);

    const legs: Leg[] = [
      { name: 'direct', target: DIRECT, pid: undefined, runs: [] },
      { name: 'unmasked', target: { ...DIRECT, port, user: UNMASKED_USER }, pid: child.pid, runs: [] },
      { name: 'masked', target: { ...DIRECT, port, user: MASKED_USER }, pid: child.pid, runs: [] },
    ];
    console.log('warming up (one full read per leg)');
    for (const l of legs) await runLeg(l, rows);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < legs.length; i++) {
        const l = legs[(i + round) % legs.length]!;
        const r = await runLeg(l, rows);
        l.runs.push(r);
        const cpu = Number.isNaN(r.nsPerRow) ? '' : `, dbward CPU ${r.nsPerRow.toFixed(0)} ns/row`;
        console.log(`[round ${round + 1}/${rounds}] ${l.name.padEnd(8)} ${r.rowsPerSec.toFixed(0).padStart(8)} rows/s (${r.seconds.toFixed(2)} s)${cpu}`);
      }
    }
    await stopChild(child);

    const med = new Map(legs.map((l) => [l.name, { rps: median(l.runs.map((r) => r.rowsPerSec)), ns: median(l.runs.map((r) => r.nsPerRow)) }]));
    const ratio = (a: string, b: string): number => med.get(a)!.rps / med.get(b)!.rps;
    const lines = [
      `psql -At -o /dev/null -c "${PEOPLE_SQL}", ${rows} rows, ${rounds} round(s), medians\n`,
      '| leg | rows/s per round | rows/s | dbward CPU ns/row |',
      '| --- | --- | ---: | ---: |',
      ...legs.map((l) => {
        const m = med.get(l.name)!;
        return `| ${l.name} | ${l.runs.map((r) => r.rowsPerSec.toFixed(0)).join(', ')} | ${m.rps.toFixed(0)} | ${Number.isNaN(m.ns) ? '-' : m.ns.toFixed(0)} |`;
      }),
      '',
      `masked / unmasked: **${ratio('masked', 'unmasked').toFixed(3)}**   masked / direct: ${ratio('masked', 'direct').toFixed(3)}   unmasked / direct: ${ratio('unmasked', 'direct').toFixed(3)}`,
      `masked / unmasked ${ratio('masked', 'unmasked') >= 0.8 ? 'meets' : 'MISSES'} the target (>= 0.800)`,
    ];
    console.log(`\n${lines.join('\n')}`);

    const memDir = path.join(tmp, 'memory');
    mkdirSync(memDir);
    const memory = await memoryPhase(ROOT, memDir, bigRows, bigRows * bigRowBytes, slowSeconds);
    console.log(`\n==== summary ====\n\n${command}\n\n${lines.join('\n')}\n\n${memory.join('\n')}`);
    ok = true;
  } finally {
    await stopAll();
    try {
      await psql(DIRECT, `DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    } catch (err) {
      console.error(`could not drop schema ${SCHEMA}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (ok) rmSync(tmp, { recursive: true, force: true });
    else console.error(`logs kept in ${tmp}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});

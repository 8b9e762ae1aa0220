// Reads audit lines back: from a set of JSONL files (ordered by the seq of their
// first line, as a chain runs on across rotations), from the PostgreSQL audit
// table, and from the active file as it grows (tail -f across rotations).
// Shared by verify.ts and search.ts. Files are read in chunks and split on the
// newline byte, so a line is decoded whole and its bytes are exactly what was
// sealed (readline would also drop a stray CR, hiding an edit).

import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { ChainHead } from './chain.js';
import { unseal } from './chain.js';

/** One line of a trail and where it came from. */
export interface TrailLine {
  line: string;
  /** A file path, or `table[node]` for rows of the PostgreSQL table. */
  file: string;
  /** 1-based line number in the file, or row number in seq order for the table. */
  lineNo: number;
  /** The table's seq column for the row, to be checked against the seq its line carries. */
  seq?: number;
  /** True for a last line with no newline after it (a write cut short). */
  partial?: boolean;
}

const CHUNK = 1 << 20;

/** Yields the lines of `file` (from byte `start`, up to byte `end` exclusive), the last one flagged partial when no newline ends it. */
export async function* fileLines(file: string, start = 0, end = Infinity): AsyncGenerator<TrailLine> {
  if (end <= start) return;
  const stream = fs.createReadStream(file, { start, ...(end !== Infinity && { end: end - 1 }), highWaterMark: CHUNK });
  let pending: Buffer[] = [];
  let lineNo = 1;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let from = 0;
      for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
        const piece = chunk.subarray(from, nl);
        const bytes = pending.length === 0 ? piece : Buffer.concat([...pending, piece]);
        pending = [];
        yield { line: bytes.toString('utf8'), file, lineNo: lineNo++ };
        from = nl + 1;
      }
      if (from < chunk.length) pending.push(chunk.subarray(from));
    }
    if (pending.length > 0) yield { line: Buffer.concat(pending).toString('utf8'), file, lineNo, partial: true };
  } finally {
    stream.destroy();
  }
}

/** The active file `active` and its rotated siblings (`<stem>.<time>.jsonl`) that exist. */
export function trailFiles(active: string): string[] {
  const ext = path.extname(active);
  const stem = path.basename(active, ext);
  const dir = path.dirname(active);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const rotated = names.filter((n) => n.startsWith(`${stem}.`) && n.endsWith(ext) && n !== path.basename(active) && n.length > stem.length + ext.length + 1);
  const files = rotated.map((n) => path.join(dir, n));
  if (names.includes(path.basename(active))) files.push(active);
  return files;
}

/**
 * Expands directories (their *.jsonl files), drops duplicates, and orders the
 * files by the seq of their first sealed line: rotated names sort by time,
 * but a chain's order is its seq. Files without one (empty, unsealed) come
 * last, by name. Throws when a path does not exist.
 */
export async function orderedFiles(paths: string[]): Promise<string[]> {
  const files = new Set<string>();
  for (const p of paths) {
    const st = await fs.promises.stat(p);
    if (st.isDirectory()) {
      for (const n of (await fs.promises.readdir(p)).sort()) {
        if (n.endsWith('.jsonl')) files.add(path.join(p, n));
      }
    } else {
      files.add(p);
    }
  }
  const keyed = await Promise.all([...files].map(async (f) => ({ f, seq: unseal(await firstLine(f) ?? '')?.seq ?? Infinity })));
  keyed.sort((a, b) => a.seq - b.seq || (a.f < b.f ? -1 : a.f > b.f ? 1 : 0));
  return keyed.map((k) => k.f);
}

/** The first line of a file (reading only as much as it takes), or null when the file is empty. */
export async function firstLine(file: string): Promise<string | null> {
  for await (const l of fileLines(file)) return l.line;
  return null;
}

/** The last complete line of a file, or null when it has none. */
export function lastLine(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const size = fs.fstatSync(fd).size;
    for (let window = 8192; ; window *= 4) {
      const start = Math.max(0, size - window);
      const buf = Buffer.alloc(size - start);
      fs.readSync(fd, buf, 0, buf.length, start);
      const end = buf.lastIndexOf(0x0a);
      if (end < 0) {
        if (start > 0) continue;
        return null;
      }
      const from = buf.lastIndexOf(0x0a, end - 1);
      if (from < 0 && start > 0) continue;
      return buf.subarray(from + 1, end).toString('utf8');
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The head of the chain a file ends with (its last complete line), or null when
 * the file is missing, empty or its last line carries no chain field.
 */
export function fileHead(file: string): ChainHead | null {
  const line = lastLine(file);
  const last = line === null ? null : unseal(line);
  return last ? { seq: last.seq, mac: last.mac } : null;
}

/** The lines of several files in the given order, as one stream. */
export async function* filesLines(files: readonly string[]): AsyncGenerator<TrailLine> {
  for (const f of files) yield* fileLines(f);
}

/**
 * Where the last `count` complete lines of `file` begin, and how many complete
 * lines that is (fewer when the file has fewer), found by reading backwards:
 * a tail must not read a 256 MB file from its start. `count` 0 gives the end
 * of the last complete line (a line still being written comes after it).
 */
export function lastLinesOffset(file: string, count: number): { offset: number; lines: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(64 * 1024);
    // The newline ending the last complete line is the first one found; what follows it is still being written.
    let newlines = 0;
    for (let pos = size; pos > 0;) {
      const start = Math.max(0, pos - buf.length);
      fs.readSync(fd, buf, 0, pos - start, start);
      for (let i = pos - start - 1; i >= 0; i--) {
        if (buf[i] === 0x0a && ++newlines === count + 1) return { offset: start + i + 1, lines: count };
      }
      pos = start;
    }
    return { offset: 0, lines: newlines };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Follows the active file from `start`: yields each line once it is complete,
 * and null on every idle poll (so the caller can flush what waits). When the
 * file is renamed away (rotation) it reads the old file to its end, then any
 * files rotated since (the chain's seq tells which come next: the writer may
 * rotate twice between two polls), then the new active file from its start.
 * Ends when `signal` aborts.
 */
export async function* followFile(active: string, start: number, signal: AbortSignal, pollMs = 200): AsyncGenerator<TrailLine | null> {
  let fd = await openWhenPresent(active, signal);
  let pos = start;
  let lineNo = 0;
  let pending = Buffer.alloc(0);
  const seen: { seq: number | null } = { seq: null };
  const buf = Buffer.alloc(CHUNK);
  /** Reads what the open file has past `pos`; returns the complete lines. */
  const readMore = async (): Promise<TrailLine[] | null> => {
    const { bytesRead } = await fd!.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) return null;
    pos += bytesRead;
    let data = pending.length > 0 ? Buffer.concat([pending, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
    const out: TrailLine[] = [];
    for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a)) {
      out.push(noteSeq({ line: data.subarray(0, nl).toString('utf8'), file: active, lineNo: ++lineNo }, seen));
      data = data.subarray(nl + 1);
    }
    pending = Buffer.from(data);
    return out;
  };
  try {
    while (fd !== null && !signal.aborted) {
      const lines = await readMore();
      if (lines) {
        yield* lines;
        continue;
      }
      if (!(await replaced(active, fd))) {
        if ((await fd.stat()).size < pos) { pos = 0; pending = Buffer.alloc(0); lineNo = 0; }
        yield null;
        await sleep(pollMs, signal);
        continue;
      }
      // Renamed away: the writer may have written more before renaming it.
      for (let more = await readMore(); more; more = await readMore()) yield* more;
      if (pending.length > 0) yield noteSeq({ line: pending.toString('utf8'), file: active, lineNo: ++lineNo, partial: true }, seen);
      await fd.close();
      fd = null;
      fd = yield* reopen(active, signal, seen);
      pos = 0;
      lineNo = 0;
      pending = Buffer.alloc(0);
    }
  } finally {
    await fd?.close().catch(() => undefined);
  }
}

function noteSeq(l: TrailLine, seen: { seq: number | null }): TrailLine {
  const s = unseal(l.line);
  if (s) seen.seq = s.seq;
  return l;
}

/** After a rotation: yields the lines of files rotated since the one just read, then opens the new active file. */
async function* reopen(active: string, signal: AbortSignal, seen: { seq: number | null }): AsyncGenerator<TrailLine, fs.promises.FileHandle | null> {
  for (;;) {
    const after = seen.seq;
    if (after !== null) {
      for (const f of await orderedFiles(trailFiles(active).filter((x) => x !== active))) {
        const first = unseal((await firstLine(f)) ?? '')?.seq;
        if (first === undefined || first <= after) continue;
        for await (const l of fileLines(f)) yield noteSeq(l, seen);
      }
    }
    const fd = await openWhenPresent(active, signal);
    if (fd === null || seen.seq === null) return fd;
    const first = await firstSeq(fd);
    if (first === null || first <= seen.seq + 1) return fd;
    // Rotated again while those were read: pick up the files in between first.
    await fd.close();
  }
}

async function firstSeq(fd: fs.promises.FileHandle): Promise<number | null> {
  const buf = Buffer.alloc(64 * 1024);
  const { bytesRead } = await fd.read(buf, 0, buf.length, 0);
  const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
  return nl < 0 ? null : unseal(buf.subarray(0, nl).toString('utf8'))?.seq ?? null;
}

async function openWhenPresent(file: string, signal: AbortSignal): Promise<fs.promises.FileHandle | null> {
  while (!signal.aborted) {
    try {
      return await fs.promises.open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await sleep(100, signal);
    }
  }
  return null;
}

/** True when `file` now names another file than the open `fd` (renamed away, or deleted). */
async function replaced(file: string, fd: fs.promises.FileHandle): Promise<boolean> {
  const open = await fd.stat();
  try {
    const now = await fs.promises.stat(file);
    return now.ino !== open.ino || now.dev !== open.dev;
  } catch {
    return true;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

// --- PostgreSQL ---

/** A connected client and how to give it back (end it, or release it to a pool). */
export interface PgHandle {
  client: pg.ClientBase;
  done(): Promise<void>;
}

/** `schema.table` or `table` as a quoted SQL identifier; `suffix` is appended to the table part. */
export function quoteTable(name: string, suffix = ''): string {
  const parts = name.split('.');
  if (parts.length > 2 || parts.some((p) => p === '')) throw new Error(`"${name}" is not a table name (table or schema.table)`);
  parts[parts.length - 1] += suffix;
  return parts.map((p) => `"${p.replace(/"/g, '""')}"`).join('.');
}

/** What to read from the audit table. */
export interface TableQuery {
  node?: string;
  since?: Date;
  /** Rows at or after this time are not read. */
  before?: Date;
  session?: string;
  /** seq: one node's chain in chain order (verify). time: all nodes merged by time (search). */
  order: 'seq' | 'time';
}

/** Streams rows of the audit table through a server-side cursor, as trail lines. */
export async function* tableLines(client: pg.ClientBase, table: string, q: TableQuery): AsyncGenerator<TrailLine> {
  const { default: Cursor } = await import('pg-cursor');
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (sql: string, v: unknown): void => { values.push(v); where.push(sql.replace('?', `$${values.length}`)); };
  if (q.node !== undefined) add('node = ?', q.node);
  if (q.since) add('time >= ?', q.since.toISOString());
  if (q.before) add('time < ?', q.before.toISOString());
  if (q.session !== undefined) add('session = ?', q.session);
  const order = q.order === 'seq' ? 'seq' : 'time, node, seq';
  const sql = `SELECT node, seq, COALESCE(line, event::text) AS line FROM ${quoteTable(table)}`
    + `${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order}`;
  const cursor = client.query(new Cursor<{ node: string; seq: string; line: string }>(sql, values));
  let n = 0;
  try {
    for (;;) {
      const rows = await cursor.read(1000);
      if (rows.length === 0) return;
      for (const r of rows) yield { line: r.line, file: `${table}[${r.node}]`, lineNo: ++n, seq: Number(r.seq) };
    }
  } finally {
    await cursor.close().catch(() => undefined);
  }
}

/** The nodes that have rows in the audit table. */
export async function tableNodes(client: pg.ClientBase, table: string): Promise<string[]> {
  const r = await client.query<{ node: string }>(`SELECT DISTINCT node FROM ${quoteTable(table)} ORDER BY node`);
  return r.rows.map((x) => x.node);
}

/** A node's exported head from `<table>_heads`; null when the table or the node's row does not exist. */
export async function tableHead(client: pg.ClientBase, table: string, node: string): Promise<ChainHead | null> {
  const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [quoteTable(table, '_heads')]);
  if (exists.rows[0]?.t == null) return null;
  const r = await client.query<{ seq: string; mac: string }>(`SELECT seq, mac FROM ${quoteTable(table, '_heads')} WHERE node = $1`, [node]);
  const row = r.rows[0];
  return row ? { seq: Number(row.seq), mac: row.mac } : null;
}

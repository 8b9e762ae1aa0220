// `dbward audit search` and the admin API's search: reads events from the trail
// files or the PostgreSQL table, joins each statement with its outcome (and the
// end of its transaction), filters, and yields rows in statement order.
//
// One filter function (`matches`) serves every source. Rows stream: a statement
// row is held until its outcome arrives (outcomes follow their statement within
// a few lines), rows behind it wait so output stays in trail order, and a
// bounded window keeps a lost outcome from holding memory. The reader never
// trusts field presence: events written by older or newer dbward versions lack
// or add fields, and a filter on a field an event lacks simply does not match.
//
// Transactions: outcomes carry the session's transaction number (`txn`), and a
// `transaction_end` with the same `txn` gives the transaction's fate (an
// explicit block, or an implicit transaction that failed after some of its
// statements completed). A row waits until its session moves on: that end, a
// later outcome under another txn, or the session's end (without an end, the
// outcome's own status says it); a transaction left open for TXN_WINDOW lines
// stops holding rows back, and a live tail releases rows after a few seconds.

import { fileLines, lastLine, orderedFiles, tableLines, type PgHandle, type TrailLine } from './read.js';

/** An event as read back, chain field removed; every other field is optional in practice. */
export interface AuditRow {
  type: string;
  time: string;
  session: string;
  id?: string;
  [field: string]: unknown;
}

/** What to look for. Unset fields do not filter. */
export interface SearchFilter {
  user?: string;
  group?: string;
  /** Identity kind: human, service, agent. */
  kind?: string;
  target?: string;
  environment?: string;
  /** A table read or written: `users` matches `public.users`; `public.users` also matches an unqualified `users`. */
  table?: string;
  /** `column` or `table.column`. */
  column?: string;
  decision?: 'allow' | 'deny' | 'require_approval';
  rule?: string;
  /** A SQLSTATE, or its two-character class (`42`). */
  sqlstate?: string;
  session?: string;
  /** Event types to return; default `statement`. `all`: every type (outcomes merged into their statements). */
  types?: string[] | 'all';
  since?: Date;
  /** Exclusive. */
  until?: Date;
  /** Case-insensitive substring of the statement text (of the reason or message for other events). */
  text?: string;
  limit?: number;
}

/** Where events are read from. */
export type EventSource =
  | { kind: 'files'; paths: string[] }
  | { kind: 'postgres'; connect(): Promise<PgHandle>; table: string; node?: string };

/** A filter value that cannot be used. */
export class SearchFilterError extends Error {
  readonly code = 'AUDIT_FILTER_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'SearchFilterError';
  }
}

/** Names of the filter parameters, as the CLI flags and HTTP query use them. */
export const FILTER_PARAMS = ['user', 'group', 'kind', 'target', 'environment', 'table', 'column', 'decision', 'rule', 'sqlstate', 'session', 'type', 'since', 'until', 'text', 'limit'] as const;

const DECISIONS = ['allow', 'deny', 'require_approval'] as const;
const KINDS = ['human', 'service', 'agent'];

/** Builds a filter from named string parameters (CLI flags, HTTP query); throws SearchFilterError on a bad value. */
export function filterFrom(get: (name: (typeof FILTER_PARAMS)[number]) => string | undefined, now = new Date()): SearchFilter {
  const f: SearchFilter = {};
  for (const k of ['user', 'group', 'target', 'environment', 'table', 'column', 'rule', 'session', 'text'] as const) {
    const v = get(k);
    if (v !== undefined && v !== '') f[k] = v;
  }
  const kind = get('kind');
  if (kind !== undefined) {
    if (!KINDS.includes(kind)) throw new SearchFilterError(`kind must be human, service or agent (got "${kind}")`);
    f.kind = kind;
  }
  const decision = get('decision');
  if (decision !== undefined) {
    if (!(DECISIONS as readonly string[]).includes(decision)) throw new SearchFilterError(`decision must be allow, deny or require_approval (got "${decision}")`);
    f.decision = decision as SearchFilter['decision'];
  }
  const sqlstate = get('sqlstate');
  if (sqlstate !== undefined) {
    if (!/^[0-9A-Z]{2}([0-9A-Z]{3})?$/i.test(sqlstate)) throw new SearchFilterError(`sqlstate must be a 5-character SQLSTATE or a 2-character class (got "${sqlstate}")`);
    f.sqlstate = sqlstate.toUpperCase();
  }
  const type = get('type');
  if (type !== undefined) f.types = type === 'all' ? 'all' : type.split(',').map((t) => t.trim()).filter((t) => t !== '');
  const since = get('since');
  if (since !== undefined) f.since = parseTime(since, now);
  const until = get('until');
  if (until !== undefined) f.until = parseTime(until, now);
  const limit = get('limit');
  if (limit !== undefined) {
    if (!/^[1-9][0-9]*$/.test(limit)) throw new SearchFilterError(`limit must be a positive integer (got "${limit}")`);
    f.limit = Number(limit);
  }
  return f;
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** An ISO-8601 time, or a time relative to `now` (`90s`, `30m`, `1h`, `7d`, `2w` ago). */
export function parseTime(s: string, now = new Date()): Date {
  const rel = /^(\d+)([smhdw])$/.exec(s.trim());
  if (rel) return new Date(now.getTime() - Number(rel[1]) * UNITS[rel[2]!]!);
  const t = /^\d{4}-\d{2}-\d{2}/.test(s) ? Date.parse(s) : NaN;
  if (Number.isNaN(t)) throw new SearchFilterError(`"${s}" is not a time: give ISO-8601 (2026-11-23T10:00:00Z) or a relative time (30m, 1h, 7d)`);
  return new Date(t);
}

/**
 * True when `row` passes `f`. `partial`: the row still waits for its outcome,
 * so criteria that depend on it pass for now (checked again when it is complete).
 * The event type is not checked here (search decides which types make rows).
 */
export function matches(row: AuditRow, f: SearchFilter, partial = false): boolean {
  if (f.session !== undefined && row.session !== f.session) return false;
  if (f.since || f.until) {
    const t = Date.parse(row.time);
    if (f.since && !(t >= f.since.getTime())) return false;
    if (f.until && !(t < f.until.getTime())) return false;
  }
  const identity = obj(row.identity);
  if (f.user !== undefined) {
    const user = str(identity?.user) ?? str(row.user);
    if (user === undefined || user.toLowerCase() !== f.user.toLowerCase()) return false;
  }
  if (f.group !== undefined && !(Array.isArray(identity?.groups) && identity.groups.includes(f.group))) return false;
  if (f.kind !== undefined && identity?.kind !== f.kind) return false;
  const target = obj(row.target);
  if (f.target !== undefined && (str(target?.name) ?? str(row.target)) !== f.target) return false;
  if (f.environment !== undefined && target?.environment !== f.environment) return false;
  const decision = obj(row.decision);
  if (f.decision !== undefined && decision?.action !== f.decision) return false;
  if (f.rule !== undefined && !(Array.isArray(decision?.rules) && decision.rules.includes(f.rule))) return false;
  if (f.table !== undefined || f.column !== undefined) {
    const facts = Array.isArray(row.facts) ? row.facts.map(obj).filter((x) => x !== undefined) : [];
    if (f.table !== undefined) {
      const want = identParts(f.table);
      if (!facts.some((x) => [...list(x.reads), ...list(x.writes)].some((t) => tableMatches(t, want)))) return false;
    }
    if (f.column !== undefined) {
      const want = identParts(f.column);
      if (!facts.some((x) => (Array.isArray(x.columns) ? x.columns : []).some((c) => columnMatches(c, want)))) return false;
    }
  }
  if (f.text !== undefined) {
    const statement = obj(row.statement);
    const hay = row.type === 'statement' ? str(statement?.text) : [row.reason, row.message].filter((x) => typeof x === 'string').join(' ');
    if (hay === undefined || !hay.toLowerCase().includes(f.text.toLowerCase())) return false;
  }
  if (f.sqlstate !== undefined && !partial) {
    const state = str(obj(row.outcome)?.sqlstate) ?? str(row.sqlstate);
    if (state === undefined || (f.sqlstate.length === 2 ? !state.startsWith(f.sqlstate) : state !== f.sqlstate)) return false;
  }
  return true;
}

/** How long after `until` outcomes of statements inside the range are still looked for. */
const OUTCOME_LAG_MS = 24 * 3_600_000;
/** Lines are written in time order within a node; this much disorder is tolerated before a search stops early. */
const CLOCK_SLACK_MS = 60_000;

/** Counts of what a search read. */
export interface SearchStats {
  /** Lines that were not JSON events (torn, malformed). */
  skipped: number;
}

/** Streams the rows matching `filter`, in trail order, at most `filter.limit`. */
export async function* search(source: EventSource, filter: SearchFilter, stats: SearchStats = { skipped: 0 }): AsyncGenerator<AuditRow> {
  const joiner = new Joiner(filter);
  const limit = filter.limit ?? Infinity;
  const stopAt = filter.until ? filter.until.getTime() + CLOCK_SLACK_MS : Infinity;
  // Every event of a session carries its id as JSON-escaped text: lines without it need not be parsed.
  const needle = filter.session !== undefined ? JSON.stringify(filter.session).slice(1, -1) : null;
  let emitted = 0;
  for await (const l of sourceLines(source, filter)) {
    if (needle !== null && !l.line.includes(needle)) continue;
    const e = parseEvent(l.line);
    if (!e) {
      if (l.line !== '') stats.skipped++;
      continue;
    }
    if (joiner.pending === 0 && Date.parse(e.time) >= stopAt) break;
    for (const row of joiner.push(e)) {
      yield row;
      if (++emitted >= limit) return;
    }
  }
  for (const row of joiner.finish()) {
    yield row;
    if (++emitted >= limit) return;
  }
}

/** Every event of one session, in order; statements merged with their outcomes. */
export function sessionTimeline(source: EventSource, session: string, limit?: number): AsyncGenerator<AuditRow> {
  return search(source, { session, types: 'all', ...(limit !== undefined && { limit }) });
}

async function* sourceLines(source: EventSource, f: SearchFilter): AsyncGenerator<TrailLine> {
  if (source.kind === 'files') {
    for (const file of await orderedFiles(source.paths)) {
      // A file that ended before `since` holds nothing in range (its outcomes belong to statements before it).
      if (f.since && Date.parse(lineTime(lastLine(file))) < f.since.getTime()) continue;
      yield* fileLines(file);
    }
    return;
  }
  const handle = await source.connect();
  try {
    yield* tableLines(handle.client, source.table, {
      order: 'time',
      ...(source.node !== undefined && { node: source.node }),
      ...(f.since && { since: f.since }),
      ...(f.until && { before: new Date(f.until.getTime() + OUTCOME_LAG_MS) }),
      ...(f.session !== undefined && { session: f.session }),
    });
  } finally {
    await handle.done();
  }
}

function lineTime(line: string | null): string {
  if (line === null) return '';
  try {
    return str((JSON.parse(line) as Record<string, unknown>).time) ?? '';
  } catch {
    return '';
  }
}

/** A line as an event (chain field removed), or null when it is not one. */
export function parseEvent(line: string): AuditRow | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  const o = obj(v);
  if (!o || typeof o.type !== 'string' || typeof o.time !== 'string') return null;
  const { chain: _chain, ...rest } = o;
  return { ...rest, type: o.type, time: o.time, session: str(o.session) ?? '-' };
}

interface Slot {
  row: AuditRow;
  done: boolean;
  /** The transaction block (txn) the row waits for the end of. */
  txn: number | null;
  /** Wall-clock ms when queued (tail -f expiry), and the count of events pushed before it (TXN_WINDOW). */
  born: number;
  bornAt: number;
}

/** Rows still waiting beyond this many are released without their outcome: a crash lost those outcomes. */
const MAX_PENDING = 100_000;
/** Events after which a row stops waiting for the end of its transaction block (a block left open for hours). */
const TXN_WINDOW = 50_000;

/** Joins statements with their outcomes and transaction ends; rows come out in statement order. */
export class Joiner {
  private queue: Slot[] = [];
  private head = 0;
  private pushed = 0;
  private readonly byStatement = new Map<string, Slot>();
  /** Per session: rows waiting for the end of the open block, and its txn. */
  private readonly blocks = new Map<string, { txn: number; rows: Slot[] }>();
  private waiting = 0;
  private readonly types: Set<string> | 'all';

  constructor(private readonly filter: SearchFilter) {
    this.types = filter.types === 'all' ? 'all' : new Set(filter.types ?? ['statement']);
  }

  /** Rows that wait for an outcome or a transaction end. */
  get pending(): number {
    return this.waiting;
  }

  /** Takes the next event; returns the rows it completed. */
  push(e: AuditRow, now = Date.now()): AuditRow[] {
    this.pushed++;
    switch (e.type) {
      case 'statement':
        if (this.wants('statement') && matches(e, this.filter, true)) {
          const slot = this.enqueue(e, false, now);
          if (typeof e.id === 'string') this.byStatement.set(e.id, slot);
          else this.settle(slot);
        }
        break;
      case 'statement_outcome':
        this.outcome(e);
        if (this.types !== 'all') this.own(e, now);
        break;
      case 'transaction_end':
        this.transactionEnd(e);
        this.own(e, now);
        break;
      case 'session_end':
        for (const [id, slot] of this.byStatement) {
          if (slot.row.session === e.session) { this.byStatement.delete(id); this.settle(slot); }
        }
        this.closeBlock(e.session);
        this.own(e, now);
        break;
      default:
        this.own(e, now);
    }
    while (this.queue.length - this.head > MAX_PENDING) this.settle(this.queue[this.head]!);
    const out: AuditRow[] = [];
    for (;;) {
      out.push(...this.drain());
      const s = this.queue[this.head];
      if (!s || s.done || s.txn === null || this.pushed - s.bornAt <= TXN_WINDOW) return out;
      this.closeBlock(s.row.session);
    }
  }

  /** Releases rows that have waited longer than `ms` (a live tail must not stall on a lost outcome). */
  expire(ms: number, now = Date.now()): AuditRow[] {
    for (let i = this.head; i < this.queue.length; i++) {
      const slot = this.queue[i]!;
      if (now - slot.born < ms) break;
      this.settle(slot);
    }
    return this.drain();
  }

  /** Releases every waiting row (the input ended). */
  finish(): AuditRow[] {
    for (let i = this.head; i < this.queue.length; i++) this.settle(this.queue[i]!);
    this.byStatement.clear();
    this.blocks.clear();
    return this.drain();
  }

  private wants(type: string): boolean {
    return this.types === 'all' ? type !== 'statement_outcome' : this.types.has(type);
  }

  private own(e: AuditRow, now: number): void {
    if (this.wants(e.type) && matches(e, this.filter)) this.enqueue(e, true, now);
  }

  private enqueue(row: AuditRow, done: boolean, now: number): Slot {
    const slot: Slot = { row: { ...row }, done, txn: null, born: now, bornAt: this.pushed };
    if (!done) this.waiting++;
    this.queue.push(slot);
    return slot;
  }

  private settle(slot: Slot): void {
    if (slot.done) return;
    slot.done = true;
    this.waiting--;
  }

  private outcome(e: AuditRow): void {
    const outcome = obj(e.outcome);
    const txn = typeof e.txn === 'number' ? e.txn : null;
    // An outcome under another txn: the open block ended without its end being recorded.
    if (this.blocks.get(e.session)?.txn !== txn) this.closeBlock(e.session);
    // Any transaction may still get a transaction_end (a block, or an implicit one whose
    // commit or later statement failed): its rows wait until the session moves on.
    if (txn !== null && !this.blocks.has(e.session)) this.blocks.set(e.session, { txn, rows: [] });
    const id = str(e.statement_id);
    const slot = id !== undefined ? this.byStatement.get(id) : undefined;
    if (!slot) return;
    this.byStatement.delete(id!);
    slot.row.outcome = { ...outcome, ...(txn !== null && { txn }), time: e.time };
    const block = this.blocks.get(e.session);
    if (!block || block.txn !== txn) return this.settle(slot);
    slot.txn = txn;
    slot.bornAt = this.pushed;
    block.rows.push(slot);
  }

  private transactionEnd(e: AuditRow): void {
    const block = this.blocks.get(e.session);
    if (!block) return;
    if (block.txn === e.txn) {
      const { v: _v, id: _id, type: _type, session: _session, ...end } = e;
      for (const s of block.rows) s.row.transaction = end;
    }
    this.closeBlock(e.session);
  }

  private closeBlock(session: string): void {
    const block = this.blocks.get(session);
    if (!block) return;
    for (const s of block.rows) this.settle(s);
    this.blocks.delete(session);
  }

  private drain(): AuditRow[] {
    const out: AuditRow[] = [];
    while (this.head < this.queue.length && this.queue[this.head]!.done) {
      const { row } = this.queue[this.head++]!;
      if (matches(row, this.filter)) out.push(row);
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}

/**
 * A name's parts as PostgreSQL reads them: unquoted parts lower-cased, quoted
 * ones kept (`public."Users"` → [public, Users]). The facts print names the same
 * way, so parsing both sides compares like with like.
 */
export function identParts(name: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (quoted) {
      if (c === '"' && name[i + 1] === '"') { cur += '"'; i++; } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      wasQuoted = true;
    } else if (c === '.') {
      parts.push(cur);
      cur = '';
      wasQuoted = false;
    } else {
      cur += c.toLowerCase();
    }
  }
  parts.push(wasQuoted ? cur : cur.trim());
  return parts;
}

function tableMatches(recorded: unknown, want: string[]): boolean {
  const name = typeof recorded === 'string' ? recorded : str(obj(recorded)?.name);
  if (name === undefined) return false;
  return partsMatch(identParts(name), want);
}

/** `want` is [table] (any schema) or [schema, table|*]; a recorded unqualified name may be in any schema. */
function partsMatch(rec: string[], want: string[]): boolean {
  const w = want.slice(-2);
  const r = rec.slice(-2);
  if (w.length === 1) return r[r.length - 1] === w[0];
  if (w[1] === '*') return r.length === 2 && r[0] === w[0];
  if (r.length === 1) return r[0] === w[1];
  return r[0] === w[0] && (r[1] === w[1] || r[1] === '*');
}

/** `want` is [column] or [...table, column]; a column whose table the analyzer could not tell matches any table. */
function columnMatches(recorded: unknown, want: string[]): boolean {
  let table: string[];
  let column: string;
  if (typeof recorded === 'string') {
    const parts = identParts(recorded);
    column = parts.pop()!;
    table = parts;
  } else {
    const o = obj(recorded);
    const c = str(o?.column);
    if (c === undefined) return false;
    column = c;
    const t = str(o?.table);
    table = t === undefined ? [] : identParts(t);
  }
  if (column !== want[want.length - 1]) return false;
  const wantTable = want.slice(0, -1);
  if (wantTable.length === 0 || table.length === 0 || (table.length === 1 && table[0] === '?')) return true;
  return partsMatch(table, wantTable);
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

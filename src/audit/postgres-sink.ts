// The PostgreSQL audit table, shared by several dbward replicas: each writes
// its own chain under its own `node` name, and keeps that chain's head in
// `<table>_heads` (updated in the statement that inserts the lines, so the two
// never disagree). Two roles, one batch writer:
//
// - PostgresAuditSink, the primary: seals lines itself and group-commits them.
//   Lines committed or appended during one turn of the event loop go in one
//   INSERT (one statement: an implicit transaction) and a committed line's
//   waiter is released when it has committed. A failed batch is rewound out of
//   the chain: its committed lines are refused (the caller refuses their
//   statements), its appended lines are retried with new seqs.
// - PostgresSecondarySink: stores lines another sink has sealed, from a bounded
//   queue in the background; a retry is idempotent (ON CONFLICT DO NOTHING) and
//   the heads row is the chain head exported outside the proxy.
//
// A connection lost in the middle of a write leaves its outcome unknown; the
// next connection reads the node's head back before writing again, so a batch
// that did land is neither written twice nor forked.

import fs from 'node:fs';
import pg from 'pg';
import type { Logger } from 'pino';
import type { PostgresAuditConfig } from '../config/types.js';
import { resolveSecret } from '../config/secrets.js';
import { BatchQueue } from './batch-queue.js';
import { Chain, unseal, type ChainHead } from './chain.js';
import type { AuditSink, SecondarySink, SinkObserver } from './events.js';
import { FlushTimer } from './flush-timer.js';
import type { PgHandle } from './read.js';

/** Tuning shared by both roles; the defaults suit production. */
export interface PostgresSinkOptions {
  /** Server-side limit on one write (a locked table must not hold statements forever). */
  statementTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Longest wait between retries while the database is unreachable. */
  retryMaxMs?: number;
}

/** Options of the primary sink. */
export interface PostgresPrimaryOptions extends PostgresSinkOptions {
  /** Receives the sealed lines after each committed batch (feeds secondary sinks). */
  onWritten?: (lines: readonly string[]) => void;
}

/** The quoted names of a table, its heads table and its time index. */
interface Tables {
  table: string;
  heads: string;
  index: string;
  /** Without its schema: CREATE INDEX names none, the index goes in the table's. */
  indexName: string;
}

const TABLE_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

function tables(name: string): Tables {
  if (!TABLE_NAME.test(name)) throw new Error(`audit.postgres.table ${JSON.stringify(name)} is not a plain (optionally schema-qualified) lower-case name`);
  const parts = name.split('.');
  const base = parts.pop()!;
  const schema = parts.length > 0 ? `${quote(parts[0]!)}.` : '';
  return { table: `${schema}${quote(base)}`, heads: `${schema}${quote(`${base}_heads`)}`, index: `${schema}${quote(`${base}_time_idx`)}`, indexName: quote(`${base}_time_idx`) };
}

function quote(ident: string): string {
  return `"${ident.replace(/"/g, '""')}"`;
}

/** Anything that runs a query: a client, a pool client or a pool. */
type Queryable = Pick<pg.ClientBase, 'query'>;

/** Creates the audit table, its index and the heads table when missing. */
async function ensureSchema(db: Queryable, t: Tables): Promise<void> {
  // Checked first: CREATE ... IF NOT EXISTS still wants CREATE privilege, which a
  // least-privilege audit role (INSERT, SELECT, UPDATE) lacks once the tables exist.
  const { rows } = await db.query<{ ok: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL AS ok', [t.table, t.heads, t.index]);
  if (rows[0]?.ok) return;
  await db.query('BEGIN');
  try {
    // Replicas starting together would race on the catalog; one creates, the others wait.
    await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [t.table]);
    await db.query(`CREATE TABLE IF NOT EXISTS ${t.table} (node text NOT NULL, seq bigint NOT NULL, time timestamptz NOT NULL, type text NOT NULL, session text NOT NULL, event jsonb NOT NULL, line text NOT NULL, PRIMARY KEY (node, seq))`);
    await db.query(`CREATE INDEX IF NOT EXISTS ${t.indexName} ON ${t.table} (time)`);
    await db.query(`CREATE TABLE IF NOT EXISTS ${t.heads} (node text PRIMARY KEY, seq bigint NOT NULL, mac text NOT NULL, time timestamptz NOT NULL)`);
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The head a node's chain ends with in the table: its heads row, else its newest line; null when it has none. */
async function headOf(db: Queryable, t: Tables, node: string): Promise<ChainHead | null> {
  const head = await db.query<{ seq: string; mac: string }>(`SELECT seq, mac FROM ${t.heads} WHERE node = $1`, [node]);
  const row = head.rows[0];
  if (row) return { seq: Number(row.seq), mac: row.mac };
  const last = await db.query<{ line: string }>(`SELECT line FROM ${t.table} WHERE node = $1 ORDER BY seq DESC LIMIT 1`, [node]);
  const sealed = last.rows[0] ? unseal(last.rows[0].line) : null;
  return sealed ? { seq: sealed.seq, mac: sealed.mac } : null;
}

/**
 * The chain head stored for `node` in `table` (its heads row, else its newest
 * line), or null when the node has none. Given a config it opens and closes its
 * own connection.
 */
export async function readPostgresHead(db: Queryable | PostgresAuditConfig, table: string, node: string): Promise<ChainHead | null> {
  const t = tables(table);
  if ('query' in db) return headOf(db, t, node);
  const client = new pg.Client(clientConfig(db, {}));
  await client.connect();
  try {
    return await headOf(client, t, node);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Sealed lines ready for the table, with the head they end on. */
interface Rows {
  lines: string[];
  seqs: number[];
  /** The text to store as `event` where the line itself is not valid jsonb input; null where it is. */
  events: (string | null)[];
  head: ChainHead;
}

/**
 * The one statement that stores a batch: the lines and the heads row together.
 * The event is parsed once (MATERIALIZED); the heads row only moves forward, so
 * a late retry, or a chain restarted from seq 1, never hides the newest head.
 */
function insertSql(t: Tables, onConflict: 'fail' | 'ignore'): string {
  return `WITH r AS MATERIALIZED (
      SELECT u.line, u.seq, coalesce(u.ev, u.line)::jsonb AS event FROM unnest($2::text[], $3::bigint[], $4::text[]) AS u(line, seq, ev)
    ), ins AS (
      INSERT INTO ${t.table} (node, seq, time, type, session, event, line)
      SELECT $1, r.seq, coalesce((r.event->>'time')::timestamptz, now()), coalesce(r.event->>'type', ''), coalesce(r.event->>'session', ''), r.event, r.line FROM r
      ${onConflict === 'ignore' ? 'ON CONFLICT (node, seq) DO NOTHING' : ''}
      RETURNING seq
    ), h AS (
      INSERT INTO ${t.heads} AS h (node, seq, mac, time) VALUES ($1, $5, $6, now())
      ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, mac = excluded.mac, time = excluded.time WHERE h.seq < excluded.seq
    )
    SELECT count(*)::int AS inserted FROM ins`;
}

/** Stores `rows` for `node`; returns how many lines were new. */
async function writeRows(db: Queryable, sql: string, node: string, rows: Rows): Promise<number> {
  const res = await db.query<{ inserted: number }>(sql, [node, rows.lines, rows.seqs, rows.events, rows.head.seq, rows.head.mac]);
  return res.rows[0]?.inserted ?? 0;
}

/**
 * What to store as `event` for a line PostgreSQL's jsonb would refuse: it has no
 * \u0000 and no unpaired surrogate, both of which JSON.stringify emits (from a
 * token claim, say). Those escapes become \ufffd there; `line` keeps the exact
 * bytes. Null when the line is fine as it is (nearly always).
 */
export function jsonbText(line: string): string | null {
  if (!line.includes('\\u')) return null;
  let out = '';
  let from = 0;
  for (let i = 0; i < line.length; i++) {
    if (line.charCodeAt(i) !== 0x5c) continue;
    if (line[i + 1] !== 'u') { i++; continue; }
    const code = parseInt(line.slice(i + 2, i + 6), 16);
    let bad = code === 0 || (code >= 0xdc00 && code <= 0xdfff);
    if (code >= 0xd800 && code <= 0xdbff) {
      const low = line.startsWith('\\u', i + 6) ? parseInt(line.slice(i + 8, i + 12), 16) : NaN;
      if (low >= 0xdc00 && low <= 0xdfff) { i += 11; continue; }
      bad = true;
    }
    if (bad) {
      out += `${line.slice(from, i)}\\ufffd`;
      from = i + 6;
    }
    i += 5;
  }
  return from === 0 ? null : out + line.slice(from);
}

/** How to reach the audit database (resolves the password; throws SecretError when it cannot). */
export function auditDbOptions(cfg: PostgresAuditConfig): pg.ClientConfig {
  return {
    host: cfg.host, port: cfg.port, database: cfg.database, user: cfg.user,
    password: resolveSecret(cfg.password),
    ssl: cfg.tls.mode === 'disable' ? false
      : cfg.tls.mode === 'require' ? { rejectUnauthorized: false }
      : { rejectUnauthorized: true, ...(cfg.tls.ca !== undefined && { ca: fs.readFileSync(cfg.tls.ca) }) },
  };
}

/** A client connected with `options`, for reading the table; an 'error' after connecting goes to `onError`, not the process. */
export async function connectAuditDb(options: pg.ClientConfig, onError: (err: Error) => void): Promise<PgHandle> {
  const client = new pg.Client(options);
  client.on('error', onError);
  await client.connect();
  return { client, done: () => client.end() };
}

function clientConfig(cfg: PostgresAuditConfig, o: PostgresSinkOptions): pg.ClientConfig {
  const statementTimeout = o.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS;
  return {
    ...auditDbOptions(cfg),
    application_name: 'dbward-audit',
    connectionTimeoutMillis: o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    statement_timeout: statementTimeout,
    // A server that stops answering (network gone) is given up on client-side too.
    query_timeout: statementTimeout + 2000,
    keepAlive: true,
  };
}

/** One connection to the audit database, opened on demand and dropped after any failure. */
class Connection {
  private client: pg.Client | null = null;

  constructor(private readonly settings: pg.ClientConfig, private readonly log: Logger) {}

  /** The open client; `fresh` when it was opened just now (the caller re-reads what it relies on). */
  async get(): Promise<{ client: pg.Client; fresh: boolean }> {
    if (this.client) return { client: this.client, fresh: false };
    const c = new pg.Client(this.settings);
    // Without a listener an idle connection's death would crash the process.
    c.on('error', (err) => {
      this.log.warn({ err }, 'audit database connection failed');
      if (this.client === c) this.client = null;
    });
    c.on('end', () => {
      if (this.client === c) this.client = null;
    });
    try {
      await c.connect();
    } catch (err) {
      c.end().catch(() => undefined);
      throw err;
    }
    this.client = c;
    return { client: c, fresh: true };
  }

  /** Drops the connection: after a failure its state (a query in flight, a transaction) is unknown. */
  discard(): void {
    const c = this.client;
    this.client = null;
    c?.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }
}

function where(cfg: PostgresAuditConfig): string {
  return `${cfg.user}@${cfg.host}:${cfg.port}/${cfg.database}`;
}

interface Entry {
  line: string;
  waiter: { resolve(): void; reject(err: Error): void } | null;
}

/** A batch whose outcome is unknown (the connection failed during its write). */
interface Doubt {
  /** The head had it landed. */
  after: ChainHead;
  /** Entries at the front of the queue (or of the batch being retried) that are stored if it landed. */
  count: number;
  /** Its lines as sealed, for the secondaries if it landed. */
  sealed: string[];
}

/** The connection was found dead (not a refusal by the server, nor a timeout): worth one retry on a new one. */
function connectionLost(err: unknown): boolean {
  if (err instanceof pg.DatabaseError) return /^(08|57P0[123])/.test(err.code ?? '');
  return !(err instanceof Error && /timeout/i.test(err.message));
}

/** The primary sink on a shared PostgreSQL table; open it with PostgresAuditSink.open(). */
export class PostgresAuditSink implements AuditSink {
  private readonly conn: Connection;
  private readonly t: Tables;
  private readonly sql: string;
  private readonly chain: Chain;
  private queue: Entry[] = [];
  private written: ChainHead;
  private doubt: Doubt | null = null;
  private ok = false;
  private closed = false;
  private writing = false;
  private readonly flushTimer = new FlushTimer(() => void this.flush());
  private retryMs = RETRY_MIN_MS;
  private readonly idle: (() => void)[] = [];

  private constructor(
    private readonly config: PostgresAuditConfig,
    private readonly node: string,
    key: Buffer,
    private readonly observer: SinkObserver,
    private readonly log: Logger,
    private readonly options: PostgresPrimaryOptions,
  ) {
    this.t = tables(config.table);
    this.sql = insertSql(this.t, 'fail');
    this.conn = new Connection(clientConfig(config, options), log);
    this.chain = new Chain(key);
    this.written = this.chain.head;
  }

  /**
   * Connects, creates the tables when missing and continues `node`'s chain from
   * the stored head. Throws when the database cannot be reached or written:
   * dbward must not start with a primary it cannot write.
   */
  static async open(
    config: PostgresAuditConfig, node: string, key: Buffer, observer: SinkObserver, log: Logger, options: PostgresPrimaryOptions = {},
  ): Promise<PostgresAuditSink> {
    const sink = new PostgresAuditSink(config, node, key, observer, log, options);
    try {
      const { client } = await sink.conn.get();
      await ensureSchema(client, sink.t);
      await sink.reconcile(client);
    } catch (err) {
      await sink.conn.close();
      throw new Error(`audit.postgres: cannot open the audit table ${config.table} at ${where(config)}: ${(err as Error).message}`, { cause: err });
    }
    sink.ok = true;
    return sink;
  }

  get healthy(): boolean {
    return this.ok;
  }

  /** The chain head of the last committed line (what a head export may publish). */
  get head(): ChainHead {
    return this.written;
  }

  commit(line: string): Promise<void> {
    this.checkOpen();
    return new Promise((resolve, reject) => {
      this.queue.push({ line, waiter: { resolve, reject } });
      // Not held back by a retry backoff: a statement waits on it, and trying is how recovery shows.
      this.schedule(0);
    });
  }

  append(line: string): void {
    this.checkOpen();
    this.queue.push({ line, waiter: null });
    this.schedule(this.ok ? APPEND_DELAY_MS : this.retryMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flushTimer.cancelTimer();
    if (this.writing) await new Promise<void>((r) => this.idle.push(r));
    // One last try for what is queued (a retry backoff may have been pending).
    if (this.queue.length > 0) await this.flush(true);
    if (this.queue.length > 0) {
      const err = new Error('audit sink closed before these lines could be written');
      this.log.error({ lines: this.queue.length }, 'audit lines lost at close: the audit database cannot be written');
      for (const e of this.queue.splice(0)) e.waiter?.reject(err);
    }
    await this.conn.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('audit sink is closed');
  }

  private schedule(delayMs: number): void {
    if (this.writing || this.closed) return;
    this.flushTimer.request(delayMs);
  }

  /**
   * Writes the queued lines (up to MAX_BATCH) in one statement. Never rejects.
   * A connection found dead on use (the database restarted since the last
   * write) gets one immediate retry on a new one, so no statement is refused for it.
   */
  private async flush(final = false): Promise<void> {
    this.flushTimer.started();
    // A flush scheduled before close() is left to close()'s own.
    if ((this.closed && !final) || this.queue.length === 0) return this.settleIdle();
    this.writing = true;
    let entries = this.queue.splice(0, MAX_BATCH);
    this.observer.queueDepth?.(entries.length + this.queue.length);
    const started = performance.now();
    /** Entries found stored by a batch whose outcome was in doubt. */
    const landed: Entry[] = [];
    let sealed: string[] = [];
    let doubt: Doubt | null = null;
    for (let attempt = 1; ; attempt++) {
      let before = this.chain.head;
      let sent: ChainHead | null = null;
      let reused = false;
      try {
        const { client, fresh } = await this.conn.get();
        reused = !fresh;
        if (fresh || this.doubt) {
          const skip = await this.reconcile(client);
          landed.push(...entries.slice(0, skip));
          entries = entries.slice(skip);
          before = this.chain.head;
        }
        sealed = entries.map((e) => this.chain.seal(e.line));
        const rows: Rows = { lines: sealed, seqs: [], events: [], head: this.chain.head };
        for (let i = 0; i < sealed.length; i++) {
          rows.seqs.push(before.seq + 1 + i);
          rows.events.push(jsonbText(sealed[i]!));
        }
        if (sealed.length > 0) {
          sent = rows.head;
          await writeRows(client, this.sql, this.node, rows);
        }
        break;
      } catch (err) {
        this.chain.rewind(before);
        this.conn.discard();
        if (sent) this.doubt = doubt = { after: sent, count: entries.length, sealed };
        if (attempt === 1 && reused && connectionLost(err)) continue;
        // Of a batch in doubt only its appended lines stay queued (first): they are the ones to skip if it landed.
        if (doubt && this.doubt === doubt) doubt.count = entries.filter((e) => e.waiter === null).length;
        this.failed(err as Error, entries, landed);
        return this.afterFlush();
      }
    }
    this.written = this.chain.head;
    if (!this.ok) this.log.info({ node: this.node }, 'audit database writable again');
    this.ok = true;
    this.retryMs = RETRY_MIN_MS;
    if (sealed.length > 0) this.observer.written?.(sealed.length, (performance.now() - started) / 1000);
    for (const e of landed) e.waiter?.resolve();
    for (const e of entries) e.waiter?.resolve();
    if (sealed.length > 0) this.options.onWritten?.(sealed);
    this.afterFlush();
  }

  /**
   * After a failed batch: committed lines are refused, appended ones return to
   * the front of the queue (the chain was rewound before them). Entries found
   * stored meanwhile (`landed`) are released as written.
   */
  private failed(err: Error, entries: Entry[], landed: Entry[]): void {
    for (const e of landed) e.waiter?.resolve();
    const appended = entries.filter((e) => e.waiter === null);
    this.queue = appended.concat(this.queue);
    if (this.ok) this.log.error({ err, node: this.node, table: this.config.table }, 'cannot write to the audit database: statements are refused until it recovers');
    this.ok = false;
    this.observer.failed?.(err);
    const refusal = new Error(`audit event not recorded: ${err.message}`, { cause: err });
    for (const e of entries) e.waiter?.reject(refusal);
  }

  private afterFlush(): void {
    this.writing = false;
    if (this.closed) return this.settleIdle();
    if (this.queue.some((e) => e.waiter !== null)) this.schedule(0);
    else if (this.queue.length > 0) {
      this.schedule(this.ok ? 0 : this.retryMs);
      if (!this.ok) this.retryMs = Math.min(this.retryMs * 2, this.options.retryMaxMs ?? RETRY_MAX_MS);
    } else this.settleIdle();
  }

  /**
   * Brings the chain in line with the stored head before writing on a new
   * connection or after an uncertain failure. Returns how many entries at the
   * front of the batch turned out to be stored already.
   */
  private async reconcile(client: Queryable): Promise<number> {
    const stored = await headOf(client, this.t, this.node);
    const doubt = this.doubt;
    const ours = this.chain.head;
    this.doubt = null;
    if (doubt && stored && stored.seq === doubt.after.seq && stored.mac === doubt.after.mac) {
      this.log.warn({ node: this.node, seq: stored.seq }, 'an audit write reported as failed had been committed');
      this.chain.rewind(stored);
      this.written = stored;
      this.options.onWritten?.(doubt.sealed);
      return doubt.count;
    }
    if (stored === null || (stored.seq === ours.seq && stored.mac === ours.mac)) return 0;
    if (stored.seq > ours.seq) {
      // Normal at open; later it means another writer uses this node name, or the table was edited.
      if (ours.seq > 0) this.log.error({ node: this.node, stored, ours }, 'the audit table holds a newer head for this node than dbward wrote; continuing from it');
      this.chain.rewind(stored);
      this.written = stored;
    } else {
      this.log.error({ node: this.node, stored, ours }, 'the audit table lost lines of this node\'s chain; continuing from dbward\'s own head');
    }
    return 0;
  }

  private settleIdle(): void {
    if (this.writing || this.flushTimer.due) return;
    for (const r of this.idle.splice(0)) r();
  }
}

/**
 * PostgreSQL as a secondary sink: stores lines another sink sealed, in the
 * background. Create it with PostgresSecondarySink.create().
 */
export class PostgresSecondarySink implements SecondarySink {
  readonly name = 'postgres';
  private readonly conn: Connection;
  private readonly t: Tables;
  private readonly sql: string;
  private readonly queue: BatchQueue;
  private schemaReady = false;
  private unsealedWarned = false;
  private closed = false;

  private constructor(
    private readonly config: PostgresAuditConfig,
    private readonly node: string,
    private readonly observer: SinkObserver,
    private readonly log: Logger,
    options: PostgresSinkOptions,
  ) {
    this.t = tables(config.table);
    this.sql = insertSql(this.t, 'ignore');
    this.conn = new Connection(clientConfig(config, options), log);
    this.queue = new BatchQueue({
      name: this.name, maxQueue: config.maxQueue, maxBatch: MAX_BATCH, observer, log,
      send: (lines) => this.send(lines),
      ...(options.retryMaxMs !== undefined && { retryMaxMs: options.retryMaxMs }),
    });
  }

  /**
   * Starts the sink. An unreachable database does not fail this: it is logged,
   * lines queue up (bounded) and delivery is retried in the background. Throws
   * only for what retrying cannot fix (a bad table name, an unreadable secret).
   */
  static async create(
    config: PostgresAuditConfig, node: string, observer: SinkObserver, log: Logger, options: PostgresSinkOptions = {},
  ): Promise<PostgresSecondarySink> {
    const sink = new PostgresSecondarySink(config, node, observer, log, options);
    try {
      await sink.prepare();
    } catch (err) {
      sink.queue.failing(err as Error);
      log.warn({ err, at: where(config) }, 'audit database unreachable at start; events are queued and delivery retried');
    }
    return sink;
  }

  get healthy(): boolean {
    return this.queue.healthy;
  }

  deliver(lines: readonly string[]): void {
    this.queue.push(lines);
  }

  async close(timeoutMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Closing the connection ends a write still under way: the wait is over.
    await this.queue.close(timeoutMs, () => this.conn.close());
  }

  private async prepare(): Promise<pg.Client> {
    const { client } = await this.conn.get();
    if (!this.schemaReady) {
      await ensureSchema(client, this.t);
      this.schemaReady = true;
    }
    return client;
  }

  private async send(batch: readonly string[]): Promise<void> {
    const rows: Rows = { lines: [], seqs: [], events: [], head: { seq: 0, mac: '' } };
    for (const line of batch) {
      const s = unseal(line);
      if (!s) {
        // Cannot be keyed by (node, seq): skipped, or it would block the queue for good.
        if (!this.unsealedWarned) this.log.error({ node: this.node }, 'an audit line without a chain field cannot be stored in the audit table; skipped');
        this.unsealedWarned = true;
        this.observer.dropped?.(1);
        continue;
      }
      rows.lines.push(line);
      rows.seqs.push(s.seq);
      rows.events.push(jsonbText(line));
      rows.head = { seq: s.seq, mac: s.mac };
    }
    if (rows.lines.length === 0) return;
    try {
      const client = await this.prepare();
      const inserted = await writeRows(client, this.sql, this.node, rows);
      if (inserted < rows.lines.length) await this.checkConflicts(client, rows);
    } catch (err) {
      this.conn.discard();
      throw err;
    }
  }

  /** Lines already there are a retry's (same bytes) or a restarted chain's (different): the latter is worth an alarm. */
  private async checkConflicts(client: Queryable, rows: Rows): Promise<void> {
    const { rows: stored } = await client.query<{ seq: string; line: string }>(
      `SELECT seq, line FROM ${this.t.table} WHERE node = $1 AND seq = ANY($2::bigint[])`, [this.node, rows.seqs]);
    const mine = new Map(rows.seqs.map((s, i) => [s, rows.lines[i]!]));
    const differ = stored.filter((r) => mine.get(Number(r.seq)) !== r.line).map((r) => Number(r.seq));
    if (differ.length > 0) {
      this.log.error({ node: this.node, seqs: differ.slice(0, 10), count: differ.length },
        'the audit table already holds different lines under these seqs of this node: the chain restarted (a lost audit file?) or another replica uses the same node name; the new lines were not stored');
    }
  }
}

/** Lines per INSERT: bounds one statement's size and time. */
const MAX_BATCH = 2000;
/** How long an appended line (an outcome, a session end) may wait for a commit to ride along with. */
const APPEND_DELAY_MS = 5;
const STATEMENT_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 5000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

// Approval requests in a PostgreSQL table shared by dbward replicas. A change
// locks the row, applies the caller's function and NOTIFYs the id on commit;
// each replica LISTENs on one connection and re-reads the ids it watches, and a
// poll covers notifications missed while that connection was down. A watcher
// gets a record only when its updatedAt or status differs from the last it got.

import pg from 'pg';
import type { ApprovalFilter, ApprovalRequest, ApprovalStatus, ApprovalStore } from './types.js';

const CHANNEL = 'dbward_approvals';
// Each part is kept short enough that the derived index names stay distinct under PostgreSQL's 63-byte limit.
const TABLE_NAME = /^[a-z_][a-z0-9_]{0,47}(\.[a-z_][a-z0-9_]{0,47})?$/;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5_000;

/** Where the store lives, and where trouble no caller is waiting for is reported. */
export interface PostgresApprovalStoreOptions {
  connection: pg.ClientConfig;
  /** Lower-case, optionally schema-qualified; default dbward_approvals. */
  table?: string;
  /** How often watched requests are re-read, in case a notification was missed; default 1000. */
  pollMs?: number;
  /** The LISTEN connection lost, a failed re-read, a listener that threw. */
  onError?: (err: Error) => void;
}

/** The watchers of one id, each with the stamp it last got; `local` counts deliveries of this instance's own writes. */
interface Watched { watchers: Set<{ listener: (record: ApprovalRequest) => void; last: string | null }>; local: number }

function names(table: string): { table: string; keyIndex: string; timeIndex: string } {
  if (!TABLE_NAME.test(table)) throw new Error(`approvals table ${JSON.stringify(table)} is not a plain (optionally schema-qualified) lower-case name`);
  const parts = table.split('.');
  const base = parts.pop()!;
  // The pattern admits no quote, so wrapping is all the quoting needed.
  const schema = parts.length > 0 ? `"${parts[0]}".` : '';
  return { table: `${schema}"${base}"`, keyIndex: `"${base}_key_status_idx"`, timeIndex: `"${base}_created_idx"` };
}

async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch((e: Error) => { broken = e; });
    throw err;
  } finally {
    client.release(broken);
  }
}

async function ensureTable(pool: pg.Pool, n: ReturnType<typeof names>): Promise<void> {
  // Checked first: CREATE ... IF NOT EXISTS wants CREATE privilege even when the table is there.
  const { rows } = await pool.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [n.table]);
  if (rows[0]?.ok) return;
  await inTransaction(pool, async (c) => {
    // Replicas starting together would race on the catalog; one creates, the others wait.
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [n.table]);
    await c.query(`CREATE TABLE IF NOT EXISTS ${n.table} (id text PRIMARY KEY, status text NOT NULL, key text NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, record jsonb NOT NULL)`);
    await c.query(`CREATE INDEX IF NOT EXISTS ${n.keyIndex} ON ${n.table} (key, status)`);
    await c.query(`CREATE INDEX IF NOT EXISTS ${n.timeIndex} ON ${n.table} (created_at)`);
  });
}

/** An ApprovalStore several replicas share: a request made on one can be decided on another. */
export class PostgresApprovalStore implements ApprovalStore {
  private readonly watched = new Map<string, Watched>();
  private readonly dirty = new Set<string>();
  private refreshing = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private listenClient: pg.Client | null = null;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs = BACKOFF_MIN_MS;
  /** Until open() succeeds a lost LISTEN connection fails open() instead of being retried. */
  private started = false;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(private readonly pool: pg.Pool, private readonly n: ReturnType<typeof names>, private readonly listenConfig: pg.ClientConfig,
    private readonly pollMs: number, private readonly onError: (err: Error) => void) {}

  /** Connects, creates the table when missing and starts listening; rejects when any of that fails. */
  static async open(opts: PostgresApprovalStoreOptions): Promise<PostgresApprovalStore> {
    const n = names(opts.table ?? 'dbward_approvals');
    const pollMs = opts.pollMs ?? 1000;
    if (!(pollMs > 0)) throw new Error(`approvals pollMs must be positive, not ${pollMs}`);
    const onError = opts.onError ?? (() => undefined);
    const appName = opts.connection.application_name ?? 'dbward-approvals';
    const base: pg.ClientConfig = { keepAlive: true, ...opts.connection, application_name: appName };
    const pool = new pg.Pool(base);
    // Without a listener an idle pooled connection's death would crash the process.
    pool.on('error', (err) => onError(err));
    // Its own name tells operators (and tests) which backend holds the LISTEN.
    const store = new PostgresApprovalStore(pool, n, { ...base, application_name: `${appName}-listen` }, pollMs, onError);
    try {
      await ensureTable(pool, n);
      await store.listen();
    } catch (err) {
      await store.close();
      throw err;
    }
    store.started = true;
    return store;
  }

  /** Stores a new request; rejects a duplicate id. */
  async create(request: ApprovalRequest): Promise<void> {
    try {
      await this.pool.query(
        `WITH ins AS (INSERT INTO ${this.n.table} (id, status, key, created_at, updated_at, record) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) SELECT pg_notify($7, id) FROM ins`,
        [request.id, request.status, request.key, request.createdAt, request.updatedAt, JSON.stringify(request), CHANNEL]);
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new Error(`approval request ${request.id} already exists`, { cause: err });
      throw err;
    }
    this.deliverLocal(request);
  }

  /** The request as stored, or null. */
  async get(id: string): Promise<ApprovalRequest | null> {
    return (await this.select('id = $1', [id]))[0] ?? null;
  }

  /** Requests newest first; the limit is capped so one call cannot read the whole table. */
  async list(filter: ApprovalFilter): Promise<ApprovalRequest[]> {
    return this.select('$1::text[] IS NULL OR status = ANY($1) ORDER BY created_at DESC, id DESC LIMIT $2', [filter.status ?? null, Math.min(Math.max(Math.floor(filter.limit ?? DEFAULT_LIMIT) || 0, 0), MAX_LIMIT)]);
  }

  /** Requests for this key in one of these statuses, newest first. */
  async byKey(key: string, status: ApprovalStatus[]): Promise<ApprovalRequest[]> {
    return this.select('key = $1 AND status = ANY($2::text[]) ORDER BY created_at DESC, id DESC LIMIT $3', [key, status, MAX_LIMIT]);
  }

  /** Applies `change` under a row lock; the NOTIFY goes out with the commit, never before it. */
  async update(id: string, change: (current: ApprovalRequest) => ApprovalRequest | null): Promise<{ record: ApprovalRequest; changed: boolean } | null> {
    const result = await inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ record: ApprovalRequest }>(`SELECT record FROM ${this.n.table} WHERE id = $1 FOR UPDATE`, [id]);
      const current = rows[0]?.record;
      if (!current) return null;
      const next = change(current);
      if (!next) return { record: current, changed: false };
      if (next.id !== id) throw new Error(`a change to approval request ${id} returned request ${next.id}`);
      await c.query(
        `WITH upd AS (UPDATE ${this.n.table} SET status = $2, key = $3, updated_at = $4, record = $5 WHERE id = $1 RETURNING id) SELECT pg_notify($6, id) FROM upd`,
        [id, next.status, next.key, next.updatedAt, JSON.stringify(next), CHANNEL]);
      return { record: next, changed: true };
    });
    if (result?.changed) this.deliverLocal(result.record);
    return result;
  }

  /** Also hands the listener the current record once, so a change made just before the call is not missed. */
  watch(id: string, listener: (record: ApprovalRequest) => void): () => void {
    if (this.closed) return () => undefined;
    const entry = this.watched.get(id) ?? { watchers: new Set(), local: 0 };
    const watcher = { listener, last: null };
    this.watched.set(id, entry);
    entry.watchers.add(watcher);
    this.pollTimer ??= setInterval(() => this.refresh(this.watched.keys()), this.pollMs).unref();
    this.refresh([id]);
    return () => {
      if (!entry.watchers.delete(watcher) || entry.watchers.size > 0) return;
      if (this.watched.get(id) === entry) this.watched.delete(id);
      if (this.watched.size > 0) return;
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    };
  }

  /** Stops polling and listening and ends the connections; later calls wait for the first. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.reconnectTimer);
    this.watched.clear();
    await Promise.all([this.listenClient?.end().catch(() => undefined), this.pool.end()]);
  }

  /** `where` is always a constant of this file; only `params` carry input. */
  private async select(where: string, params: unknown[]): Promise<ApprovalRequest[]> {
    const { rows } = await this.pool.query<{ record: ApprovalRequest }>(`SELECT record FROM ${this.n.table} WHERE ${where}`, params);
    return rows.map((r) => r.record);
  }

  /** Marks ids for re-reading; one loop reads them, so reads of an id never overtake each other. */
  private refresh(ids: Iterable<string>): void {
    for (const id of ids) this.dirty.add(id);
    if (!this.refreshing) void this.drain();
  }

  private async drain(): Promise<void> {
    this.refreshing = true;
    try {
      while (this.dirty.size > 0 && !this.closed) {
        const ids = [...this.dirty].filter((id) => this.watched.has(id));
        this.dirty.clear();
        if (ids.length === 0) break;
        const before = new Map(ids.map((id) => [id, this.watched.get(id)!.local]));
        for (const record of await this.select('id = ANY($1::text[])', [ids])) {
          const w = this.watched.get(record.id);
          // A write of our own was delivered meanwhile and this read may predate it: read again.
          if (w && w.local !== before.get(record.id)) this.dirty.add(record.id);
          else if (w) this.deliver(w, record);
        }
      }
    } catch (err) {
      // The ids stay watched; the next poll reads them again.
      if (!this.closed) this.onError(err as Error);
    } finally {
      this.refreshing = false;
    }
  }

  private deliver(w: Watched, record: ApprovalRequest): void {
    const stamp = `${record.updatedAt}\u0000${record.status}`;
    for (const watcher of [...w.watchers]) {
      // Skips one unsubscribed by an earlier listener in this same round.
      if (watcher.last === stamp || !w.watchers.has(watcher)) continue;
      watcher.last = stamp;
      try { watcher.listener(structuredClone(record)); } catch (err) { this.onError(err as Error); }
    }
  }

  private deliverLocal(record: ApprovalRequest): void {
    const w = this.watched.get(record.id);
    if (!w) return;
    w.local++;
    this.deliver(w, record);
  }

  private async listen(): Promise<void> {
    // Held from the start, so close() also ends a connection still being opened.
    const client = (this.listenClient = new pg.Client(this.listenConfig));
    let lost = false;
    const lose = (err: Error): void => {
      if (lost) return;
      lost = true;
      if (this.listenClient === client) this.listenClient = null;
      client.end().catch(() => undefined);
      if (this.started && !this.closed) this.reconnect(err);
    };
    client.on('error', lose);
    client.on('end', () => lose(new Error('the approvals LISTEN connection ended')));
    client.on('notification', (msg) => { if (msg.channel === CHANNEL && msg.payload && this.watched.has(msg.payload)) this.refresh([msg.payload]); });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      lose(err as Error);
      throw err;
    }
    if (lost || this.closed) return void client.end().catch(() => undefined);
    this.backoffMs = BACKOFF_MIN_MS;
    // Notifications sent while no connection listened are gone: re-read all that is watched.
    this.refresh(this.watched.keys());
  }

  /** Reports why the LISTEN connection is gone and tries again later, each failure waiting longer. */
  private reconnect(why: Error): void {
    this.onError(why);
    if (this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      // A failure went through lose(), which reported it and scheduled the next try.
      this.listen().catch(() => undefined);
    }, delay);
  }
}

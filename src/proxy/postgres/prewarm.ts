// Prewarmed upstream connections of one target (`targets[].prewarm`): backends
// logged in ahead of time with the target's credentials, so a session whose token
// verified need not wait for PostgreSQL to start a backend (~12 ms, most of a
// connection's setup). Each is keyed by every startup parameter it was started
// with (role and the client parameters dbward forwards), handed to one session
// only and never back: no state can pass from one session to another.
//
// Only sessions make the pool work: a key is learned from a session that started
// (token verified, session_start recorded), so a bad token never opens anything,
// and a target nobody uses holds no backends. A backend waits at most
// MAX_IDLE_MS, so a revoked role or a changed role setting reaches new sessions
// within that; a key no session used for KEY_IDLE_MS is dropped.

import { setMaxListeners } from 'node:events';
import type net from 'node:net';
import client from 'prom-client';
import type { Logger } from 'pino';
import { connectUpstream, type UpstreamConnection, type UpstreamEndpoint } from './upstream.js';

/** The application_name a prewarmed backend has until a session takes it (and after RESET application_name). */
export const PREWARM_APPLICATION_NAME = 'dbward:prewarmed';

/** How long a ready backend waits for a session before it is replaced. */
const MAX_IDLE_MS = 60_000;
/** A key no session asked for this long is dropped with its backends. */
const KEY_IDLE_MS = 10 * 60_000;
/** Distinct keys kept per target; the least recently used goes first. */
const MAX_KEYS = 8;
/** Retry delays after a failed background login: doubled per failure, up to the maximum. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/** The pool's metrics, registered once per registry and shared by the targets' pools. */
export class PrewarmMetrics {
  readonly ready: client.Gauge;
  readonly takes: client.Counter;
  readonly failures: client.Counter;

  constructor(registry: client.Registry) {
    this.ready = new client.Gauge({ name: 'dbward_prewarm_ready', help: 'Prewarmed upstream connections ready for a session', labelNames: ['target'], registers: [registry] });
    this.takes = new client.Counter({
      name: 'dbward_prewarm_sessions_total', help: 'Sessions of targets with prewarm, by whether a prewarmed connection was ready (hit) or the session logged in itself (miss)',
      labelNames: ['target', 'result'], registers: [registry],
    });
    this.failures = new client.Counter({ name: 'dbward_prewarm_connect_failures_total', help: 'Background logins of prewarmed connections that failed', labelNames: ['target'], registers: [registry] });
  }
}

interface Spare {
  conn: UpstreamConnection;
  searchPath: string;
  timer: NodeJS.Timeout;
  /** Detaches the watch kept on the idle socket. */
  unwatch: () => void;
}

interface Key {
  /** The startup parameters, without application_name. */
  params: Record<string, string>;
  ready: Spare[];
  starting: number;
  lastUsed: number;
}

/** The prewarmed connections of one target. */
export class PrewarmPool {
  private readonly keys = new Map<string, Key>();
  private closed = false;
  private failures = 0;
  private retryAt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Aborted by close(): background logins still in flight are abandoned, their sockets destroyed. */
  private readonly closing = new AbortController();

  constructor(
    private readonly target: string,
    private readonly endpoint: UpstreamEndpoint,
    /** Ready connections kept per key. */
    private readonly size: number,
    private readonly log: Logger,
    private readonly metrics: PrewarmMetrics,
    private readonly now: () => number = Date.now,
  ) {
    // One listener per login in flight; a large `size` is not a leak.
    setMaxListeners(0, this.closing.signal);
  }

  /** Connections ready now, over all keys. */
  get ready(): number {
    let n = 0;
    for (const k of this.keys.values()) n += k.ready.length;
    return n;
  }

  /**
   * A never-used connection started with exactly these startup parameters, renamed
   * to `params.application_name` and with the server's ParameterStatus values after
   * that; null when none is ready (the caller logs in itself). Call only for a
   * session whose identity verified. Never rejects.
   */
  async take(params: Record<string, string>): Promise<UpstreamConnection | null> {
    const key = this.keys.get(keyOf(params));
    while (key && key.ready.length > 0 && !this.closed) {
      const spare = key.ready.shift()!;
      this.release(spare);
      this.metrics.ready.set({ target: this.target }, this.ready);
      try {
        const conn = await rename(spare, params.application_name ?? PREWARM_APPLICATION_NAME, this.endpoint.connectTimeoutMs);
        this.metrics.takes.inc({ target: this.target, result: 'hit' });
        return conn;
      } catch (err) {
        // Gone while it waited (server restart, idle_session_timeout): try the next one.
        spare.conn.socket.destroy();
        this.log.info({ err, target: this.target }, 'prewarmed upstream connection was not usable');
      }
    }
    this.metrics.takes.inc({ target: this.target, result: 'miss' });
    return null;
  }

  /** A session with these startup parameters has started: keep `size` connections ready for the next one. */
  demand(params: Record<string, string>): void {
    if (this.closed) return;
    const id = keyOf(params);
    let key = this.keys.get(id);
    if (!key) {
      if (this.keys.size >= MAX_KEYS) this.evictOldest();
      const { application_name: _, ...rest } = params;
      key = { params: rest, ready: [], starting: 0, lastUsed: 0 };
      this.keys.set(id, key);
    }
    key.lastUsed = this.now();
    // A session just logged in: the upstream is there, whatever the last background attempts met.
    this.failures = 0;
    this.retryAt = 0;
    // Most recently used last, so eviction takes the first.
    this.keys.delete(id);
    this.keys.set(id, key);
    this.fill(id, key);
  }

  /** Closes every ready connection and stops replenishing (shutdown). */
  close(): void {
    this.closed = true;
    this.closing.abort(new Error('the prewarm pool was closed'));
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const key of this.keys.values()) for (const s of key.ready.splice(0)) this.discard(s);
    this.keys.clear();
    this.metrics.ready.set({ target: this.target }, 0);
  }

  private fill(id: string, key: Key): void {
    if (this.closed || this.keys.get(id) !== key || this.now() - key.lastUsed > KEY_IDLE_MS) return;
    if (this.now() < this.retryAt) {
      this.retryTimer ??= setTimeout(() => this.retry(), this.retryAt - this.now()).unref();
      return;
    }
    while (key.ready.length + key.starting < this.size) {
      key.starting++;
      void this.start(id, key);
    }
  }

  private retry(): void {
    this.retryTimer = null;
    for (const [id, key] of this.keys) this.fill(id, key);
  }

  private async start(id: string, key: Key): Promise<void> {
    let conn: UpstreamConnection;
    let searchPath: string;
    try {
      // connectUpstream destroys a login that misses its deadline: none is left logged in unowned.
      conn = await connectUpstream(this.endpoint, { ...key.params, application_name: PREWARM_APPLICATION_NAME }, this.closing.signal);
      try {
        searchPath = await conn.searchPath;
      } catch (err) {
        conn.socket.destroy();
        throw err;
      }
    } catch (err) {
      key.starting--;
      if (!this.closed) this.failed(err); // after close() it was abandoned, not refused
      return;
    }
    key.starting--;
    this.failures = 0;
    if (this.closed || this.keys.get(id) !== key) {
      terminate(conn.socket);
      return;
    }
    const spare: Spare = { conn, searchPath, timer: setTimeout(() => this.expire(id, key, spare), MAX_IDLE_MS).unref(), unwatch: () => undefined };
    // An idle backend says nothing; anything it does say (a FATAL from
    // pg_terminate_backend or idle_session_timeout, a close) retires it.
    const gone = (): void => this.drop(id, key, spare);
    conn.socket.on('data', gone);
    conn.socket.on('close', gone);
    conn.socket.on('error', gone);
    spare.unwatch = () => { conn.socket.off('data', gone); conn.socket.off('close', gone); conn.socket.off('error', gone); };
    key.ready.push(spare);
    this.metrics.ready.set({ target: this.target }, this.ready);
  }

  private failed(err: unknown): void {
    this.failures++;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.failures - 1, 10));
    this.retryAt = this.now() + delay;
    this.metrics.failures.inc({ target: this.target });
    this.log.warn({ err, target: this.target, failures: this.failures, retryInMs: delay },
      'cannot prewarm an upstream connection; sessions of this target log in themselves meanwhile');
    if (!this.closed) this.retryTimer ??= setTimeout(() => this.retry(), delay).unref();
  }

  /** A ready connection went away by itself: forget it and start another. */
  private drop(id: string, key: Key, spare: Spare): void {
    const i = key.ready.indexOf(spare);
    if (i < 0) return;
    key.ready.splice(i, 1);
    this.discard(spare);
    this.metrics.ready.set({ target: this.target }, this.ready);
    this.fill(id, key);
  }

  /** A ready connection waited MAX_IDLE_MS: replace it (if its key is still in use), so none is older than that. */
  private expire(id: string, key: Key, spare: Spare): void {
    this.drop(id, key, spare);
    if (key.ready.length === 0 && key.starting === 0 && this.now() - key.lastUsed > KEY_IDLE_MS && this.keys.get(id) === key) this.keys.delete(id);
  }

  private evictOldest(): void {
    const [id, key] = this.keys.entries().next().value!;
    this.keys.delete(id);
    for (const s of key.ready.splice(0)) this.discard(s);
    this.metrics.ready.set({ target: this.target }, this.ready);
  }

  private release(spare: Spare): void {
    clearTimeout(spare.timer);
    spare.unwatch();
  }

  private discard(spare: Spare): void {
    this.release(spare);
    terminate(spare.conn.socket);
  }
}

/** The pool key of a session's startup parameters: all of them but application_name, which is set per session. */
function keyOf(params: Record<string, string>): string {
  return JSON.stringify(Object.keys(params).filter((k) => k !== 'application_name').sort().map((k) => [k, params[k]]));
}

/** Ends an upstream connection politely (Terminate), then closes it. */
function terminate(socket: net.Socket): void {
  socket.on('error', () => undefined);
  if (socket.writable) socket.end(Buffer.from([0x58, 0, 0, 0, 4]));
  else socket.destroy();
}

/**
 * PostgreSQL's own cleaning of application_name (pg_clean_ascii): every byte
 * outside printable ASCII becomes '?'. Done here so the SET text is plain ASCII,
 * which reads the same in any client_encoding a session may have.
 */
function cleanAscii(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += b >= 32 && b <= 126 ? String.fromCharCode(b) : '?';
  return out;
}

/**
 * Gives a prewarmed backend its session's application_name and reads the answer:
 * the ParameterStatus values the client is greeted with are the server's after the
 * change. Rejects if the backend does not answer as an idle fresh backend does.
 */
function rename(spare: Spare, applicationName: string, timeoutMs: number): Promise<UpstreamConnection> {
  const { socket } = spare.conn;
  const parameters = new Map(spare.conn.parameters);
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let completed = false;
    const timer = setTimeout(() => finish(new Error(`no answer to SET application_name within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', finish);
      if (err) { reject(err); return; }
      // Held until the relay reads it (PgConnection resumes it then), so nothing the
      // server says meanwhile is lost.
      socket.pause();
      resolve({ ...spare.conn, parameters: [...parameters], searchPath: Promise.resolve(spare.searchPath) });
    };
    const onClose = (): void => finish(new Error('the server closed the prewarmed connection'));
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const len = buf.readInt32BE(1);
        if (len < 4 || len > 64 * 1024) { finish(new Error('malformed message from a prewarmed connection')); return; }
        if (buf.length < 1 + len) return;
        const type = buf[0]!;
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        if (type === 0x53 /* S: ParameterStatus */) {
          const nul = body.indexOf(0);
          parameters.set(body.toString('utf8', 0, nul), body.toString('utf8', nul + 1, body.length - 1));
        } else if (type === 0x43 /* C: CommandComplete */) {
          completed = true;
        } else if (type === 0x5a /* Z: ReadyForQuery */) {
          // Idle, the SET done, and nothing after it: the stream is where a fresh login leaves it.
          if (!completed || body[0] !== 0x49 /* I */ || buf.length > 0) { finish(new Error('unexpected answer to SET application_name')); return; }
          finish(null);
          return;
        } else if (type !== 0x4e /* N: NoticeResponse */) {
          finish(new Error(`unexpected message "${String.fromCharCode(type)}" from a prewarmed connection`));
          return;
        }
      }
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', finish);
    // An escape string reads the same whatever standard_conforming_strings says: a
    // backslash in the name can never end the literal early.
    const value = cleanAscii(applicationName).replaceAll('\\', '\\\\').replaceAll("'", "''");
    const sql = Buffer.from(`SET application_name = E'${value}'\0`, 'latin1');
    const msg = Buffer.alloc(5);
    msg[0] = 0x51; // Q
    msg.writeInt32BE(4 + sql.length, 1);
    socket.write(Buffer.concat([msg, sql]));
  });
}

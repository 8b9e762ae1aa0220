// Embedded demo database for `dbward dev`: PGlite (Postgres compiled to WASM)
// served over TCP by pglite-socket, so a new user gets a real upstream with
// PII-bearing tables and no external setup.
//
// pglite-socket multiplexes every TCP connection onto PGlite's one backend
// session. It keeps an explicit transaction on the connection that opened it
// (other connections' messages, including new connections' startup, wait in
// a queue until COMMIT/ROLLBACK) and rolls back when that connection drops.
// What it does not isolate is session state, so we reset that whenever the
// last client leaves; see also pglite-guard.ts for the crash guards.
import net from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { installProtocolGuard } from './pglite-guard.js';
import { SEED_MARKER_TABLE, SEED_SQL } from './seed.js';

/** PGlite ignores the startup packet's user/database; these are what it really is. */
export const DEMO_DB_USER = 'postgres';
export const DEMO_DB_NAME = 'postgres';

/** Options for startDemoDatabase. */
export interface DemoDatabaseOptions {
  /** Interface to bind (default 127.0.0.1; the demo has no authentication). */
  host?: string;
  /** TCP port; 0 (default) picks a free one, read it back from the result. */
  port?: number;
  /** Persist to this directory instead of memory; seeded only on first use. */
  dataDir?: string;
  /** Concurrent TCP connections pglite-socket accepts (default 32). */
  maxConnections?: number;
  /** Called if PGlite crashes; the listener is already closed by then. Default: process warning. */
  onFatal?: (err: unknown) => void;
}

/** A running demo database. */
export interface DemoDatabase {
  host: string;
  port: number;
  database: string;
  user: string;
  stop(): Promise<void>;
}

/** Creates the demo schema and rows unless they exist; returns true if it seeded. */
export async function seedDemoDatabase(db: PGlite): Promise<boolean> {
  const res = await db.query<{ present: boolean }>(
    `SELECT to_regclass('${SEED_MARKER_TABLE}') IS NOT NULL AS present`,
  );
  if (res.rows[0]?.present) return false;
  // One simple-Query message is one implicit transaction: all rows or none.
  await db.exec(SEED_SQL);
  return true;
}

/** Starts PGlite, seeds it and serves it over TCP; resolves once it accepts connections. */
export async function startDemoDatabase(opts: DemoDatabaseOptions = {}): Promise<DemoDatabase> {
  const host = opts.host ?? '127.0.0.1';
  const db = opts.dataDir ? await PGlite.create({ dataDir: opts.dataDir }) : await PGlite.create();
  const sockets = new Set<net.Socket>();
  let server: PGLiteSocketServer | undefined;

  const guard = installProtocolGuard(db, {
    onFatal(err) {
      // Fail fast: refuse new clients and hang up on the current ones once
      // the FATAL ErrorResponse has been flushed.
      if (server) netServerOf(server)?.close();
      for (const s of sockets) s.end();
      if (opts.onFatal) opts.onFatal(err);
      else process.emitWarning(`embedded demo database crashed: ${errorMessage(err)}`, { code: 'DBWARD_DEMO_DB_FATAL' });
    },
  });

  try {
    await seedDemoDatabase(db);
    server = new PGLiteSocketServer({
      db,
      host,
      port: opts.port ?? 0,
      maxConnections: opts.maxConnections ?? 32,
    });
    await server.start();
  } catch (err) {
    await server?.stop().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }

  const listener = netServerOf(server);
  listener?.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (sockets.size === 0) scheduleSessionReset();
    });
  });

  let resetTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  // SET, SET ROLE, temp tables, prepared statements and LISTENs all live in
  // the one shared session and would leak to the next client. Only safe to
  // discard when nobody is connected; the delay lets pglite-socket finish its
  // own disconnect handling (which may ROLLBACK) first.
  function scheduleSessionReset(): void {
    clearTimeout(resetTimer);
    resetTimer = setTimeout(() => {
      if (stopping || guard.isDead || sockets.size > 0) return;
      void resetSession(db).catch(() => undefined);
    }, 20);
  }

  return {
    host,
    port: portOf(server, listener),
    database: DEMO_DB_NAME,
    user: DEMO_DB_USER,
    async stop() {
      if (stopping) return;
      stopping = true;
      clearTimeout(resetTimer);
      // Resolves only once every client socket is gone, and pglite-socket
      // destroys a socket after its disconnect ROLLBACK, so PGlite is idle here.
      await server.stop();
      // A crashed WASM instance can hang on close; nothing left to flush.
      if (!guard.isDead) await db.close();
    },
  };
}

async function resetSession(db: PGlite): Promise<void> {
  // With no client left, an open transaction can only be an orphan.
  if (db.isInTransaction()) await db.exec('ROLLBACK');
  await db.exec('DISCARD ALL');
}

// pglite-socket keeps its net.Server private; we need it to track sockets and
// the bound port. Degrade gracefully if a future version renames it.
function netServerOf(server: PGLiteSocketServer): net.Server | undefined {
  const candidate = (server as unknown as { server?: unknown }).server;
  return candidate instanceof net.Server ? candidate : undefined;
}

function portOf(server: PGLiteSocketServer, listener: net.Server | undefined): number {
  const addr = listener?.address();
  if (addr && typeof addr === 'object') return addr.port;
  const conn = server.getServerConn();
  return Number(conn.slice(conn.lastIndexOf(':') + 1));
}

function errorMessage(err: unknown): string {
  return typeof err === 'object' && err !== null && 'message' in err
    ? String((err as { message: unknown }).message)
    : String(err);
}

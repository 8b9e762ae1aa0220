// The PostgreSQL listener: accepts clients, runs each connection, and keeps the
// live sessions so shutdown can drain them.

import net from 'node:net';
import type { ConnectionDeps } from './connection.js';
import { PgConnection } from './connection.js';
import { pgErrors } from './errors.js';
import { errorResponse } from './backend.js';
import type { PgRelay } from './relay.js';

/** A listening PostgreSQL front door. */
export class PgListener {
  private readonly server: net.Server;
  private readonly relays = new Set<PgRelay>();
  private readonly startups = new Set<PgConnection>();
  private accepting = true;

  constructor(private readonly deps: ConnectionDeps) {
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  /** Listens; resolves to the bound port (useful with port 0). */
  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => { this.server.off('error', reject); resolve(); });
    });
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Sessions open now (past startup). */
  get sessions(): number {
    return this.relays.size;
  }

  /** Connections in the startup phase now (accepted, neither a session yet nor closed). */
  get starting(): number {
    return this.startups.size;
  }

  /** Stops accepting, ends idle sessions now and busy ones at their next idle point; resolves when all have ended or the timeout passed (the rest are cut with 57P01). */
  async drain(timeoutMs: number): Promise<void> {
    this.accepting = false;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.startups) c.destroy();
    for (const r of this.relays) r.drain();
    const all = Promise.all([...this.relays].map((r) => r.closed));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), timeoutMs); });
    if ((await Promise.race([all, timedOut])) === 'timeout') {
      for (const r of this.relays) r.terminate(pgErrors.adminShutdown());
      await all;
    }
    clearTimeout(timer);
    await closed;
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    if (!this.accepting) {
      socket.on('error', () => undefined);
      socket.end(errorResponse(pgErrors.cannotConnectNow()));
      return;
    }
    const conn = new PgConnection(socket, this.deps);
    this.startups.add(conn);
    // run() settles however startup ends (PgConnection.close), so the set never keeps a closed connection.
    conn.run().then((relay) => {
      this.startups.delete(conn);
      if (!relay) return;
      this.relays.add(relay);
      void relay.closed.then(() => this.relays.delete(relay));
    }, (err) => {
      this.startups.delete(conn);
      this.deps.log.error({ err }, 'connection failed unexpectedly');
      conn.destroy();
    });
  }
}

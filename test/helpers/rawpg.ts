// A minimal raw PostgreSQL client for tests that need exact message sequences
// (portals with row limits, pipelining, malformed input). Sends bytes as given
// and parses the server's replies with pg-protocol.

import net from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';

export type Msg = { name: string; [k: string]: any };

/** A raw connection that records every server message. */
export class RawPg {
  readonly messages: Msg[] = [];
  private readonly parser = new Parser();
  private waiters: (() => void)[] = [];
  private byteWaiter: ((b: string) => void) | null = null;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      if (this.byteWaiter) {
        // The one-byte answer to SSLRequest/GSSENCRequest is not a message.
        this.byteWaiter(String.fromCharCode(d[0]!));
        this.byteWaiter = null;
        d = d.subarray(1);
      }
      this.parser.parse(d, (m) => this.messages.push(m as unknown as Msg));
      this.wake();
    });
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => undefined);
  }

  /** Opens a TCP connection (no startup sent). */
  static async connect(port: number): Promise<RawPg> {
    const s = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
    return new RawPg(s);
  }

  /** Connects and completes startup as `user` on database `db`. */
  static async login(port: number, user = 'alice', db = 'test'): Promise<RawPg> {
    const c = await RawPg.connect(port);
    c.send(serialize.startup({ user, database: db }));
    await c.until('readyForQuery');
    return c;
  }

  /** Sends an encryption request and returns the server's one-byte answer. */
  answerTo(request: Buffer): Promise<string> {
    const p = new Promise<string>((r) => (this.byteWaiter = r));
    this.socket.write(request);
    return p;
  }

  send(b: Buffer): void {
    this.socket.write(b);
  }

  /** Waits until a message named `name` has arrived (after those already consumed) and returns all since. */
  async until(name: string, timeoutMs = 5000): Promise<Msg[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex((m) => m.name === name);
      if (i >= 0) return this.messages.splice(0, i + 1);
      if (this.closed) throw new Error(`connection closed before ${name}; got ${this.messages.map((m) => m.name).join(',')}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${name}; got ${this.messages.map((m) => m.name).join(',')}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
  }

  /** Waits for the socket to close. */
  async closedWithin(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  end(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

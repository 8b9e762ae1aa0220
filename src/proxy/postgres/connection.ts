// A client connection from its first byte to the hand-off to PgRelay: the
// startup phase (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), TLS,
// target routing, the upstream login, and the session's first audit event.

import type net from 'node:net';
import tls from 'node:tls';
import { eventBase, type ClientRecord } from '../../audit/events.js';
import { eventLine } from '../../audit/serialize.js';
import { SessionPipeline, type PipelineDeps, type TargetInfo } from '../session.js';
import { authenticationOk, backendKeyData, errorResponse, negotiateProtocolVersion, parameterStatus, readyForQuery } from './backend.js';
import type { CancelRegistry } from './cancel.js';
import { PgError, pgErrors } from './errors.js';
import { PgRelay } from './relay.js';
import { StartupReader, type StartupPacket } from './startup.js';
import { clientErrorFor, connectUpstream, sendCancel, UpstreamError, type UpstreamConnection, type UpstreamEndpoint } from './upstream.js';

/** A target as the PostgreSQL listener routes to it. */
export interface PgTarget {
  info: TargetInfo;
  endpoint: UpstreamEndpoint;
}

/** What a listener gives each connection. */
export interface ConnectionDeps extends PipelineDeps {
  targets: ReadonlyMap<string, PgTarget>;
  cancels: CancelRegistry;
  secureContext: tls.SecureContext | undefined;
  requireTls: boolean;
  limits: { maxStartupBytes: number; maxMessageBytes: number; startupTimeoutMs: number };
}

/** Startup parameters passed upstream; everything else (options, replication...) stays with dbward. */
const FORWARDED_PARAMS = ['client_encoding', 'DateStyle', 'TimeZone', 'IntervalStyle', 'extra_float_digits', 'search_path'];

type Phase = 'startup' | 'connecting' | 'relaying' | 'closed';

/** Runs the startup phase of one client connection; returns the relay once the session is live. */
export class PgConnection {
  private phase: Phase = 'startup';
  private socket: net.Socket;
  private reader: StartupReader;
  private tlsOn = false;
  private sslAsked = false;
  private gssAsked = false;
  private waiter: { resolve: (p: StartupPacket) => void; reject: (e: Error) => void } | null = null;
  private readonly onData = (chunk: Buffer) => { this.reader.push(chunk); this.pump(); };
  private readonly onGone = () => this.abort(new Error('client closed the connection during startup'));
  private client: ClientRecord;

  constructor(raw: net.Socket, private readonly deps: ConnectionDeps) {
    this.socket = raw;
    this.reader = new StartupReader(deps.limits.maxStartupBytes);
    this.client = { address: raw.remoteAddress ?? 'unknown', port: raw.remotePort ?? 0, application: null, tls: false };
  }

  /** Runs startup to completion; resolves to the live relay, or null when the connection ended in startup. */
  async run(): Promise<PgRelay | null> {
    const timer = setTimeout(() => this.refuse(pgErrors.startupTimeout(), null, null), this.deps.limits.startupTimeoutMs);
    this.attach(this.socket);
    try {
      const params = await this.startupPacket();
      return await this.open(params);
    } catch (err) {
      if (err instanceof PgError) this.refuse(err, null, null);
      else if (this.phase !== 'closed') {
        this.deps.log.debug({ err, client: this.client.address }, 'connection ended during startup');
        this.close();
      }
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads packets until a StartupMessage, answering SSL/GSSENC requests and serving cancels. */
  private async startupPacket(): Promise<Map<string, string>> {
    for (;;) {
      const pkt = await this.next();
      switch (pkt.kind) {
        case 'ssl':
        case 'gssenc': {
          // libpq may try GSSENC, take the 'N', then ask for SSL; anything more is a loop.
          if (this.sslAsked || (pkt.kind === 'gssenc' && this.gssAsked)) throw pgErrors.protocolViolation('duplicate encryption request');
          // Bytes after the request would be read as if encrypted (CVE-2021-23214).
          if (this.reader.pending > 0) throw pgErrors.protocolViolation('received unencrypted data after SSL request');
          if (pkt.kind === 'ssl') this.sslAsked = true;
          else this.gssAsked = true;
          if (pkt.kind === 'ssl' && this.deps.secureContext) {
            this.socket.write('S');
            await this.upgrade(this.deps.secureContext);
          } else {
            this.socket.write('N');
          }
          break;
        }
        case 'cancel': {
          const ok = await this.deps.cancels.cancel(pkt.pid, pkt.secret);
          this.deps.log.info({ client: this.client.address, honoured: ok }, 'cancel request');
          this.close();
          throw new Error('cancel request served');
        }
        case 'startup': {
          const unsupported = [...pkt.params.keys()].filter((k) => k.startsWith('_pq_.'));
          if (pkt.minor > 0 || unsupported.length > 0) this.socket.write(negotiateProtocolVersion(0, unsupported));
          return pkt.params;
        }
      }
    }
  }

  private async open(params: Map<string, string>): Promise<PgRelay | null> {
    const user = params.get('user')!;
    const targetName = params.get('database') || user;
    this.client.application = params.get('application_name') ?? null;
    this.client.tls = this.tlsOn;
    if (this.deps.requireTls && !this.tlsOn) {
      return this.refuse(pgErrors.invalidAuthorization('this dbward listener requires TLS (connect with sslmode=require)'), user, targetName);
    }
    const replication = params.get('replication');
    if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
      return this.refuse(pgErrors.featureNotSupported('dbward does not relay replication connections'), user, targetName);
    }
    const target = this.deps.targets.get(targetName);
    if (!target) return this.refuse(pgErrors.unknownTarget(targetName), user, targetName);
    if (params.has('options')) this.deps.log.warn({ user, target: targetName }, 'startup "options" parameter ignored');

    this.phase = 'connecting';
    // Nothing the client sends can be used before the session is live: leave it in the socket.
    this.socket.pause();
    let upstream: UpstreamConnection;
    try {
      upstream = await connectUpstream(target.endpoint, upstreamParams(params, user));
    } catch (err) {
      this.deps.log.warn({ err, target: targetName }, 'upstream login failed');
      const e = err instanceof UpstreamError ? clientErrorFor(targetName, err) : pgErrors.upstreamUnavailable(targetName);
      return this.refuse(e, user, targetName);
    }
    if (this.phase !== 'connecting') {
      upstream.socket.destroy(); // the client left while dbward logged in
      return null;
    }
    const pipeline = new SessionPipeline(this.deps, { user, verified: false }, target.info, this.client);
    try {
      await pipeline.start();
    } catch (err) {
      upstream.socket.destroy();
      this.deps.log.error({ err }, 'audit write failed; session refused');
      return this.refuse(new PgError('58030', 'session refused: the audit trail cannot be written', 'FATAL'), user, targetName);
    }
    const key = this.deps.cancels.issue({ cancel: () => sendCancel(target.endpoint, upstream.pid, upstream.secret) });
    const greeting = [authenticationOk(), ...upstream.parameters.map(([k, v]) => parameterStatus(k, v)), backendKeyData(key.pid, key.secret), readyForQuery('I')];
    this.socket.write(Buffer.concat(greeting));
    this.detach(this.socket);
    this.phase = 'relaying';
    const relay = new PgRelay(this.socket, upstream.socket, pipeline,
      { metrics: this.deps.metrics, log: this.deps.log, maxMessageBytes: this.deps.limits.maxMessageBytes },
      () => this.deps.cancels.revoke(key.pid));
    relay.start(this.reader.drain());
    if (this.socket.destroyed) relay.terminate(pgErrors.upstreamLost());
    return relay;
  }

  private next(): Promise<StartupPacket> {
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    if (!this.waiter) return;
    const w = this.waiter;
    try {
      const pkt = this.reader.next();
      if (!pkt) return;
      this.waiter = null;
      w.resolve(pkt);
    } catch (err) {
      this.waiter = null;
      w.reject(err as Error);
    }
  }

  private async upgrade(ctx: tls.SecureContext): Promise<void> {
    this.detach(this.socket);
    const secure = new tls.TLSSocket(this.socket, { isServer: true, secureContext: ctx });
    this.socket = secure;
    this.reader = new StartupReader(this.deps.limits.maxStartupBytes);
    this.tlsOn = true;
    this.attach(secure);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('client closed during TLS handshake')));
    });
  }

  private attach(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('close', this.onGone);
    s.on('error', this.onGone);
  }

  private detach(s: net.Socket): void {
    s.off('data', this.onData);
    s.off('close', this.onGone);
    s.off('error', this.onGone);
  }

  private abort(err: Error): void {
    if (this.phase === 'connecting') this.phase = 'closed';
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
  }

  /** Sends a FATAL error, records the refusal, closes. Returns null for the caller's convenience. */
  private refuse(err: PgError, user: string | null, target: string | null): null {
    if (this.phase === 'closed') return null;
    this.deps.metrics.sessionsTotal.inc({ engine: 'postgres', result: 'refused' });
    try {
      this.deps.audit.append(eventLine({
        ...eventBase('-'), type: 'session_refused', user, client: this.client, target, sqlstate: err.sqlstate, reason: err.message,
      }));
    } catch (e) {
      this.deps.log.error({ err: e }, 'audit append failed');
    }
    if (this.socket.writable) this.socket.write(errorResponse(err.severity === 'FATAL' ? err : err.fatal()));
    this.close();
    return null;
  }

  private close(): void {
    this.phase = 'closed';
    this.detach(this.socket);
    this.socket.on('error', () => undefined);
    this.socket.end();
    this.socket.destroySoon();
  }
}

function upstreamParams(params: Map<string, string>, user: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of FORWARDED_PARAMS) {
    const v = params.get(k);
    if (v !== undefined) out[k] = v;
  }
  const app = params.get('application_name');
  // The database's own logs attribute the session to the dbward user.
  out.application_name = truncateBytes(`dbward:${user}${app ? ` ${app}` : ''}`, 63);
  return out;
}

function truncateBytes(s: string, max: number): string {
  const b = Buffer.from(s);
  return b.length <= max ? s : b.subarray(0, max).toString('utf8').replace(/\uFFFD$/, '');
}

// A client connection from its first byte to the hand-off to PgRelay: the
// startup phase (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), TLS,
// the OIDC token exchange, target routing, the upstream login (as the role the
// identity's groups map to), the session's first audit event, and its expiry.

import type net from 'node:net';
import tls from 'node:tls';
import { eventBase, type AuditEvent, type ClientRecord } from '../../audit/events.js';
import { readingHazard } from '../../analysis/pg/flags.js';
import { SqlSessionState } from '../../analysis/session-state.js';
import { startupSettings } from './startup-settings.js';
import { eventLine } from '../../audit/serialize.js';
import { IdentityError } from '../../identity/errors.js';
import { roleFor, type RoleMapping } from '../../identity/roles.js';
import type { Identity, SessionIdentity } from '../../identity/types.js';
import { MAX_TOKEN_BYTES, type TokenVerifier } from '../../identity/verifier.js';
import { SessionPipeline, type PipelineDeps, type TargetInfo } from '../session.js';
import { authenticationCleartextPassword, authenticationOk, backendKeyData, errorResponse, negotiateProtocolVersion, parameterStatus, readyForQuery } from './backend.js';
import type { CancelRegistry } from './cancel.js';
import { PgError, pgErrors } from './errors.js';
import { FrontendReader, type Frame } from './frames.js';
import { decodePassword } from './frontend.js';
import { PgRelay } from './relay.js';
import { StartupReader, type StartupPacket } from './startup.js';
import type { PrewarmPool } from './prewarm.js';
import { clientErrorFor, connectUpstream, sendCancel, UpstreamError, type UpstreamConnection, type UpstreamEndpoint } from './upstream.js';

/** A target as the PostgreSQL listener routes to it. */
export interface PgTarget {
  info: TargetInfo;
  endpoint: UpstreamEndpoint;
  roles: RoleMapping[];
  defaultRole: string | null;
  /** Upstream connections logged in ahead of time (`targets[].prewarm`); absent: every session logs in itself. */
  prewarm?: PrewarmPool | null;
}

/** How a listener authenticates sessions: OIDC tokens, or (loopback testing only) not at all. */
export type SessionAuth =
  | { mode: 'unverified' }
  | { mode: 'oidc'; verifier: TokenVerifier; graceMs: number; allowPlaintextToken: boolean };

/** What a listener gives each connection. */
export interface ConnectionDeps extends PipelineDeps {
  targets: ReadonlyMap<string, PgTarget>;
  cancels: CancelRegistry;
  secureContext: tls.SecureContext | undefined;
  requireTls: boolean;
  auth: SessionAuth;
  limits: { maxStartupBytes: number; maxMessageBytes: number; startupTimeoutMs: number };
}

type Phase = 'startup' | 'authenticating' | 'connecting' | 'relaying' | 'closed';

/** Longest error text taken from a token into the audit trail or a client message. */
const MAX_REASON_CHARS = 300;

/** How long a refused client has to take its error message before its socket is destroyed. */
const CLOSE_GRACE_MS = 1_000;

/** Runs the startup phase of one client connection; returns the relay once the session is live. */
export class PgConnection {
  private phase: Phase = 'startup';
  /** The accepted TCP socket; after an upgrade `socket` is the TLS socket over it. */
  private readonly raw: net.Socket;
  private socket: net.Socket;
  /** Between 'S' and the end of the TLS handshake nothing can be written to the client, and end() never completes. */
  private handshaking = false;
  private reader: StartupReader;
  /** Typed frames after the StartupMessage (the PasswordMessage carrying the token). */
  private frames: FrontendReader | null = null;
  private tlsOn = false;
  private sslAsked = false;
  private gssAsked = false;
  private waiter: { read: () => unknown; resolve: (v: unknown) => void; reject: (e: Error) => void } | null = null;
  private readonly onData = (chunk: Buffer) => { (this.frames ?? this.reader).push(chunk); this.pump(); };
  private readonly onGone = () => {
    if (this.phase !== 'closed') this.deps.log.debug({ client: this.client.address }, 'client closed the connection during startup');
    this.close();
  };
  private client: ClientRecord;
  private startupTimer: NodeJS.Timeout | undefined;
  /** The upstream socket from its login until the relay takes it: close() destroys it, whatever path ends startup. */
  private upstream: net.Socket | null = null;
  /** Aborted when the connection closes, so an upstream login in flight is abandoned and its socket destroyed. */
  private readonly abandon = new AbortController();
  /** Resolves when the connection closes in startup; run() settles then, whatever step it was waiting in. */
  private readonly ended: Promise<null>;
  private settleEnded: () => void = () => undefined;

  constructor(raw: net.Socket, private readonly deps: ConnectionDeps) {
    this.raw = raw;
    this.socket = raw;
    this.ended = new Promise((resolve) => { this.settleEnded = () => resolve(null); });
    this.reader = new StartupReader(deps.limits.maxStartupBytes);
    this.client = { address: raw.remoteAddress ?? 'unknown', port: raw.remotePort ?? 0, application: null, tls: false };
  }

  /** Runs startup to completion; resolves to the live relay, or null when the connection ended in startup. */
  async run(): Promise<PgRelay | null> {
    this.startupTimer = setTimeout(() => this.refuse(pgErrors.startupTimeout(), null, null), this.deps.limits.startupTimeoutMs);
    this.attach(this.socket);
    try {
      // A step may wait on something that never answers (a stalled TLS handshake, a slow
      // upstream): the connection's end settles run() all the same, so the listener never
      // keeps a connection that is gone. The step left behind finds the phase closed.
      return await Promise.race([this.startup(), this.ended]);
    } finally {
      clearTimeout(this.startupTimer);
    }
  }

  /** A getter, so checks after an await are not narrowed away by the compiler: the phase may have changed meanwhile. */
  private get closed(): boolean {
    return this.phase === 'closed';
  }

  /** Closes a connection still in startup at once, without an answer (the listener is shutting down). */
  destroy(): void {
    this.close();
    this.destroySockets();
  }

  private async startup(): Promise<PgRelay | null> {
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
    const claimed = params.get('user')!;
    const targetName = params.get('database') || claimed;
    this.client.application = params.get('application_name') ?? null;
    this.client.tls = this.tlsOn;
    if (this.deps.requireTls && !this.tlsOn) {
      return this.refuse(pgErrors.invalidAuthorization('this dbward listener requires TLS (connect with sslmode=require)'), claimed, targetName);
    }
    const replication = params.get('replication');
    if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
      return this.refuse(pgErrors.featureNotSupported('dbward does not relay replication connections'), claimed, targetName);
    }
    // Authenticate before looking the target up, so an unauthenticated client learns nothing about targets.
    const identity = await this.authenticate(claimed, targetName);
    if (!identity) return null;
    const user = identity.user;
    const target = this.deps.targets.get(targetName);
    if (!target) return this.refuse(pgErrors.unknownTarget(targetName), user, targetName);
    const role = roleFor(identity, target.roles, target.defaultRole);
    if (role === undefined) {
      return this.refuse(pgErrors.invalidAuthorization(`no database role of target "${targetName}" is mapped to the groups of ${user}`), user, targetName);
    }
    const settings = startupSettings(params);
    if (settings instanceof PgError) return this.refuse(settings, user, targetName);

    this.phase = 'connecting';
    // Nothing the client sends can be used before the session is live: leave it in the socket.
    this.socket.pause();
    const startup = upstreamParams(settings, params.get('application_name'), user, role);
    let upstream: UpstreamConnection;
    try {
      // A prewarmed backend started with exactly these parameters, if one is ready (the token verified above).
      upstream = (await target.prewarm?.take(startup)) ?? await connectUpstream(target.endpoint, startup, this.abandon.signal);
    } catch (err) {
      if (this.closed) return null; // abandoned: the client left or startup timed out
      this.deps.log.warn({ err, target: targetName, role }, 'upstream login failed');
      return this.refuse(upstreamLoginError(targetName, role, err), user, targetName);
    }
    if (this.closed) {
      upstream.socket.destroy(); // the client left while dbward logged in
      return null;
    }
    this.upstream = upstream.socket;
    const hazard = readingHazardOf(upstream.parameters);
    if (hazard) {
      upstream.socket.destroy();
      return this.refuse(pgErrors.featureNotSupported(`dbward cannot relay this session: ${hazard}`), user, targetName);
    }
    // Filled in once the server answers SHOW search_path, before anything is relayed.
    const sql = new SqlSessionState('', role ?? target.endpoint.user);
    const pipeline = new SessionPipeline(this.deps, identity, target.info, this.client, sql, role);
    try {
      await pipeline.start();
    } catch (err) {
      upstream.socket.destroy();
      this.deps.log.error({ err }, 'audit write failed; session refused');
      return this.refuse(new PgError('58030', 'session refused: the audit trail cannot be written', 'FATAL'), user, targetName);
    }
    if (this.closed) return this.abandonSession(upstream, pipeline, 'client_closed');
    // A session of these parameters started: have a backend ready for the next one.
    target.prewarm?.demand(startup);
    const masking = pipeline.masking;
    const unkeyed = masking?.hashKey === null ? masking.rules.find((r) => r.spec.strategy === 'hash') : undefined;
    if (unkeyed) {
      upstream.socket.destroy();
      pipeline.end('masking_unavailable');
      return this.refuse(new PgError('58000', `session refused: masking rule "${unkeyed.id}" uses strategy hash, and dbward.yaml sets no masking.hash_key`, 'FATAL'), user, targetName);
    }
    if (masking) {
      // Masked sessions are judged against the catalog from their first statement on.
      try {
        await masking.catalog.load();
      } catch (err) {
        upstream.socket.destroy();
        this.deps.log.error({ err, target: targetName }, 'target catalog could not be read; masked session refused');
        pipeline.end('catalog_unavailable');
        return this.refuse(new PgError('58000', `session refused: dbward could not read the catalog of target "${targetName}" to mask results`, 'FATAL'), user, targetName);
      }
      if (this.closed) return this.abandonSession(upstream, pipeline, 'client_closed');
    }
    // A statement waiting for approval has not reached the server: a cancel withdraws the request instead.
    const key = this.deps.cancels.issue({
      cancel: () => (pipeline.cancelWait() ? Promise.resolve() : sendCancel(target.endpoint, upstream.pid, upstream.secret)),
    });
    const greeting = [authenticationOk(), ...upstream.parameters.map(([k, v]) => parameterStatus(k, v)), backendKeyData(key.pid, key.secret), readyForQuery('I')];
    this.socket.write(Buffer.concat(greeting));
    // Startup is complete for the client; the search_path wait below has its own deadline.
    clearTimeout(this.startupTimer);
    this.detach(this.socket);
    // Until the relay takes the socket over, a write error (a client that reset) must not go unhandled.
    this.socket.on('error', ignore);
    this.phase = 'relaying';
    // The client may already be sending its first statement; it waits in the (paused)
    // socket until the search_path it will be analyzed under is known.
    try {
      sql.setSearchPath(await upstream.searchPath);
    } catch (err) {
      this.deps.cancels.revoke(key.pid);
      // Closed by the listener (shutdown), which destroyed the upstream it waited on.
      if (this.closed) return this.abandonSession(upstream, pipeline, 'shutdown');
      this.deps.log.warn({ err, target: targetName }, 'upstream did not answer SHOW search_path');
      upstream.socket.destroy();
      pipeline.end('upstream_lost');
      if (this.socket.writable) this.socket.write(errorResponse(pgErrors.upstreamLost()));
      this.close();
      return null;
    }
    if (this.closed) {
      // The listener closed the connection meanwhile (shutdown).
      this.deps.cancels.revoke(key.pid);
      return this.abandonSession(upstream, pipeline, 'shutdown');
    }
    this.upstream = null; // the relay's from here on
    const relay = new PgRelay(this.socket, upstream.socket, pipeline,
      { metrics: this.deps.metrics, log: this.deps.log, maxMessageBytes: this.deps.limits.maxMessageBytes },
      () => this.deps.cancels.revoke(key.pid));
    const encoding = upstream.parameters.find(([k]) => k.toLowerCase() === 'client_encoding')?.[1];
    relay.start(this.frames ? this.frames.drain() : this.reader.drain(), encoding);
    upstream.socket.resume(); // a prewarmed connection is held paused until the relay reads it
    if (this.socket.destroyed) relay.terminate(pgErrors.upstreamLost());
    else if (identity.verified && this.deps.auth.mode === 'oidc') expireAt(identity, this.deps.auth.graceMs, pipeline, relay);
    return relay;
  }

  /**
   * The token exchange: AuthenticationCleartextPassword, then a PasswordMessage
   * whose password is the access token. Resolves to the identity, or null when
   * the connection was refused (already answered and recorded).
   */
  private async authenticate(claimed: string, targetName: string): Promise<SessionIdentity | null> {
    const auth = this.deps.auth;
    if (auth.mode === 'unverified') return { user: claimed, verified: false };
    if (!this.tlsOn && !auth.allowPlaintextToken) {
      // Refused before asking, so the client never sends its token in clear.
      return this.refuse(pgErrors.invalidAuthorization('dbward takes an OIDC access token as the password, and only over TLS: connect with sslmode=require'), claimed, targetName);
    }
    this.phase = 'authenticating';
    // Length counts itself (4) and the password's NUL (1): a MAX_TOKEN_BYTES token just fits.
    this.frames = new FrontendReader(MAX_TOKEN_BYTES + 5);
    this.frames.push(this.reader.drain());
    this.socket.write(authenticationCleartextPassword());
    let token: string;
    try {
      const frame = await this.nextFrame();
      if (frame.type !== 0x70 /* p */) throw pgErrors.protocolViolation(`expected a password message, got message type "${String.fromCharCode(frame.type)}"`);
      token = decodePassword(frame.payload);
    } catch (err) {
      if (err instanceof PgError && err.sqlstate === '54000') {
        return this.authFailed(claimed, targetName, new IdentityError('TOKEN_TOO_LARGE', `token exceeds ${MAX_TOKEN_BYTES} bytes`));
      }
      throw err;
    }
    this.socket.pause();
    if (token === '') return this.authFailed(claimed, targetName, new IdentityError('TOKEN_MALFORMED', 'no token was given as the password'));
    let identity: Identity;
    try {
      identity = await auth.verifier.verify(token, claimed);
    } catch (err) {
      return this.authFailed(claimed, targetName, err);
    }
    return this.phase === 'authenticating' ? identity : null;
  }

  /** Refuses a client whose token did not verify: 28P01 (28000 for a user mismatch or an unreachable issuer), audited without the token. */
  private authFailed(claimed: string, targetName: string, err: unknown): null {
    if (this.phase === 'closed') return null;
    const e = err instanceof IdentityError ? err : new IdentityError('ISSUER_UNAVAILABLE', `token verification failed: ${(err as Error).message}`);
    if (!(err instanceof IdentityError)) this.deps.log.error({ err }, 'unexpected error verifying a token');
    const reason = e.message.slice(0, MAX_REASON_CHARS);
    const pgErr = e.code === 'ISSUER_UNAVAILABLE'
      ? new PgError('28000', 'dbward could not verify the token: the identity provider is unavailable', 'FATAL', undefined, 'Retry shortly; if it persists, tell the dbward operators.')
      : e.code === 'USER_MISMATCH'
        ? new PgError('28000', `${reason}`, 'FATAL', undefined, 'Connect with the user name your token was issued for.')
        : new PgError('28P01', `password authentication failed for user "${claimed.slice(0, 64)}": ${reason}`, 'FATAL', undefined,
          'dbward expects an OIDC access token as the password, e.g. PGPASSWORD=$(dbward token).');
    this.deps.metrics.authFailures.inc({ reason: e.code });
    this.deps.log.info({ user: claimed, client: this.client.address, reason: e.code }, 'authentication failed');
    return this.reject(pgErr, {
      ...eventBase('-'), type: 'auth_failure', user: claimed, client: this.client, target: targetName, reason: e.code, message: reason, sqlstate: pgErr.sqlstate,
    });
  }

  private next(): Promise<StartupPacket> {
    return this.wait(() => this.reader.next());
  }

  private nextFrame(): Promise<Frame> {
    return this.wait(() => this.frames!.next());
  }

  private wait<T>(read: () => T | null): Promise<T> {
    return new Promise((resolve, reject) => {
      this.waiter = { read, resolve: resolve as (v: unknown) => void, reject };
      this.pump();
    });
  }

  private pump(): void {
    if (!this.waiter) return;
    const w = this.waiter;
    try {
      const value = w.read();
      if (value === null) return;
      this.waiter = null;
      w.resolve(value);
    } catch (err) {
      this.waiter = null;
      w.reject(err as Error);
    }
  }

  private async upgrade(ctx: tls.SecureContext): Promise<void> {
    this.detach(this.socket);
    const secure = new tls.TLSSocket(this.socket, { isServer: true, secureContext: ctx });
    this.socket = secure;
    this.handshaking = true;
    this.reader = new StartupReader(this.deps.limits.maxStartupBytes);
    this.tlsOn = true;
    this.attach(secure);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('client closed during TLS handshake')));
    });
    this.handshaking = false;
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

  /** Sends a FATAL error, records the refusal, closes. Returns null for the caller's convenience. */
  private refuse(err: PgError, user: string | null, target: string | null): null {
    return this.reject(err, {
      ...eventBase('-'), type: 'session_refused', user, client: this.client, target, sqlstate: err.sqlstate, reason: err.message,
    });
  }

  private reject(err: PgError, event: AuditEvent): null {
    if (this.phase === 'closed') return null;
    this.deps.metrics.sessionsTotal.inc({ engine: 'postgres', result: 'refused' });
    try {
      this.deps.audit.append(eventLine(event));
    } catch (e) {
      this.deps.log.error({ err: e }, 'audit append failed');
    }
    if (this.socket.writable && !this.handshaking) this.socket.write(errorResponse(err.severity === 'FATAL' ? err : err.fatal()));
    this.close();
    return null;
  }

  /** A session started (session_start written) but its connection closed before the relay: end it, close its upstream. */
  private abandonSession(upstream: UpstreamConnection, pipeline: SessionPipeline, reason: string): null {
    upstream.socket.destroy();
    pipeline.end(reason);
    return null;
  }

  /**
   * Ends the connection in startup, once, however it ends: the pending read is
   * rejected, an upstream login in flight abandoned, run() settled, and the client
   * socket closed (after any error message was written, within CLOSE_GRACE_MS).
   */
  private close(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.startupTimer);
    this.abandon.abort(new UpstreamError('the client connection closed during the upstream login'));
    this.upstream?.destroy();
    this.upstream = null;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(new Error('the connection closed during startup'));
    }
    this.detach(this.socket);
    this.socket.on('error', ignore);
    this.raw.on('error', ignore);
    this.settleEnded();
    if (this.handshaking) {
      this.destroySockets();
      return;
    }
    this.socket.end();
    this.socket.destroySoon();
    if (this.socket.destroyed && this.raw.destroyed) return;
    // end() completes only once the client has taken the bytes: one that never reads is cut off.
    const linger = setTimeout(() => this.destroySockets(), CLOSE_GRACE_MS).unref();
    this.socket.once('close', () => { clearTimeout(linger); this.destroySockets(); });
  }

  /** The TLS socket and the TCP socket under it: destroying the one does not always close the other. */
  private destroySockets(): void {
    this.socket.destroy();
    if (this.raw !== this.socket) this.raw.destroy();
  }
}

function ignore(): void {}

function upstreamParams(settings: Map<string, string>, app: string | undefined, user: string, role: string | null): Record<string, string> {
  const out: Record<string, string> = Object.fromEntries(settings);
  // The database's own logs attribute the session to the dbward user.
  out.application_name = truncateBytes(`dbward:${user}${app ? ` ${app}` : ''}`, 63);
  // As a startup parameter the role is the session's default, so RESET ROLE and DISCARD ALL return to it.
  if (role !== null) out.role = role;
  return out;
}

/** The client's error when the upstream login failed; a refused role is named, other causes stay generic. */
function upstreamLoginError(target: string, role: string | null, err: unknown): PgError {
  if (!(err instanceof UpstreamError)) return pgErrors.upstreamUnavailable(target);
  // A setting the client asked for at startup, refused by the server: the client's own mistake, told as the server tells it.
  const setting = SETTING_REFUSED.exec(err.message);
  if (err.sqlstate && setting && setting[1] !== 'role') return new PgError(err.sqlstate, err.message.replace(/^server refused login: /, ''), 'FATAL');
  // 22023 (no such role) and 42501 (not a member): the role mapping does not fit the upstream.
  if (role !== null && (err.sqlstate === '22023' || err.sqlstate === '42501' || err.sqlstate === '42704')) {
    return new PgError('28000', `database role "${role}" of target "${target}" cannot be used`, 'FATAL', undefined,
      'The dbward operators must create the role and grant it to the target\'s upstream user.');
  }
  return clientErrorFor(target, err);
}

/** A server's login error about a configuration parameter: `invalid value for parameter "x"`, `unrecognized configuration parameter "x"`. */
const SETTING_REFUSED = /^server refused login: (?:.*\bparameter|permission denied to set parameter) "([^"]+)"/;

/** Why the server, as it reports itself after login, would read SQL differently from dbward's parser; null when it reads alike. */
function readingHazardOf(parameters: [string, string][]): string | null {
  for (const [name, value] of parameters) {
    if (readingHazard(name.toLowerCase(), value)) {
      return `the server reports ${name} = ${value}, under which SQL text reads differently than dbward parses it`;
    }
  }
  return null;
}

/** Longest single timer Node allows; longer waits are re-armed. */
const MAX_TIMER_MS = 2_147_483_647;

/** Ends the session when its token expires (plus grace): it may not outlive the identity that opened it. */
function expireAt(identity: Identity, graceMs: number, pipeline: SessionPipeline, relay: PgRelay): void {
  const deadline = identity.expiresAt * 1000 + graceMs;
  let timer: NodeJS.Timeout;
  const arm = (): void => {
    const left = deadline - Date.now();
    if (left > 0) {
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      timer.unref();
      return;
    }
    pipeline.endingFor('token_expired');
    relay.terminate(new PgError('28000', `the access token of this session expired at ${new Date(identity.expiresAt * 1000).toISOString()}`, 'FATAL', undefined,
      'Reconnect with a fresh token (dbward token).'));
  };
  arm();
  void relay.closed.then(() => clearTimeout(timer));
}

function truncateBytes(s: string, max: number): string {
  const b = Buffer.from(s);
  return b.length <= max ? s : b.subarray(0, max).toString('utf8').replace(/\uFFFD$/, '');
}

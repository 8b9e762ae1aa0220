// dbward's own connection to an upstream PostgreSQL: TCP, TLS per target, the
// startup message built by dbward (client startup parameters are filtered by the
// caller), and login with the target's credentials (trust, cleartext, md5,
// SCRAM-SHA-256). Uses pg-protocol to parse the server's replies during login.

import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { UpstreamTlsMode } from '../../config/types.js';
import { PgError, pgErrors } from './errors.js';
import { ScramClient } from './scram.js';
import { encodeStartup } from './startup.js';

/** Everything needed to reach and log in to one upstream database. */
export interface UpstreamEndpoint {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string | undefined;
  tlsMode: UpstreamTlsMode;
  ca: Buffer | undefined;
  connectTimeoutMs: number;
}

/** A logged-in upstream connection, ready for queries. */
export interface UpstreamConnection {
  socket: net.Socket;
  /** ParameterStatus values the server reported at startup, in order. */
  parameters: [string, string][];
  pid: number;
  secret: number;
  /**
   * The session's search_path as the server has it after login (role and database
   * defaults applied). Answered after the login completes, so the client's greeting
   * need not wait for it; nothing may be relayed before it settles. Rejects with
   * UpstreamError if the server does not answer within the connect timeout.
   */
  searchPath: Promise<string>;
}

/**
 * Asked right after AuthenticationOk: statement analysis resolves unqualified names
 * with it. SHOW, not a SELECT: a utility command needs no planning or function
 * lookup, which on a fresh backend saves about half a millisecond. No client input reaches it.
 */
const SEARCH_PATH_PROBE = 'SHOW search_path';

/** Why an upstream login failed; `sqlstate` is the server's when it sent one. */
export class UpstreamError extends Error {
  readonly code = 'UPSTREAM_CONNECT_FAILED';
  constructor(message: string, readonly sqlstate?: string) {
    super(message);
  }
}

/**
 * Connects and logs in; rejects with UpstreamError within the endpoint's timeout, or
 * as soon as `signal` aborts (the client went away). Until it resolves the attempt owns
 * its sockets: whatever step the deadline or the abort meets, they are destroyed, and a
 * connect or login that completes later finds nothing to hand over.
 */
export async function connectUpstream(ep: UpstreamEndpoint, startupParams: Record<string, string>, signal?: AbortSignal): Promise<UpstreamConnection> {
  const attempt = new AbortController();
  const timer = setTimeout(() => attempt.abort(new UpstreamError(`timed out after ${ep.connectTimeoutMs} ms`)), ep.connectTimeoutMs);
  const onCallerAbort = (): void => attempt.abort(new UpstreamError('the login was abandoned by its caller'));
  if (signal?.aborted) onCallerAbort();
  else signal?.addEventListener('abort', onCallerAbort, { once: true });
  try {
    const socket = await openSocket(ep, attempt.signal);
    return await login(socket, ep, startupParams, attempt.signal);
  } catch (err) {
    throw err instanceof UpstreamError ? err : new UpstreamError((err as Error).message);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onCallerAbort);
  }
}

/** Sends a CancelRequest for an upstream backend; errors are swallowed (cancel is best effort). */
export async function sendCancel(ep: UpstreamEndpoint, pid: number, secret: number): Promise<void> {
  try {
    // Bounded like a login: a server that never accepts must not hold the cancelling client.
    const socket = await openSocket(ep, AbortSignal.timeout(ep.connectTimeoutMs));
    await new Promise<void>((resolve) => {
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.end(serialize.cancel(pid, secret));
      setTimeout(() => { socket.destroy(); resolve(); }, ep.connectTimeoutMs).unref();
    });
  } catch {
    // The query runs on; nothing else to do.
  }
}

/** Settles as `p` does, or rejects with the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e as Error); },
    );
  });
}

/** TCP (and TLS per the target's mode) to the server; every socket it made is destroyed if it fails or `signal` aborts. */
async function openSocket(ep: UpstreamEndpoint, signal: AbortSignal): Promise<net.Socket> {
  const made: net.Socket[] = [];
  const destroyAll = (): void => { for (const s of made) s.destroy(); };
  signal.addEventListener('abort', destroyAll, { once: true });
  try {
    // Checked first: an abort that came before the connect must not leave one behind.
    if (signal.aborted) throw signal.reason as Error;
    const raw = net.connect({ host: ep.host, port: ep.port });
    made.push(raw);
    await abortable(new Promise<void>((resolve, reject) => {
      raw.once('connect', () => { raw.removeListener('error', reject); resolve(); });
      raw.once('error', reject);
    }), signal);
    raw.setNoDelay(true);
    raw.setKeepAlive(true, 60_000);
    if (ep.tlsMode === 'disable') return raw;
    raw.write(serialize.requestSsl());
    const answer = await abortable(readByte(raw), signal);
    if (answer === 'N') {
      if (ep.tlsMode === 'prefer') return raw;
      throw new UpstreamError(`the server does not accept TLS and the target requires it (${ep.tlsMode})`);
    }
    if (answer !== 'S') throw new UpstreamError('unexpected answer to SSLRequest');
    const verify = ep.tlsMode === 'verify-full';
    const secure = tls.connect({
      socket: raw,
      servername: net.isIP(ep.host) ? undefined : ep.host,
      ca: ep.ca,
      rejectUnauthorized: verify,
      checkServerIdentity: verify ? tls.checkServerIdentity : () => undefined,
    });
    made.push(secure);
    await abortable(new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => { secure.removeListener('error', reject); resolve(); });
      secure.once('error', (e) => reject(new UpstreamError(`TLS to upstream failed: ${e.message}`)));
    }), signal);
    return secure;
  } catch (err) {
    // The TLS socket and the TCP socket under it: destroying one does not always close the other.
    destroyAll();
    throw err;
  } finally {
    signal.removeEventListener('abort', destroyAll);
  }
}

function readByte(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      cleanup();
      // A server that sends more than one byte here is attempting injection (CVE-2021-23222).
      if (d.length !== 1) reject(new UpstreamError('server sent unexpected data after SSLRequest'));
      else resolve(String.fromCharCode(d[0]!));
    };
    const onError = (e: Error) => { cleanup(); reject(e); };
    const onClose = () => { cleanup(); reject(new UpstreamError('connection closed during SSLRequest')); };
    const cleanup = () => { s.off('data', onData); s.off('error', onError); s.off('close', onClose); };
    s.on('data', onData);
    s.once('error', onError);
    s.once('close', onClose);
  });
}

type AuthMessage = BackendMessage & {
  salt?: Buffer; mechanisms?: string[]; data?: string; parameterName?: string; parameterValue?: string;
  processID?: number; secretKey?: number; code?: string; message?: string;
};

/**
 * Logs in on `socket`. Until the login resolves, `signal` aborting (deadline, client
 * gone) or any failure destroys the socket: nobody else holds it yet. After it
 * resolves the caller owns the socket, and a failed search_path probe only rejects.
 */
function login(socket: net.Socket, ep: UpstreamEndpoint, params: Record<string, string>, signal: AbortSignal): Promise<UpstreamConnection> {
  return new Promise((resolve, reject) => {
    const parser = new Parser();
    const parameters: [string, string][] = [];
    let pid = 0;
    let secret = 0;
    let scram: ScramClient | null = null;
    let done = false;
    let ready = false;
    let probe: string[] | null = null;
    let settle: { resolve: (v: string) => void; reject: (e: Error) => void } | null = null;
    let probeTimer: NodeJS.Timeout | undefined;
    const fail = (e: Error) => {
      if (!done) { done = true; cleanup(); socket.destroy(); reject(e); return; }
      if (settle) { const s = settle; settle = null; cleanup(); s.reject(e); }
    };
    const needPassword = (): string => {
      if (ep.password === undefined) throw new UpstreamError('the server asks for a password and the target has none configured');
      return ep.password;
    };
    const onMessage = (m: AuthMessage) => {
      if (done && !settle) return;
      switch (m.name) {
        case 'authenticationOk':
          // Queued now; the server reads it once startup completes, saving a round trip.
          socket.write(serialize.query(SEARCH_PATH_PROBE));
          break;
        case 'authenticationCleartextPassword':
          socket.write(serialize.password(needPassword()));
          break;
        case 'authenticationMD5Password': {
          const inner = createHash('md5').update(needPassword() + ep.user).digest('hex');
          const outer = createHash('md5').update(Buffer.concat([Buffer.from(inner), m.salt!])).digest('hex');
          socket.write(serialize.password('md5' + outer));
          break;
        }
        case 'authenticationSASL':
          if (!m.mechanisms?.includes('SCRAM-SHA-256')) throw new UpstreamError('server offers no SASL mechanism dbward supports');
          scram = new ScramClient(needPassword());
          socket.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
          break;
        case 'authenticationSASLContinue':
          if (!scram) throw new UpstreamError('unexpected SASLContinue');
          socket.write(serialize.sendSCRAMClientFinalMessage(scram.clientFinal(m.data ?? '')));
          break;
        case 'authenticationSASLFinal':
          if (!scram) throw new UpstreamError('unexpected SASLFinal');
          scram.verifyServerFinal(m.data ?? '');
          break;
        case 'parameterStatus':
          parameters.push([m.parameterName!, m.parameterValue!]);
          break;
        case 'backendKeyData':
          pid = m.processID!;
          secret = m.secretKey!;
          break;
        case 'readyForQuery': {
          if (!ready) {
            // Logged in: the caller may greet its client while the search_path answer is on its way.
            ready = true;
            done = true;
            signal.removeEventListener('abort', onAbort);
            const searchPath = new Promise<string>((res, rej) => { settle = { resolve: res, reject: rej }; });
            searchPath.catch(() => undefined); // the caller may not be listening yet
            probeTimer = setTimeout(() => fail(new UpstreamError(`no answer to SHOW search_path within ${ep.connectTimeoutMs} ms`)), ep.connectTimeoutMs);
            resolve({ socket, parameters, pid, secret, searchPath });
            break;
          }
          if (!probe || probe.length !== 1) throw new UpstreamError('the server did not answer the search_path query');
          const s = settle!;
          settle = null;
          cleanup();
          s.resolve(probe[0]!);
          break;
        }
        case 'rowDescription':
        case 'commandComplete':
          if (!ready) throw new UpstreamError(`unexpected message during login: ${m.name}`);
          break;
        case 'dataRow':
          if (!ready || probe) throw new UpstreamError('unexpected data row during login');
          probe = ((m as unknown as { fields: (string | null)[] }).fields).map((f) => f ?? '');
          break;
        case 'error':
          throw new UpstreamError(`server refused login: ${m.message ?? 'unknown error'}`, m.code);
        case 'notice':
          break;
        default:
          throw new UpstreamError(`unexpected message during login: ${m.name}`);
      }
    };
    const onData = (chunk: Buffer) => {
      try {
        parser.parse(chunk, (m) => onMessage(m as AuthMessage));
      } catch (e) {
        fail(e as Error);
      }
    };
    const onError = (e: Error) => fail(new UpstreamError(e.message));
    const onClose = () => fail(new UpstreamError('the server closed the connection during login'));
    const onAbort = () => fail(signal.reason as Error);
    const cleanup = () => {
      clearTimeout(probeTimer);
      signal.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    if (signal.aborted) { fail(signal.reason as Error); return; }
    signal.addEventListener('abort', onAbort, { once: true });
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    // Not pg-protocol's serialize.startup: it appends client_encoding=UTF8 after the parameters, and the
    // server keeps the last value, so a client that asked for another encoding would get UTF8.
    socket.write(encodeStartup({ ...params, user: ep.user, database: ep.database }));
  });
}

/** Maps an upstream login failure to what the client is told: retryable states pass through. */
export function clientErrorFor(target: string, err: UpstreamError): PgError {
  if (err.sqlstate && (err.sqlstate.startsWith('53') || err.sqlstate === '57P03')) {
    return new PgError(err.sqlstate, `upstream database of target "${target}" is not accepting connections now`, 'FATAL');
  }
  return pgErrors.upstreamUnavailable(target);
}

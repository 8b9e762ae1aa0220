// The token cache of `dbward login` and `dbward token`: one JSON file with one login
// per issuer + client id. It holds refresh tokens, so it is kept like an ssh private
// key: directory 0700, file 0600, replaced atomically, and refused when anyone else
// could read it. A lock file serializes refreshes, because issuers that rotate refresh
// tokens revoke the whole login when a used one is presented a second time.

import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** One cached login. Times are epoch seconds. */
export interface CachedLogin {
  issuer: string;
  clientId: string;
  /** Resource indicator sent at login and on every refresh. */
  resource?: string;
  scope?: string;
  accessToken: string;
  /** When the access token expires; absent when the issuer did not say. */
  expiresAt?: number;
  refreshToken?: string;
  /** When `dbward login` created this entry; the newest login is the default one. */
  loggedInAt: number;
}

/** Stable reasons the cache cannot be used. */
export type TokenCacheErrorCode = 'CACHE_INSECURE' | 'CACHE_CORRUPT' | 'CACHE_LOCKED' | 'CACHE_IO';

/** The token cache could not be read, trusted or written; `code` says why. */
export class TokenCacheError extends Error {
  override readonly name = 'TokenCacheError';
  constructor(readonly code: TokenCacheErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Timing of the lock file; tests shorten it. */
export interface TokenCacheOptions {
  /** How long to wait for another dbward to release the lock (default 20 s). */
  lockTimeoutMs?: number;
  /**
   * Age after which a lock is taken to be left by a crashed process (default 30 s). The
   * holder does at most one network call, bounded well below this.
   */
  staleLockMs?: number;
}

const VERSION = 1;

/** DBWARD_TOKEN_CACHE, else $XDG_CONFIG_HOME/dbward/tokens.json, else ~/.config/dbward/tokens.json. */
export function defaultCachePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DBWARD_TOKEN_CACHE) return path.resolve(env.DBWARD_TOKEN_CACHE);
  // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const xdg = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(os.homedir(), '.config');
  return path.join(xdg, 'dbward', 'tokens.json');
}

/** Issuer identifiers compare equal with or without a trailing slash (URL parsing adds one). */
function sameIssuer(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

/** The newest login matching the given issuer and/or client id (any when neither is given). */
export function findLogin(logins: readonly CachedLogin[], sel: { issuer?: string; clientId?: string }): CachedLogin | undefined {
  return logins
    .filter((l) => (sel.issuer === undefined || sameIssuer(l.issuer, sel.issuer)) && (sel.clientId === undefined || l.clientId === sel.clientId))
    .sort((a, b) => b.loggedInAt - a.loggedInAt)[0];
}

/** The logins with `login` replacing any entry of the same issuer and client id. */
export function putLogin(logins: readonly CachedLogin[], login: CachedLogin): CachedLogin[] {
  return [...logins.filter((l) => !(sameIssuer(l.issuer, login.issuer) && l.clientId === login.clientId)), login];
}

const isOptional = (v: unknown, type: 'string' | 'number') => v === undefined || typeof v === type;

function isCachedLogin(v: unknown): v is CachedLogin {
  if (typeof v !== 'object' || v === null) return false;
  const l = v as Record<string, unknown>;
  return typeof l.issuer === 'string' && typeof l.clientId === 'string' && typeof l.accessToken === 'string'
    && typeof l.loggedInAt === 'number' && isOptional(l.resource, 'string') && isOptional(l.scope, 'string')
    && isOptional(l.expiresAt, 'number') && isOptional(l.refreshToken, 'string');
}

function ioError(what: string, file: string, err: unknown): TokenCacheError {
  const e = err as NodeJS.ErrnoException;
  return new TokenCacheError('CACHE_IO', `cannot ${what} token cache ${file}: ${e.code ?? e.message}`, { cause: err });
}

/** The token cache file at one path. */
export class TokenCache {
  readonly path: string;
  private readonly lockPath: string;
  private readonly lockTimeoutMs: number;
  private readonly staleLockMs: number;

  constructor(file: string, opts: TokenCacheOptions = {}) {
    this.path = path.resolve(file);
    this.lockPath = `${this.path}.lock`;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 20_000;
    this.staleLockMs = opts.staleLockMs ?? 30_000;
  }

  /** All cached logins; none when the file does not exist. Refuses a file others could read. */
  async read(): Promise<CachedLogin[]> {
    let text: string;
    try {
      const fh = await open(this.path, 'r');
      try {
        // Checked on the open handle, so the file read is the file checked.
        this.checkPrivate(await fh.stat());
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      if (err instanceof TokenCacheError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError('read', this.path, err);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw this.corrupt('it is not JSON');
    }
    const { version, logins } = (doc ?? {}) as { version?: unknown; logins?: unknown };
    if (version !== VERSION) throw this.corrupt(`unknown version ${JSON.stringify(version)}`);
    if (!Array.isArray(logins) || !logins.every(isCachedLogin)) throw this.corrupt('an entry has the wrong shape');
    return logins;
  }

  /** Replaces the file with these logins: a 0600 temporary file renamed over it. */
  async write(logins: readonly CachedLogin[]): Promise<void> {
    const body = `${JSON.stringify({ version: VERSION, logins }, null, 2)}\n`;
    const tmp = `${this.path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await this.ensureDir();
      // 'wx' (O_EXCL) never follows or reuses an existing path, and the mode is set at
      // creation, so the tokens are never readable by others, not even for an instant.
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(body, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw ioError('write', this.path, err);
    }
  }

  /** Runs fn holding the cache's lock file, so a read-refresh-write cannot interleave with another dbward's. */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      await rm(this.lockPath, { force: true }).catch(() => undefined);
    }
  }

  private async acquire(): Promise<void> {
    try {
      await this.ensureDir();
    } catch (err) {
      throw ioError('create the directory of', this.path, err);
    }
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        const fh = await open(this.lockPath, 'wx', 0o600);
        await fh.writeFile(`${process.pid}\n`).finally(() => fh.close());
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('lock', this.path, err);
      }
      const held = await stat(this.lockPath).catch(() => undefined);
      // A crashed holder leaves its lock behind. Two waiters could both judge it stale
      // and one remove the other's fresh lock; that needs a crash and a race together,
      // and costs at most one extra refresh, so mtime is good enough here.
      if (held && Date.now() - held.mtimeMs > this.staleLockMs) {
        await rm(this.lockPath, { force: true });
        continue;
      }
      if (Date.now() >= deadline) {
        throw new TokenCacheError('CACHE_LOCKED',
          `token cache ${this.path} is locked by another dbward process; if none is running, delete ${this.lockPath}`);
      }
      await sleep(25 + Math.floor(Math.random() * 50));
    }
  }

  private async ensureDir(): Promise<void> {
    // Only directories created here get 0700; an existing one is the user's choice.
    await mkdir(path.dirname(this.path), { recursive: true, mode: 0o700 });
  }

  /** Like ssh with a private key: refuse a cache that group or others can access, or that someone else owns. */
  private checkPrivate(st: Stats): void {
    if (!st.isFile()) throw new TokenCacheError('CACHE_INSECURE', `token cache ${this.path} is not a regular file`);
    if (process.platform === 'win32') return;
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new TokenCacheError('CACHE_INSECURE',
        `token cache ${this.path} is accessible by others (mode ${mode}) and holds refresh tokens; run: chmod 600 ${this.path}`);
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new TokenCacheError('CACHE_INSECURE', `token cache ${this.path} is owned by uid ${st.uid}, not by you (uid ${uid})`);
    }
  }

  private corrupt(why: string): TokenCacheError {
    return new TokenCacheError('CACHE_CORRUPT', `token cache ${this.path} is not valid (${why}); delete it and run dbward login`);
  }
}

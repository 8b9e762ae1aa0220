// `dbward login` and `dbward token`: the OIDC device flow with a token cache, and the
// client-credentials grant for services and agents. stdout carries the token and
// nothing else (for PGPASSWORD=$(dbward token)); every message goes to stderr.
// Exit codes: 0 ok, 1 failure, 2 usage error.

import { parseArgs } from 'node:util';
import {
  DEFAULT_TIMEOUT_SEC, OAuthError, clientCredentials, connect, pollDeviceLogin, printable, refresh, startDeviceLogin, type Connection,
} from '../identity/oauth-client.js';
import { TokenCache, TokenCacheError, defaultCachePath, findLogin, putLogin, type CachedLogin } from '../identity/token-cache.js';
import { isLoopbackUrl } from '../identity/verifier.js';

/** A cached access token closer than this to its expiry is refreshed first (seconds). */
const REFRESH_MARGIN_SEC = 60;
/** email and profile carry the claims dbward maps at most issuers; offline_access asks for a refresh token. */
const DEFAULT_LOGIN_SCOPE = 'openid email profile offline_access';

const LOGIN_USAGE = 'Usage: dbward login [--issuer URL] [--client-id ID] [--resource R] [--scope S] [--cache FILE]\n';
const TOKEN_USAGE = `Usage: dbward token [--issuer URL] [--client-id ID] [--cache FILE]
       dbward token --client-credentials --issuer URL --client-id ID [--resource R] [--scope S]
         (the client secret comes from DBWARD_CLIENT_SECRET)
`;

/** A bad invocation: exit 2, with the usage. */
class UsageError extends Error {}
/** A failure that is neither the issuer's nor the cache's, such as nothing cached: exit 1. */
class Failure extends Error {}

const COMMON = {
  issuer: { type: 'string' }, 'client-id': { type: 'string' }, resource: { type: 'string' },
  scope: { type: 'string' }, cache: { type: 'string' }, help: { type: 'boolean', short: 'h' },
} as const;

/** `dbward login`: runs the device flow and caches the tokens. Resolves to the exit code. */
export function login(argv: string[]): Promise<number> {
  return run('login', LOGIN_USAGE, async () => {
    const { values: v } = parseArgs({ args: argv, options: COMMON, strict: true });
    if (v.help) return help(LOGIN_USAGE);
    const issuer = issuerUrl(need(setting(v.issuer, 'DBWARD_ISSUER'), 'missing --issuer URL (or DBWARD_ISSUER)'));
    const clientId = need(setting(v['client-id'], 'DBWARD_CLIENT_ID'), 'missing --client-id ID (or DBWARD_CLIENT_ID)');
    const resource = setting(v.resource, 'DBWARD_RESOURCE');
    const scope = setting(v.scope, 'DBWARD_SCOPE') ?? DEFAULT_LOGIN_SCOPE;
    const cache = new TokenCache(v.cache ?? defaultCachePath());
    // An unusable cache must fail now, not after the user has logged in in the browser.
    await cache.read();
    const conn = await connect({ issuer, clientId, timeoutSec: timeoutSec() });
    const withResource: Record<string, string> = resource ? { resource } : {};
    const da = await startDeviceLogin(conn, { scope, ...withResource });
    say(`To log in, open this page in a browser:  ${printable(da.verification_uri)}\nand enter the code:  ${printable(da.user_code)}\n`
      + (da.verification_uri_complete ? `(or open ${printable(da.verification_uri_complete)})\n` : '')
      + 'Waiting for the login to complete...\n');
    // RFC 8707 also allows the resource at the token endpoint; some issuers look only there.
    const t = await pollDeviceLogin(conn, da, withResource);
    const entry: CachedLogin = {
      issuer: conn.issuer, clientId, ...withResource, scope, accessToken: t.accessToken,
      ...(t.expiresAt !== undefined && { expiresAt: t.expiresAt }), ...(t.refreshToken && { refreshToken: t.refreshToken }),
      loggedInAt: nowSec(),
    };
    await cache.withLock(async () => cache.write(putLogin(await cache.read(), entry)));
    const who = t.idClaims?.email ?? t.idClaims?.preferred_username ?? t.idClaims?.sub;
    say(`Logged in${who ? ` as ${printable(String(who))}` : ''} at ${conn.issuer}; tokens cached in ${cache.path}\n`);
    if (!t.refreshToken) {
      say('warning: the issuer sent no refresh token, so you will have to log in again when the token expires (the scope needs offline_access)\n');
    }
    return 0;
  });
}

/** `dbward token`: prints a valid access token, from the cache or the client-credentials grant. */
export function token(argv: string[]): Promise<number> {
  return run('token', TOKEN_USAGE, async () => {
    const { values: v } = parseArgs({
      args: argv, strict: true,
      options: { ...COMMON, 'client-credentials': { type: 'boolean' }, 'client-secret': { type: 'string' } },
    });
    if (v.help) return help(TOKEN_USAGE);
    const issuer = setting(v.issuer, 'DBWARD_ISSUER');
    const clientId = setting(v['client-id'], 'DBWARD_CLIENT_ID');
    const resource = setting(v.resource, 'DBWARD_RESOURCE');
    const scope = setting(v.scope, 'DBWARD_SCOPE');
    if (v['client-credentials']) {
      if (v['client-secret'] !== undefined) {
        say('dbward token: warning: --client-secret is visible to other users (ps, shell history); prefer DBWARD_CLIENT_SECRET\n');
      }
      const conn = await connect({
        issuer: issuerUrl(need(issuer, 'missing --issuer URL (or DBWARD_ISSUER)')),
        clientId: need(clientId, 'missing --client-id ID (or DBWARD_CLIENT_ID)'),
        clientSecret: need(v['client-secret'] || process.env.DBWARD_CLIENT_SECRET, 'missing client secret: set DBWARD_CLIENT_SECRET'),
        timeoutSec: timeoutSec(),
      });
      return print((await clientCredentials(conn, { ...(scope && { scope }), ...(resource && { resource }) })).accessToken);
    }
    if (v['client-secret'] !== undefined) throw new UsageError('--client-secret applies only with --client-credentials');
    const cache = new TokenCache(v.cache ?? defaultCachePath());
    return print(await userToken(cache, { issuer, clientId, resource, scope }));
  });
}

/** The cached login's access token (refreshed when due), for commands that call dbward's admin API. */
export function cachedAccessToken(cachePath?: string): Promise<string> {
  return userToken(new TokenCache(cachePath ?? defaultCachePath()), {});
}

/** The cached user token, refreshed first when it expires within the margin. */
async function userToken(cache: TokenCache, want: { issuer?: string; clientId?: string; resource?: string; scope?: string }): Promise<string> {
  const cached = findLogin(await cache.read(), {
    ...(want.issuer && { issuer: want.issuer }), ...(want.clientId && { clientId: want.clientId }),
  });
  if (!cached) {
    const which = `${want.issuer ? ` for ${want.issuer}` : ''}${want.clientId ? ` with client ${want.clientId}` : ''}`;
    throw new Failure(`no cached login${which} in ${cache.path}; run dbward login`);
  }
  // The cache holds one login per issuer and client; a token for another resource or
  // scope needs its own login, and printing the cached one would just fail later.
  for (const [name, wanted, had] of [['resource', want.resource, cached.resource], ['scope', want.scope, cached.scope]] as const) {
    if (wanted !== undefined && wanted !== had) {
      const arg = /\s/.test(wanted) ? `"${wanted}"` : wanted;
      throw new Failure(`the cached login is for ${name} ${had ?? '(none)'}, not ${wanted}; run dbward login --${name} ${arg}`);
    }
  }
  if (fresh(cached)) return cached.accessToken;
  if (!cached.refreshToken) {
    if (!usable(cached)) throw new Failure('the cached token has expired and there is no refresh token; run dbward login');
    say(`dbward token: warning: the token expires ${expiry(cached)} and cannot be refreshed; run dbward login for a new one\n`);
    return cached.accessToken;
  }
  try {
    const conn = await connect({ issuer: new URL(cached.issuer), clientId: cached.clientId, timeoutSec: timeoutSec() });
    return await cache.withLock(() => refreshLocked(cache, conn, cached));
  } catch (err) {
    // A token that is still valid, if briefly, beats none while the issuer is unreachable.
    if (err instanceof OAuthError && err.code === 'ISSUER_UNAVAILABLE' && usable(cached)) {
      say(`dbward token: warning: ${err.message}; using the cached token, which expires ${expiry(cached)}\n`);
      return cached.accessToken;
    }
    throw err;
  }
}

/** Refreshes under the cache lock, so a rotated refresh token is never presented twice. */
async function refreshLocked(cache: TokenCache, conn: Connection, seen: CachedLogin): Promise<string> {
  const logins = await cache.read();
  const current = findLogin(logins, { issuer: seen.issuer, clientId: seen.clientId });
  // Another dbward may have refreshed (or logged in again) while this one waited.
  if (current && fresh(current)) return current.accessToken;
  if (!current?.refreshToken) throw new Failure('the cached login changed meanwhile and cannot be refreshed; run dbward login');
  const t = await refresh(conn, current.refreshToken, current.resource ? { resource: current.resource } : {});
  const { expiresAt: _old, ...rest } = current;
  await cache.write(putLogin(logins, {
    ...rest, accessToken: t.accessToken, ...(t.expiresAt !== undefined && { expiresAt: t.expiresAt }),
    // Issuers that do not rotate send no new refresh token; the old one stays good.
    refreshToken: t.refreshToken ?? current.refreshToken,
  }));
  return t.accessToken;
}

const nowSec = () => Math.floor(Date.now() / 1000);
/** Valid beyond the refresh margin. An unknown expiry is refreshed when possible. */
const fresh = (l: CachedLogin) => l.expiresAt !== undefined && l.expiresAt - nowSec() > REFRESH_MARGIN_SEC;
/** Not yet expired, as far as the cache knows. */
const usable = (l: CachedLogin) => l.expiresAt === undefined || l.expiresAt > nowSec();
const expiry = (l: CachedLogin) => (l.expiresAt === undefined ? 'at an unknown time' : `in ${l.expiresAt - nowSec()} s`);

/** Runs a command body and turns its errors into a one-line message and an exit code. */
async function run(name: string, usage: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    const parseError = String((err as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS');
    if (err instanceof UsageError || parseError) {
      say(`dbward ${name}: ${(err as Error).message}\n${usage}`);
      return 2;
    }
    const known = err instanceof OAuthError || err instanceof TokenCacheError || err instanceof Failure;
    say(`dbward ${name}: ${known ? err.message : `unexpected error: ${(err as Error).message ?? String(err)}`}\n`);
    return 1;
  }
}

/** The flag if given, else the environment variable; empty counts as unset. */
function setting(flag: string | undefined, env: string): string | undefined {
  return (flag ?? process.env[env]) || undefined;
}

function need(value: string | undefined, missing: string): string {
  if (!value) throw new UsageError(missing);
  return value;
}

function issuerUrl(s: string): URL {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new UsageError(`issuer ${s} is not a URL`);
  }
  // Tokens and refresh tokens must not cross the network in clear.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackUrl(url))) {
    throw new UsageError(`issuer ${s} must use https (plain http only on loopback)`);
  }
  return url;
}

/** DBWARD_HTTP_TIMEOUT: seconds each request to the issuer may take. */
function timeoutSec(): number {
  const raw = process.env.DBWARD_HTTP_TIMEOUT;
  if (!raw) return DEFAULT_TIMEOUT_SEC;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 300) throw new UsageError(`DBWARD_HTTP_TIMEOUT must be whole seconds from 1 to 300, not "${raw}"`);
  return n;
}

function say(text: string): void {
  process.stderr.write(text);
}

function help(usage: string): number {
  process.stdout.write(usage);
  return 0;
}

/** Writes the token and waits until it is handed to the OS: the caller exits right after. */
function print(tokenText: string): Promise<number> {
  return new Promise((resolve, reject) => {
    process.stdout.write(`${tokenText}\n`, (err) => (err ? reject(err) : resolve(0)));
  });
}

// The CLI token cache: location, private permissions, atomic replacement, shape
// checks, login selection and the refresh lock, on real files in a temp dir.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  TokenCache, TokenCacheError, defaultCachePath, findLogin, putLogin, type CachedLogin,
} from '../../src/identity/token-cache.js';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-cache-')); });
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

const login = (over: Partial<CachedLogin> = {}): CachedLogin => ({
  issuer: 'https://idp.example.com', clientId: 'dbward-cli', resource: 'urn:dbward', scope: 'openid offline_access',
  accessToken: 'a.b.c', expiresAt: 2_000_000_000, refreshToken: 'refresh-1', loggedInAt: 1_900_000_000, ...over,
});
const mode = (p: string) => fs.statSync(p).mode & 0o777;

/** Resolves to the TokenCacheError the promise rejects with. */
async function failure(p: Promise<unknown>): Promise<TokenCacheError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TokenCacheError);
    return err as TokenCacheError;
  }
  throw new Error('expected a TokenCacheError');
}

describe('defaultCachePath', () => {
  it('prefers DBWARD_TOKEN_CACHE, then an absolute XDG_CONFIG_HOME, then ~/.config', () => {
    expect(defaultCachePath({ DBWARD_TOKEN_CACHE: '/x/t.json', XDG_CONFIG_HOME: '/cfg' })).toBe('/x/t.json');
    expect(defaultCachePath({ XDG_CONFIG_HOME: '/cfg' })).toBe('/cfg/dbward/tokens.json');
    const home = path.join(os.homedir(), '.config', 'dbward', 'tokens.json');
    expect(defaultCachePath({})).toBe(home);
    expect(defaultCachePath({ XDG_CONFIG_HOME: 'relative/cfg' })).toBe(home); // the XDG spec says to ignore it
  });
});

describe('TokenCache read and write', () => {
  it('reads a missing file as no logins', async () => {
    expect(await new TokenCache(path.join(dir, 'none.json')).read()).toEqual([]);
  });

  it('creates the directory 0700 and the file 0600, and leaves no temporary file', async () => {
    const file = path.join(dir, 'a', 'b', 'tokens.json');
    const cache = new TokenCache(file);
    await cache.write([login()]);
    expect(mode(file)).toBe(0o600);
    expect(mode(path.dirname(file))).toBe(0o700);
    expect(mode(path.join(dir, 'a'))).toBe(0o700);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['tokens.json']);
    expect(await cache.read()).toEqual([login()]);
  });

  it('replaces the file by rename, so a reader never sees a partial write', async () => {
    const file = path.join(dir, 'tokens.json');
    const cache = new TokenCache(file);
    await cache.write([login()]);
    const before = fs.statSync(file).ino;
    await cache.write([login({ accessToken: 'x.y.z' })]);
    expect(fs.statSync(file).ino).not.toBe(before);
    expect((await cache.read())[0]!.accessToken).toBe('x.y.z');
  });

  it.each([0o644, 0o640, 0o604, 0o660, 0o610])('refuses a file with mode %o, like ssh with a private key', async (m) => {
    const file = path.join(dir, 'tokens.json');
    const cache = new TokenCache(file);
    await cache.write([login()]);
    fs.chmodSync(file, m);
    const err = await failure(cache.read());
    expect(err.code).toBe('CACHE_INSECURE');
    expect(err.message).toBe(`token cache ${file} is accessible by others (mode 0${m.toString(8)}) and holds refresh tokens; run: chmod 600 ${file}`);
    expect(err.message).not.toContain('refresh-1');
    fs.chmodSync(file, 0o600);
    expect(await cache.read()).toHaveLength(1);
  });

  it.runIf(process.getuid?.() === 0)('refuses a file owned by someone else', async () => {
    const file = path.join(dir, 'tokens.json');
    const cache = new TokenCache(file);
    await cache.write([login()]);
    fs.chownSync(file, 4242, 4242);
    const err = await failure(cache.read());
    expect(err.code).toBe('CACHE_INSECURE');
    expect(err.message).toMatch(/owned by uid 4242, not by you/);
  });

  it('refuses what is not a regular file', async () => {
    const err = await failure(new TokenCache(dir).read());
    expect(err.code).toBe('CACHE_INSECURE');
  });

  it.each([
    ['not JSON', '{', /it is not JSON/],
    ['another version', '{"version":2,"logins":[]}', /unknown version 2/],
    ['no logins', '{"version":1}', /wrong shape/],
    ['a bad entry', '{"version":1,"logins":[{"issuer":"x"}]}', /wrong shape/],
    ['a mistyped field', JSON.stringify({ version: 1, logins: [{ ...login(), expiresAt: 'soon' }] }), /wrong shape/],
  ])('calls a file with %s corrupt and says what to do', async (_name, body, why) => {
    const file = path.join(dir, 'tokens.json');
    fs.writeFileSync(file, body, { mode: 0o600 });
    const err = await failure(new TokenCache(file).read());
    expect(err.code).toBe('CACHE_CORRUPT');
    expect(err.message).toMatch(why);
    expect(err.message).toMatch(/delete it and run dbward login$/);
  });

  it('reports an unwritable location as CACHE_IO', async () => {
    const blocker = path.join(dir, 'file');
    fs.writeFileSync(blocker, '');
    const err = await failure(new TokenCache(path.join(blocker, 'tokens.json')).write([login()]));
    expect(err.code).toBe('CACHE_IO');
    expect(err.message).toMatch(/^cannot write token cache .*: (ENOTDIR|EEXIST)$/);
  });
});

describe('findLogin and putLogin', () => {
  const a = login({ issuer: 'https://a.example.com', loggedInAt: 10 });
  const b = login({ issuer: 'https://b.example.com/', loggedInAt: 30 });
  const b2 = login({ issuer: 'https://b.example.com/', clientId: 'other', loggedInAt: 20 });

  it('defaults to the newest login and filters by issuer and client id', () => {
    expect(findLogin([a, b, b2], {})).toBe(b);
    expect(findLogin([a, b, b2], { issuer: 'https://a.example.com' })).toBe(a);
    expect(findLogin([a, b, b2], { issuer: 'https://b.example.com' })).toBe(b); // trailing slash ignored
    expect(findLogin([a, b, b2], { clientId: 'other' })).toBe(b2);
    expect(findLogin([a, b, b2], { issuer: 'https://a.example.com', clientId: 'other' })).toBeUndefined();
    expect(findLogin([], {})).toBeUndefined();
  });

  it('replaces the login of the same issuer and client id, keeping the others', () => {
    const again = login({ issuer: 'https://b.example.com', accessToken: 'new', loggedInAt: 40 });
    expect(putLogin([a, b, b2], again)).toEqual([a, b2, again]);
  });
});

describe('TokenCache.withLock', () => {
  it('runs holders one at a time and releases the lock after a failure', async () => {
    const cache = new TokenCache(path.join(dir, 'tokens.json'));
    const events: string[] = [];
    const hold = (name: string) => cache.withLock(async () => {
      events.push(`${name}+`);
      await new Promise((r) => setTimeout(r, 30));
      events.push(`${name}-`);
    });
    await Promise.all([hold('a'), hold('b'), hold('c')]);
    for (let i = 0; i < events.length; i += 2) expect(events[i]!.slice(0, -1)).toBe(events[i + 1]!.slice(0, -1));
    await expect(cache.withLock(async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(fs.existsSync(`${cache.path}.lock`)).toBe(false);
  });

  it('gives up with CACHE_LOCKED while another process holds the lock', async () => {
    const cache = new TokenCache(path.join(dir, 'tokens.json'), { lockTimeoutMs: 200 });
    fs.writeFileSync(`${cache.path}.lock`, '99999\n');
    const err = await failure(cache.withLock(async () => undefined));
    expect(err.code).toBe('CACHE_LOCKED');
    expect(err.message).toBe(`token cache ${cache.path} is locked by another dbward process; if none is running, delete ${cache.path}.lock`);
  });

  it('takes over a lock left behind by a crashed process', async () => {
    const cache = new TokenCache(path.join(dir, 'tokens.json'), { lockTimeoutMs: 200, staleLockMs: 1_000 });
    const lock = `${cache.path}.lock`;
    fs.writeFileSync(lock, '99999\n');
    const old = new Date(Date.now() - 5_000);
    fs.utimesSync(lock, old, old);
    expect(await cache.withLock(async () => 'ran')).toBe('ran');
    expect(fs.existsSync(lock)).toBe(false);
  });
});

// `dbward login` and `dbward token` as a user runs them: the real CLI in a child
// process against the real in-process oidc-provider. The test plays the browser: it
// reads the URL and code that login prints and completes the login over HTTP.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { completeDeviceLogin } from '../../src/embedded/dev-idp.js';
import { TokenVerifier } from '../../src/identity/index.js';
import { AGENT_CLIENT, DBWARD_RESOURCE, DEVICE_CLIENT_ID, startTestIssuer, type TestIssuer } from '../helpers/oidc.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = path.join(ROOT, 'src/cli/main.ts');

interface Run { code: number; stdout: string; stderr: string; endedAt: number }

/** The parent's environment without DBWARD_* settings, with a home that is a temp dir. */
function cleanEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DBWARD_')));
  return { ...env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), ...extra };
}

/** Starts the CLI; `done` resolves when it exits, never rejects. */
function spawnCli(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const done = new Promise<Run>((resolve) => {
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, endedAt: Date.now() }));
  });
  return { child, done, stderr: () => stderr };
}

const cli = (args: string[], env: NodeJS.ProcessEnv) => spawnCli(args, env).done;

/** Runs `dbward login` and completes it in the "browser" as accountId. */
async function login(args: string[], env: NodeJS.ProcessEnv, accountId: string): Promise<Run> {
  const run = spawnCli(['login', ...args], env);
  let exited = false;
  void run.done.then(() => { exited = true; });
  let url: string | undefined;
  let code: string | undefined;
  for (let waited = 0; !(url && code); waited += 50) {
    if (exited || waited > 20_000) throw new Error(`login printed no URL and code:\n${(await run.done).stderr}`);
    await new Promise((r) => setTimeout(r, 50));
    url = /open this page in a browser:\s+(\S+)/.exec(run.stderr())?.[1];
    code = /enter the code:\s+(\S+)/.exec(run.stderr())?.[1];
  }
  await completeDeviceLogin(url!, code!, accountId);
  return run.done;
}

interface CacheFile { version: number; logins: Array<Record<string, any>> }
const readCache = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as CacheFile;
const mode = (p: string) => fs.statSync(p).mode & 0o777;
const JWT_LINE = /^[\w-]+\.[\w-]+\.[\w-]+\n$/;

/** Verifies as dbward would at time `atMs`, with no clock tolerance, so an expired token fails. */
function verifyAt(issuer: string, token: string, atMs: number) {
  return new TokenVerifier({ issuer, audience: 'dbward', clockToleranceSec: 0 }, { now: () => atMs }).verify(token);
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Every test spawns the CLI (tsx compiles it each time), which is slow on a busy machine. */
const SLOW = { timeout: 90_000 };

const dirs: string[] = [];
function tempHome(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-cli-'));
  dirs.push(d);
  return d;
}
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

describe('dbward login and dbward token', SLOW, () => {
  let idp: TestIssuer;
  beforeAll(async () => { idp = await startTestIssuer(); });
  afterAll(async () => { await idp?.close(); });

  it('logs in with the device flow, caches privately, then prints a verifiable token', async () => {
    const home = tempHome();
    const cache = path.join(home, 'state', 'tokens.json');
    const env = cleanEnv(home);
    const loggedIn = await login(['--issuer', idp.issuer, '--client-id', DEVICE_CLIENT_ID, '--resource', DBWARD_RESOURCE, '--cache', cache], env, 'alice');
    expect(loggedIn.code, loggedIn.stderr).toBe(0);
    expect(loggedIn.stdout).toBe('');
    expect(loggedIn.stderr).toMatch(/Logged in as alice@example.com/);
    expect(mode(cache)).toBe(0o600);
    expect(mode(path.dirname(cache))).toBe(0o700);
    const [entry] = readCache(cache).logins;
    expect(entry).toMatchObject({ issuer: idp.issuer, clientId: DEVICE_CLIENT_ID, resource: DBWARD_RESOURCE });
    expect(entry!.refreshToken).toEqual(expect.any(String));

    // No flags: the login is found in the cache given by the environment.
    const printed = await cli(['token'], { ...env, DBWARD_TOKEN_CACHE: cache });
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toMatch(JWT_LINE);
    expect(printed.stderr).toBe('');
    const token = printed.stdout.trim();
    expect(token).toBe(entry!.accessToken); // fresh: no refresh needed
    expect(decodeJwt(token)).toMatchObject({ aud: 'dbward', email: 'alice@example.com' });
    const id = await new TokenVerifier({ issuer: idp.issuer, audience: 'dbward' }).verify(token, 'alice@example.com');
    expect(id).toMatchObject({ subject: 'alice', kind: 'human', clientId: DEVICE_CLIENT_ID });

    // A token for another resource needs its own login, not the cached one.
    const other = await cli(['token', '--cache', cache, '--resource', 'urn:other-api'], env);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/cached login is for resource urn:dbward.*run dbward login --resource urn:other-api/);

    for (const out of [loggedIn, printed, other]) expect(out.stdout + out.stderr).not.toContain(entry!.refreshToken);
  });

  it('uses the default cache under XDG_CONFIG_HOME', async () => {
    const home = tempHome();
    const env = cleanEnv(home, { DBWARD_ISSUER: idp.issuer, DBWARD_CLIENT_ID: DEVICE_CLIENT_ID, DBWARD_RESOURCE });
    expect((await login([], env, 'bob')).code).toBe(0);
    const cache = path.join(home, '.config', 'dbward', 'tokens.json');
    expect(mode(cache)).toBe(0o600);
    expect(mode(path.dirname(cache))).toBe(0o700);
    const printed = await cli(['token'], env);
    expect(printed.code, printed.stderr).toBe(0);
    expect(decodeJwt(printed.stdout.trim())).toMatchObject({ aud: 'dbward', email: 'bob@example.com' });
  });

  it('refuses a cache that others can read, before any network call', async () => {
    const home = tempHome();
    const cache = path.join(home, 'tokens.json');
    const env = cleanEnv(home);
    expect((await login(['--issuer', idp.issuer, '--client-id', DEVICE_CLIENT_ID, '--cache', cache], env, 'alice')).code).toBe(0);
    fs.chmodSync(cache, 0o644);
    const refused = await cli(['token', '--cache', cache], env);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toBe(`dbward token: token cache ${cache} is accessible by others (mode 0644) and holds refresh tokens; run: chmod 600 ${cache}\n`);
    const relogin = await cli(['login', '--issuer', idp.issuer, '--client-id', DEVICE_CLIENT_ID, '--cache', cache], env);
    expect(relogin.code).toBe(1);
    expect(relogin.stderr).not.toMatch(/open this page/);
    fs.chmodSync(cache, 0o600);
    expect((await cli(['token', '--cache', cache], env)).code).toBe(0);
  });

  it('says to run dbward login when nothing is cached', async () => {
    const home = tempHome();
    const r = await cli(['token', '--issuer', idp.issuer], cleanEnv(home));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^dbward token: no cached login for http:\/\/127\.0\.0\.1:\d+ in .*tokens\.json; run dbward login\n$/);
  });

  it('prints an agent token from the client-credentials grant, secret from the environment', async () => {
    const env = cleanEnv(tempHome(), { DBWARD_CLIENT_SECRET: AGENT_CLIENT.secret });
    const r = await cli(['token', '--client-credentials', '--issuer', idp.issuer, '--client-id', AGENT_CLIENT.id, '--resource', DBWARD_RESOURCE], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(JWT_LINE);
    expect(r.stderr).toBe('');
    const token = r.stdout.trim();
    expect(decodeJwt(token)).toMatchObject({ dbward_kind: 'agent', aud: 'dbward', client_id: AGENT_CLIENT.id });
    const id = await new TokenVerifier({ issuer: idp.issuer, audience: 'dbward', kind: { claim: 'dbward_kind' } }).verify(token, AGENT_CLIENT.id);
    expect(id.kind).toBe('agent');
  });

  it('reports a wrong client secret without echoing it', async () => {
    const env = cleanEnv(tempHome(), { DBWARD_CLIENT_SECRET: 'wrong-secret-value' });
    const r = await cli(['token', '--client-credentials', '--issuer', idp.issuer, '--client-id', AGENT_CLIENT.id], env);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^dbward token: http:\/\/127\.0\.0\.1:\d+ refused the client credentials: invalid_client/);
    expect(r.stderr).not.toContain('wrong-secret-value');
  });
});

describe('dbward token refresh', SLOW, () => {
  let idp: TestIssuer;
  beforeAll(async () => { idp = await startTestIssuer({ accessTokenTTL: 2 }); });
  afterAll(async () => { await idp?.close(); });

  it('refreshes an expired token, stores the rotated refresh token, and serializes concurrent refreshes', async () => {
    const home = tempHome();
    const cache = path.join(home, 'tokens.json');
    const env = cleanEnv(home, { DBWARD_TOKEN_CACHE: cache });
    const loggedIn = await login(['--issuer', idp.issuer, '--client-id', DEVICE_CLIENT_ID, '--resource', DBWARD_RESOURCE], env, 'bob');
    expect(loggedIn.code, loggedIn.stderr).toBe(0);
    const first = readCache(cache).logins[0]!;
    const secrets = new Set<string>([first.refreshToken]);
    // Past both the cached expiry and the token's own exp: under load the two can differ by a second.
    const expiry = Math.max(first.expiresAt, decodeJwt(first.accessToken).exp!);
    await new Promise((r) => setTimeout(r, (expiry * 1000) - Date.now() + 200));

    const r = await cli(['token'], env);
    expect(r.code, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).not.toBe(first.accessToken);
    await expect(verifyAt(idp.issuer, first.accessToken, r.endedAt)).rejects.toMatchObject({ code: 'TOKEN_EXPIRED' });
    expect((await verifyAt(idp.issuer, token, r.endedAt)).user).toBe('bob@example.com');
    const second = readCache(cache).logins[0]!;
    expect(second.refreshToken).not.toBe(first.refreshToken); // the provider rotates; the new one was kept
    expect(mode(cache)).toBe(0o600);
    secrets.add(second.refreshToken);

    // The provider revokes the whole login when a rotated refresh token is replayed, so
    // concurrent refreshes only all succeed if the cache lock serializes them.
    const runs = await Promise.all([1, 2, 3].map(() => cli(['token'], env)));
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(0);
      expect((await verifyAt(idp.issuer, run.stdout.trim(), run.endedAt)).user).toBe('bob@example.com');
    }
    const after = await cli(['token'], env);
    expect(after.code, after.stderr).toBe(0);
    secrets.add(readCache(cache).logins[0]!.refreshToken);
    for (const out of [loggedIn, r, ...runs, after]) {
      for (const s of secrets) expect(out.stdout + out.stderr).not.toContain(s);
    }
  });
});

describe('dbward login and token failures', SLOW, () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise<void>((r) => { s.close(() => r()); });
  });

  it('fails clearly and at once when the issuer is down', async () => {
    const issuer = `http://127.0.0.1:${await closedPort()}`;
    // A timeout far above the bound below: a refused connection must not wait for it.
    const env = cleanEnv(tempHome(), { DBWARD_CLIENT_SECRET: AGENT_CLIENT.secret, DBWARD_HTTP_TIMEOUT: '60' });
    const started = Date.now();
    const [cc, li] = await Promise.all([
      cli(['token', '--client-credentials', '--issuer', issuer, '--client-id', AGENT_CLIENT.id], env),
      cli(['login', '--issuer', issuer, '--client-id', DEVICE_CLIENT_ID], env),
    ]);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(cc).toMatchObject({ code: 1, stdout: '', stderr: `dbward token: cannot reach issuer ${issuer} (ECONNREFUSED)\n` });
    expect(li).toMatchObject({ code: 1, stdout: '', stderr: `dbward login: cannot reach issuer ${issuer} (ECONNREFUSED)\n` });
  });

  it('gives up on a silent issuer after DBWARD_HTTP_TIMEOUT', async () => {
    // Reads (so it sees the client hang up) but never answers; measuring on the server
    // side leaves the child's start-up time out of the measurement.
    const held: number[] = [];
    const silent = net.createServer((socket) => {
      const accepted = Date.now();
      socket.resume().on('close', () => held.push(Date.now() - accepted));
    });
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const issuer = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const r = await cli(['login', '--issuer', issuer, '--client-id', DEVICE_CLIENT_ID], cleanEnv(tempHome(), { DBWARD_HTTP_TIMEOUT: '1' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`dbward login: issuer ${issuer} did not answer within 1 s (discovery)\n`);
    await new Promise((res) => setTimeout(res, 100));
    expect(held).toHaveLength(1);
    expect(held[0]).toBeGreaterThanOrEqual(900);
    expect(held[0]).toBeLessThan(3_000);
  });

  it('exits 2 on usage errors', async () => {
    const env = cleanEnv(tempHome());
    const cases: Array<[string[], RegExp]> = [
      [['token', '--bogus'], /Unknown option '--bogus'/],
      [['login', 'extra'], /Unexpected argument 'extra'/],
      [['login', '--client-id', DEVICE_CLIENT_ID], /missing --issuer URL/],
      [['login', '--issuer', 'http://idp.example.com', '--client-id', 'x'], /must use https \(plain http only on loopback\)/],
      [['token', '--client-secret', 's'], /--client-secret applies only with --client-credentials/],
      [['token', '--client-credentials', '--issuer', 'https://idp.example.com', '--client-id', 'x'], /missing client secret: set DBWARD_CLIENT_SECRET/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli(args, env)));
    runs.forEach((r, i) => {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(cases[i]![1]);
      expect(r.stderr).toMatch(/Usage: dbward (login|token)/);
    });
  });
});

// OIDC identity on the PostgreSQL path, end to end: psql and node-postgres
// present access tokens from the real in-process issuer (device flow, client
// credentials) to dbward in front of the real PostgreSQL. Good tokens open
// sessions as the mapped role; every bad one gets 28P01/28000, an audit event
// and no upstream connection; a session ends when its token expires.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { Ajv } from 'ajv';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IdentitySettings } from '../../src/config/types.js';
import { resolveIdentityConfig } from '../../src/identity/types.js';
import { pgTarget, psql, startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { AGENT_CLIENT, OTHER_RESOURCE, SERVICE_CLIENT, startTestIssuer, type TestIssuer } from '../helpers/oidc.js';
import { RawPg } from '../helpers/rawpg.js';
import { PG, requirePostgres } from '../helpers/services.js';
import { startTap, type Tap } from '../helpers/tap.js';
import { testCertificate } from '../helpers/tls.js';

const DBA_ROLE = 'dbward_it_dba';
const DEV_ROLE = 'dbward_it_dev';

function oidc(issuer: string, over: Partial<Parameters<typeof resolveIdentityConfig>[0]> = {}, graceSec = 0): IdentitySettings {
  return {
    mode: 'oidc',
    verifier: resolveIdentityConfig({ issuer, audience: 'dbward', clockToleranceSec: 0, kind: { claim: 'dbward_kind' }, ...over }),
    expiryGraceSec: graceSec,
  };
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ ...PG });
  await c.connect();
  try { await c.query(sql); } finally { await c.end(); }
}

let idp: TestIssuer;
/** Between dbward and the real PostgreSQL: counts the connections dbward opens upstream. */
let upstream: Tap;
let d: TestDaemon;
let alice: string;
let bob: string;
const cert = testCertificate();

beforeAll(async () => {
  await requirePostgres();
  for (const r of [DBA_ROLE, DEV_ROLE]) {
    await admin(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${r}') THEN CREATE ROLE ${r} NOLOGIN; END IF; END $$`);
    await admin(`GRANT ${r} TO ${PG.user}`);
  }
  [idp, upstream] = await Promise.all([startTestIssuer(), startTap(PG.port, PG.host)]);
  d = await startTestDaemon({
    identity: oidc(idp.issuer),
    listener: { tls: { cert: cert.cert, key: cert.key }, requireTls: false },
    targets: [pgTarget({ port: upstream.port, roles: [{ group: 'dba', role: DBA_ROLE }, { group: 'developers', role: DEV_ROLE }] })],
    // Key rotation is tested below; production keeps jose's refetch cooldown.
    verifier: { jwksCooldownMs: 0 },
  });
  [alice, bob] = await Promise.all([idp.mintToken('alice'), idp.mintToken('bob')]);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await Promise.all([idp?.close(), upstream?.close()]);
});

const tlsConn = (port: number, user: string, extra = '') => `host=127.0.0.1 port=${port} dbname=test user=${user} sslmode=require ${extra}`.trim();

describe('good tokens', () => {
  it('psql with a device-flow token runs as the role mapped from the first matching group', async () => {
    const r = await psql(tlsConn(d.port, 'alice@example.com', 'application_name=report'), ['-Atc',
      'SELECT current_user, session_user, (SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid())', '-c', 'RESET ROLE'],
    { env: { PGPASSWORD: alice } });
    // RESET ROLE returns to the mapped role, not to dbward's own upstream user.
    expect(r.stdout.trim().split('\n')).toEqual([`${DBA_ROLE}|${PG.user}|dbward:alice@example.com report`]);
    // The mapped role cannot be left, whatever the policy (this test's allows everything) says.
    expect(r.stderr).toMatch(/runs as the database role your groups map to.*dbward\.role-mapping/);
    const tries = ['SET ROLE NONE', 'RESET ROLE', `SET SESSION AUTHORIZATION ${PG.user}`, "SELECT set_config('role', 'none', false)", 'DISCARD ALL'];
    for (const sql of tries) {
      const t = await psql(tlsConn(d.port, 'alice@example.com'), ['-Atc', sql, '-c', 'SELECT current_user'], { env: { PGPASSWORD: alice } });
      expect(t.stderr, sql).toMatch(/dbward\.role-mapping/);
    }
    const bobs = await psql(tlsConn(d.port, 'BOB@example.com'), ['-Atc', 'SELECT current_user'], { env: { PGPASSWORD: bob } });
    expect(bobs.stdout.trim()).toBe(DEV_ROLE);
  });

  it('records the verified identity (never the token) on session start and statements', async () => {
    await expect.poll(() => d.audit().filter((e) => e.type === 'session_end' && e.identity.user === 'alice@example.com').length).toBeGreaterThan(0);
    const start = d.audit().find((e) => e.type === 'session_start' && e.identity.user === 'alice@example.com')!;
    expect(start.identity).toEqual({
      user: 'alice@example.com', verified: true, subject: 'alice', name: 'Alice Admin', email: 'alice@example.com', groups: ['dba', 'developers'],
      kind: 'human', issuer: idp.issuer, client_id: 'dbward-cli', role: DBA_ROLE, expires_at: new Date(decodeJwt(alice).exp! * 1000).toISOString(),
    });
    expect(start.client.tls).toBe(true);
    const stmt = d.audit().find((e) => e.type === 'statement' && e.session === start.session)!;
    expect(stmt.identity).toEqual(start.identity);
    const raw = JSON.stringify(d.audit());
    for (const t of [alice, bob]) expect(raw).not.toContain(t.split('.')[2]);
  });

  it('node-postgres with a client-credentials token: an agent, named by its client id, with its claims', async () => {
    const agent = await idp.clientCredentialsToken(AGENT_CLIENT.id, AGENT_CLIENT.secret);
    const d2 = await startTestDaemon({
      identity: oidc(idp.issuer),
      listener: { tls: { cert: cert.cert, key: cert.key } },
      targets: [pgTarget({ roles: [{ group: 'dba', role: DBA_ROLE }], defaultRole: DEV_ROLE })],
    });
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: d2.port, database: 'test', user: AGENT_CLIENT.id, password: agent, ssl: { rejectUnauthorized: false } });
      await c.connect();
      const { rows } = await c.query('SELECT current_user AS u, $1::int AS n', [7]);
      await c.end();
      expect(rows).toEqual([{ u: DEV_ROLE, n: 7 }]);
      await expect.poll(() => d2.audit().find((e) => e.type === 'session_start')?.identity).toMatchObject({
        user: AGENT_CLIENT.id, verified: true, kind: 'agent', client_id: AGENT_CLIENT.id, subject: AGENT_CLIENT.id, groups: [], role: DEV_ROLE,
      });
    } finally {
      await d2.stop();
    }
  });
});

describe('bad tokens: a clear error, an audit event, no upstream connection', () => {
  /** Connects with psql and returns its stderr; asserts it failed. */
  async function refused(user: string, token: string, port = d.port): Promise<string> {
    const r = await psql(tlsConn(port, user), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: token } });
    expect(r.code).not.toBe(0);
    return r.stderr;
  }

  /** The newest auth_failure event, once it is at least the `n`-th (failures ride the next write, so poll). */
  async function failure(n: number, daemon = d): Promise<Record<string, any>> {
    const all = () => daemon.audit().filter((e) => e.type === 'auth_failure');
    await expect.poll(() => all().length).toBeGreaterThanOrEqual(n);
    return all()[n - 1]!;
  }
  const failures = (daemon = d) => daemon.audit().filter((e) => e.type === 'auth_failure').length;

  it('each kind of bad token gets its own reason, and none reaches PostgreSQL', async () => {
    const before = upstream.connections();
    const [h, p, s] = alice.split('.');
    const sig = Buffer.from(s!, 'base64url');
    sig[5]! ^= 1;
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const foreign = await startTestIssuer();
    const cases: [string, string, string, RegExp][] = [
      ['TOKEN_SIGNATURE', 'alice@example.com', `${h}.${p}.${sig.toString('base64url')}`, /28P01|password authentication failed/],
      ['TOKEN_ALGORITHM', 'alice@example.com', `${enc({ alg: 'none', typ: 'at+jwt' })}.${p}.`, /password authentication failed.*algorithm/],
      ['TOKEN_MALFORMED', 'alice@example.com', alice.slice(0, alice.length / 2), /password authentication failed/],
      ['TOKEN_AUDIENCE', 'alice@example.com', await idp.mintToken('alice', { resource: OTHER_RESOURCE }), /audience/],
      ['TOKEN_ISSUER', 'alice@example.com', await foreign.mintToken('alice'), /issuer/],
      ['TOKEN_NOT_YET_VALID', 'bob@example.com', await idp.mintToken('bob', { extraClaims: { nbf: Math.floor(Date.now() / 1000) + 600 } }), /not yet valid/],
      ['USER_MISMATCH', 'bob@example.com', alice, /does not match/],
      ['TOKEN_MALFORMED', 'alice@example.com', 'not-a-jwt', /password authentication failed/],
    ];
    await foreign.close();
    for (const [reason, user, token, message] of cases) {
      const n = failures() + 1;
      const stderr = await refused(user, token);
      expect(stderr, reason).toMatch(message);
      const ev = await failure(n);
      expect(ev, reason).toMatchObject({ reason, user, target: 'test', sqlstate: reason === 'USER_MISMATCH' ? '28000' : '28P01' });
      expect(JSON.stringify(ev)).not.toContain(token.split('.')[2] || token);
    }
    expect(upstream.connections()).toBe(before);
    const metrics = await (await fetch(`http://127.0.0.1:${d.daemon.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/dbward_auth_failures_total\{reason="USER_MISMATCH"\} 1/);
  });

  it('an expired token', async () => {
    const short = await startTestIssuer({ accessTokenTTL: 1 });
    const d2 = await startTestDaemon({ identity: oidc(short.issuer), listener: { tls: { cert: cert.cert, key: cert.key } } });
    try {
      const token = await short.mintToken('bob');
      await new Promise((r) => setTimeout(r, 2100));
      expect(await refused('bob@example.com', token, d2.port)).toMatch(/expired/);
      expect(await failure(1, d2)).toMatchObject({ reason: 'TOKEN_EXPIRED', sqlstate: '28P01' });
    } finally {
      await d2.stop();
      await short.close();
    }
  });

  it('a 1 MB token is refused from its length alone', async () => {
    // Plain TCP is refused before the token is asked for, so this one goes through TLS.
    const n = failures() + 1;
    const client = new pg.Client({ host: '127.0.0.1', port: d.port, database: 'test', user: 'alice@example.com', password: 'x'.repeat(1024 * 1024), ssl: { rejectUnauthorized: false } });
    const err = await client.connect().then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('28P01');
    expect(err?.message).toMatch(/exceeds 16384 bytes/);
    expect(await failure(n)).toMatchObject({ reason: 'TOKEN_TOO_LARGE' });
    // The daemon goes on.
    const ok = await psql(tlsConn(d.port, 'alice@example.com'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: alice } });
    expect(ok.stdout.trim()).toBe('1');
  });

  it('a client without TLS is refused before it is asked for its token', async () => {
    const r = await psql(`host=127.0.0.1 port=${d.port} dbname=test user=alice@example.com sslmode=disable`, ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: alice } });
    expect(r.stderr).toMatch(/only over TLS/);
    const raw = await RawPg.connect(d.port);
    raw.send(serialize.startup({ user: 'alice@example.com', database: 'test' }));
    const got = await raw.until('error');
    expect(got.map((m) => m.name)).toEqual(['error']);
    expect(got[0]!.code).toBe('28000');
  });

  it('an issuer that is down or does not answer fails logins within the discovery timeout', async () => {
    const hung = http.createServer(() => undefined);
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    try {
      for (const url of [`http://127.0.0.1:${(hung.address() as net.AddressInfo).port}`, `http://127.0.0.1:${deadPort}`]) {
        const d2 = await startTestDaemon({
          identity: oidc(url, { discoveryTimeoutMs: 400 }),
          listener: { tls: { cert: cert.cert, key: cert.key } },
          targets: [pgTarget({ port: upstream.port })],
        });
        const before = upstream.connections();
        try {
          const t0 = Date.now();
          // The token itself claims the unreachable issuer, so only the key fetch can fail.
          const [hh, , ss] = alice.split('.');
          const claims = { ...decodeJwt(alice), iss: url };
          const token = `${hh}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${ss}`;
          expect(await refused('alice@example.com', token, d2.port)).toMatch(/identity provider is unavailable/);
          expect(Date.now() - t0).toBeLessThan(3000);
          expect(await failure(1, d2)).toMatchObject({ reason: 'ISSUER_UNAVAILABLE', sqlstate: '28000' });
          expect(upstream.connections()).toBe(before);
        } finally {
          await d2.stop();
        }
      }
    } finally {
      hung.closeAllConnections();
      await new Promise<void>((r) => hung.close(() => r()));
    }
  });

  it('a JWKS rotated mid-run: new keys are fetched on an unknown kid, retired keys stop working', async () => {
    const before = await psql(tlsConn(d.port, 'bob@example.com'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: bob } });
    expect(before.stdout.trim()).toBe('1');
    await idp.rotateKey();
    const fresh = await idp.mintToken('bob');
    const after = await psql(tlsConn(d.port, 'bob@example.com'), ['-Atc', 'SELECT 1'], { env: { PGPASSWORD: fresh } });
    expect(after.stdout.trim()).toBe('1');
    const n = failures() + 1;
    expect(await refused('bob@example.com', bob)).toMatch(/password authentication failed/);
    expect(await failure(n)).toMatchObject({ reason: 'TOKEN_SIGNATURE' });
    bob = fresh;
    alice = await idp.mintToken('alice');
  });

  it('an identity in no mapped group is refused when the target has no default role', async () => {
    const service = await idp.clientCredentialsToken(SERVICE_CLIENT.id, SERVICE_CLIENT.secret);
    const before = upstream.connections();
    expect(await refused(SERVICE_CLIENT.id, service)).toMatch(/no database role of target "test" is mapped/);
    expect(upstream.connections()).toBe(before);
  });
});

describe('session lifetime', () => {
  it('a session ends with FATAL 28000 when its token expires, and the audit says why', async () => {
    const short = await startTestIssuer({ accessTokenTTL: 3 });
    const d2 = await startTestDaemon({ identity: oidc(short.issuer), listener: { tls: { cert: cert.cert, key: cert.key } } });
    try {
      const token = await short.mintToken('alice');
      const c = new pg.Client({ host: '127.0.0.1', port: d2.port, database: 'test', user: 'alice@example.com', password: token, ssl: { rejectUnauthorized: false } });
      const errors: (Error & { code?: string })[] = [];
      c.on('error', (e) => errors.push(e));
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      const exp = decodeJwt(token).exp! * 1000;
      await expect.poll(() => errors.length, { timeout: 8000, interval: 100 }).toBeGreaterThan(0);
      expect(Date.now()).toBeGreaterThanOrEqual(exp);
      expect(errors[0]!.code).toBe('28000');
      expect(errors[0]!.message).toMatch(/access token of this session expired/);
      await expect.poll(() => d2.audit().find((e) => e.type === 'session_end')?.reason).toBe('token_expired');
      await c.end().catch(() => undefined);
    } finally {
      await d2.stop();
      await short.close();
    }
  });

  it('a session within its grace period goes on past exp', async () => {
    const short = await startTestIssuer({ accessTokenTTL: 1 });
    const d2 = await startTestDaemon({ identity: oidc(short.issuer, {}, 30), listener: { tls: { cert: cert.cert, key: cert.key } } });
    try {
      const token = await short.mintToken('bob');
      const c = new pg.Client({ host: '127.0.0.1', port: d2.port, database: 'test', user: 'bob@example.com', password: token, ssl: { rejectUnauthorized: false } });
      await c.connect();
      await new Promise((r) => setTimeout(r, 1500));
      expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
      await c.end();
    } finally {
      await d2.stop();
      await short.close();
    }
  });
});

it('every event written above validates against the published audit schema', async () => {
  const schema = JSON.parse(fs.readFileSync(new URL('../../schemas/audit-event.schema.json', import.meta.url), 'utf8'));
  const validate = new Ajv({ allErrors: true }).compile(schema);
  const events = d.audit();
  expect(new Set(events.map((e) => e.type))).toEqual(new Set(['policy_reload', 'session_start', 'statement', 'statement_outcome', 'session_end', 'auth_failure', 'session_refused']));
  for (const e of events) expect(validate(e) ? null : { type: (e as { type: string }).type, errors: validate.errors }).toBeNull();
});

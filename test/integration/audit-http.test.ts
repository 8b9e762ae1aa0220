// Audit search over the admin HTTP API, with the real in-process OIDC issuer:
// only a verified token in one of admin.audit_groups reads the trail.

import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveIdentityConfig } from '../../src/identity/types.js';
import { startTestDaemon, type TestDaemon } from '../helpers/dbward.js';
import { ACCOUNTS, startTestIssuer, type TestIssuer } from '../helpers/oidc.js';
import { PG, requirePostgres } from '../helpers/services.js';

let idp: TestIssuer;
let d: TestDaemon;
let alice: string;
let bob: string;

beforeAll(async () => {
  await requirePostgres();
  idp = await startTestIssuer();
  d = await startTestDaemon({
    identity: { mode: 'oidc', verifier: resolveIdentityConfig({ issuer: idp.issuer, audience: 'dbward', kind: { claim: 'dbward_kind' } }), expiryGraceSec: 0 },
    listener: { allowPlaintextToken: true },
    // alice is in dba, bob is not.
    auditGroups: ['dba'],
  });
  [alice, bob] = await Promise.all([idp.mintToken('alice'), idp.mintToken('bob')]);
  const c = new pg.Client({ host: '127.0.0.1', port: d.port, database: PG.database, user: ACCOUNTS.alice!.email, password: alice });
  await c.connect();
  await c.query('SELECT 41 + 1 AS answer');
  await c.end();
});
afterAll(async () => {
  await d?.stop();
  await idp?.close();
});

async function get(path: string, token?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${d.daemon.adminPort}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.text() };
}

it('gives an auditor the matching statements, as JSON lines with their outcome', async () => {
  const r = await get(`/audit/search?user=${encodeURIComponent(ACCOUNTS.alice!.email)}&text=answer`, alice);
  expect(r.status).toBe(200);
  const rows = r.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(rows.length).toBe(1);
  expect(JSON.stringify(rows[0])).toContain('SELECT 41 + 1 AS answer');
  expect(JSON.stringify(rows[0])).toContain('SELECT 1');
});

it('refuses callers without a token, with a bad token, or outside the groups', async () => {
  expect((await get('/audit/search')).status).toBe(401);
  expect((await get('/audit/search', 'not-a-jwt')).status).toBe(401);
  const denied = await get('/audit/search', bob);
  expect(denied.status).toBe(403);
  expect(denied.body).toContain('not in a group allowed to read the audit trail');
  expect(denied.body).not.toContain('41 + 1');
});

it('leaves the open endpoints open and answers 404 elsewhere', async () => {
  expect((await get('/healthz')).status).toBe(200);
  expect((await get('/nope')).status).toBe(404);
});

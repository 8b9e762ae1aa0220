// The PostgreSQL approval store against a real PostgreSQL, with two store
// instances standing in for two dbward replicas: round trips, atomic updates
// under a race, and watchers woken across replicas by NOTIFY and, with the
// LISTEN connection killed, by the poll and the reconnect.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PostgresApprovalStore, type PostgresApprovalStoreOptions } from '../../src/approvals/pg-store.js';
import type { ApprovalDecision, ApprovalRequest } from '../../src/approvals/types.js';
import { approvalRequest } from '../helpers/approvals.js';
import { PG, requirePostgres } from '../helpers/services.js';

const suffix = randomBytes(4).toString('hex');
const schema = `dbward_apr_test_${suffix}`;
const table = `${schema}.approvals`;
let admin: pg.Client;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  await requirePostgres();
  admin = new pg.Client({ ...PG });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});
afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin?.end();
});

let storeNo = 0;
/** A store with its own application_name, so its backends can be found in pg_stat_activity. */
async function openStore(over: Partial<PostgresApprovalStoreOptions> = {}): Promise<{ store: PostgresApprovalStore; appName: string; errors: Error[] }> {
  const appName = `dbward-apr-${suffix}-${storeNo++}`;
  const errors: Error[] = [];
  const store = await PostgresApprovalStore.open({ connection: { ...PG, application_name: appName }, table, onError: (e) => errors.push(e), ...over });
  closers.push(() => store.close());
  return { store, appName, errors };
}

let reqNo = 0;
function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const createdAt = over.createdAt ?? new Date(Date.UTC(2025, 2, 14, 9, 30, 0, reqNo)).toISOString();
  // Distinct ids, keys and times per request, and a text with quotes, a backslash and non-ASCII to round-trip.
  return approvalRequest({
    id: `apr_${suffix}${String(reqNo++).padStart(4, '0')}`,
    key: `alice@example.com|orders-prod|orders|fp_${suffix}`,
    createdAt,
    expiresAt: new Date(Date.parse(createdAt) + 15 * 60_000).toISOString(),
    requester: { user: 'alice@example.com', subject: '00u1a2b3c4', groups: ['engineering', 'oncall'], kind: 'human', verified: true },
    session: 'sess_7f3a9c',
    target: { name: 'orders-prod', environment: 'production', database: 'orders' },
    text: "DELETE FROM orders WHERE customer_id = $1 AND note = 'ünïcode \"quoted\" \\ back'",
    fingerprint: '5e7d2c1b9a0f4e3d',
    rules: ['prod-deletes-need-approval', 'pii-tables'],
    approvers: ['dba', 'eng-leads'],
    ttlSec: 900,
    updatedAt: createdAt,
    ...over,
  });
}

function decision(user: string, at: string): ApprovalDecision {
  return { decision: 'approve', user, subject: `sub-${user}`, groups: ['dba'], reason: `ok from ${user}`, via: 'api', at };
}

/** A later updatedAt than the record has, so every change is a new state. */
function bump(r: ApprovalRequest): string {
  return new Date(Date.parse(r.updatedAt) + 1).toISOString();
}

async function waitFor<T>(fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The backend of the store's LISTEN connection, once it has run LISTEN. */
async function listenPid(appName: string): Promise<number | undefined> {
  const { rows } = await admin.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle' AND query = 'LISTEN dbward_approvals'", [`${appName}-listen`]);
  return rows[0]?.pid;
}

/** Store a (polling every `pollMs`) watches a request that store b will change; its LISTEN connection is then killed. */
async function watchedThenListenKilled(pollMs: number) {
  const a = await openStore({ pollMs });
  const { store: b } = await openStore({ pollMs: 60_000 });
  const r = request();
  await a.store.create(r);
  const seen: ApprovalRequest[] = [];
  a.store.watch(r.id, (rec) => seen.push(rec));
  await waitFor(() => seen.length === 1, 2000, 'the current record');
  const pid = await listenPid(a.appName);
  expect(pid).toBeDefined();
  await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  return { a, b, r, seen, pid: pid! };
}

describe('PostgresApprovalStore', () => {
  it('round-trips requests and lists them newest first, by status and by key', async () => {
    const { store } = await openStore();
    const { store: other } = await openStore();
    // Created in the far future so they are the newest rows whatever other tests stored.
    const a = request({ createdAt: '2099-01-01T00:00:00.000Z', updatedAt: '2099-01-01T00:00:00.000Z', status: 'expired', reason: 'timed out', key: `k-${suffix}` });
    const b = request({ createdAt: '2099-01-02T00:00:00.000Z', updatedAt: '2099-01-02T00:00:00.000Z', status: 'approved', key: `k-${suffix}`, decisions: [decision('bob', '2099-01-02T00:00:00.000Z')], grantExpiresAt: '2099-01-02T00:15:00.000Z' });
    const c = request({ createdAt: '2099-01-03T00:00:00.000Z', updatedAt: '2099-01-03T00:00:00.000Z', status: 'denied', reason: 'not now', grant: 'window', mode: 'retry', requester: { user: 'etl', subject: null, groups: [], kind: null, verified: false } });
    for (const r of [a, b, c]) await store.create(r);

    expect(await other.get(a.id)).toStrictEqual(a);
    expect(await other.get(b.id)).toStrictEqual(b);
    expect(await other.get(c.id)).toStrictEqual(c);
    expect(await other.get('apr_missing')).toBeNull();
    expect((await other.list({ limit: 3 })).map((r) => r.id)).toEqual([c.id, b.id, a.id]);
    expect((await other.list({ limit: 2 })).map((r) => r.id)).toEqual([c.id, b.id]);
    expect((await other.list({ status: ['expired', 'denied'], limit: 2 })).map((r) => r.id)).toEqual([c.id, a.id]);
    expect(await other.list({ status: [] })).toEqual([]);
    expect(await other.list({ limit: 0 })).toEqual([]);
    expect((await other.list({ limit: 1e9 })).length).toBeGreaterThanOrEqual(3);
    expect((await other.byKey(`k-${suffix}`, ['approved', 'expired'])).map((r) => r.id)).toEqual([b.id, a.id]);
    expect((await other.byKey(`k-${suffix}`, ['approved'])).map((r) => r.id)).toEqual([b.id]);
    expect(await other.byKey(`k-${suffix}`, ['pending'])).toEqual([]);
    expect(await other.update('apr_missing', () => { throw new Error('not called'); })).toBeNull();
  });

  it('rejects a duplicate id and keeps the first record', async () => {
    const { store } = await openStore();
    const { store: other } = await openStore();
    const r = request();
    await store.create(r);
    await expect(other.create({ ...r, text: 'SELECT 1' })).rejects.toThrow(`approval request ${r.id} already exists`);
    expect(await store.get(r.id)).toStrictEqual(r);
  });

  it('a failed query rejects that call only', async () => {
    const { store } = await openStore();
    await expect(store.create({ ...request(), createdAt: 'not a time' })).rejects.toThrow(/timestamp/);
    const r = request();
    await store.create(r);
    expect(await store.get(r.id)).toStrictEqual(r);
  });

  it('loses no update when two replicas race on one record', async () => {
    const { store: a } = await openStore();
    const { store: b } = await openStore();
    const counted = request({ required: 20 });
    const approved = request({ required: 2 });
    await a.create(counted);
    await a.create(approved);

    // Every change lands exactly once: twenty decisions, twenty uses.
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).update(counted.id, (cur) => ({
      ...cur, uses: cur.uses + 1, decisions: [...cur.decisions, decision(`user${i}`, bump(cur))], updatedAt: bump(cur),
    }))));
    const final = (await b.get(counted.id))!;
    expect(final.uses).toBe(20);
    expect(final.decisions.map((d) => d.user).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `user${i}`).sort());

    // Only the first two approvals find it pending; the rest see it approved and change nothing.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).update(approved.id, (cur) => {
      if (cur.status !== 'pending') return null;
      const decisions = [...cur.decisions, decision(`approver${i}`, bump(cur))];
      return { ...cur, decisions, status: decisions.length >= cur.required ? 'approved' : 'pending', updatedAt: bump(cur) };
    })));
    expect(results.filter((r) => r!.changed)).toHaveLength(2);
    const done = (await a.get(approved.id))!;
    expect(done.status).toBe('approved');
    expect(done.decisions).toHaveLength(2);
    expect(results.every((r) => r!.record.status === 'approved' || r!.record.decisions.length === 1)).toBe(true);
  });

  it('rolls back when the change throws, and releases the row', async () => {
    const { store: a } = await openStore();
    const { store: b } = await openStore();
    const r = request();
    await a.create(r);
    await expect(a.update(r.id, (cur) => { cur.status = 'denied'; throw new Error('policy said no'); })).rejects.toThrow('policy said no');
    await expect(a.update(r.id, (cur) => ({ ...cur, id: 'apr_other' }))).rejects.toThrow(/returned request apr_other/);
    expect(await a.get(r.id)).toStrictEqual(r);
    // A lock left behind would block this.
    const res = await b.update(r.id, (cur) => ({ ...cur, status: 'withdrawn', reason: 'cancelled by the client', updatedAt: bump(cur) }));
    expect(res).toMatchObject({ changed: true, record: { status: 'withdrawn' } });
    expect(await a.update(r.id, () => null)).toStrictEqual({ record: res!.record, changed: false });
  });

  it('wakes a watcher on another replica through NOTIFY, and one on this replica at once', async () => {
    // A poll this slow cannot be what delivers within the test.
    const { store: a } = await openStore({ pollMs: 60_000 });
    const { store: b } = await openStore({ pollMs: 60_000 });
    const r = request();
    await a.create(r);
    const seen: ApprovalRequest[] = [];
    a.watch(r.id, (rec) => seen.push(rec));
    // First the current record, so a change made just before watch() is not missed.
    await waitFor(() => seen.length === 1, 2000, 'the current record');
    expect(seen[0]).toStrictEqual(r);

    const started = Date.now();
    const approved = (await b.update(r.id, (cur) => ({ ...cur, status: 'approved', decisions: [decision('bob', bump(cur))], updatedAt: bump(cur) })))!.record;
    await waitFor(() => seen.length === 2, 2000, 'the approval made on the other replica');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(seen[1]).toStrictEqual(approved);

    const used = (await a.update(r.id, (cur) => ({ ...cur, status: 'used', uses: 1, updatedAt: bump(cur) })))!.record;
    expect(seen[2]).toStrictEqual(used);
    // Its own NOTIFY comes back too, but is the state already delivered.
    await sleep(300);
    expect(seen).toHaveLength(3);
  });

  it('still reaches the watcher after its LISTEN connection was killed', async () => {
    const { a, b, r, seen } = await watchedThenListenKilled(150);
    await waitFor(() => a.errors.length > 0, 2000, 'the lost connection reported');
    await b.update(r.id, (cur) => ({ ...cur, status: 'denied', reason: 'not during the freeze', updatedAt: bump(cur) }));
    await waitFor(() => seen.length === 2, 3000, 'the denial');
    expect(seen[1]).toMatchObject({ status: 'denied', reason: 'not during the freeze' });
    // Unchanged records are not delivered again by the poll.
    await sleep(400);
    expect(seen).toHaveLength(2);
  });

  it('wakes the watcher through the re-established LISTEN connection', async () => {
    const { a, b, r, seen, pid } = await watchedThenListenKilled(60_000);
    let next: number | undefined;
    for (const end = Date.now() + 5000; Date.now() < end && (next === undefined || next === pid); await sleep(50)) next = await listenPid(a.appName);
    expect(next).toBeDefined();
    expect(next).not.toBe(pid);
    expect(a.errors.length).toBeGreaterThan(0);
    // With the poll a minute away, only the new LISTEN connection can deliver this.
    await b.update(r.id, (cur) => ({ ...cur, status: 'approved', updatedAt: bump(cur) }));
    await waitFor(() => seen.length === 2, 2000, 'the approval');
    expect(seen[1]!.status).toBe('approved');
  });

  it('stops delivering after unsubscribe, and stays quiet when nothing changes', async () => {
    const { store: a } = await openStore({ pollMs: 100 });
    const { store: b } = await openStore();
    const r = request();
    await a.create(r);
    const first: ApprovalRequest[] = [];
    const second: ApprovalRequest[] = [];
    const off = a.watch(r.id, (rec) => first.push(rec));
    a.watch(r.id, (rec) => second.push(rec));
    await waitFor(() => first.length === 1 && second.length === 1, 2000, 'the current record');
    await sleep(400);
    expect(first).toHaveLength(1);

    off();
    off();
    await b.update(r.id, (cur) => ({ ...cur, status: 'expired', reason: 'timed out', updatedAt: bump(cur) }));
    await waitFor(() => second.length === 2, 2000, 'the expiry on the remaining watcher');
    await sleep(400);
    expect(first).toHaveLength(1);
    expect(second).toHaveLength(2);
  });

  it('closes idempotently and leaves no connection behind', async () => {
    const { store, appName } = await openStore();
    const r = request();
    await store.create(r);
    store.watch(r.id, () => undefined);
    await Promise.all([store.close(), store.close()]);
    await store.close();
    await expect(store.get(r.id)).rejects.toThrow();
    // A backend goes away a moment after its client disconnects.
    await waitFor(async () => {
      const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE $1', [`${appName}%`]);
      return rows[0]!.n === 0;
    }, 2000, 'the store\'s backends to exit');
  });

  it('refuses a bad table name at open', async () => {
    for (const bad of ['approvals; DROP TABLE x', 'Approvals', 'a.b.c', '"approvals"', '', '1approvals', `${schema}.`, 'x'.repeat(49)]) {
      await expect(PostgresApprovalStore.open({ connection: { ...PG }, table: bad })).rejects.toThrow(/approvals table .* is not a plain/);
    }
  });
});

// search.ts over a sealed, rotated trail: every filter, the statement/outcome
// and transaction joins, time ranges (ISO and relative), table and column
// matching, ordering, and the session timeline.

import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Chain } from '../../src/audit/chain.js';
import { filterFrom, identParts, Joiner, parseTime, search, SearchFilterError, sessionTimeline, type AuditRow, type EventSource, type SearchFilter } from '../../src/audit/search.js';

const KEY = Buffer.from('k'.repeat(40));
const ALICE = { user: 'alice@example.com', verified: true, groups: ['dba', 'eng'], kind: 'human' };
const BOT = { user: 'etl-bot', verified: true, groups: [], kind: 'agent' };
const PROD = { name: 'prod', engine: 'postgres', database: 'app', environment: 'production' };
const STAGING = { name: 'staging', engine: 'postgres', database: 'app', environment: 'staging' };

const at = (hms: string): string => `2026-11-23T${hms}Z`;
let n = 0;
const base = (session: string, time: string, type: string, id = `ev-${++n}`) => ({ v: 1, id, time: at(time), session, type });

function statement(id: string, session: string, time: string, text: string, identity: object, target: object, decision: object, facts: object[]) {
  return { ...base(session, time, 'statement', id), identity, target, protocol: 'simple', statement: { text }, decision, facts };
}
function outcome(statementId: string, session: string, time: string, o: object, txn?: number) {
  return { ...base(session, time, 'statement_outcome'), statement_id: statementId, outcome: { status: 'ok', tags: [], rows: null, sqlstate: null, duration_ms: 1.5, ...o }, ...(txn !== undefined && { txn }) };
}
const control = (kind: string) => [{ kinds: [kind], reads: [], writes: [], functions: [], flags: ['transaction_control'] }];
const allow = (rules: string[] = []) => ({ action: 'allow', rules, default: rules.length === 0 });

/** The trail, in write order. */
const EVENTS: object[] = [
  { ...base('s1', '10:00:00.000000', 'session_start'), identity: ALICE, client: { address: '10.0.0.5', application: 'psql' }, target: PROD },
  statement('A', 's1', '10:00:01.000000', 'SELECT email FROM users', ALICE, PROD, allow(['r-read']), [{ kinds: ['select'], reads: ['users'], writes: [], functions: [], flags: ['no_limit'], columns: ['users.email'] }]),
  outcome('A', 's1', '10:00:01.500000', { tags: ['SELECT 3'], rows: 3 }, 1),
  statement('B', 's1', '10:05:00.000000', 'DELETE FROM public.orders', ALICE, PROD, { action: 'deny', rules: ['no-delete'], default: false, message: 'no deletes in production' },
    [{ kinds: ['delete'], reads: [], writes: ['public.orders'], functions: [], flags: ['no_where', 'writes'] }]),
  outcome('B', 's1', '10:05:00.500000', { status: 'error', sqlstate: '42501', duration_ms: 0.1 }, 2),
  // An explicit block: BEGIN, C, COMMIT share txn 3, closed by a transaction_end.
  statement('C0', 's1', '10:09:59.000000', 'BEGIN', ALICE, PROD, allow(), control('begin')),
  outcome('C0', 's1', '10:09:59.100000', { tags: ['BEGIN'] }, 3),
  statement('C', 's1', '10:10:00.000000', 'UPDATE public."Accounts" SET balance = 0 WHERE id = 1', ALICE, PROD, { action: 'require_approval', rules: ['approve-writes'], default: false },
    [{ kinds: ['update'], reads: [], writes: ['public."Accounts"'], functions: [], flags: ['writes'], columns: ['public."Accounts".balance', 'public."Accounts".id'] }]),
  outcome('C', 's1', '10:10:00.200000', { tags: ['UPDATE 1'], rows: 1 }, 3),
  statement('C1', 's1', '10:10:04.000000', 'COMMIT', ALICE, PROD, allow(), control('commit')),
  outcome('C1', 's1', '10:10:04.100000', { tags: ['COMMIT'] }, 3),
  { ...base('s1', '10:10:04.100001', 'transaction_end'), txn: 3, result: 'committed', statements: 3 },
  { ...base('s1', '10:20:00.000000', 'session_end'), identity: ALICE, reason: 'client_terminated', duration_ms: 1_200_000, statements: 3 },
  statement('D', 's2', '11:00:00.000000', 'SELECT u.id, o.total FROM app.users u JOIN orders o ON o.uid = u.id', BOT, STAGING, allow(),
    [{ kinds: ['select'], reads: ['app.users', 'orders'], writes: [], functions: [], flags: [], columns: ['id', 'o.total'] }]),
  statement('D2', 's2', '11:00:00.100000', 'SELECT 1', BOT, STAGING, allow(), [{ kinds: ['select'], reads: [], writes: [], functions: [], flags: [] }]),
  outcome('D2', 's2', '11:00:00.150000', { rows: 1 }, 2),
  outcome('D', 's2', '11:00:02.000000', { rows: 40 }, 1),
  statement('F', 's2', '11:01:00.000000', 'GRANT SELECT ON ALL TABLES IN SCHEMA app TO reader', BOT, STAGING, allow(), [{ kinds: ['grant'], reads: [], writes: ['app.*'], functions: [], flags: ['dcl'] }]),
  outcome('F', 's2', '11:01:00.100000', {}, 3),
  // No outcome: dbward died before the server answered.
  statement('E', 's2', '11:02:00.000000', 'VACUUM', BOT, STAGING, allow(), [{ kinds: ['vacuum'], reads: [], writes: [], functions: [], flags: [] }]),
  { ...base('-', '12:00:00.000000', 'auth_failure'), user: 'mallory@example.com', client: { address: '203.0.113.9', application: null }, target: 'prod', reason: 'TOKEN_EXPIRED', message: 'token expired', sqlstate: '28P01' },
];

let tmp: string;
let files: EventSource;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(tmpdir(), 'dbward-search-'));
  const chain = new Chain(KEY);
  const lines = EVENTS.map((e) => chain.seal(JSON.stringify(e)));
  // Rotated names that sort against the chain's order: search must go by seq.
  fs.writeFileSync(path.join(tmp, 'dbward.jsonl'), `${lines.slice(0, 7).join('\n')}\n`);
  fs.writeFileSync(path.join(tmp, 'dbward.20261123T110000Z.jsonl'), `${lines.slice(7).join('\n')}\n`);
  files = { kind: 'files', paths: [tmp] };
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function rows(f: SearchFilter, source = files): Promise<AuditRow[]> {
  const out: AuditRow[] = [];
  for await (const r of search(source, f)) out.push(r);
  return out;
}
const ids = async (f: SearchFilter): Promise<string[]> => (await rows(f)).map((r) => (r.type === 'statement' ? r.id! : r.type));

describe('rows', () => {
  it('are statements merged with their outcome, in trail order, across rotated files', async () => {
    const all = await rows({});
    expect(all.map((r) => r.id)).toEqual(['A', 'B', 'C0', 'C', 'C1', 'D', 'D2', 'F', 'E']);
    expect(all[0]).toMatchObject({ type: 'statement', statement: { text: 'SELECT email FROM users' }, outcome: { status: 'ok', rows: 3, tags: ['SELECT 3'], txn: 1, time: at('10:00:01.500000') } });
    expect(all[0]).not.toHaveProperty('transaction');
    expect(all[0]).not.toHaveProperty('chain');
    expect(all[1]!.outcome).toMatchObject({ status: 'error', sqlstate: '42501' });
  });

  it('keep statement order when a later statement completes first', async () => {
    const r = await rows({ session: 's2' });
    expect(r.map((x) => x.id)).toEqual(['D', 'D2', 'F', 'E']);
    expect(r[0]!.outcome).toMatchObject({ rows: 40 });
  });

  it('carry the end of the transaction block they ran in', async () => {
    const block = (await rows({ session: 's1' })).slice(2);
    expect(block.map((r) => r.id)).toEqual(['C0', 'C', 'C1']);
    for (const r of block) expect(r).toMatchObject({ outcome: { txn: 3 }, transaction: { txn: 3, result: 'committed', statements: 3, time: at('10:10:04.100001') } });
  });

  it('include a statement whose outcome never came, without one', async () => {
    const [e] = await rows({ text: 'vacuum' });
    expect(e!.id).toBe('E');
    expect(e).not.toHaveProperty('outcome');
  });

  it('stop at the limit', async () => {
    expect(await ids({ limit: 2 })).toEqual(['A', 'B']);
  });
});

describe('filters', () => {
  it.each<[string, SearchFilter, string[]]>([
    ['user (case-insensitive)', { user: 'ALICE@example.com' }, ['A', 'B', 'C0', 'C', 'C1']],
    ['group', { group: 'dba' }, ['A', 'B', 'C0', 'C', 'C1']],
    ['kind', { kind: 'agent' }, ['D', 'D2', 'F', 'E']],
    ['target', { target: 'staging' }, ['D', 'D2', 'F', 'E']],
    ['environment', { environment: 'production' }, ['A', 'B', 'C0', 'C', 'C1']],
    ['decision deny', { decision: 'deny' }, ['B']],
    ['decision require_approval', { decision: 'require_approval' }, ['C']],
    ['rule', { rule: 'no-delete' }, ['B']],
    ['sqlstate', { sqlstate: '42501' }, ['B']],
    ['sqlstate class', { sqlstate: '42' }, ['B']],
    ['session', { session: 's1' }, ['A', 'B', 'C0', 'C', 'C1']],
    ['text, case-insensitive substring', { text: 'delete from' }, ['B']],
    ['several at once', { user: 'alice@example.com', decision: 'allow', table: 'users' }, ['A']],
  ])('%s', async (_name, f, expected) => {
    expect(await ids(f)).toEqual(expected);
  });

  it.each<[string, string[]]>([
    // Unqualified: any schema.
    ['users', ['A', 'D']],
    ['orders', ['B', 'D']],
    // Qualified: that schema, or a name written unqualified (it may resolve there).
    ['public.users', ['A']],
    // F: GRANT ... ON ALL TABLES IN SCHEMA app covers app.users.
    ['app.users', ['A', 'D', 'F']],
    ['public.orders', ['B', 'D']],
    // Quoted names keep their case; unquoted ones fold to lower case.
    ['public."Accounts"', ['C']],
    ['"Accounts"', ['C']],
    ['accounts', []],
    ['PUBLIC.ORDERS', ['B', 'D']],
    // A whole schema, both ways.
    ['app.*', ['D', 'F']],
    ['app.secrets', ['F']],
  ])('table %s', async (table, expected) => {
    expect(await ids({ table })).toEqual(expected);
  });

  it.each<[string, string[]]>([
    ['email', ['A']],
    ['users.email', ['A']],
    ['public.users.email', ['A']],
    ['orders.email', []],
    ['balance', ['C']],
    ['public."Accounts".balance', ['C']],
    ['"Accounts".balance', ['C']],
    ['accounts.balance', []],
    // A column the analyzer could not tie to a table matches whatever table is asked for.
    ['id', ['C', 'D']],
    ['orders.id', ['D']],
    ['o.total', ['D']],
  ])('column %s', async (column, expected) => {
    expect(await ids({ column })).toEqual(expected);
  });

  it('event types: other events come as themselves; all merges outcomes into statements', async () => {
    expect(await rows({ types: ['auth_failure'] })).toMatchObject([{ type: 'auth_failure', user: 'mallory@example.com', reason: 'TOKEN_EXPIRED' }]);
    expect(await ids({ types: ['auth_failure'], sqlstate: '28P01' })).toEqual(['auth_failure']);
    expect(await ids({ types: ['auth_failure'], user: 'mallory@example.com', target: 'prod' })).toEqual(['auth_failure']);
    expect(await ids({ types: ['session_start', 'session_end'] })).toEqual(['session_start', 'session_end']);
    expect(await ids({ types: ['statement_outcome'], sqlstate: '42501' })).toEqual(['statement_outcome']);
    expect(await ids({ types: 'all', session: 's1' })).toEqual(['session_start', 'A', 'B', 'C0', 'C', 'C1', 'transaction_end', 'session_end']);
  });

  it('a filter on a field an event lacks does not match it', async () => {
    expect(await ids({ types: 'all', table: 'users' })).toEqual(['A', 'D']);
    expect(await ids({ types: ['auth_failure'], environment: 'production' })).toEqual([]);
  });
});

describe('time ranges', () => {
  it('since is inclusive, until exclusive, on the statement time', async () => {
    expect(await ids({ since: new Date(at('10:05:00')), until: new Date(at('11:00:00')) })).toEqual(['B', 'C0', 'C', 'C1']);
    expect(await ids({ since: new Date(at('10:05:00.001')) })).toEqual(['C0', 'C', 'C1', 'D', 'D2', 'F', 'E']);
  });

  it('keeps the outcome of a statement in range that came after until', async () => {
    const [b] = await rows({ since: new Date(at('10:04:00')), until: new Date(at('10:05:00.300')) });
    expect(b).toMatchObject({ id: 'B', outcome: { sqlstate: '42501' } });
  });

  it('parses ISO times and relative ones', () => {
    const now = new Date(at('12:00:00'));
    expect(parseTime('1h', now).toISOString()).toBe('2026-11-23T11:00:00.000Z');
    expect(parseTime('30m', now).toISOString()).toBe('2026-11-23T11:30:00.000Z');
    expect(parseTime('90s', now).toISOString()).toBe('2026-11-23T11:58:30.000Z');
    expect(parseTime('7d', now).toISOString()).toBe('2026-11-16T12:00:00.000Z');
    expect(parseTime('2w', now).toISOString()).toBe('2026-11-09T12:00:00.000Z');
    expect(parseTime('2026-11-23T10:00:00Z').toISOString()).toBe('2026-11-23T10:00:00.000Z');
    expect(parseTime('2026-11-23').toISOString()).toBe('2026-11-23T00:00:00.000Z');
    expect(() => parseTime('yesterday')).toThrow(SearchFilterError);
    expect(() => parseTime('1y')).toThrow(/not a time/);
  });

  it('relative ranges through filterFrom', async () => {
    const now = new Date(at('11:30:00'));
    const f = filterFrom((k) => ({ since: '2h', until: '29m' } as Record<string, string>)[k], now);
    expect(await ids(f)).toEqual(['A', 'B', 'C0', 'C', 'C1', 'D', 'D2']);
  });
});

describe('filterFrom', () => {
  const from = (p: Record<string, string>): SearchFilter => filterFrom((k) => p[k]);

  it('maps parameters to a filter', () => {
    expect(from({ user: 'a', decision: 'deny', sqlstate: '42p01', type: 'statement, auth_failure', limit: '5', environment: 'prod' }))
      .toEqual({ user: 'a', decision: 'deny', sqlstate: '42P01', types: ['statement', 'auth_failure'], limit: 5, environment: 'prod' });
    expect(from({ type: 'all' }).types).toBe('all');
  });

  it.each([
    [{ kind: 'robot' }, /kind must be human, service or agent/],
    [{ decision: 'maybe' }, /decision must be allow, deny or require_approval/],
    [{ sqlstate: '4250' }, /sqlstate must be/],
    [{ limit: '0' }, /limit must be a positive integer/],
    [{ since: 'last week' }, /not a time/],
  ])('refuses %o', (p, message) => {
    expect(() => from(p as Record<string, string>)).toThrow(message);
  });
});

describe('the session timeline', () => {
  it('is every event of the session, outcomes merged', async () => {
    const t: AuditRow[] = [];
    for await (const r of sessionTimeline(files, 's1')) t.push(r);
    expect(t.map((r) => r.type)).toEqual(['session_start', ...Array(5).fill('statement'), 'transaction_end', 'session_end']);
    expect(t[4]).toMatchObject({ id: 'C', transaction: { result: 'committed' } });
  });
});

describe('unreadable lines', () => {
  it('are skipped and counted', async () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'dbward-search-torn-'));
    try {
      const chain = new Chain(KEY);
      fs.writeFileSync(path.join(dir, 'a.jsonl'), `${EVENTS.slice(0, 3).map((e) => chain.seal(JSON.stringify(e))).join('\n')}\n{"v":1,"id":"x","ti`);
      const stats = { skipped: 0 };
      const out: AuditRow[] = [];
      for await (const r of search({ kind: 'files', paths: [dir] }, {}, stats)) out.push(r);
      expect(out.map((r) => r.id)).toEqual(['A']);
      expect(stats.skipped).toBe(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Joiner', () => {
  it('releases a row that waited too long for its outcome (tail -f), and its successors', () => {
    const j = new Joiner({});
    const s1 = statement('X', 's', '10:00:00', 'SELECT 1', ALICE, PROD, allow(), []) as unknown as AuditRow;
    const s2 = statement('Y', 's', '10:00:01', 'SELECT 2', ALICE, PROD, allow(), []) as unknown as AuditRow;
    expect(j.push(s1, 1000)).toEqual([]);
    expect(j.push(s2, 1500)).toEqual([]);
    expect(j.push(outcome('Y', 's', '10:00:01', {}) as unknown as AuditRow, 1600)).toEqual([]);
    expect(j.pending).toBe(1);
    expect(j.expire(5000, 5999)).toEqual([]);
    expect(j.expire(5000, 6000).map((r) => r.id)).toEqual(['X', 'Y']);
  });

  const stmt = (id: string, session = 's'): AuditRow => statement(id, session, '10:00:00', 'SELECT 1', ALICE, PROD, allow(), []) as unknown as AuditRow;
  const done = (id: string, txn: number, tags: string[] = [], session = 's'): AuditRow => outcome(id, session, '10:00:00.1', { tags }, txn) as unknown as AuditRow;

  it('lets a row go once its session moves to the next txn, and holds rows of a transaction until its end', () => {
    const j = new Joiner({});
    j.push(stmt('X'));
    expect(j.push(done('X', 1, ['SELECT 1']))).toEqual([]);
    j.push(stmt('B0'));
    expect(j.push(done('B0', 2, ['BEGIN'])).map((r) => r.id)).toEqual(['X']);
    j.push(stmt('T'));
    expect(j.push(done('T', 2, ['INSERT 0 1']))).toEqual([]);
    const end = j.push({ ...base('s', '10:00:01', 'transaction_end'), txn: 2, result: 'rolled_back', statements: 2 } as AuditRow);
    expect(end.map((r) => [r.id, (r.transaction as any)?.result])).toEqual([['B0', 'rolled_back'], ['T', 'rolled_back']]);
  });

  it('settles rows of a block whose end was not recorded: at the next txn, at the session end, or after a window', () => {
    const j = new Joiner({});
    j.push(stmt('B0'));
    j.push(done('B0', 7, ['BEGIN']));
    j.push(stmt('T'));
    expect(j.push(done('T', 7))).toEqual([]);
    j.push(stmt('U'));
    expect(j.push(done('U', 8)).map((r) => [r.id, r.transaction])).toEqual([['B0', undefined], ['T', undefined]]);
    expect(j.push({ ...base('s', '10:00:02', 'session_end') } as AuditRow).map((r) => r.id)).toEqual(['U']);

    const k = new Joiner({});
    k.push(stmt('W', 's3'));
    k.push(done('W', 1, ['BEGIN'], 's3'));
    const other = { ...base('-', '10:00:03', 'policy_reload') } as AuditRow;
    let released: AuditRow[] = [];
    for (let i = 0; i < 50_001 && released.length === 0; i++) released = k.push(other);
    expect(released.map((r) => r.id)).toEqual(['W']);
    expect(k.pending).toBe(0);
  });

  it('attaches the end of an implicit transaction whose later statement failed to all its rows', () => {
    const j = new Joiner({});
    j.push(stmt('E1'));
    j.push(stmt('E2'));
    expect(j.push(done('E1', 3, ['INSERT 0 1']))).toEqual([]);
    expect(j.push(done('E2', 3))).toEqual([]);
    const end = j.push({ ...base('s', '10:00:01', 'transaction_end'), txn: 3, result: 'rolled_back', statements: 2 } as AuditRow);
    expect(end.map((r) => [r.id, (r.transaction as any)?.result])).toEqual([['E1', 'rolled_back'], ['E2', 'rolled_back']]);
  });

  it('settles rows of a session when it ends', () => {
    const j = new Joiner({});
    j.push(stmt('X'));
    expect(j.push({ ...base('s', '10:00:02', 'session_end') } as AuditRow).map((r) => r.id)).toEqual(['X']);
  });
});

describe('identParts', () => {
  it('folds unquoted parts and keeps quoted ones', () => {
    expect(identParts('Public.Users')).toEqual(['public', 'users']);
    expect(identParts('public."My.Table"')).toEqual(['public', 'My.Table']);
    expect(identParts('"a""b".c')).toEqual(['a"b', 'c']);
  });
});

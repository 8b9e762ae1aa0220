// ResponseTracker: server responses matched to the requests that caused them,
// for the simple and extended protocols, errors and the skip-until-Sync rule.

import { describe, expect, it, vi } from 'vitest';
import { decodeErrorFields } from '../../src/proxy/postgres/backend.js';
import { PgError } from '../../src/proxy/postgres/errors.js';
import { FrameWriter } from '../../src/proxy/postgres/frames.js';
import { ResponseTracker, TRACKED_TYPES, type OutcomeSink, type RequestKind } from '../../src/proxy/postgres/tracker.js';
import { commandComplete, dataRow, errorResponse, msg, readyForQuery, rowDescription } from './pg-test-encode.js';

type Outcome = Parameters<OutcomeSink>[0];

function sink() {
  const fn = vi.fn<OutcomeSink>();
  return Object.assign(fn, { only: (): Outcome => { expect(fn).toHaveBeenCalledTimes(1); return fn.mock.calls[0]![0]; } });
}

/** Feeds whole server messages (as bytes, the payload given by offsets as the scanner does) to the tracker; returns its replacements. */
function server(t: ResponseTracker, ...frames: Buffer[]): ReturnType<ResponseTracker['onMessage']>[] {
  const out = new FrameWriter();
  return frames.map((f) => t.onMessage(f[0]!, f, 5, f.length, out));
}

const err = (code: string, message = 'boom'): Buffer => errorResponse({ S: 'ERROR', V: 'ERROR', C: code, M: message });
const parseComplete = msg('1');
const bindComplete = msg('2');
const closeComplete = msg('3');
const noData = msg('n');
const paramDesc = msg('t', Buffer.from([0, 1, 0, 0, 0, 23]));
const suspended = msg('s');
const emptyQuery = msg('I');

describe('ResponseTracker: simple query', () => {
  it('captures every type it reacts to (ParameterStatus too: it is rare), and never DataRow or NoticeResponse', () => {
    for (const c of '123ntTsICEZS') expect(TRACKED_TYPES).toContain(c);
    for (const c of 'DNKAdGHWcV') expect(TRACKED_TYPES).not.toContain(c);
  });

  it('a multi-statement query accumulates tags and rows and settles at ReadyForQuery', () => {
    const t = new ResponseTracker();
    const q = sink();
    t.push({ kind: 'query', onOutcome: q });
    expect(t.depth).toBe(1);
    server(t, rowDescription(['a']), dataRow(['1']), dataRow(['2']), commandComplete('SELECT 2'),
      commandComplete('BEGIN'), commandComplete('INSERT 0 3'), emptyQuery, commandComplete('UPDATE 0'));
    expect(q).not.toHaveBeenCalled();
    expect(t.depth).toBe(1);
    server(t, readyForQuery('T'));
    expect(q.only()).toEqual({ status: 'ok', tags: ['SELECT 2', 'BEGIN', 'INSERT 0 3', 'UPDATE 0'], rows: 5, sqlstate: null });
    expect(t.depth).toBe(0);
    expect(t.txStatus).toBe('T');
  });

  it('tags without counts leave rows null', () => {
    const t = new ResponseTracker();
    const q = sink();
    t.push({ kind: 'query', onOutcome: q });
    server(t, commandComplete('CREATE TABLE'), commandComplete('SET'), readyForQuery('I'));
    expect(q.only()).toEqual({ status: 'ok', tags: ['CREATE TABLE', 'SET'], rows: null, sqlstate: null });
  });

  it('an error settles the query as error with its SQLSTATE at ReadyForQuery, forwarding the error', () => {
    const t = new ResponseTracker();
    const q = sink();
    const next = sink();
    t.push({ kind: 'query', onOutcome: q });
    t.push({ kind: 'query', onOutcome: next });
    expect(server(t, commandComplete('SELECT 1'), err('22012'))).toEqual([undefined, undefined]);
    expect(q).not.toHaveBeenCalled();
    server(t, readyForQuery('E'));
    expect(q.only()).toEqual({ status: 'error', tags: ['SELECT 1'], rows: 1, sqlstate: '22012' });
    expect(t.txStatus).toBe('E');
    server(t, commandComplete('ROLLBACK'), readyForQuery('I'));
    expect(next.only()).toEqual({ status: 'ok', tags: ['ROLLBACK'], rows: null, sqlstate: null });
  });

  it('a FunctionCall settles at ReadyForQuery', () => {
    const t = new ResponseTracker();
    const f = sink();
    t.push({ kind: 'fcall', onOutcome: f });
    server(t, msg('V', Buffer.from([0, 0, 0, 1, 7])), readyForQuery('I'));
    expect(f.only().status).toBe('ok');
  });
});

describe('ResponseTracker: extended protocol', () => {
  function pushAll(t: ResponseTracker, kinds: RequestKind[], sinks: Partial<Record<number, OutcomeSink>> = {}): void {
    kinds.forEach((kind, i) => t.push({ kind, ...(sinks[i] ? { onOutcome: sinks[i] } : {}) }));
  }

  it('Parse/Bind/Describe/Execute/Sync settles the execute at CommandComplete', () => {
    const t = new ResponseTracker();
    const ex = sink();
    pushAll(t, ['parse', 'bind', 'describe', 'execute', 'sync'], { 3: ex });
    server(t, parseComplete);
    expect(t.depth).toBe(4);
    server(t, bindComplete);
    expect(t.depth).toBe(3);
    server(t, rowDescription(['id', 'name']));
    expect(t.depth).toBe(2);
    server(t, dataRow(['1', 'a']), dataRow(['2', 'b']), dataRow(['3', null]));
    expect(ex).not.toHaveBeenCalled();
    server(t, commandComplete('SELECT 3'));
    expect(ex.only()).toEqual({ status: 'ok', tags: ['SELECT 3'], rows: 3, sqlstate: null });
    expect(t.depth).toBe(1);
    server(t, readyForQuery('I'));
    expect(t.depth).toBe(0);
  });

  it('Describe statement (ParameterDescription + NoData), Close, and EmptyQueryResponse', () => {
    const t = new ResponseTracker();
    const ex = sink();
    pushAll(t, ['parse', 'describe', 'bind', 'execute', 'close', 'sync'], { 3: ex });
    server(t, parseComplete, paramDesc);
    expect(t.depth).toBe(5);
    server(t, noData, bindComplete, emptyQuery);
    expect(ex.only()).toEqual({ status: 'ok', tags: [], rows: null, sqlstate: null });
    server(t, closeComplete);
    expect(t.depth).toBe(1);
    server(t, readyForQuery('T'));
    expect(t.depth).toBe(0);
    expect(t.txStatus).toBe('T');
  });

  it('PortalSuspended settles an execute as ok; the next Execute on the portal is tracked anew', () => {
    const t = new ResponseTracker();
    const first = sink();
    const second = sink();
    pushAll(t, ['bind', 'execute'], { 1: first });
    server(t, bindComplete, dataRow(['1']), dataRow(['2']), suspended);
    expect(first.only()).toEqual({ status: 'ok', tags: [], rows: null, sqlstate: null });
    pushAll(t, ['execute', 'sync'], { 0: second });
    server(t, dataRow(['3']), commandComplete('SELECT 1'), readyForQuery('I'));
    expect(second.only()).toEqual({ status: 'ok', tags: ['SELECT 1'], rows: 1, sqlstate: null });
    expect(t.depth).toBe(0);
  });

  it('an error on Bind settles it as error and everything up to Sync as skipped', () => {
    const t = new ResponseTracker();
    const s = [sink(), sink(), sink(), sink(), sink(), sink()];
    pushAll(t, ['parse', 'bind', 'describe', 'execute', 'close', 'sync'], { 1: s[1]!, 3: s[3]!, 4: s[4]! });
    const after = sink();
    pushAll(t, ['parse', 'bind', 'execute', 'sync'], { 2: after });
    server(t, parseComplete, err('22P02', 'invalid input syntax for type integer'));
    expect(s[1]!.only()).toEqual({ status: 'error', tags: [], rows: null, sqlstate: '22P02' });
    expect(s[3]!.only()).toEqual({ status: 'skipped', tags: [], rows: null, sqlstate: null });
    expect(s[4]!.only().status).toBe('skipped');
    expect(t.depth).toBe(5); // the Sync and the second batch
    server(t, readyForQuery('I'), parseComplete, bindComplete, commandComplete('INSERT 0 1'), readyForQuery('I'));
    expect(after.only()).toEqual({ status: 'ok', tags: ['INSERT 0 1'], rows: 1, sqlstate: null });
    expect(t.depth).toBe(0);
  });

  it('an error with the queue empty skips requests until the client sends Sync', () => {
    const t = new ResponseTracker();
    const failed = sink();
    const skipped = [sink(), sink(), sink()];
    const afterSync = sink();
    pushAll(t, ['parse', 'bind', 'execute'], { 2: failed });
    server(t, parseComplete, bindComplete, err('23505'));
    expect(failed.only()).toEqual({ status: 'error', tags: [], rows: null, sqlstate: '23505' });
    expect(t.depth).toBe(0);
    t.push({ kind: 'bind', onOutcome: skipped[0] });
    t.push({ kind: 'execute', onOutcome: skipped[1] });
    t.push({ kind: 'query', onOutcome: skipped[2] }); // the server discards a Query too
    for (const s of skipped) expect(s.only()).toEqual({ status: 'skipped', tags: [], rows: null, sqlstate: null });
    expect(t.depth).toBe(0);
    t.push({ kind: 'sync' });
    t.push({ kind: 'query', onOutcome: afterSync });
    expect(t.depth).toBe(2);
    server(t, readyForQuery('E'));
    expect(t.depth).toBe(1);
    server(t, commandComplete('ROLLBACK'), readyForQuery('I'));
    expect(afterSync.only()).toEqual({ status: 'ok', tags: ['ROLLBACK'], rows: null, sqlstate: null });
    expect(t.txStatus).toBe('I');
  });

  it('an error at Sync (e.g. commit-time) settles nothing and is consumed by the Sync', () => {
    const t = new ResponseTracker();
    const ex = sink();
    const next = sink();
    pushAll(t, ['bind', 'execute', 'sync'], { 1: ex });
    server(t, bindComplete, commandComplete('INSERT 0 1'), err('23503'));
    expect(ex.only().status).toBe('ok');
    expect(t.depth).toBe(1);
    t.push({ kind: 'query', onOutcome: next });
    server(t, readyForQuery('I'), commandComplete('SELECT 0'), readyForQuery('I'));
    expect(next.only()).toEqual({ status: 'ok', tags: ['SELECT 0'], rows: 0, sqlstate: null });
  });
});

describe('ResponseTracker: replaceError, abandon, txStatus', () => {
  const refusal = new PgError('42501', 'statement refused by policy "no-ddl"', 'ERROR', 'DROP TABLE is not allowed');

  it.each(['execute', 'query', 'parse'] as const)('replaceError swaps the ErrorResponse of a %s for dbward\'s', (kind) => {
    const t = new ResponseTracker();
    const out = sink();
    t.push({ kind, onOutcome: out, replaceError: refusal });
    t.push({ kind: 'sync' });
    const replacement = server(t, err('42601', 'syntax error at or near "stand-in"'))[0] as Buffer;
    expect(replacement).toBeInstanceOf(Buffer);
    expect(String.fromCharCode(replacement![0]!)).toBe('E');
    expect(replacement!.readInt32BE(1)).toBe(replacement!.length - 1);
    const fields = decodeErrorFields(replacement!.subarray(5));
    expect(fields.get('C')).toBe('42501');
    expect(fields.get('M')).toBe('statement refused by policy "no-ddl"');
    expect(fields.get('D')).toBe('DROP TABLE is not allowed');
    expect(fields.get('S')).toBe('ERROR');
    server(t, readyForQuery('I'));
    expect(out.only()).toMatchObject({ status: 'error', sqlstate: '42501' });
  });

  it('an error with no request in flight is forwarded and changes nothing', () => {
    const t = new ResponseTracker();
    expect(server(t, errorResponse({ S: 'FATAL', C: '57P01', M: 'terminating' }))).toEqual([undefined]);
    const q = sink();
    t.push({ kind: 'query', onOutcome: q });
    expect(t.depth).toBe(1);
    server(t, commandComplete('SELECT 1'), readyForQuery('I'));
    expect(q.only().status).toBe('ok');
  });

  it('an error missing its C field is recorded as XX000', () => {
    const t = new ResponseTracker();
    const ex = sink();
    t.push({ kind: 'execute', onOutcome: ex });
    server(t, errorResponse({ S: 'ERROR', M: 'no code' }));
    expect(ex.only().sqlstate).toBe('XX000');
  });

  it('abandon() settles everything in flight as lost, once', () => {
    const t = new ResponseTracker();
    const q = sink();
    const ex = sink();
    const done = sink();
    t.push({ kind: 'query', onOutcome: done });
    server(t, commandComplete('SELECT 1'), readyForQuery('I'));
    t.push({ kind: 'query', onOutcome: q });
    t.push({ kind: 'parse' });
    t.push({ kind: 'execute', onOutcome: ex });
    t.push({ kind: 'sync' });
    server(t, commandComplete('SELECT 4'));
    t.abandon();
    expect(q.only()).toEqual({ status: 'lost', tags: ['SELECT 4'], rows: 4, sqlstate: null });
    expect(ex.only()).toEqual({ status: 'lost', tags: [], rows: null, sqlstate: null });
    expect(done.only().status).toBe('ok');
    expect(t.depth).toBe(0);
    server(t, readyForQuery('I'));
    t.abandon();
    expect(q).toHaveBeenCalledTimes(1);
    expect(ex).toHaveBeenCalledTimes(1);
  });

  it('txStatus follows every ReadyForQuery and onReady sees it', () => {
    const t = new ResponseTracker();
    const seen: string[] = [];
    t.onReady = (s) => seen.push(s);
    expect(t.txStatus).toBe('I');
    for (const s of ['T', 'E', 'I', 'T'] as const) {
      t.push({ kind: 'sync' });
      server(t, readyForQuery(s));
      expect(t.txStatus).toBe(s);
    }
    server(t, msg('Z', 'X'));
    expect(t.txStatus).toBe('I');
    expect(seen).toEqual(['T', 'E', 'I', 'T', 'I']);
  });

  it('a long pipeline keeps responses matched after the queue compacts', () => {
    const t = new ResponseTracker();
    const got: (Outcome & { i: number })[] = [];
    for (let i = 0; i < 3000; i++) t.push({ kind: 'query', onOutcome: (o) => got.push({ ...o, i }) });
    for (let i = 0; i < 3000; i++) server(t, commandComplete(`SELECT ${i}`), readyForQuery('I'));
    expect(got).toHaveLength(3000);
    got.forEach((o, i) => expect(o).toEqual({ status: 'ok', tags: [`SELECT ${i}`], rows: i, sqlstate: null, i }));
    expect(t.depth).toBe(0);
  });
});

describe('row limits (limit_rows)', () => {
  const dataRow = msg('D', Buffer.from([0, 1, 0, 0, 0, 1, 0x31]));
  const selectTag = (n: number) => msg('C', Buffer.from(`SELECT ${n}\0`));

  it('forwards rows up to the cap, drops the rest, and puts a notice before the tag', () => {
    const t = new ResponseTracker();
    const limit = { max: 2, sent: 0, withheld: 0, rules: ['cap'] };
    t.push({ kind: 'query', limit });
    const out = server(t, dataRow, dataRow, dataRow, dataRow, selectTag(4));
    expect(out.slice(0, 4)).toEqual([undefined, undefined, null, null]);
    const last = out[4] as Buffer;
    expect(last[0]).toBe('N'.charCodeAt(0));
    expect(last.toString()).toContain('dbward withheld 2 row(s): at most 2 may be returned (rule cap)');
    expect(last.subarray(last.length - selectTag(4).length)).toEqual(selectTag(4));
  });

  it('counts across the Executes of one portal, so paging cannot get past the cap', () => {
    const t = new ResponseTracker();
    const limit = { max: 3, sent: 0, withheld: 0, rules: ['cap'] };
    t.push({ kind: 'execute', limit });
    expect(server(t, dataRow, dataRow, msg('s'))).toEqual([undefined, undefined, undefined]);
    t.push({ kind: 'execute', limit });
    expect(server(t, dataRow, dataRow)).toEqual([undefined, null]);
  });

  it('leaves rows of unlimited statements alone', () => {
    const t = new ResponseTracker();
    t.push({ kind: 'query' });
    expect(server(t, dataRow, dataRow, selectTag(2))).toEqual([undefined, undefined, undefined]);
  });
});

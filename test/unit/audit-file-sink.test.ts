// FileAuditSink: synchronous commits (fsync 'none'), group commit ('batch'),
// appended lines riding along, close, and write failures (/dev/full).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileAuditSink } from '../../src/audit/file-sink.js';
import type { SinkObserver } from '../../src/audit/events.js';
import { SessionFragments } from '../../src/audit/serialize.js';

let tmp: string;
let file: string;
const sinks: FileAuditSink[] = [];

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(tmpdir(), 'dbward-sink-'));
  file = path.join(tmp, 'audit.jsonl');
});
afterEach(async () => {
  vi.restoreAllMocks();
  for (const s of sinks.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function open(mode: 'none' | 'batch', observer?: SinkObserver, at = file): FileAuditSink {
  const sink = new FileAuditSink(at, { fsync: mode }, observer);
  sinks.push(sink);
  return sink;
}

const read = (): string => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
const lines = (): string[] => read().split('\n').filter((l) => l !== '');

/** Real event lines, as the proxy writes them. */
const fragments = new SessionFragments('sess-1', { user: 'u"\n', verified: false }, { name: 't', engine: 'postgres', database: 'db', environment: 'dev' }, { address: '127.0.0.1', port: 5000, application: null, tls: false });
const DECISION = { action: 'allow' as const, ruleIds: [], default: true };
const stmt = (text: string): string => fragments.statement('simple', { text }, DECISION).line;
const outcome = (): string => fragments.outcome('00000000-0000-4000-8000-000000000000', { status: 'ok', tags: ['SELECT 1'], rows: 1, sqlstate: null, duration_ms: 0.5 }, 1);

async function poll(check: () => boolean, ms = 500): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 1));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`not settled in ${ms} ms`)), ms))]);
}

describe("fsync 'none'", () => {
  it('writes a committed line before commit() returns', () => {
    const sink = open('none');
    expect(sink.commit('{"a":1}')).toBeUndefined();
    expect(read()).toBe('{"a":1}\n');
    expect(sink.commit('{"a":2}')).toBeUndefined();
    expect(read()).toBe('{"a":1}\n{"a":2}\n');
    expect(sink.healthy).toBe(true);
  });

  it('writes appended lines with the next commit, in order', () => {
    const sink = open('none');
    sink.append('{"n":1}');
    sink.append('{"n":2}');
    sink.commit('{"n":3}');
    expect(read()).toBe('{"n":1}\n{"n":2}\n{"n":3}\n');
  });

  it('writes lines larger than its encoding buffer, and multi-byte text, intact and in order', () => {
    const sink = open('none');
    const expected = [stmt('before é'), stmt('SELECT \'' + '🐘ü"\\'.repeat(50_000) + '\''), stmt('after 日本')];
    sink.append(expected[0]!);
    sink.commit(expected[1]!);
    sink.commit(expected[2]!);
    const written = lines();
    expect(written.length).toBe(3);
    expect(written.every((l, i) => l === expected[i])).toBe(true);
    expect(read().endsWith('\n')).toBe(true);
  });

  it('writes appended lines within a few ms when no commit follows', async () => {
    const sink = open('none');
    const started = Date.now();
    sink.append('{"n":1}');
    sink.append('{"n":2}');
    await poll(() => read() === '{"n":1}\n{"n":2}\n');
    expect(Date.now() - started).toBeLessThan(500);
  });
});

describe("fsync 'batch'", () => {
  it('returns a promise; commits of one tick resolve together, all written in order', async () => {
    const written: number[] = [];
    const sink = open('batch', { written: (n) => written.push(n) });
    const ps = Array.from({ length: 5 }, (_, i) => sink.commit(`{"n":${i}}`));
    for (const p of ps) expect(p).toBeInstanceOf(Promise);
    const settled: number[] = [];
    let settledWhenFirstResolved = -1;
    ps.forEach((p, i) => (p as Promise<void>).then(() => {
      settled.push(i);
      if (i === 0) queueMicrotask(() => { settledWhenFirstResolved = settled.length; });
    }));
    await Promise.all(ps);
    expect(settledWhenFirstResolved).toBe(5);
    expect(settled).toEqual([0, 1, 2, 3, 4]);
    expect(read()).toBe([0, 1, 2, 3, 4].map((i) => `{"n":${i}}\n`).join(''));
    expect(written).toEqual([5]);
  });

  it('writes appended lines before a later commit in the same group', async () => {
    const sink = open('batch');
    sink.append('{"n":1}');
    await sink.commit('{"n":2}');
    expect(read()).toBe('{"n":1}\n{"n":2}\n');
  });

  it('keeps order across groups committed while one is on disk', async () => {
    const sink = open('batch');
    const first = sink.commit('{"g":1}');
    await new Promise((r) => setImmediate(r)); // the first group is now in flight
    const rest = [sink.commit('{"g":2}'), sink.commit('{"g":3}')];
    sink.append('{"g":4}');
    await Promise.all([first, ...rest]);
    await sink.close();
    expect(lines()).toEqual(['{"g":1}', '{"g":2}', '{"g":3}', '{"g":4}']);
  });
});

describe.each(['none', 'batch'] as const)("file format and close (fsync '%s')", (mode) => {
  it('writes newline-terminated JSON lines', async () => {
    const sink = open(mode);
    sink.append(outcome());
    await sink.commit(stmt('SELECT "a"\n\u2028 🐘 \ud800'));
    sink.append(outcome());
    await sink.close();
    const text = read();
    expect(text.endsWith('\n')).toBe(true);
    const all = text.split('\n');
    expect(all.pop()).toBe('');
    expect(all).toHaveLength(3);
    for (const l of all) expect(() => JSON.parse(l)).not.toThrow();
    expect((JSON.parse(all[1]!) as { statement: { text: string } }).statement.text).toBe('SELECT "a"\n\u2028 🐘 \ud800');
  });

  it('opens for append, keeping what the file held, and creates missing directories', async () => {
    fs.writeFileSync(file, '{"old":true}\n');
    const sink = open(mode);
    await sink.commit('{"new":true}');
    expect(read()).toBe('{"old":true}\n{"new":true}\n');
    const nested = path.join(tmp, 'a', 'b', 'audit.jsonl');
    const other = open(mode, undefined, nested);
    await other.commit('{"x":1}');
    expect(fs.readFileSync(nested, 'utf8')).toBe('{"x":1}\n');
  });

  it('close() writes queued appended lines; append/commit afterwards throw', async () => {
    const sink = open(mode);
    sink.append('{"n":1}');
    sink.append('{"n":2}');
    await sink.close();
    expect(read()).toBe('{"n":1}\n{"n":2}\n');
    expect(() => sink.append('{"n":3}')).toThrow(/closed/);
    expect(() => sink.commit('{"n":4}')).toThrow(/closed/);
    await sink.close(); // idempotent
    expect(read()).toBe('{"n":1}\n{"n":2}\n');
  });

  it('reports written(lines, seconds) adding up to the lines written', async () => {
    const calls: [number, number][] = [];
    const sink = open(mode, { written: (n, s) => calls.push([n, s]) });
    sink.append('{"n":1}');
    sink.append('{"n":2}');
    await sink.commit('{"n":3}');
    await Promise.all([sink.commit('{"n":4}'), sink.commit('{"n":5}')]);
    sink.append('{"n":6}');
    await poll(() => lines().length === 6);
    sink.append('{"n":7}');
    await sink.close();
    expect(lines()).toHaveLength(7);
    expect(calls.reduce((sum, [n]) => sum + n, 0)).toBe(7);
    for (const [n, s] of calls) {
      expect(n).toBeGreaterThan(0);
      expect(Number.isFinite(s) && s >= 0).toBe(true);
    }
  });
});

describe('write failures (/dev/full)', () => {
  const canWrite = fs.existsSync('/dev/full');

  it.runIf(canWrite)("'none': commit() throws ENOSPC, healthy turns false, observer told", () => {
    const failed = vi.fn();
    const sink = open('none', { failed }, '/dev/full');
    expect(sink.healthy).toBe(true);
    expect(() => sink.commit('{"n":1}')).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    expect(sink.healthy).toBe(false);
    expect(failed).toHaveBeenCalledWith(expect.objectContaining({ code: 'ENOSPC' }));
  });

  it.runIf(canWrite)("'batch': commit() rejects ENOSPC, healthy turns false, observer told", async () => {
    const failed = vi.fn();
    const sink = open('batch', { failed }, '/dev/full');
    await expect(sink.commit('{"n":1}')).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(sink.healthy).toBe(false);
    expect(failed).toHaveBeenCalledWith(expect.objectContaining({ code: 'ENOSPC' }));
  });

  it.runIf(canWrite)("'none': close() after a failed commit with appended lines queued resolves, and the sink goes quiet", async () => {
    const failed = vi.fn();
    const sink = open('none', { failed }, '/dev/full');
    sink.append('{"n":1}');
    expect(() => sink.commit('{"n":2}')).toThrow();
    expect(sink.healthy).toBe(false);
    await withTimeout(sink.close(), 2000);
    // Nothing is left to try once closed: no further writes (or failure reports) may follow.
    const afterClose = failed.mock.calls.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(failed.mock.calls.slice(afterClose).map(([e]) => String(e))).toEqual([]);
  });

  it("'none': a failed commit is dropped, not retried; appended lines stay queued for the next write", () => {
    const sink = open('none');
    sink.append('{"n":1}');
    vi.spyOn(fs, 'writeSync').mockImplementationOnce(() => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    expect(() => sink.commit('{"n":2}')).toThrow(/ENOSPC/);
    expect(sink.healthy).toBe(false);
    expect(read()).toBe('');
    vi.restoreAllMocks();
    sink.commit('{"n":3}');
    expect(sink.healthy).toBe(true);
    expect(read()).toBe('{"n":1}\n{"n":3}\n');
  });
});

describe('paths that are not regular files', () => {
  it('a character device is written but never rotated: the device stays where it is', () => {
    // Our own device node (/dev/zero's numbers) in the temp dir: a regression renames it, not the machine's.
    const dev = path.join(tmp, 'zero');
    execFileSync('mknod', [dev, 'c', '1', '5']);
    const sink = new FileAuditSink(dev, { fsync: 'none', rotateBytes: 100, key: Buffer.alloc(32, 1) });
    sinks.push(sink);
    for (let i = 0; i < 5; i++) sink.commit(stmt(`select ${'x'.repeat(200)}`));
    expect(sink.healthy).toBe(true);
    expect(fs.statSync(dev).isCharacterDevice()).toBe(true);
    expect(fs.readdirSync(tmp)).toEqual(['zero']);
  });

  it('a FIFO or a directory is refused at open, naming the path', () => {
    const fifo = path.join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    // Opening a FIFO for writing with no reader would block the daemon's start for good.
    expect(() => open('none', undefined, fifo)).toThrow(`audit file ${fifo} is neither a regular file nor a character device`);
    const dir = path.join(tmp, 'dir');
    fs.mkdirSync(dir);
    expect(() => open('none', undefined, dir)).toThrow(`audit file ${dir} is neither`);
  });
});

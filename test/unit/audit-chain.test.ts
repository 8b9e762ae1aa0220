// The keyed chain as the file sink writes it: every line sealed and linked,
// across rotation, restart and failed writes; the head export and the key.

import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Chain, CHAIN_FIELD_BYTES, GENESIS, macValid, unseal, type ChainHead } from '../../src/audit/chain.js';
import { FileAuditSink, rotatedName, type FileSinkOptions } from '../../src/audit/file-sink.js';
import { HeadExporter, loadChainKey, readHeadFile } from '../../src/audit/head.js';
import { fileHead } from '../../src/audit/read.js';

const KEY = Buffer.from('k'.repeat(40));
const silent = pino({ level: 'silent' });
let dir: string;
let file: string;
const sinks: FileAuditSink[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(tmpdir(), 'dbward-chain-'));
  file = path.join(dir, 'dbward.jsonl');
});
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(opts: Partial<FileSinkOptions> = {}): FileAuditSink {
  const sink = new FileAuditSink(file, { fsync: 'none', key: KEY, ...opts });
  sinks.push(sink);
  return sink;
}

/** Every line of the trail's files, oldest file first (by the seq of its first line). */
function trail(): string[] {
  const files = fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl')).map((n) => path.join(dir, n));
  const firstSeq = (f: string): number => unseal(fs.readFileSync(f, 'utf8').split('\n')[0]!)?.seq ?? Infinity;
  return files.sort((a, b) => firstSeq(a) - firstSeq(b)).flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean));
}

/** Asserts the lines form one unbroken chain from genesis under KEY; returns the bodies. */
function expectChain(lines: string[]): string[] {
  let prev = GENESIS;
  return lines.map((line, i) => {
    const s = unseal(line);
    expect(s, `line ${i + 1} is sealed`).not.toBeNull();
    expect(s!.seq).toBe(i + 1);
    expect(s!.prev).toBe(prev);
    expect(macValid(KEY, s!)).toBe(true);
    expect(JSON.parse(line)).toMatchObject(JSON.parse(s!.body) as object);
    prev = s!.mac;
    return s!.body;
  });
}

describe('Chain', () => {
  it('seals a line so that any change to its body, seq or prev breaks the mac', () => {
    const chain = new Chain(KEY);
    const sealed = unseal(chain.seal('{"a":1}'))!;
    expect(sealed).toMatchObject({ body: '{"a":1}', seq: 1, prev: GENESIS });
    expect(macValid(KEY, sealed)).toBe(true);
    expect(macValid(KEY, { ...sealed, body: '{"a":2}' })).toBe(false);
    expect(macValid(KEY, { ...sealed, seq: 2 })).toBe(false);
    expect(macValid(KEY, { ...sealed, prev: sealed.mac })).toBe(false);
    expect(macValid(Buffer.from('x'.repeat(40)), sealed)).toBe(false);
  });

  it('seals encoded bytes in place as it seals the string, under keys shorter and longer than a block', () => {
    const keys = [Buffer.from('k'.repeat(32)), Buffer.from('k'.repeat(64)), Buffer.from('x'.repeat(65)), Buffer.from('é'.repeat(150))];
    // Long lines grow the writer's buffer; the one after a huge line runs in the buffer shrunk again.
    const lines = ['{"a":1}', '{"t":"日本 🐘 \\"é"}', `{"big":"${'y'.repeat(5000)}"}`, `{"huge":"${'z'.repeat(1_100_000)}"}`, '{"after":"huge"}'];
    for (const key of keys) {
      const byString = new Chain(key);
      const byBytes = new Chain(key);
      for (const line of lines) {
        const encoded = Buffer.from(`[${line}`);
        const buf = Buffer.alloc(encoded.length + CHAIN_FIELD_BYTES, 0x5d);
        encoded.copy(buf);
        const end = byBytes.sealInto(buf, 1, encoded.length);
        const sealed = buf.toString('utf8', 1, end);
        expect(buf[end], 'nothing written past the end').toBe(0x5d);
        expect(sealed).toBe(byString.seal(line));
        expect(macValid(key, unseal(sealed)!)).toBe(true);
      }
    }
  });

  it('continues from a head and rewinds to one', () => {
    const a = new Chain(KEY);
    a.seal('{"n":1}');
    const head = a.head;
    const b = new Chain(KEY, head);
    const next = unseal(b.seal('{"n":2}'))!;
    expect(next.seq).toBe(2);
    expect(next.prev).toBe(head.mac);
    b.rewind(head);
    expect(b.head).toEqual(head);
  });

  it('does not take a chain field that is not the last thing on the line', () => {
    const sealed = new Chain(KEY).seal('{"a":1}');
    expect(unseal(`${sealed.slice(0, -1)},"x":1}`)).toBeNull();
    expect(unseal('{"chain":{"seq":1}}')).toBeNull();
  });
});

describe('FileAuditSink with a key', () => {
  it('seals committed and appended lines in the order written', async () => {
    const sink = open();
    sink.append('{"n":1}');
    sink.commit('{"n":2}');
    sink.append('{"n":3,"t":"日本 🐘 \\"é"}');
    await sink.close();
    expect(expectChain(trail())).toEqual(['{"n":1}', '{"n":2}', '{"n":3,"t":"日本 🐘 \\"é"}']);
  });

  it('continues the chain when reopened (a restart)', async () => {
    const first = open();
    first.commit('{"run":1}');
    await first.close();
    const second = open();
    expect(second.head.seq).toBe(1);
    second.commit('{"run":2}');
    await second.close();
    expectChain(trail());
  });

  it('rotates by size into timestamped files and runs the chain on across them', async () => {
    const sink = open({ rotateBytes: 2048 });
    for (let i = 0; i < 60; i++) sink.commit(`{"n":${i},"pad":"${'x'.repeat(100)}"}`);
    await sink.close();
    const files = fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl'));
    expect(files.length).toBeGreaterThan(3);
    expect(files.filter((n) => /^dbward\.\d{8}T\d{9}Z(-\d+)?\.jsonl$/.test(n)).length).toBe(files.length - 1);
    for (const f of files) expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(2048);
    expect(expectChain(trail()).length).toBe(60);
  });

  it('rotates by age', async () => {
    const sink = open({ rotateMs: 1 });
    sink.commit('{"n":1}');
    await new Promise((r) => setTimeout(r, 5));
    sink.commit('{"n":2}');
    await sink.close();
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl')).length).toBe(2);
    expectChain(trail());
  });

  it('continues from the newest rotated file when the active one was rotated away before a restart', async () => {
    const sink = open();
    sink.commit('{"n":1}');
    await sink.close();
    fs.renameSync(file, rotatedName(file, new Date()));
    const next = open();
    next.commit('{"n":2}');
    await next.close();
    expectChain(trail());
  });

  it("group commit ('batch') seals too", async () => {
    const sink = open({ fsync: 'batch' });
    await Promise.all([sink.commit('{"n":1}'), sink.commit('{"n":2}')]);
    sink.append('{"n":3}');
    await sink.close();
    expectChain(trail());
  });

  it('a failed write leaves no gap: the chain rewinds and the next line takes the seq', async () => {
    const sink = open();
    sink.commit('{"n":1}');
    // Make the next write fail: swap the descriptor for a read-only one.
    const internals = sink as unknown as { fd: number };
    const writable = internals.fd;
    internals.fd = fs.openSync(file, 'r');
    expect(() => sink.commit('{"n":"lost"}')).toThrow();
    expect(sink.healthy).toBe(false);
    expect(sink.head.seq).toBe(1);
    fs.closeSync(internals.fd);
    internals.fd = writable;
    sink.commit('{"n":2}');
    expect(sink.healthy).toBe(true);
    await sink.close();
    expect(expectChain(trail())).toEqual(['{"n":1}', '{"n":2}']);
  });

  it('cuts a line torn by a crash off the end before appending, so the trail still verifies', async () => {
    const first = open();
    first.commit('{"n":1}');
    await first.close();
    fs.appendFileSync(file, '{"n":2,"torn mid-wri');
    const next = open();
    next.commit('{"n":3}');
    await next.close();
    expect(expectChain(trail())).toEqual(['{"n":1}', '{"n":3}']);
  });

  it('cuts off what a failed write left, and reopens a file a failed rotation left closed', async () => {
    const sink = open();
    sink.commit('{"n":1}');
    const internals = sink as unknown as { fd: number | null };
    fs.closeSync(internals.fd!);
    internals.fd = null;
    sink.commit('{"n":2}');
    // Bytes a failing write put down are cut back before the chain takes their seq again.
    fs.appendFileSync(file, '{"partial":');
    (sink as unknown as { undoTo(size: number): void }).undoTo(fs.statSync(file).size - '{"partial":'.length);
    sink.commit('{"n":3}');
    await sink.close();
    expect(expectChain(trail())).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
  });

  it('hands the sealed lines to onWritten after each write', async () => {
    const got: string[] = [];
    const sink = open({ onWritten: (lines) => got.push(...lines) });
    sink.append('{"n":1}');
    sink.commit('{"n":2}');
    await sink.close();
    expect(got).toEqual(trail());
  });

  it('fileHead reads the last complete line, ignoring a torn tail', async () => {
    const sink = open();
    sink.commit('{"n":1}');
    sink.commit('{"n":2}');
    await sink.close();
    const head = fileHead(file)!;
    expect(head.seq).toBe(2);
    fs.appendFileSync(file, '{"torn":');
    expect(fileHead(file)).toEqual(head);
    expect(fileHead(path.join(dir, 'missing.jsonl'))).toBeNull();
  });
});

describe('head export and key', () => {
  it('exports the head atomically when it moves, and once more on stop', () => {
    const headFile = path.join(dir, 'sub', 'head.json');
    let head: ChainHead = { seq: 3, mac: 'a'.repeat(64) };
    const exporter = new HeadExporter(headFile, 'node-1', () => head, 60_000, silent);
    exporter.export();
    expect(readHeadFile(headFile)).toMatchObject({ node: 'node-1', seq: 3, mac: 'a'.repeat(64) });
    head = { seq: 4, mac: 'b'.repeat(64) };
    exporter.stop();
    expect(readHeadFile(headFile)).toMatchObject({ seq: 4, mac: 'b'.repeat(64) });
    expect(fs.readdirSync(path.dirname(headFile))).toEqual(['head.json']);
  });

  it('rejects a head file that is not one', () => {
    const f = path.join(dir, 'head.json');
    fs.writeFileSync(f, '{"seq":"1"}');
    expect(() => readHeadFile(f)).toThrow(/not a dbward chain head/);
  });

  it('generates a 0600 key once, then reads it; refuses short keys and unset variables', () => {
    const keyFile = path.join(dir, 'keys', 'chain.key');
    const k1 = loadChainKey({ generate: keyFile }, silent);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(loadChainKey({ generate: keyFile }, silent)).toEqual(k1);
    expect(k1.length).toBeGreaterThanOrEqual(32);
    fs.writeFileSync(path.join(dir, 'short'), 'abc');
    expect(() => loadChainKey({ file: path.join(dir, 'short') }, silent)).toThrow(/at least 32/);
    expect(() => loadChainKey({ file: path.join(dir, 'none') }, silent)).toThrow(/cannot read/);
    expect(() => loadChainKey({ env: 'DBWARD_TEST_NO_SUCH_KEY' }, silent, {})).toThrow(/not set/);
    expect(loadChainKey({ env: 'K' }, silent, { K: 'z'.repeat(32) })).toEqual(Buffer.from('z'.repeat(32)));
  });
});

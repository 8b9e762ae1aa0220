// verify.ts against real trails sealed by Chain and written by FileAuditSink
// (rotation, restarts), each tampered with one way: the report must name the
// kind of problem, the file and line, and the seq.

import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Chain, GENESIS, unseal } from '../../src/audit/chain.js';
import { FileAuditSink } from '../../src/audit/file-sink.js';
import { verifyFiles, verifyLines } from '../../src/audit/verify.js';

const KEY = Buffer.from('k'.repeat(40));
let tmp: string;

beforeEach(() => { tmp = fs.mkdtempSync(path.join(tmpdir(), 'dbward-verify-')); });
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An event line as the proxy writes one (before sealing). */
function event(n: number): string {
  return JSON.stringify({ v: 1, id: `e${n}`, time: `2026-11-23T10:00:${String(n % 60).padStart(2, '0')}.000001Z`, session: 's1', type: 'statement', statement: { text: `SELECT ${n}` } });
}

/** `count` sealed lines, seq 1..count. */
function sealed(count: number, chain = new Chain(KEY)): string[] {
  return Array.from({ length: count }, (_, i) => chain.seal(event(i + 1)));
}

function write(name: string, lines: string[], tail = '\n'): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, lines.join('\n') + (lines.length ? tail : ''));
  return file;
}

const macOf = (line: string): string => unseal(line)!.mac;

describe('an untouched trail', () => {
  it('verifies, from genesis, with first and last heads', async () => {
    const lines = sealed(10);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r).toMatchObject({ ok: true, events: 10, startsAtGenesis: true, headChecked: false, problem: null });
    expect(r.first).toEqual({ seq: 1, mac: macOf(lines[0]!) });
    expect(r.last).toEqual({ seq: 10, mac: macOf(lines[9]!) });
  });

  it('verifies across FileAuditSink rotations and a restart that continues the chain', async () => {
    const active = path.join(tmp, 'audit', 'dbward.jsonl');
    let sink = new FileAuditSink(active, { fsync: 'none', key: KEY, rotateBytes: 1500 });
    for (let i = 1; i <= 30; i++) await sink.commit(event(i));
    await sink.close();
    sink = new FileAuditSink(active, { fsync: 'none', key: KEY, rotateBytes: 1500 });
    for (let i = 31; i <= 45; i++) await sink.commit(event(i));
    await sink.close();
    const files = fs.readdirSync(path.dirname(active));
    expect(files.length).toBeGreaterThan(4);
    const r = await verifyFiles([path.dirname(active)], KEY);
    expect(r.problem).toBeNull();
    expect(r).toMatchObject({ ok: true, events: 45, startsAtGenesis: true, last: { seq: 45 } });
    // Ordered by the seq of each file's first line, the active file (newest) last.
    expect(r.files[r.files.length - 1]).toBe(active);
  });

  it('orders files by their first seq, not their names', async () => {
    const lines = sealed(6);
    const b = write('z-first.jsonl', lines.slice(0, 3));
    const a = write('a-second.jsonl', lines.slice(3));
    const r = await verifyFiles([a, b], KEY);
    expect(r).toMatchObject({ ok: true, events: 6, files: [b, a] });
  });

  it('reports a trail whose older files retention removed as not starting at genesis, which is not a problem', async () => {
    const lines = sealed(10);
    const r = await verifyFiles([write('a.jsonl', lines.slice(4))], KEY);
    expect(r).toMatchObject({ ok: true, events: 6, startsAtGenesis: false, first: { seq: 5 }, problem: null });
  });

  it('matches an exported head at the last event, and cannot compare one older than the first event', async () => {
    const lines = sealed(10);
    const file = write('a.jsonl', lines);
    expect(await verifyFiles([file], KEY, { head: { seq: 10, mac: macOf(lines[9]!) } })).toMatchObject({ ok: true, headChecked: true });
    // A head in the middle (exported before the last events were written) is compared too.
    expect(await verifyFiles([file], KEY, { head: { seq: 7, mac: macOf(lines[6]!) } })).toMatchObject({ ok: true, headChecked: true });
    const later = write('b.jsonl', lines.slice(5));
    expect(await verifyFiles([later], KEY, { head: { seq: 3, mac: macOf(lines[2]!) } })).toMatchObject({ ok: true, headChecked: false });
  });
});

describe('a tampered trail', () => {
  it('altered: an edited field, at its line and seq', async () => {
    const lines = sealed(10);
    lines[2] = lines[2]!.replace('SELECT 3', 'SELECT 33');
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r).toMatchObject({ ok: false, events: 2, last: { seq: 2 }, problem: { kind: 'altered', line: 3, seq: 3 } });
    expect(r.problem!.message).toMatch(/a\.jsonl:3 \(seq 3\) does not verify: it was edited.*the next line still links to it/);
  });

  it('altered: the wrong key is called out', async () => {
    const r = await verifyFiles([write('a.jsonl', sealed(5))], Buffer.from('x'.repeat(40)));
    expect(r.problem).toMatchObject({ kind: 'altered', line: 1, seq: 1 });
    expect(r.problem!.message).toMatch(/key is probably wrong/);
  });

  it('removed: a deleted line, naming the missing seq', async () => {
    const lines = sealed(10);
    lines.splice(4, 1);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'removed', line: 5, seq: 6, missing: { from: 5, to: 5 } });
    expect(r.problem!.message).toMatch(/^seq 5 is missing: .*a\.jsonl:5 carries seq 6 right after seq 4/);
  });

  it('removed: a deleted middle rotated file, naming its seqs', async () => {
    const lines = sealed(12);
    const files = [write('1.jsonl', lines.slice(0, 4)), write('2.jsonl', lines.slice(4, 8)), write('3.jsonl', lines.slice(8))];
    fs.rmSync(files[1]!);
    const r = await verifyFiles([tmp], KEY);
    expect(r.problem).toMatchObject({ kind: 'removed', file: files[2], line: 1, seq: 9, missing: { from: 5, to: 8 } });
    expect(r.problem!.message).toMatch(/seqs 5\.\.8 \(4 events\) are missing.*a whole file may be missing/);
  });

  it('inserted: a copy of an earlier line', async () => {
    const lines = sealed(10);
    lines.splice(6, 0, lines[1]!);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 7, seq: 2 });
    expect(r.problem!.message).toMatch(/carries seq 2, which the trail already passed \(expected 7\)/);
  });

  it('inserted: a line repeated right after itself', async () => {
    const lines = sealed(5);
    lines.splice(3, 0, lines[2]!);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 4, seq: 3 });
    expect(r.problem!.message).toMatch(/repeats the line before it/);
  });

  it('inserted: a copy of a later line placed early (the original is still in its place)', async () => {
    const lines = sealed(10);
    lines.splice(3, 0, lines[7]!);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 4, seq: 8 });
    expect(r.problem!.message).toMatch(/is a copy of seq 8 \(.*a\.jsonl:9\)/);
  });

  it('inserted: a forged line (well-formed chain field, mac not made with the key)', async () => {
    const lines = sealed(10);
    const prev = macOf(lines[3]!);
    const body = event(99);
    const forgedMac = createHmac('sha256', randomBytes(32)).update(body).digest('hex');
    lines.splice(4, 0, `${body.slice(0, -1)},"chain":{"seq":5,"prev":"${prev}","mac":"${forgedMac}"}}`);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 5, seq: 5 });
    expect(r.problem!.message).toMatch(/not sealed by this key \(forged\), and the chain goes on without it from seq 4/);
  });

  it('inserted: a line sealed in another chain (same seq, other prev)', async () => {
    const lines = sealed(6);
    const other = sealed(6, new Chain(KEY, { seq: 0, mac: 'f'.repeat(64) }));
    lines.splice(3, 1, other[3]!);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 4, seq: 4 });
    expect(r.problem!.message).toMatch(/does not link to seq 3/);
  });

  it('inserted: a new chain begun in the middle of the trail', async () => {
    const lines = [...sealed(4), ...sealed(2)];
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'inserted', line: 5, seq: 1 });
    expect(r.problem!.message).toMatch(/a new chain starts here/);
  });

  it('unsealed: a plain JSON line slipped in, and a line whose chain field was damaged', async () => {
    const lines = sealed(6);
    const a = [...lines];
    a.splice(2, 0, event(50));
    expect((await verifyFiles([write('a.jsonl', a)], KEY)).problem).toMatchObject({ kind: 'unsealed', line: 3 });
    const b = [...lines];
    b[4] = b[4]!.replace('"seq":5', '"seq":"5"');
    expect((await verifyFiles([write('b.jsonl', b)], KEY)).problem).toMatchObject({ kind: 'unsealed', line: 5 });
  });

  it('reordered: two lines swapped', async () => {
    const lines = sealed(10);
    [lines[3], lines[4]] = [lines[4]!, lines[3]!];
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'reordered', line: 4, seq: 5 });
    expect(r.problem!.message).toMatch(/\(seq 5\) comes before seq 4/);
  });

  it('reordered: a line moved further down', async () => {
    const lines = sealed(10);
    const [moved] = lines.splice(2, 1);
    lines.splice(7, 0, moved!);
    const r = await verifyFiles([write('a.jsonl', lines)], KEY);
    expect(r.problem).toMatchObject({ kind: 'reordered', line: 3, seq: 4 });
    expect(r.problem!.message).toMatch(/seq 3 was due; .*a\.jsonl:8 holds one of the skipped seqs/);
  });

  it('truncated: lines cut off the end, caught only with the exported head', async () => {
    const lines = sealed(10);
    const head = { seq: 10, mac: macOf(lines[9]!) };
    const file = write('a.jsonl', lines.slice(0, 8));
    expect(await verifyFiles([file], KEY)).toMatchObject({ ok: true, events: 8 });
    const r = await verifyFiles([file], KEY, { head });
    expect(r).toMatchObject({ ok: false, events: 8, headChecked: true, problem: { kind: 'truncated', line: 9, seq: 9, missing: { from: 9, to: 10 } } });
    expect(r.problem!.message).toMatch(/ends at seq 8 .* exported head is at seq 10: seqs 9\.\.10 \(2 events\) are cut off the end/);
  });

  it('truncated: cut back and written on, so the head seq holds another event', async () => {
    const lines = sealed(10);
    const head = { seq: 10, mac: macOf(lines[9]!) };
    const chain = new Chain(KEY, { seq: 7, mac: macOf(lines[6]!) });
    const rewritten = [...lines.slice(0, 7), ...Array.from({ length: 5 }, (_, i) => chain.seal(event(200 + i)))];
    const r = await verifyFiles([write('a.jsonl', rewritten)], KEY, { head });
    expect(r.problem).toMatchObject({ kind: 'truncated', line: 10, seq: 10 });
    expect(r.problem!.message).toMatch(/not the event the exported head recorded/);
  });

  it('malformed: a torn last line', async () => {
    const lines = sealed(5);
    const file = write('a.jsonl', lines);
    fs.appendFileSync(file, lines[0]!.slice(0, 40));
    const r = await verifyFiles([file], KEY);
    expect(r).toMatchObject({ ok: false, events: 5, problem: { kind: 'malformed', line: 6 } });
    expect(r.problem!.message).toMatch(/cut short .* torn write/);
  });

  it('malformed: a blank line and a non-object line', async () => {
    const lines = sealed(5);
    const a = [...lines];
    a.splice(1, 0, '');
    expect((await verifyFiles([write('a.jsonl', a)], KEY)).problem).toMatchObject({ kind: 'malformed', line: 2, message: expect.stringMatching(/is empty/) });
    const b = [...lines];
    b.splice(1, 0, '[1,2]');
    expect((await verifyFiles([write('b.jsonl', b)], KEY)).problem).toMatchObject({ kind: 'malformed', line: 2, message: expect.stringMatching(/not a JSON object/) });
  });
});

describe('verifyLines (the table reader feeds it rows with their seq column)', () => {
  async function* rows(lines: string[], seqs?: number[]) {
    let n = 0;
    for (const line of lines) { n++; yield { line, file: 'dbward_audit[n1]', lineNo: n, seq: seqs?.[n - 1] ?? n }; }
  }

  it('verifies rows in seq order', async () => {
    expect(await verifyLines(rows(sealed(4)), KEY)).toMatchObject({ ok: true, events: 4, files: ['dbward_audit[n1]'] });
  });

  it('calls a row whose seq column disagrees with its line altered', async () => {
    const r = await verifyLines(rows(sealed(4), [1, 2, 9, 4]), KEY);
    expect(r.problem).toMatchObject({ kind: 'altered', line: 3, seq: 3, message: expect.stringMatching(/seq column is 9/) });
  });

  it('treats an empty trail with a head as truncated, and without one as ok', async () => {
    expect(await verifyLines(rows([]), KEY)).toMatchObject({ ok: true, events: 0, first: null });
    expect((await verifyLines(rows([]), KEY, { head: { seq: 3, mac: GENESIS } })).problem).toMatchObject({ kind: 'truncated', seq: 1, missing: { from: 1, to: 3 } });
  });
});

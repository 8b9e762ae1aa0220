// `dbward audit verify`: proves a trail (a set of rotated files, or one node's
// rows of the PostgreSQL table) untouched, or names the first problem.
//
// Each line carries {seq, prev, mac} (chain.ts): mac = HMAC(key, seq, prev, body),
// prev = the mac of line seq-1. Lines are taken in order (files by the seq of
// their first line) and each must be sealed by the key and follow the last good
// line: seq + 1, prev = its mac. The first line that does not is classified, by
// looking at the line after it and, when that does not settle it, at the rest
// of the trail (read only after a problem, so a clean run streams once):
//
// - malformed: not a JSON object (a torn write, a cut file, a blank line).
// - unsealed:  a JSON object without a well-formed chain field (written by hand,
//              or its chain field was damaged).
// - altered:   the mac does not verify: its body or chain field was edited
//              (the next line still links to its mac), or a forged line stands
//              where a real one was. When the very first lines all fail, the
//              key is likely wrong; the message says so. For the table, also a
//              row whose seq column disagrees with the seq its line carries.
// - inserted:  a validly sealed line that the chain does not need here: a copy
//              of an earlier line (seq already passed), a line sealed in another
//              chain (right seq, wrong prev: another node, a restart from
//              genesis), a copy of a later line (that line still appears at its
//              place), or a forged line (mac invalid) after which the chain
//              goes on from the line before it.
// - reordered: a validly sealed line ahead of its place (seq jumps forward) whose
//              skipped seqs appear later in the trail: lines were moved or swapped.
// - removed:   seq jumps forward and the skipped seqs appear nowhere: lines (or
//              a whole rotated file) were deleted. The message names the seqs.
// - truncated: with an exported head: the trail ends before the head's seq, or
//              the line at the head's seq has another mac (cut back, then the
//              chain went on from the shorter trail).
//
// A trail that starts after seq 1 is not a problem (retention deletes the oldest
// files): startsAtGenesis says whether it begins at the chain's first event.
// Without a head, deleting lines off the end is undetectable; that is what the
// head export is for.

import { GENESIS, macValid, unseal, type ChainHead, type Sealed } from './chain.js';
import { filesLines, orderedFiles, type TrailLine } from './read.js';

/** The first thing wrong with a trail. */
export interface VerifyProblem {
  kind: 'altered' | 'removed' | 'inserted' | 'reordered' | 'truncated' | 'malformed' | 'unsealed';
  file: string;
  /** 1-based line (file) or row number (table) of the offending line; for truncated, one past the last line. */
  line: number;
  /** The seq the offending line carries (for truncated: the first missing seq). */
  seq?: number;
  /** removed, truncated: the seqs that are missing. */
  missing?: { from: number; to: number };
  message: string;
}

/** The outcome of a verification. */
export interface VerifyReport {
  ok: boolean;
  files: string[];
  /** Events verified (before the problem, if any). */
  events: number;
  /** The first verified event. */
  first: ChainHead | null;
  /** The last verified event (before the problem, if any). */
  last: ChainHead | null;
  startsAtGenesis: boolean;
  /** True when a head was given and its seq was within the trail (so its mac was compared). */
  headChecked: boolean;
  problem: VerifyProblem | null;
}

/** Options of a verification. */
export interface VerifyOptions {
  /** An exported chain head: the trail must reach it, with the same mac at its seq. */
  head?: ChainHead;
}

/** Verifies files (or every *.jsonl in directories) as one trail, ordered by the seq of their first line. */
export async function verifyFiles(paths: string[], key: Buffer, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const files = await orderedFiles(paths);
  const report = await verifyLines(filesLines(files), key, opts);
  return { ...report, files };
}

interface Entry {
  src: TrailLine;
  sealed: Sealed | null;
  valid: boolean;
}

interface Good extends ChainHead {
  file: string;
  lineNo: number;
}

/** Verifies one chain's lines in order (a trail's files, or one node's table rows by seq). */
export async function verifyLines(lines: AsyncIterable<TrailLine>, key: Buffer, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const it = lines[Symbol.asyncIterator]();
  const files: string[] = [];
  let ahead: Entry | null | undefined;
  const entry = (src: TrailLine): Entry => {
    if (files[files.length - 1] !== src.file) files.push(src.file);
    const sealed = unseal(src.line);
    return { src, sealed, valid: sealed !== null && macValid(key, sealed) };
  };
  const next = async (): Promise<Entry | null> => {
    if (ahead !== undefined) {
      const e = ahead;
      ahead = undefined;
      return e;
    }
    const r = await it.next();
    return r.done ? null : entry(r.value);
  };
  const peek = async (): Promise<Entry | null> => {
    if (ahead === undefined) ahead = await next();
    return ahead;
  };
  /** The first later line sealed by the key that satisfies `test`. */
  const findLater = async (test: (s: Sealed, src: TrailLine) => boolean): Promise<TrailLine | null> => {
    for (let e = await next(); e !== null; e = await next()) {
      // Only lines the key sealed count: a forged line could claim any seq.
      if (e.sealed && test(e.sealed, e.src) && (e.valid || macValid(key, e.sealed))) return e.src;
    }
    return null;
  };

  let first: Good | null = null;
  let last: Good | null = null;
  let events = 0;
  let headChecked = false;
  const head = opts.head;
  const done = (problem: VerifyProblem | null): VerifyReport => ({
    ok: problem === null, files, events,
    first: first && { seq: first.seq, mac: first.mac }, last: last && { seq: last.seq, mac: last.mac },
    startsAtGenesis: first !== null && first.seq === 1, headChecked, problem,
  });

  try {
    for (let e = await next(); e !== null; e = await next()) {
      const { src, sealed } = e;
      const at = { file: src.file, line: src.lineNo };
      if (!sealed) return done(unsealedOrMalformed(src));
      if (src.seq !== undefined && src.seq !== sealed.seq) {
        return done({ kind: 'altered', ...at, seq: sealed.seq, message: `${where(src)}: the row's seq column is ${src.seq} but its line carries seq ${sealed.seq}` });
      }
      if (!e.valid) return done(await unverified(e, last, peek));
      if (last === null ? true : sealed.seq === last.seq + 1 && sealed.prev === last.mac) {
        if (last === null && sealed.seq === 1 && sealed.prev !== GENESIS) {
          return done({ kind: 'inserted', ...at, seq: 1, message: `${where(src)}: seq 1 does not link to the genesis of a chain: a line from another chain` });
        }
        last = { seq: sealed.seq, mac: sealed.mac, file: src.file, lineNo: src.lineNo };
        first ??= last;
        events++;
        if (head && sealed.seq === head.seq) {
          headChecked = true;
          if (sealed.mac !== head.mac) {
            return done({
              kind: 'truncated', ...at, seq: sealed.seq,
              message: `${where(src)}: seq ${sealed.seq} is not the event the exported head recorded at that seq (mac ${short(sealed.mac)}, head ${short(head.mac)}): the trail was cut back and written on from there`,
            });
          }
        }
        continue;
      }
      return done(await outOfPlace(e, last!, peek, findLater));
    }
    // A head older than the first retained event cannot be compared: retention removed its line.
    if (head && head.seq > (last?.seq ?? 0) && (first === null || head.seq >= first.seq)) {
      const from = (last?.seq ?? 0) + 1;
      headChecked = true;
      return done({
        kind: 'truncated', file: last?.file ?? files[files.length - 1] ?? '(no events)', line: (last?.lineNo ?? 0) + 1, seq: from, missing: { from, to: head.seq },
        message: last === null
          ? `the trail holds no events but the exported head is at seq ${head.seq}`
          : `the trail ends at seq ${last.seq} (${last.file}:${last.lineNo}) but the exported head is at seq ${head.seq}: ${range(from, head.seq)} cut off the end`,
      });
    }
    return done(null);
  } finally {
    await it.return?.();
  }
}

function unsealedOrMalformed(src: TrailLine): VerifyProblem {
  const at = { file: src.file, line: src.lineNo };
  let parsed: unknown;
  try {
    parsed = JSON.parse(src.line);
  } catch {
    const what = src.line.trim() === '' ? 'is empty' : src.partial ? 'is cut short (no newline ends it, and it is not whole JSON): a torn write' : 'is not valid JSON';
    return { kind: 'malformed', ...at, message: `${where(src)} ${what}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { kind: 'malformed', ...at, message: `${where(src)} is not a JSON object` };
  }
  return { kind: 'unsealed', ...at, message: `${where(src)} carries no chain seal (written by hand, or its chain field was edited)` };
}

/** A line whose mac does not verify: edited in place, or forged and slipped in. */
async function unverified(e: Entry, last: Good | null, peek: () => Promise<Entry | null>): Promise<VerifyProblem> {
  const s = e.sealed!;
  const at = { file: e.src.file, line: e.src.lineNo, seq: s.seq };
  const nx = await peek();
  const nxs = nx?.valid ? nx.sealed! : null;
  if (nxs && last && nxs.seq === last.seq + 1 && nxs.prev === last.mac) {
    return { kind: 'inserted', ...at, message: `${where(e.src)} is not sealed by this key (forged), and the chain goes on without it from seq ${last.seq}` };
  }
  if (last === null && nx?.sealed && !nx.valid) {
    return { kind: 'altered', ...at, message: `${where(e.src)} and the line after it do not verify with this key: the key is probably wrong (or every line was altered)` };
  }
  const linked = nxs && nxs.seq === s.seq + 1 && nxs.prev === s.mac ? '; the next line still links to it' : '';
  const key = last === null ? ' (or the key is wrong)' : '';
  return { kind: 'altered', ...at, message: `${where(e.src)} (seq ${s.seq}) does not verify: it was edited after it was written${linked}${key}` };
}

/** A line sealed by the key that does not follow `last`. */
async function outOfPlace(
  e: Entry, last: Good, peek: () => Promise<Entry | null>,
  findLater: (test: (s: Sealed, src: TrailLine) => boolean) => Promise<TrailLine | null>,
): Promise<VerifyProblem> {
  const s = e.sealed!;
  const src = e.src;
  const at = { file: src.file, line: src.lineNo, seq: s.seq };
  const expected = last.seq + 1;
  const lastAt = `seq ${last.seq} (${last.file}:${last.lineNo})`;
  if (s.seq === 1 && s.prev === GENESIS) {
    return { kind: 'inserted', ...at, message: `${where(src)}: a new chain starts here (seq 1) after ${lastAt}: lines from another chain, or dbward began a new chain without its last file` };
  }
  if (s.seq < expected) {
    const what = s.seq === last.seq && s.mac === last.mac ? `repeats the line before it (seq ${s.seq})` : `carries seq ${s.seq}, which the trail already passed (expected ${expected}): a copied line`;
    return { kind: 'inserted', ...at, message: `${where(src)} ${what}` };
  }
  if (s.seq === expected) {
    return { kind: 'inserted', ...at, message: `${where(src)} carries seq ${s.seq} but does not link to ${lastAt}: a line from another chain` };
  }
  const nx = await peek();
  const nxs = nx?.valid ? nx.sealed! : null;
  if (nxs && nxs.seq === expected && nxs.prev === last.mac) {
    // The chain goes on from `last` without this line: it is a copy of a later line, or that line moved up.
    const again = await findLater((x, l) => x.seq === s.seq && l.line === src.line);
    return again
      ? { kind: 'inserted', ...at, message: `${where(src)} is a copy of seq ${s.seq} (${where(again)}), placed before seq ${expected}` }
      : { kind: 'reordered', ...at, message: `${where(src)} (seq ${s.seq}) comes before seq ${expected} (${where(nx!.src)}): lines out of order` };
  }
  const found = await findLater((x) => x.seq >= expected && x.seq < s.seq);
  if (found) {
    return { kind: 'reordered', ...at, message: `${where(src)} carries seq ${s.seq} where seq ${expected} was due; ${where(found)} holds one of the skipped seqs: lines out of order` };
  }
  const boundary = src.lineNo === 1 && src.file !== last.file ? ` (between ${last.file} and ${src.file}: a whole file may be missing)` : '';
  return {
    kind: 'removed', ...at, missing: { from: expected, to: s.seq - 1 },
    message: `${range(expected, s.seq - 1)} missing: ${where(src)} carries seq ${s.seq} right after ${lastAt}${boundary}`,
  };
}

function where(l: TrailLine): string {
  return `${l.file}:${l.lineNo}`;
}

function range(from: number, to: number): string {
  return from === to ? `seq ${from} is` : `seqs ${from}..${to} (${to - from + 1} events) are`;
}

function short(mac: string): string {
  return `${mac.slice(0, 12)}…`;
}

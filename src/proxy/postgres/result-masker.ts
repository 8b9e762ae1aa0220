//! RowDescription, DataRow, CopyOutResponse, CopyData, CopyDone, ErrorResponse and NoticeResponse (B): rewritten when masking.
// Used only by sessions with masking rules. A RowDescription decides each column's
// mask from its origin (table OID, attribute number) through the target's catalog,
// or, for a computed column (origin 0), from what the statement reads; masked
// columns are re-described as text so any masked form fits any client. DataRows
// and COPY rows are rebuilt only when some column is masked or scanned by a
// detector. When the catalog must be read first, the frame is held (HOLD) and the
// relay waits.

import { frame } from './backend.js';
import { HOLD, WRITTEN, type FrameWriter } from './frames.js';
import { PgError } from './errors.js';
import type { StatementFacts } from '../../analysis/facts.js';
import type { MaskRecord } from '../../audit/events.js';
import { dotted } from '../../analysis/pg/names.js';
import { FIRST_USER_OID, relationsNamed, type CatalogSnapshot } from '../../masking/catalog.js';
import { copyOptions } from '../../masking/copy-options.js';
import { CopyRowMasker } from '../../masking/copy-rows.js';
import type { SessionMasking, StatementTaint } from '../../masking/session.js';
import { derivedSpec, makeMaskWriter, MASK_SLACK, toMasker } from '../../masking/strategies.js';
import type { Masker, MaskSpec, MaskWriter } from '../../masking/types.js';

const TEXT_OID = 25;
/** Past this many bytes Buffer#copy (a fixed ~100 ns) beats moving 4 bytes at a time. */
const MOVE_LOOP_MAX = 256;
/** Types whose every value is a string, so a detector's mask still fits the column. */
const TEXT_LIKE = new Set([25, 1043, 1042, 19, 705]);
/** Error classes whose messages name objects, never values: kept for statements that read masked columns. */
const SAFE_ERROR_CLASSES = new Set(['08', '0A', '25', '26', '28', '40', '42', '53', '54', '55', '57', '58']);

/** One masked (or detector-scanned) column of a result, and how many of its cells were masked. */
type ColumnMask = MaskRecord;

/** The masking state of one statement (a query, or a portal's Executes and the Describe dbward sends before them). */
export interface MaskState {
  facts: readonly StatementFacts[];
  text: string;
  taint: StatementTaint;
  /** The snapshot `taint` was judged on. */
  version: number;
  /** How the current result's rows are rewritten; null: they pass as they are. */
  plan: RowPlan | null;
  copy: CopyRowMasker | null;
  /** Masks applied so far, by column and rule. */
  applied: Map<string, ColumnMask>;
  /** Computed columns of FETCH results: masked unless every DECLARE seen was clean. */
  cursor: MaskSpec | null;
}

interface RowPlan {
  writers: (MaskWriter | null)[];
  counters: (ColumnMask | null)[];
  /** Columns scanned by the content detectors. */
  detect: boolean[];
  /** The most a rewritten row can outgrow the server's: MASK_SLACK per masked or scanned column. */
  growth: number;
  any: boolean;
}

/** Rewrites the server messages of masked sessions. */
export class ResultMasker {
  /** Set while a HOLD waits for the catalog. */
  waiting: Promise<unknown> | null = null;
  private readonly writers = new Map<string, MaskWriter>();
  private readonly maskers = new Map<string, Masker>();

  constructor(private readonly current: () => SessionMasking | null) {}

  private get masking(): SessionMasking {
    return this.current()!;
  }

  /** A fresh state for a statement admitted with these facts. */
  state(facts: readonly StatementFacts[], text: string, taint: StatementTaint, version: number, cursor: MaskSpec | null): MaskState {
    return { facts, text, taint, version, plan: null, copy: null, applied: new Map(), cursor };
  }

  /** RowDescription: the rewritten description (masked columns become text), undefined when nothing is masked, or HOLD. */
  rowDescription(st: MaskState | undefined, payload: Buffer): Buffer | undefined | typeof HOLD {
    if (!this.current()) {
      // The policy was reloaded without masking for this session.
      if (st) st.plan = null;
      return undefined;
    }
    const s = this.snapshot();
    if (s === HOLD) return HOLD;
    const n = payload.readInt16BE(0);
    const specs: (MaskSpec | null)[] = [];
    const types: number[] = [];
    const offsets: number[] = [];
    const names: string[] = [];
    let pos = 2;
    for (let i = 0; i < n; i++) {
      const end = payload.indexOf(0, pos);
      if (end < 0 || end + 19 > payload.length) throw new PgError('08P01', 'upstream protocol violation: malformed RowDescription', 'FATAL');
      const field = payload.toString('utf8', pos, end);
      pos = end + 1;
      const rel = payload.readUInt32BE(pos);
      const att = payload.readInt16BE(pos + 4);
      types.push(payload.readUInt32BE(pos + 6));
      offsets.push(pos);
      pos += 18;
      let spec: MaskSpec | null;
      if (rel !== 0) {
        const found = rel < FIRST_USER_OID ? null : this.masking.spec(s, rel, att);
        if (found === undefined) {
          // A relation the snapshot does not know: read the catalog again, once; still unknown, mask it.
          if (this.refresh()) return HOLD;
          spec = { strategy: 'redact', rule: 'masking.unknown_relation' };
        } else spec = found;
        const r = s.relations.get(rel);
        names.push(att === 0 ? `${r?.printed ?? rel}.*` : r?.columns.get(att)?.printed ?? `${rel}.${att}`);
      } else {
        spec = this.derived(st, s);
        names.push(`(computed: ${field})`);
      }
      specs.push(spec);
    }
    const plan = this.plan(st, specs, types, names);
    if (st) st.plan = plan;
    if (!specs.some((x) => x !== null && x.strategy !== 'null')) return undefined;
    const out = Buffer.from(payload);
    specs.forEach((spec, i) => {
      if (!spec || spec.strategy === 'null') return;
      const at = offsets[i]!;
      out.writeUInt32BE(TEXT_OID, at + 6);
      out.writeInt16BE(-1, at + 10);
      out.writeInt32BE(-1, at + 12);
    });
    return frame('T', out);
  }

  /**
   * DataRow, its payload src[start, end): WRITTEN when the rewritten row went to `out`,
   * undefined to pass it as it is.
   */
  dataRow(st: MaskState | undefined, src: Buffer, start: number, end: number, out: FrameWriter): undefined | typeof WRITTEN {
    const plan = st?.plan;
    if (!plan) {
      if (st || !this.current()) return undefined;
      // Rows dbward cannot place under any statement: never pass them unread.
      throw new PgError('08P01', 'upstream protocol violation: data row outside any statement', 'FATAL');
    }
    if (!plan.any) return undefined;
    if (end - start < 2) throw malformedRow();
    const n = src.readInt16BE(start);
    // The row is built in place; room for the frame and what each masked cell may add.
    const buf = out.reserve(5 + end - start + plan.growth);
    // Cells move 4 bytes at a time through DataViews: ~3x faster than byte by byte, and
    // than Buffer#copy (a fixed ~100 ns) up to MOVE_LOOP_MAX bytes.
    const sv = out.viewOf(src);
    const bv = out.view;
    const head = out.pos;
    buf[head] = 0x44;
    let o = head + 5;
    let run = start; // source bytes not yet copied: unmasked cells go out in runs
    let pos = start + 2;
    let masked = false;
    for (let i = 0; i < n; i++) {
      if (pos + 4 > end) throw malformedRow();
      const len = sv.getInt32(pos);
      const from = pos + 4;
      pos = len < 0 ? from : from + len;
      // Bytes past the frame are the next frame's: never copied into this row.
      if (pos > end) throw malformedRow();
      if (len < 0) continue; // NULL stays NULL
      let write = plan.writers[i] ?? null;
      if (write) plan.counters[i]!.cells++;
      else if (len > 0 && plan.detect[i] === true) write = this.detected(st, src.subarray(from, pos));
      if (!write) continue; // not masked, or a detector found nothing: the cell as it came
      o = move(src, sv, run, from - 4, buf, bv, o);
      const e = write(src, from, pos, buf, o + 4);
      bv.setInt32(o, e < 0 ? -1 : e - o - 4);
      o = e < 0 ? o + 4 : e;
      run = pos;
      masked = true;
    }
    // An unchanged row after unchanged ones stays in the chunk's run of untouched bytes.
    if (!masked && out.pending === 0) return undefined;
    o = move(src, sv, run, pos, buf, bv, o);
    bv.setInt32(head + 1, o - head - 1);
    out.pos = o;
    return WRITTEN;
  }

  /** CopyOutResponse: sets up the row rewriter for the COPY's columns, or HOLD. */
  copyOut(st: MaskState | undefined, payload: Buffer): undefined | typeof HOLD {
    if (!this.current()) return undefined;
    if (!st) throw new PgError('08P01', 'upstream protocol violation: COPY outside any statement', 'FATAL');
    const s = this.snapshot();
    if (s === HOLD) return HOLD;
    const columns = payload.readInt16BE(1);
    const copy = copyOptions(st.text);
    const rel = copy?.relation ? firstOf(relationsNamed(s, st.facts[0]?.reads[0]?.candidates ?? [])) : null;
    let cols: { spec: MaskSpec | null; name: string; detect: boolean }[];
    if (rel) {
      const picked = copy!.columns ? copy!.columns.map((c) => rel.byName.get(dotted([c]))) : [...rel.columns.values()];
      cols = picked.map((c, i) => (c
        ? { spec: this.masking.spec(s, rel.oid, c.att) ?? null, name: c.printed, detect: TEXT_LIKE.has(c.typeOid) }
        : { spec: { strategy: 'redact', rule: 'masking.unknown_column' }, name: `(column ${i + 1})`, detect: false }));
    } else {
      // COPY (query), or a table dbward cannot place: no per-column origin, so every column carries what the query reads.
      const flow = this.taintOf(st, s).flow;
      const spec = flow ? derivedSpec(flow) : null;
      cols = Array.from({ length: columns }, (_, i) => ({ spec, name: `(computed: column ${i + 1})`, detect: true }));
    }
    if (cols.length !== columns) throw new PgError('XX000', 'dbward could not map the COPY columns to masks; the session was ended', 'FATAL');
    const format = copy?.format ?? { kind: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false };
    const detecting = this.masking.detect !== null;
    if (!cols.some((c) => c.spec || (detecting && c.detect))) return undefined;
    st.copy = new CopyRowMasker(format, cols.map((c) => {
      if (c.spec) return this.counted(st, c.name, c.spec);
      return detecting && c.detect ? this.detecting(st) : null;
    }));
    return undefined;
  }

  /** CopyData: the rewritten rows (possibly none yet), or undefined when not masking this COPY. */
  copyData(st: MaskState | undefined, payload: Buffer): Buffer | null | undefined {
    if (!st?.copy) return undefined;
    const out: Buffer[] = [];
    st.copy.push(payload, out);
    return out.length === 0 ? null : Buffer.concat(out.map((b) => frame('d', b)));
  }

  /** CopyDone: flushes what the COPY rewriter holds, then CopyDone. */
  copyDone(st: MaskState | undefined, raw: Buffer): Buffer | undefined {
    if (!st?.copy) return undefined;
    const out: Buffer[] = [];
    st.copy.end(out);
    st.copy = null;
    return Buffer.concat([...out.map((b) => frame('d', b)), raw]);
  }

  /** ErrorResponse/NoticeResponse of a statement that reads masked columns: only fields that cannot quote a value. */
  scrubError(st: MaskState | undefined, type: number, payload: Buffer): Buffer | undefined {
    if (!st?.taint.sensitive) return undefined;
    const kept: Buffer[] = [];
    let code = '';
    let i = 0;
    while (i < payload.length && payload[i] !== 0) {
      const end = payload.indexOf(0, i + 1);
      if (end < 0) break;
      const field = String.fromCharCode(payload[i]!);
      if (field === 'C') code = payload.toString('latin1', i + 1, end);
      if ('SVCMPFLR'.includes(field)) kept.push(payload.subarray(i, end + 1));
      i = end + 1;
    }
    if (!SAFE_ERROR_CLASSES.has(code.slice(0, 2))) {
      const mi = kept.findIndex((b) => b[0] === 0x4d);
      const msg = Buffer.from(`M${type === 0x45 ? 'error' : 'notice'} ${code} (message withheld: the statement reads masked columns)\0`, 'utf8');
      if (mi >= 0) kept[mi] = msg;
      else kept.push(msg);
    }
    return frame(String.fromCharCode(type), Buffer.concat([...kept, Buffer.of(0)]));
  }

  /** The statement's taint, judged again when the catalog was read since it was decided. */
  private taintOf(st: MaskState, s: CatalogSnapshot): StatementTaint {
    if (st.version !== s.version) {
      st.taint = this.masking.taint(s, st.facts);
      st.version = s.version;
    }
    return st.taint;
  }

  /** A masker that leaves a value as it is unless a content detector finds something in it. */
  private detecting(st: MaskState | undefined): Masker {
    return (v) => (this.detected(st, v) ? this.masker(this.masking.detectSpec!)(v) : v);
  }

  /** The writer for a value the content detectors flag (counted under what they found), or null. */
  private detected(st: MaskState | undefined, value: Buffer): MaskWriter | null {
    const kind = this.masking.detect!(value);
    if (!kind) return null;
    const spec = this.masking.detectSpec!;
    count(st, `(detected: ${kind})`, spec).cells++;
    return this.writer(spec);
  }

  private derived(st: MaskState | undefined, s: CatalogSnapshot): MaskSpec | null {
    if (!st) return null;
    const flow = this.taintOf(st, s).flow;
    const spec = flow ? derivedSpec(flow) : st.facts.some((f) => f.kinds[0] === 'fetch') ? st.cursor : null;
    if (spec && this.masking.options.derived === 'deny') {
      // The rows are on their way: ending the session is the one way not to deliver them.
      throw new PgError('42501', `a result column is computed from a masked column (rule ${spec.rule}) and the policy denies derived masked outputs; the session was ended`, 'FATAL');
    }
    return spec;
  }

  private plan(st: MaskState | undefined, specs: (MaskSpec | null)[], types: number[], names: string[]): RowPlan {
    const detecting = this.masking.detect !== null;
    const plan: RowPlan = { writers: [], counters: [], detect: [], growth: 0, any: false };
    specs.forEach((spec, i) => {
      plan.writers.push(spec ? this.writer(spec) : null);
      plan.counters.push(spec ? count(st, names[i]!, spec) : null);
      plan.detect.push(!spec && detecting && TEXT_LIKE.has(types[i]!));
      if (spec || plan.detect[i]) plan.growth += MASK_SLACK;
    });
    plan.any = plan.growth > 0;
    return plan;
  }

  /** A masker that counts its cells under `column` in the statement's applied masks. */
  private counted(st: MaskState, column: string, spec: MaskSpec): Masker {
    const m = this.masker(spec);
    const c = count(st, column, spec);
    return (v) => {
      c.cells++;
      return m(v);
    };
  }

  private writer(spec: MaskSpec): MaskWriter {
    const key = `${spec.rule}\0${spec.strategy}`;
    let w = this.writers.get(key);
    if (!w) this.writers.set(key, (w = makeMaskWriter(spec, this.masking.hashKey)));
    return w;
  }

  private masker(spec: MaskSpec): Masker {
    const key = `${spec.rule}\0${spec.strategy}`;
    let m = this.maskers.get(key);
    if (!m) this.maskers.set(key, (m = toMasker(this.writer(spec))));
    return m;
  }

  private snapshot(): CatalogSnapshot | typeof HOLD {
    const c = this.masking.catalog;
    if (!c.isStale && c.current) return c.current;
    this.load();
    return HOLD;
  }

  private load(): void {
    this.waiting ??= this.masking.catalog.load().finally(() => (this.waiting = null));
  }

  // Reads the catalog again (as often as SessionMasking.missed allows): a relation
  // that stays unknown is masked meanwhile.
  private refresh(): boolean {
    if (!this.masking.missed()) return false;
    this.load();
    return true;
  }
}

function count(st: MaskState | undefined, column: string, spec: MaskSpec): ColumnMask {
  const key = `${column}\0${spec.rule}`;
  let c = st?.applied.get(key);
  if (!c) {
    c = { column, rule: spec.rule, strategy: spec.strategy, cells: 0 };
    st?.applied.set(key, c);
  }
  return c;
}

/** Copies src[from, to) to out[at] (`sv`, `ov`: their DataViews); returns the end in `out`. */
function move(src: Buffer, sv: DataView, from: number, to: number, out: Buffer, ov: DataView, at: number): number {
  if (to - from > MOVE_LOOP_MAX) return at + src.copy(out, at, from, to);
  for (; to - from >= 4; from += 4, at += 4) ov.setUint32(at, sv.getUint32(from));
  for (; from < to; from++, at++) ov.setUint8(at, sv.getUint8(from));
  return at;
}

function malformedRow(): PgError {
  return new PgError('08P01', 'upstream protocol violation: malformed DataRow', 'FATAL');
}

function firstOf<T>(items: Iterable<T>): T | null {
  for (const x of items) return x;
  return null;
}

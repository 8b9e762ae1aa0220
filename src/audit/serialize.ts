// Serializes audit events to their JSON lines. Statement and outcome events sit
// on the hot path, so they are assembled from per-session fragments that are
// stringified once; the result is the same JSON that JSON.stringify would give
// for the typed event (a unit test holds them together).

import { randomFillSync } from 'node:crypto';
import type { Analysis } from '../analysis/facts.js';
import { scrubMessage } from '../analysis/secrets.js';
import type { Decision } from '../policy/decide.js';
import { type AuditEvent, type ClientRecord, type IdentityRecord, type StatementEvent, type StatementOutcomeEvent, type TargetRecord } from './events.js';

/**
 * How statement texts reach the trail: the normalized text (literals as $n)
 * is recorded instead of a text that carries a secret, or of every text when
 * configured; a text that does not parse is scrubbed.
 */
export interface StatementTexts {
  /** The text with every literal replaced by $n; null when it cannot be normalized. */
  normalize(text: string): string | null;
  /** A best-effort scrub of credentials from a text that does not parse. */
  scrub(text: string): string;
  /** Record every text normalized (audit.redact_literals). */
  redactLiterals: boolean;
}

/** Records texts as they are, without fingerprints (for tools and tests that need no parser). */
export const PLAIN_TEXTS: StatementTexts = { normalize: () => null, scrub: (t) => t, redactLiterals: false };

/**
 * What a statement line says about a text, kept per analysis: the texts that
 * share an analysis differ only in literals, so they share these too.
 */
interface TextFacts {
  fingerprint: string | null;
  /** Carries a credential: recorded normalized whatever the config says. */
  secret: boolean;
  /** Computed when first needed. */
  normalized?: string;
}

const WITHHELD = '(text withheld: it carries a credential or literal that could not be normalized away)';

/** `normalized` when no string literal is left in it (a quote or a dollar quote); else null. */
function withoutLiterals(normalized: string | null): string | null {
  return normalized === null || normalized.includes("'") || /\$[A-Za-z_\x80-\uffff]*\$/.test(normalized) ? null : normalized;
}

/** Serializes any event (the general, slower path). */
export function eventLine(event: AuditEvent): string {
  return JSON.stringify(event);
}

/** The parts of a session's statement events that never change. */
export class SessionFragments {
  private readonly sessionJson: string;
  private readonly identityJson: string;
  private readonly targetJson: string;
  private readonly clientJson: string;
  private readonly decisions = new WeakMap<Decision, string>();
  private readonly tags = new Map<string, string>();
  /** What follows an event's time up to its own fields, by event: one string, not a dozen pieces per line. */
  private readonly statementHeads = new Map<string, string>();
  private readonly outcomeHead: string;

  constructor(
    readonly session: string,
    identity: IdentityRecord,
    target: TargetRecord,
    client: ClientRecord,
    private readonly texts: StatementTexts = PLAIN_TEXTS,
  ) {
    this.sessionJson = JSON.stringify(session);
    this.identityJson = JSON.stringify(identity);
    this.targetJson = JSON.stringify(target);
    this.clientJson = JSON.stringify(client);
    this.outcomeHead = `","session":${this.sessionJson},"type":"statement_outcome","statement_id":"`;
  }

  /** The statement event line and its id. */
  statement(protocol: StatementEvent['protocol'], statement: StatementEvent['statement'], decision: Decision, analysis?: Analysis): { id: string; line: string } {
    const id = eventId();
    // The parser's error quotes the text, and a refusal quotes the error: both are scrubbed as the text is.
    const decisionJson = analysis && !analysis.ok ? this.failedDecisionJson(decision, statement.text) : this.decisionJson(decision);
    const line = `{"v":1,"id":"${id}","time":"${timeNow()}${this.statementHead(protocol)}${this.statementJson(statement, analysis)}`
      + `,"decision":${decisionJson}${analysis ? analysisJson(analysis, statement.text) : ''}}`;
    return { id, line };
  }

  /** A statement line from after its time to its statement record: the same for every statement of the session but for the protocol. */
  private statementHead(protocol: StatementEvent['protocol']): string {
    let head = this.statementHeads.get(protocol);
    if (head === undefined) {
      head = `","session":${this.sessionJson},"type":"statement","identity":${this.identityJson},"client":${this.clientJson},`
        + `"target":${this.targetJson},"protocol":${JSON.stringify(protocol)},"statement":`;
      this.statementHeads.set(protocol, head);
    }
    return head;
  }

  /** The outcome event line of a statement. */
  outcome(statementId: string, outcome: StatementOutcomeEvent['outcome'], txn: number): string {
    return `{"v":1,"id":"${eventId()}","time":"${timeNow()}${this.outcomeHead}${statementId}","outcome":{"status":"${outcome.status}","tags":${this.tagsJson(outcome.tags)},"rows":${outcome.rows},`
      + `"sqlstate":${outcome.sqlstate === null ? 'null' : JSON.stringify(outcome.sqlstate)},"duration_ms":${numberJson(outcome.duration_ms)}`
      + `${outcome.masks ? `,"masks":${JSON.stringify(outcome.masks)}` : ''}},"txn":${txn}}`;
  }

  /** The statement record: the text (normalized when it must be), its fingerprint, and the protocol's names. */
  private statementJson(statement: StatementEvent['statement'], analysis: Analysis | undefined): string {
    const { text, redacted, fingerprint } = this.recordedText(statement.text, analysis);
    const extra = (redacted ? ',"redacted":true' : '') + (fingerprint !== null ? `,"fingerprint":"${fingerprint}"` : '');
    const names = (statement.name !== undefined ? `,"name":${JSON.stringify(statement.name)}` : '')
      + (statement.portal !== undefined ? `,"portal":${JSON.stringify(statement.portal)}` : '')
      + (statement.function_oid !== undefined ? `,"function_oid":${statement.function_oid}` : '');
    return `{"text":${JSON.stringify(text)}${extra}${names}}`;
  }

  /** A statement text as the trail records it (normalized or scrubbed when it must be), and its fingerprint. */
  recordedText(text: string, analysis: Analysis | undefined): { text: string; redacted: boolean; fingerprint: string | null } {
    if (!analysis) return { text, redacted: false, fingerprint: null };
    if (!analysis.ok) {
      // Denied, but still recorded: scrubbed of anything that looks like a credential.
      const scrubbed = this.texts.scrub(text);
      return { text: scrubbed, redacted: scrubbed !== text, fingerprint: null };
    }
    const facts = textFacts(analysis);
    if (!facts.secret && !this.texts.redactLiterals) return { text, redacted: false, fingerprint: facts.fingerprint };
    // libpg_query leaves some literals in place (EXECUTE arguments, some DDL options):
    // a text that still holds one after normalizing is not recorded at all.
    facts.normalized ??= withoutLiterals(this.texts.normalize(text)) ?? WITHHELD;
    return { text: facts.normalized, redacted: true, fingerprint: facts.fingerprint };
  }

  /** The JSON of a tag list; a single tag's JSON is cached, as most statements of a session repeat a few tags. */
  private tagsJson(tags: string[]): string {
    if (tags.length === 0) return '[]';
    if (tags.length > 1) return JSON.stringify(tags);
    const tag = tags[0]!;
    let json = this.tags.get(tag);
    if (json === undefined) {
      json = JSON.stringify(tags);
      if (this.tags.size >= MAX_CACHED_TAGS) this.tags.clear();
      this.tags.set(tag, json);
    }
    return json;
  }

  private decisionJson(d: Decision): string {
    let json = this.decisions.get(d);
    if (json === undefined) {
      json = decisionRecord(d, d.message);
      this.decisions.set(d, json);
    }
    return json;
  }

  /**
   * The decision on a text that does not parse. Its message may quote the text (the
   * refusal quotes the parser's error), so it is scrubbed as the error is: a policy
   * rule's own message too, when the text may hold a credential (fail closed).
   */
  private failedDecisionJson(d: Decision, text: string): string {
    const message = d.message === undefined ? undefined : scrubMessage(text, d.message);
    // Not cached: the same Decision about another text may need no scrubbing.
    return message === d.message ? this.decisionJson(d) : decisionRecord(d, message);
  }
}

const MAX_CACHED_TAGS = 64;

function decisionRecord(d: Decision, message: string | undefined): string {
  return JSON.stringify({
    action: d.action, rules: d.ruleIds, default: d.default,
    ...(message !== undefined ? { message } : {}), ...(d.limitRows !== undefined ? { limit_rows: d.limitRows } : {}),
  });
}

const textFactsCache = new WeakMap<Analysis, TextFacts>();

function textFacts(analysis: Analysis & { ok: true }): TextFacts {
  let facts = textFactsCache.get(analysis);
  if (facts === undefined) {
    // A fingerprint hashes names: of a text whose names may spell a credential, it could confirm a guess.
    const names = analysis.statements.some((s) => s.secretNames === true);
    facts = { fingerprint: names ? null : analysis.fingerprint ?? null, secret: analysis.statements.some((s) => s.secret === true) };
    textFactsCache.set(analysis, facts);
  }
  return facts;
}

/** The facts part of a statement line, by analysis: analyses are shared through the analysis cache, so each is serialized once. */
const analysisJsons = new WeakMap<Analysis, string>();

/**
 * `,"facts":[...]` for a statement line, or `,"analysis_error":"..."` for `text` that
 * does not parse: the parser's error quotes the text, so it is scrubbed as the text is.
 */
export function analysisJson(a: Analysis, text: string): string {
  if (!a.ok) return `,"analysis_error":${JSON.stringify(scrubMessage(text, a.error))}`;
  let json = analysisJsons.get(a);
  if (json === undefined) {
    json = `,"facts":${JSON.stringify(a.statements.map((f) => {
      // Names that may spell a credential: each list that holds any is recorded as ['***'].
      const names = f.secretNames ? (list: readonly string[]): string[] => (list.length > 0 ? ['***'] : []) : (list: string[]): string[] => list;
      return {
        kinds: f.kinds, reads: names(f.reads.map((t) => t.name)), writes: names(f.writes.map((t) => t.name)),
        columns: names([...new Set(f.columns.map((c) => (c.table === null ? c.column : `${c.table}.${c.column}`)))]),
        functions: names(f.functions), flags: f.flags,
      };
    }))}`;
    analysisJsons.set(a, json);
  }
  return json;
}

/**
 * JSON of a number, as JSON.stringify gives it. A duration in ms with up to three
 * decimals is formatted from its integer microseconds: converting a double to its
 * shortest decimal is several times slower than an integer, and this runs per
 * statement. (For such a value the shortest round-trip decimal is exactly k/1000.)
 */
export function numberJson(n: number): string {
  const k = Math.round(n * 1000);
  if (k >= 0 && k <= 0x7fffffff && k / 1000 === n) {
    const int = Math.floor(k / 1000);
    const frac = k - int * 1000;
    if (frac === 0) return `${int}`;
    const digits = frac < 10 ? `00${frac}` : frac < 100 ? `0${frac}` : `${frac}`;
    return `${int}.${digits.charCodeAt(2) === 48 ? (digits.charCodeAt(1) === 48 ? digits.slice(0, 1) : digits.slice(0, 2)) : digits}`;
  }
  return JSON.stringify(n);
}

let cachedSecond = -1;
let cachedSecondPrefix = '';

/**
 * Now as ISO-8601 UTC with microseconds (the events' `time`), the same clock
 * and format as `isoMicros` in events.ts. Formatting a Date (vsnprintf inside
 * V8) is most of the cost, so it is done once per second and the fraction is
 * appended: the hot path formats two events per statement.
 */
export function timeNow(): string {
  const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  const second = Math.floor(micros / 1_000_000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedSecondPrefix = new Date(second * 1000).toISOString().slice(0, 20); // "2026-11-23T21:08:12."
  }
  const frac = `${micros - second * 1_000_000}`;
  return `${cachedSecondPrefix}${'000000'.slice(frac.length)}${frac}Z`;
}

/** Event ids formatted per batch: the random bytes of this many ids are drawn and formatted at once. */
const ID_BATCH = 256;
const ID_CHARS = 36;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
const idRandom = Buffer.allocUnsafe(ID_BATCH * 16);
const idText = Buffer.allocUnsafe(ID_BATCH * ID_CHARS);
let idBatch = '';
let idNext = ID_BATCH;

/**
 * A random (version 4) UUID for an event, as `crypto.randomUUID()` gives, from the
 * same CSPRNG. Two are made per statement: randomUUID builds each one from some
 * twenty string concatenations (about 600 bytes of garbage an id), so here a
 * batch of ids is formatted into one string and each id is a slice of it.
 */
export function eventId(): string {
  if (idNext === ID_BATCH) {
    randomFillSync(idRandom);
    for (let i = 0; i < ID_BATCH; i++) formatUuid(idRandom, i * 16, idText, i * ID_CHARS);
    idBatch = idText.toString('latin1');
    idNext = 0;
  }
  const at = idNext++ * ID_CHARS;
  return idBatch.slice(at, at + ID_CHARS);
}

/** Writes the 16 bytes at src[from] as a version 4, variant 1 UUID (36 chars) at out[to]. */
function formatUuid(src: Buffer, from: number, out: Buffer, to: number): void {
  let o = to;
  for (let i = 0; i < 16; i++) {
    let b = src[from + i]!;
    if (i === 6) b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // variant 10xx
    if (i === 4 || i === 6 || i === 8 || i === 10) out[o++] = 0x2d; // '-'
    out[o++] = HEX[b >> 4]!;
    out[o++] = HEX[b & 0x0f]!;
  }
}

// Serializes audit events to their JSON lines. Statement and outcome events sit
// on the hot path, so they are assembled from per-session fragments that are
// stringified once; the result is the same JSON that JSON.stringify would give
// for the typed event (a unit test holds them together).

import { randomUUID } from 'node:crypto';
import type { Decision } from '../policy/decide.js';
import { isoMicros, type AuditEvent, type IdentityRecord, type StatementEvent, type StatementOutcomeEvent, type TargetRecord } from './events.js';

/** Serializes any event (the general, slower path). */
export function eventLine(event: AuditEvent): string {
  return JSON.stringify(event);
}

/** The parts of a session's statement events that never change. */
export class SessionFragments {
  private readonly sessionJson: string;
  private readonly identityJson: string;
  private readonly targetJson: string;
  private readonly decisions = new WeakMap<Decision, string>();

  constructor(readonly session: string, identity: IdentityRecord, target: TargetRecord) {
    this.sessionJson = JSON.stringify(session);
    this.identityJson = JSON.stringify(identity);
    this.targetJson = JSON.stringify(target);
  }

  /** The statement event line and its id. */
  statement(protocol: StatementEvent['protocol'], statement: StatementEvent['statement'], decision: Decision): { id: string; line: string } {
    const id = randomUUID();
    const line = `{"v":1,"id":"${id}","time":"${isoMicros()}","session":${this.sessionJson},"type":"statement",`
      + `"identity":${this.identityJson},"target":${this.targetJson},"protocol":"${protocol}",`
      + `"statement":${JSON.stringify(statement)},"decision":${this.decisionJson(decision)}}`;
    return { id, line };
  }

  /** The outcome event line of a statement. */
  outcome(statementId: string, outcome: StatementOutcomeEvent['outcome']): string {
    const tags = outcome.tags.length === 0 ? '[]' : JSON.stringify(outcome.tags);
    return `{"v":1,"id":"${randomUUID()}","time":"${isoMicros()}","session":${this.sessionJson},"type":"statement_outcome",`
      + `"statement_id":"${statementId}","outcome":{"status":"${outcome.status}","tags":${tags},"rows":${outcome.rows},`
      + `"sqlstate":${outcome.sqlstate === null ? 'null' : JSON.stringify(outcome.sqlstate)},"duration_ms":${outcome.duration_ms}}}`;
  }

  private decisionJson(d: Decision): string {
    let json = this.decisions.get(d);
    if (json === undefined) {
      json = JSON.stringify({ action: d.action, rules: d.ruleIds, default: d.default, ...(d.message !== undefined ? { message: d.message } : {}) });
      this.decisions.set(d, json);
    }
    return json;
  }
}

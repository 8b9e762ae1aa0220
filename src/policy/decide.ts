// The decision seam. Every statement-carrying message reaches decide() before it
// is forwarded. Until guardrail policies land, the only engine is allow-all, and
// its decisions say so (no rule ids, default: true) so the audit trail is honest.

import type { SessionIdentity, StatementRequest, TargetInfo } from '../proxy/session.js';

/** What policy says about one statement. */
export interface Decision {
  action: 'allow' | 'deny';
  /** Ids of the rules that made the decision; empty when the default decided. */
  ruleIds: string[];
  /** True when no rule matched and the engine's default applied. */
  default: boolean;
  /** Shown to the client on deny. */
  message?: string;
}

/** Decides statements for sessions. Synchronous: decisions sit on the hot path. */
export interface PolicyEngine {
  decide(identity: SessionIdentity, target: TargetInfo, statement: StatementRequest): Decision;
}

const ALLOW_DEFAULT: Decision = Object.freeze({ action: 'allow', ruleIds: [], default: true }) as Decision;

/** The engine used until policies are configured: every statement is allowed, by default. */
export const allowAllPolicy: PolicyEngine = {
  decide: () => ALLOW_DEFAULT,
};

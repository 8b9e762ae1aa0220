// The decision seam. Every statement-carrying message is analyzed and reaches
// decide() before it is forwarded. The allow-all engine remains for protocol
// tests and `identity.mode: unverified` setups that configure no policy; its
// decisions say so (no rule ids, default: true) so the audit trail is honest.

import type { Analysis } from '../analysis/facts.js';
import type { CompiledMasking } from '../masking/policy.js';
import type { SessionIdentity, TargetInfo } from '../proxy/session.js';

/** What policy says about one SQL string (all of its statements together). */
export interface Decision {
  /** deny > require_approval > allow: the strictest matching rule's action wins. */
  action: 'allow' | 'deny' | 'require_approval';
  /** Ids of the rules that made the decision; empty when the default decided. */
  ruleIds: string[];
  /** True when no rule matched and the policy's default applied. */
  default: boolean;
  /** Shown to the client on deny and require_approval. */
  message?: string;
  /** With allow: the most rows the client may receive (smallest limit_rows that matched). */
  limitRows?: number;
  /** With require_approval: who may approve, how many, how long an approval stays valid, and how the client waits. */
  approval?: ApprovalTerms;
}

/** What a require_approval decision asks for (several matching rules combined: the strictest of each). */
export interface ApprovalTerms {
  approvers: string[];
  ttlSec: number;
  /** Distinct approvers needed. */
  required: number;
  /** How long a request stays open for a decision. */
  timeoutSec: number;
  mode: 'wait' | 'retry';
  grant: 'once' | 'window';
}

/** Decides statements for sessions. Synchronous and allocation-light: decisions sit on the hot path. */
export interface PolicyEngine {
  decide(identity: SessionIdentity, target: TargetInfo, analysis: Analysis): Decision;
  /** The policy's masking rules; absent means none. */
  readonly masking?: CompiledMasking;
}

const ALLOW_DEFAULT: Decision = Object.freeze({ action: 'allow', ruleIds: [], default: true }) as Decision;

/** Every statement is allowed, by default (for protocol tests; a real deployment configures a policy). */
export const allowAllPolicy: PolicyEngine = {
  decide: () => ALLOW_DEFAULT,
};

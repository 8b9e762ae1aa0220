// What dbward refuses whatever the policy says: statements after which its
// parser would no longer read SQL the way the server does, and row-capped
// statements whose rows would not pass through the cap. Applied around the
// policy, by the daemon and by `dbward policy test|explain` alike.

import type { Analysis } from '../analysis/facts.js';
import type { SessionIdentity, TargetInfo } from '../proxy/session.js';
import type { Decision, PolicyEngine } from './decide.js';

/** The rule id dbward's own refusal carries. */
export const PARSE_SAFETY_RULE = 'dbward.parse-safety';

const PARSE_HAZARD: Decision = Object.freeze({
  action: 'deny', ruleIds: [PARSE_SAFETY_RULE], default: false,
  message: 'statements that change standard_conforming_strings or switch to a client encoding that can hide quotes are refused: dbward must read SQL exactly as the server does',
}) as Decision;

/** The rule id of the refusal of cursors and COPY under a row cap. */
export const ROW_LIMIT_RULE = 'dbward.row-limit';

/** The rule id of the refusal of role changes in a session whose role dbward chose. */
export const ROLE_MAPPING_RULE = 'dbward.role-mapping';

const ROLE_CHANGE: Decision = Object.freeze({
  action: 'deny', ruleIds: [ROLE_MAPPING_RULE], default: false,
  message: 'this session runs as the database role your groups map to; SET ROLE, SET SESSION AUTHORIZATION, DISCARD ALL and set_config of either are refused',
}) as Decision;

/**
 * The policy's decision, unless a built-in refusal applies. `mappedRole`: the session
 * runs as a role dbward picked from the identity's groups (targets[].roles), which a
 * role change would escape whatever the policy says.
 */
export function decideWithBuiltins(engine: PolicyEngine, identity: SessionIdentity, target: TargetInfo, analysis: Analysis, mappedRole = false): Decision {
  if (analysis.ok && analysis.statements.some((f) => f.flags.includes('parse_hazard'))) return PARSE_HAZARD;
  if (mappedRole && analysis.ok && analysis.statements.some((f) => f.flags.includes('role_change'))) return ROLE_CHANGE;
  const decision = engine.decide(identity, target, analysis);
  // The cap counts DataRow messages: a cursor's rows arrive by later FETCHes and COPY's as
  // CopyData, so a capped statement may not use either.
  if (decision.action === 'allow' && decision.limitRows !== undefined && analysis.ok
    && analysis.statements.some((f) => f.kinds.includes('declare') || f.kinds.includes('copy'))) {
    return {
      action: 'deny', ruleIds: [...decision.ruleIds, ROW_LIMIT_RULE], default: false,
      message: `at most ${decision.limitRows} rows may be returned to you here, and cursors and COPY cannot be capped; use a plain SELECT`,
    };
  }
  return decision;
}

// The policy file format as parsed from YAML (after schema validation), and the
// vocabularies it shares with statement analysis. The runtime lists below are the
// ones schemas/policy.schema.json enumerates; a unit test keeps the two equal, and
// the type checks keep them equal to the analyzer's unions.

import type { StatementFlag, StatementKind } from '../analysis/facts.js';
import type { DetectorName, MaskStrategyName } from '../masking/types.js';

/** Every statement kind the analyzer reports, in facts.ts order. */
export const STATEMENT_KINDS = [
  'select', 'insert', 'update', 'delete', 'merge', 'truncate', 'copy',
  'create', 'alter', 'drop', 'comment', 'security_label', 'reindex', 'cluster', 'vacuum', 'analyze', 'refresh',
  'grant', 'revoke', 'create_role', 'alter_role', 'drop_role',
  'create_function', 'create_trigger', 'create_rule', 'create_extension',
  'do', 'call', 'prepare', 'execute', 'deallocate',
  'set', 'reset', 'show', 'set_role', 'set_session_authorization', 'discard',
  'begin', 'commit', 'rollback', 'savepoint', 'release', 'prepare_transaction', 'commit_prepared', 'rollback_prepared',
  'lock', 'listen', 'notify', 'unlisten', 'declare', 'fetch', 'move', 'close', 'explain', 'load', 'checkpoint', 'other',
] as const satisfies readonly StatementKind[];

/** Every statement flag the analyzer reports. */
export const STATEMENT_FLAGS = [
  'no_where', 'no_limit', 'writes', 'ddl', 'dcl', 'copy', 'server_program', 'server_file_access', 'dynamic_sql',
  'anonymous_code', 'role_change', 'set_config', 'search_path_change', 'server_control', 'transaction_control', 'parse_hazard',
] as const satisfies readonly StatementFlag[];

// Compile-time proof that the lists above are complete: a kind or flag added to
// facts.ts without being added here fails the type check.
type Missing<All, Listed> = Exclude<All, Listed>;
const _allKinds: Missing<StatementKind, (typeof STATEMENT_KINDS)[number]> extends never ? true : never = true;
const _allFlags: Missing<StatementFlag, (typeof STATEMENT_FLAGS)[number]> extends never ? true : never = true;
void _allKinds;
void _allFlags;

/** What a rule does when it matches. */
export type RuleAction = 'allow' | 'deny' | 'require_approval' | 'limit_rows';

/** A string or a list of strings, each a glob. */
export type Globs = string | string[];

/** A claim condition value: one value or a list of accepted values. */
export type ClaimValue = string | number | boolean | (string | number | boolean)[];

export interface RawIdentityMatch {
  users?: string[];
  groups?: string[];
  kind?: string | string[];
  claims?: Record<string, ClaimValue>;
}

export interface RawTargetMatch {
  name?: Globs;
  engine?: string | string[];
  environment?: Globs;
  labels?: Record<string, Globs>;
}

export interface RawStatementMatch {
  kinds?: string[];
  flags?: string[];
  writes?: boolean;
  tables?: { read?: string[]; write?: string[]; any?: string[] };
  columns?: string[];
  functions?: string[];
  unparsable?: true;
}

export interface RawRule {
  id: string;
  description?: string;
  match?: { identity?: RawIdentityMatch; target?: RawTargetMatch; statement?: RawStatementMatch };
  action: RuleAction;
  message?: string;
  approvers?: string[];
  ttl?: number | string;
  mode?: 'wait' | 'retry';
  approvals?: number;
  timeout?: number | string;
  grant?: 'once' | 'window';
  rows?: number;
}

export interface RawSessionMatch {
  identity?: RawIdentityMatch;
  target?: RawTargetMatch;
}

export interface RawMaskRule {
  id: string;
  description?: string;
  columns?: string[];
  classifications?: string[];
  detect?: DetectorName[];
  strategy: MaskStrategyName;
  keep_first?: number;
  keep_last?: number;
  match?: RawSessionMatch;
  exempt?: RawSessionMatch;
}

export interface RawMasking {
  strict?: boolean;
  derived?: 'mask' | 'deny';
  classifications?: Record<string, string[]>;
  trusted_functions?: string[];
  rules?: RawMaskRule[];
}

/** One policy file as written. */
export interface RawPolicy {
  default?: 'allow' | 'deny';
  rules?: RawRule[];
  masking?: RawMasking;
}

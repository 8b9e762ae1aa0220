// What each statement node is, wherever it appears (top level, in a CTE, under
// EXPLAIN, PREPARE, CREATE RULE, CREATE SCHEMA, a function's SQL body): its kind and
// the flags that follow from the statement itself. Flags from its contents (no WHERE,
// functions called, COPY targets) come from the walk.

import type { StatementFlag, StatementKind } from '../facts.js';
import { isObj, items, nodeType, str, type Obj } from './ast.js';

export interface StatementInfo {
  kind: StatementKind | ((b: Obj) => StatementKind);
  flags?: readonly StatementFlag[] | ((b: Obj) => readonly StatementFlag[]);
  /** Kind only at the top level: nested, it configures something else (ALTER ROLE ... SET). */
  topOnly?: boolean;
}

const DDL: readonly StatementFlag[] = ['ddl'];
const DCL: readonly StatementFlag[] = ['dcl'];
const DDL_DCL: readonly StatementFlag[] = ['ddl', 'dcl'];
const CODE: readonly StatementFlag[] = ['ddl', 'anonymous_code'];
const NONE: readonly StatementFlag[] = [];

const create: StatementInfo = { kind: 'create', flags: DDL };
const alter: StatementInfo = { kind: 'alter', flags: DDL };
const drop: StatementInfo = { kind: 'drop', flags: DDL };
const grantOrRevoke = (b: Obj): StatementKind => (b.is_grant === true ? 'grant' : 'revoke');

const TRANSACTION: Record<string, StatementKind> = {
  TRANS_STMT_BEGIN: 'begin', TRANS_STMT_START: 'begin', TRANS_STMT_COMMIT: 'commit', TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint', TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback',
  TRANS_STMT_PREPARE: 'prepare_transaction', TRANS_STMT_COMMIT_PREPARED: 'commit_prepared',
  TRANS_STMT_ROLLBACK_PREPARED: 'rollback_prepared',
};

// ALTER TABLE subcommands that change who may see or own the rows.
const ACCESS_SUBCOMMANDS = new Set([
  'AT_ChangeOwner', 'AT_EnableRowSecurity', 'AT_DisableRowSecurity', 'AT_ForceRowSecurity', 'AT_NoForceRowSecurity',
]);

function alterTableFlags(b: Obj): readonly StatementFlag[] {
  for (const cmd of items(b.cmds)) {
    const c = isObj(cmd) && nodeType(cmd) === 'AlterTableCmd' ? (cmd.AlterTableCmd as Obj) : null;
    if (c && ACCESS_SUBCOMMANDS.has(str(c.subtype) ?? '')) return DDL_DCL;
  }
  return DDL;
}

function setKind(b: Obj): StatementKind {
  const name = (str(b.name) ?? '').toLowerCase();
  if (name === 'role') return 'set_role';
  if (name === 'session_authorization') return 'set_session_authorization';
  return b.kind === 'VAR_RESET' || b.kind === 'VAR_RESET_ALL' ? 'reset' : 'set';
}

const TABLE: Record<string, StatementInfo> = {
  SelectStmt: { kind: 'select' },
  InsertStmt: { kind: 'insert', flags: ['writes'] },
  UpdateStmt: { kind: 'update', flags: ['writes'] },
  DeleteStmt: { kind: 'delete', flags: ['writes'] },
  MergeStmt: { kind: 'merge', flags: ['writes'] },
  TruncateStmt: { kind: 'truncate', flags: ['writes', 'ddl'] },
  CopyStmt: { kind: 'copy', flags: (b) => (b.is_from === true ? ['copy', 'writes'] : ['copy']) },
  CreateTableAsStmt: { kind: 'create', flags: ['ddl', 'writes'] },
  RefreshMatViewStmt: { kind: 'refresh', flags: ['writes'] },

  VariableSetStmt: { kind: setKind, topOnly: true },
  VariableShowStmt: { kind: 'show' },
  ConstraintsSetStmt: { kind: 'set' },
  // DISCARD ALL runs SET SESSION AUTHORIZATION DEFAULT: it undoes a SET ROLE.
  DiscardStmt: { kind: 'discard', flags: (b) => (b.target === 'DISCARD_ALL' ? ['role_change', 'search_path_change'] : NONE) },
  TransactionStmt: { kind: (b) => TRANSACTION[str(b.kind) ?? ''] ?? 'other', flags: ['transaction_control'] },

  DoStmt: { kind: 'do', flags: ['anonymous_code', 'dynamic_sql'] },
  CallStmt: { kind: 'call' },
  PrepareStmt: { kind: 'prepare' },
  ExecuteStmt: { kind: 'execute' },
  DeallocateStmt: { kind: 'deallocate' },
  ExplainStmt: { kind: 'explain' },
  DeclareCursorStmt: { kind: 'declare' },
  FetchStmt: { kind: (b) => (b.ismove === true ? 'move' : 'fetch') },
  ClosePortalStmt: { kind: 'close' },
  LockStmt: { kind: 'lock' },
  ListenStmt: { kind: 'listen' },
  UnlistenStmt: { kind: 'unlisten' },
  NotifyStmt: { kind: 'notify' },
  LoadStmt: { kind: 'load', flags: ['server_file_access', 'anonymous_code'] },
  CheckPointStmt: { kind: 'checkpoint', flags: ['server_control'] },
  VacuumStmt: { kind: (b) => (b.is_vacuumcmd === true ? 'vacuum' : 'analyze') },
  ClusterStmt: { kind: 'cluster' },
  ReindexStmt: { kind: 'reindex' },

  GrantStmt: { kind: grantOrRevoke, flags: DCL },
  GrantRoleStmt: { kind: grantOrRevoke, flags: DCL },
  AlterDefaultPrivilegesStmt: { kind: (b) => (isObj(b.action) ? grantOrRevoke(b.action) : 'grant'), flags: DCL },
  CreateRoleStmt: { kind: 'create_role', flags: DCL },
  AlterRoleStmt: { kind: 'alter_role', flags: DCL },
  AlterRoleSetStmt: { kind: 'alter_role', flags: DCL },
  DropRoleStmt: { kind: 'drop_role', flags: DCL },
  DropOwnedStmt: { kind: 'drop', flags: DDL_DCL },
  ReassignOwnedStmt: { kind: 'alter', flags: DDL_DCL },
  AlterOwnerStmt: { kind: 'alter', flags: DDL_DCL },
  CreatePolicyStmt: { kind: 'create', flags: DDL_DCL },
  AlterPolicyStmt: { kind: 'alter', flags: DDL_DCL },
  CreateUserMappingStmt: { kind: 'create', flags: DDL_DCL },
  AlterUserMappingStmt: { kind: 'alter', flags: DDL_DCL },
  DropUserMappingStmt: { kind: 'drop', flags: DDL_DCL },

  CreateFunctionStmt: { kind: 'create_function', flags: CODE },
  CreateTrigStmt: { kind: 'create_trigger', flags: CODE },
  CreateEventTrigStmt: { kind: 'create_trigger', flags: CODE },
  RuleStmt: { kind: 'create_rule', flags: CODE },
  CreateExtensionStmt: { kind: 'create_extension', flags: CODE },
  AlterExtensionStmt: { kind: 'alter', flags: CODE },
  CreatePLangStmt: { kind: 'create', flags: CODE },
  CommentStmt: { kind: 'comment', flags: DDL },
  SecLabelStmt: { kind: 'security_label', flags: DDL },
  AlterSystemStmt: { kind: 'alter', flags: ['server_control'] },
  CreateTableSpaceStmt: { kind: 'create', flags: ['ddl', 'server_file_access'] },
  AlterTableStmt: { kind: 'alter', flags: alterTableFlags },
  RenameStmt: {
    kind: (b) => (b.renameType === 'OBJECT_ROLE' ? 'alter_role' : 'alter'),
    flags: (b) => (b.renameType === 'OBJECT_ROLE' ? DCL : DDL),
  },

  CreateStmt: create, CreateSchemaStmt: create, CreateSeqStmt: create, IndexStmt: create, ViewStmt: create,
  CreateForeignTableStmt: create, CreateFdwStmt: create, CreateForeignServerStmt: create, ImportForeignSchemaStmt: create,
  CreateAmStmt: create, DefineStmt: create, CreateDomainStmt: create, CreateOpClassStmt: create, CreateOpFamilyStmt: create,
  CreateStatsStmt: create, CompositeTypeStmt: create, CreateEnumStmt: create, CreateRangeStmt: create, CreatedbStmt: create,
  CreateConversionStmt: create, CreateCastStmt: create, CreateTransformStmt: create, CreatePublicationStmt: create,
  CreateSubscriptionStmt: create,

  AlterCollationStmt: alter, AlterDomainStmt: alter, AlterTableSpaceOptionsStmt: alter, AlterTableMoveAllStmt: alter,
  AlterExtensionContentsStmt: alter, AlterFdwStmt: alter, AlterForeignServerStmt: alter, AlterEventTrigStmt: alter,
  AlterSeqStmt: alter, AlterOpFamilyStmt: alter, AlterStatsStmt: alter, AlterFunctionStmt: alter,
  AlterObjectDependsStmt: alter, AlterObjectSchemaStmt: alter, AlterOperatorStmt: alter, AlterTypeStmt: alter,
  AlterEnumStmt: alter, AlterDatabaseStmt: alter, AlterDatabaseRefreshCollStmt: alter, AlterDatabaseSetStmt: alter,
  AlterTSDictionaryStmt: alter, AlterTSConfigurationStmt: alter, AlterPublicationStmt: alter, AlterSubscriptionStmt: alter,

  DropStmt: drop, DropTableSpaceStmt: drop, DropdbStmt: drop, DropSubscriptionStmt: drop,
};

/** Statement node types by name. A type missing here is not a statement (or is unknown: kind `other`). */
export const STATEMENTS: ReadonlyMap<string, StatementInfo> = new Map(Object.entries(TABLE));

/** The kind of a statement node of `type` with body `b`. */
export function kindOf(info: StatementInfo, b: Obj): StatementKind {
  return typeof info.kind === 'function' ? info.kind(b) : info.kind;
}

/** The flags a statement node raises by what it is. */
export function flagsOf(info: StatementInfo, b: Obj): readonly StatementFlag[] {
  if (!info.flags) return NONE;
  return typeof info.flags === 'function' ? info.flags(b) : info.flags;
}

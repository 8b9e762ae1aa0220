// Functions that matter to policy beyond their name: what they reach outside the
// statement. Keyed on the function's own name, lower-cased, whatever schema it was
// called through: dblink and adminpack install into any schema, and a user function
// that takes the name of a dangerous built-in is itself suspect.

import type { StatementFlag } from '../facts.js';

const FILE_ACCESS = [
  'pg_read_file', 'pg_read_binary_file', 'pg_stat_file', 'pg_ls_dir',
  'pg_ls_logdir', 'pg_ls_waldir', 'pg_ls_tmpdir', 'pg_ls_archive_statusdir', 'pg_ls_logicalsnapdir',
  'pg_ls_logicalmapdir', 'pg_ls_replslotdir', 'pg_ls_summariesdir',
  'pg_hba_file_rules', 'pg_ident_file_mappings', 'pg_show_all_file_settings',
  'lo_import', 'lo_export',
  // adminpack (PostgreSQL 16 and older), current and legacy names
  'pg_file_write', 'pg_file_rename', 'pg_file_unlink', 'pg_file_sync', 'pg_file_read', 'pg_file_length', 'pg_logdir_ls',
];

// Functions that run SQL text, or read tables named by a string, out of the analyzer's sight.
const DYNAMIC_SQL = [
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
  'cursor_to_xml', 'cursor_to_xmlschema',
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
  'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  'ts_stat', 'ts_rewrite',
  // extensions: pg_background, pg_cron (always in schema cron, often called unqualified)
  'pg_background_launch', 'schedule', 'schedule_in_database', 'alter_job',
];
const DYNAMIC_PREFIXES = ['dblink'];

const SERVER_CONTROL = [
  'pg_terminate_backend', 'pg_cancel_backend', 'pg_signal_backend', 'pg_reload_conf',
  'pg_rotate_logfile', 'pg_rotate_logfile_old', 'pg_logfile_rotate', 'pg_promote',
  'pg_switch_wal', 'pg_switch_xlog', 'pg_create_restore_point',
  'pg_backup_start', 'pg_backup_stop', 'pg_start_backup', 'pg_stop_backup',
  'pg_wal_replay_pause', 'pg_wal_replay_resume', 'pg_xlog_replay_pause', 'pg_xlog_replay_resume',
  'pg_log_backend_memory_contexts', 'pg_log_standby_snapshot',
  'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot', 'pg_drop_replication_slot',
  'pg_copy_physical_replication_slot', 'pg_copy_logical_replication_slot', 'pg_replication_slot_advance',
  'pg_logical_slot_get_changes', 'pg_logical_slot_peek_changes',
  'pg_logical_slot_get_binary_changes', 'pg_logical_slot_peek_binary_changes',
  'pg_sync_replication_slots', 'pg_logical_emit_message', 'pg_stat_statements_reset',
];
const SERVER_CONTROL_PREFIXES = ['pg_stat_reset', 'pg_replication_origin_'];

// Data changes a SELECT can make through a function: large objects and sequences.
const WRITES = [
  'lo_create', 'lo_creat', 'lo_unlink', 'lo_put', 'lo_from_bytea', 'lowrite', 'lo_truncate', 'lo_truncate64',
  'lo_import', 'setval', 'nextval',
];

const BY_NAME = new Map<string, StatementFlag[]>();
function add(list: readonly string[], flag: StatementFlag): void {
  for (const name of list) {
    const flags = BY_NAME.get(name);
    if (flags) flags.push(flag);
    else BY_NAME.set(name, [flag]);
  }
}
add(FILE_ACCESS, 'server_file_access');
add(DYNAMIC_SQL, 'dynamic_sql');
add(SERVER_CONTROL, 'server_control');
add(WRITES, 'writes');

const NONE: readonly StatementFlag[] = [];
const DYNAMIC: readonly StatementFlag[] = ['dynamic_sql'];
const CONTROL: readonly StatementFlag[] = ['server_control'];

/** Flags a call of the function named `name` (unqualified, lower-cased) raises. */
export function functionFlags(name: string): readonly StatementFlag[] {
  const flags = BY_NAME.get(name);
  if (flags) return flags;
  for (const p of DYNAMIC_PREFIXES) if (name.startsWith(p)) return DYNAMIC;
  for (const p of SERVER_CONTROL_PREFIXES) if (name.startsWith(p)) return CONTROL;
  return NONE;
}

/** Catalog views whose rows come from server files, as table candidates. */
export const FILE_VIEWS: ReadonlySet<string> = new Set([
  'pg_catalog.pg_hba_file_rules', 'pg_catalog.pg_ident_file_mappings', 'pg_catalog.pg_file_settings',
]);

/** Settings that change the session's identity. */
export const ROLE_SETTINGS: ReadonlySet<string> = new Set(['role', 'session_authorization']);

// Client encodings whose multibyte characters may end in a byte that reads as a quote or
// backslash: the server then splits text where the parser (UTF-8) does not.
const UNSAFE_ENCODINGS: ReadonlySet<string> = new Set(['sjis', 'shift_jis', 'shiftjis', 'shift_jis_2004', 'big5', 'gbk', 'gb18030', 'uhc', 'johab', 'win932', 'win936', 'win949', 'win950', 'cp932', 'cp936', 'cp949', 'cp950']);

/** Whether setting `name` to `value` (null: not a literal, or any value) makes the server read later SQL differently from the parser. */
export function readingHazard(name: string | null, value: string | null): boolean {
  if (name === null) return true;
  if (name === 'standard_conforming_strings') return value === null || !['on', 'true', 'yes', '1'].includes(value.toLowerCase());
  if (name === 'client_encoding') return value === null || value === '*' || UNSAFE_ENCODINGS.has(value.toLowerCase().replace(/[-\s]/g, '_'));
  return false;
}

// The settings a client asks for at startup: as startup parameters (node-postgres
// sends statement_timeout that way) or in the `options` parameter (`-c name=value`,
// libpq's PGOPTIONS). They reach the server as they would without dbward, so a
// client's statement_timeout or default_transaction_read_only holds; the few that
// would change who the session is, run code at connection start, or make the
// server read SQL text differently than dbward parses it refuse the connection.

import { readingHazard } from '../../analysis/pg/flags.js';
import { PgError } from './errors.js';

/** Startup parameters that are not settings, or that dbward sets itself. */
const NOT_SETTINGS = new Set(['user', 'database', 'replication', 'options', 'application_name']);

/** Settings that change the session's identity: dbward sets the role from the identity's groups. */
const IDENTITY = new Set(['role', 'session_authorization']);

/** Settings that load code when the backend starts, before any statement dbward could record. */
const LOADS_CODE = new Set(['local_preload_libraries', 'session_preload_libraries']);

/** A setting name as PostgreSQL takes one: an identifier, optionally qualified (`app.tenant`). */
const SETTING_NAME = /^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)*$/;

/** The settings to pass upstream, in the client's order, or the error that refuses the connection. */
export function startupSettings(params: ReadonlyMap<string, string>): Map<string, string> | PgError {
  const out = new Map<string, string>();
  for (const [name, value] of params) {
    if (name.startsWith('_pq_.')) continue;
    const err = take(out, name, value);
    if (err) return err;
  }
  const options = params.get('options');
  if (options === undefined) return out;
  const pairs = optionSettings(options);
  if (pairs instanceof PgError) return pairs;
  for (const [name, value] of pairs) {
    const err = take(out, name, value);
    if (err) return err;
  }
  return out;
}

function take(out: Map<string, string>, rawName: string, value: string): PgError | null {
  // The server looks setting names up without regard to case.
  const name = rawName.toLowerCase();
  if (NOT_SETTINGS.has(name)) return null;
  if (!SETTING_NAME.test(name)) return new PgError('42704', `unrecognized configuration parameter "${rawName}"`, 'FATAL');
  if (IDENTITY.has(name)) {
    return new PgError('28000', `the startup setting "${rawName}" is not accepted: dbward sets the session's role from your identity`, 'FATAL');
  }
  if (LOADS_CODE.has(name)) {
    return new PgError('42501', `the startup setting "${rawName}" is not accepted: it loads code before dbward can record anything`, 'FATAL');
  }
  if (readingHazard(name, value)) {
    return new PgError('0A000', `the startup setting ${rawName} = ${value} is not accepted: under it the server reads SQL text differently than dbward parses it`, 'FATAL');
  }
  // A later value wins, as on the server.
  for (const k of out.keys()) if (k.toLowerCase() === name) out.delete(k);
  out.set(rawName, value);
  return null;
}

/**
 * The `-c name=value` and `--name=value` settings of an `options` string, split
 * at unescaped whitespace as the server splits it (a backslash takes the next
 * character literally). Other switches set server internals and are refused.
 */
export function optionSettings(options: string): [string, string][] | PgError {
  const args = splitOptions(options);
  const out: [string, string][] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    let spec: string | undefined;
    if (a === '-c') spec = args[++i];
    else if (a.startsWith('-c')) spec = a.slice(2);
    else if (a.startsWith('--')) spec = a.slice(2);
    const eq = spec?.indexOf('=') ?? -1;
    if (spec === undefined || eq <= 0) {
      return new PgError('0A000', `startup options other than -c name=value are not supported by dbward (got "${a}")`, 'FATAL');
    }
    // The server reads dashes in a -c name as underscores.
    out.push([spec.slice(0, eq).replaceAll('-', '_'), spec.slice(eq + 1)]);
  }
  return out;
}

function splitOptions(options: string): string[] {
  const args: string[] = [];
  let cur = '';
  let inArg = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      inArg = true;
    } else if (/\s/.test(ch)) {
      if (inArg) args.push(cur);
      cur = '';
      inArg = false;
    } else {
      cur += ch;
      inArg = true;
    }
  }
  if (inArg) args.push(cur);
  return args;
}

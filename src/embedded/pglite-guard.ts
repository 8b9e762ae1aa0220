// Protocol-level guard between @electric-sql/pglite-socket and PGlite.
//
// PGlite is one single-user Postgres backend compiled to WASM, running on the
// caller's thread. These take the whole embedded database down for every
// client, so we intercept them:
//  - COPY ... FROM STDIN (simple or extended protocol): PGlite cannot wait for
//    CopyData, hits "unexpected EOF", FATALs and the WASM program exits.
//  - Unknown frontend message types, and 'p' (password) after startup: PGlite
//    spins forever inside WASM, freezing the whole Node process.
//  - Any exception out of execProtocolRawStream: pglite-socket's queue then
//    returns without clearing its "processing" flag, so every later query and
//    every new connection hangs forever. We turn it into a FATAL
//    ErrorResponse and tell the owner, who closes the listener (fail fast).
import type { PGlite } from '@electric-sql/pglite';

type RawStreamArgs = Parameters<PGlite['execProtocolRawStream']>;
type RawStreamOptions = NonNullable<RawStreamArgs[1]>;

const QUERY = 0x51; // 'Q'
const PARSE = 0x50; // 'P'
const PROTOCOL_3_0 = 196608;
// Everything a client may send after startup, minus 'p': PGlite answers the
// startup packet with AuthenticationOk, so no password/SASL message is valid.
const FRONTEND_TYPES = new Set([...'BCcdDEfFHPQSX'].map((c) => c.charCodeAt(0)));

// Raised inside PGlite so the client gets a normal ERROR (and a failed
// transaction block, exactly as a real server would leave it).
const REJECT_COPY_IN_SQL =
  "DO $dbward$BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', " +
  "MESSAGE = 'COPY ... FROM STDIN is not supported by the embedded demo database (PGlite)', " +
  "HINT = 'Use INSERT statements, or point dbward at a real PostgreSQL server.'; END$dbward$";

/** Options for installProtocolGuard. */
export interface ProtocolGuardOptions {
  /** Called once, the first time PGlite throws; the instance is unusable afterwards. */
  onFatal(err: unknown): void;
}

/** Handle returned by installProtocolGuard. */
export interface ProtocolGuard {
  /** The error that killed PGlite, or undefined while it is healthy. */
  readonly fatalError: unknown;
  readonly isDead: boolean;
}

/** Wraps db.execProtocolRawStream (the only entry point pglite-socket uses) with the guards above. */
export function installProtocolGuard(db: PGlite, opts: ProtocolGuardOptions): ProtocolGuard {
  const original = db.execProtocolRawStream.bind(db);
  const state = { dead: false, error: undefined as unknown };

  db.execProtocolRawStream = async (message: Uint8Array, options?: RawStreamOptions): Promise<void> => {
    const onRawData = options?.onRawData;
    if (state.dead) {
      onRawData?.(fatalResponse(state.error));
      return;
    }
    if (!isAcceptableMessage(message)) {
      const type = message[0] ?? 0;
      onRawData?.(errorResponse('FATAL', '08P01', `invalid frontend message type ${type} for the embedded demo database`));
      return;
    }
    try {
      await original(rewriteCopyFromStdin(message), options as RawStreamOptions);
    } catch (err) {
      state.dead = true;
      state.error = err;
      onRawData?.(fatalResponse(err));
      opts.onFatal(err);
      // Returning normally keeps pglite-socket's queue alive so queued
      // messages get the FATAL above instead of hanging.
    }
  };

  return {
    get fatalError() {
      return state.error;
    },
    get isDead() {
      return state.dead;
    },
  };
}

/** True for a startup packet or a message type PGlite handles without hanging. */
export function isAcceptableMessage(message: Uint8Array): boolean {
  const type = message[0];
  if (type !== undefined && FRONTEND_TYPES.has(type)) return true;
  // pglite-socket forwards the startup packet (no type byte) to PGlite too.
  return message.length >= 8 && Buffer.from(message.buffer, message.byteOffset, 8).readInt32BE(4) === PROTOCOL_3_0;
}

/** Replaces a Query/Parse message carrying COPY FROM STDIN with one that raises a clean error. */
export function rewriteCopyFromStdin(message: Uint8Array): Uint8Array {
  const type = message[0];
  if (type !== QUERY && type !== PARSE) return message;
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  let sqlStart = 5;
  if (type === PARSE) {
    const nameEnd = buf.indexOf(0, 5);
    if (nameEnd < 0) return message;
    sqlStart = nameEnd + 1;
  }
  const sqlEnd = buf.indexOf(0, sqlStart);
  if (sqlEnd < 0) return message;
  if (!isCopyFromStdin(buf.toString('utf8', sqlStart, sqlEnd))) return message;

  const head = buf.subarray(5, sqlStart); // Parse: statement name + NUL
  const tail = buf.subarray(sqlEnd); // NUL (+ Parse parameter types)
  const body = Buffer.concat([head, Buffer.from(REJECT_COPY_IN_SQL, 'utf8'), tail]);
  const out = Buffer.alloc(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** True when any statement in `sql` is a COPY that reads from the client (FROM STDIN). */
export function isCopyFromStdin(sql: string): boolean {
  if (!/copy/i.test(sql)) return false; // fast path for the common case
  return stripLiteralsAndComments(sql)
    .split(';')
    .some((stmt) => {
      const m = /^\s*copy\b/i.exec(stmt);
      if (!m) return false;
      // COPY (SELECT ... FROM stdin_table) TO STDOUT must not match.
      return /\bfrom\s+stdin\b/i.test(skipParenGroup(stmt.slice(m[0].length)));
    });
}

function skipParenGroup(s: string): string {
  const start = s.search(/\S/);
  if (start < 0 || s[start] !== '(') return s;
  let depth = 0;
  for (let i = start; i < s.length; i++) {
    if (s[i] === '(') depth++;
    else if (s[i] === ')' && --depth === 0) return s.slice(i + 1);
  }
  return '';
}

// Blanks out string literals, quoted identifiers, dollar quotes and comments so
// keywords inside them (e.g. a note saying "copy from stdin") do not match.
function stripLiteralsAndComments(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        const pair = sql.slice(i, i + 2);
        if (pair === '/*' || pair === '*/') {
          depth += pair === '/*' ? 1 : -1;
          i += 2;
        } else i++;
      }
    } else if (c === "'" || c === '"') {
      const escapes = c === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/\w/.test(sql[i - 2] ?? '');
      i++;
      while (i < sql.length) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
    } else if (c === '$' && !/\w/.test(sql[i - 1] ?? '')) {
      const tag = /^\$[A-Za-z_]?\w*\$/.exec(sql.slice(i));
      if (!tag) {
        out += c;
        i++;
        continue;
      }
      const end = sql.indexOf(tag[0], i + tag[0].length);
      i = end < 0 ? sql.length : end + tag[0].length;
    } else {
      out += c;
      i++;
      continue;
    }
    out += ' ';
  }
  return out;
}

// FATAL so libpq/pg drop the connection rather than waiting for ReadyForQuery.
function fatalResponse(err: unknown): Uint8Array {
  // Emscripten's ExitStatus is not an Error subclass but does carry `message`.
  const reason =
    typeof err === 'object' && err !== null && 'message' in err
      ? String((err as { message: unknown }).message)
      : String(err);
  return errorResponse('FATAL', 'XX000', `embedded demo database crashed (${reason}); restart dbward`);
}

function errorResponse(severity: 'ERROR' | 'FATAL', code: string, message: string): Uint8Array {
  const fields = [`S${severity}`, `V${severity}`, `C${code}`, `M${message}`];
  const body = Buffer.concat([...fields.map((f) => Buffer.from(`${f}\0`, 'utf8')), Buffer.from([0])]);
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x45; // 'E'
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

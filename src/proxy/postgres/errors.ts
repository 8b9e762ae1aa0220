// Client-facing PostgreSQL errors: named constructors with real SQLSTATEs, so a
// client (and its retry logic) can tell a protocol fault from a refusal. Converted
// to wire bytes in one place (backend.ts errorResponse); internals never leak.

export type Severity = 'ERROR' | 'FATAL' | 'NOTICE' | 'WARNING';

/** A PostgreSQL error as dbward reports it to a client. */
export class PgError extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly severity: Severity = 'ERROR',
    readonly detail?: string,
    readonly hint?: string,
    /** 1-based character position in the statement text the error is about. */
    readonly position?: number,
  ) {
    super(message);
    this.name = 'PgError';
  }

  /** The same error as FATAL: the session ends after it is sent. */
  fatal(): PgError {
    return new PgError(this.sqlstate, this.message, 'FATAL', this.detail, this.hint, this.position);
  }
}

export const pgErrors = {
  /** 08P01: the client broke the protocol; the session cannot continue. */
  protocolViolation: (message: string) => new PgError('08P01', message, 'FATAL'),
  /** 54000: a message longer than the configured limit. */
  messageTooLarge: (length: number, limit: number) =>
    new PgError('54000', `message of ${length} bytes exceeds the limit of ${limit} bytes`, 'FATAL'),
  /** 57P01: dbward is shutting down. */
  adminShutdown: () => new PgError('57P01', 'terminating connection due to administrator command', 'FATAL'),
  /** 28000: the client may not connect the way it tried to. */
  invalidAuthorization: (message: string) => new PgError('28000', message, 'FATAL'),
  /** 3D000: no target of that name. */
  unknownTarget: (name: string) =>
    new PgError('3D000', `database "${name}" is not a dbward target`, 'FATAL', undefined,
      'Connect with the name of a target from dbward.yaml as the database name.'),
  /** 08001: dbward could not reach or log in to the upstream database. */
  upstreamUnavailable: (target: string) =>
    new PgError('08001', `dbward could not connect to the upstream database of target "${target}"`, 'FATAL'),
  /** 08006: the upstream connection failed mid-session. */
  upstreamLost: () => new PgError('08006', 'the upstream database connection was lost', 'FATAL'),
  /** 0A000: a feature dbward does not relay. */
  featureNotSupported: (message: string) => new PgError('0A000', message, 'FATAL'),
  /** 42501: policy refused the statement; the session goes on. */
  refused: (message: string, detail?: string) => new PgError('42501', message, 'ERROR', detail),
  /** 58030: the audit store could not be written, so the statement was not forwarded. */
  auditUnavailable: () =>
    new PgError('58030', 'statement refused: the audit trail cannot be written', 'ERROR', undefined,
      'dbward forwards nothing it cannot record; retry when the audit store recovers.'),
  /** 08P01: the client did not finish startup in time (slowloris guard). */
  startupTimeout: () => new PgError('08P01', 'startup not completed in time', 'FATAL'),
  /** 57P03: dbward is draining and takes no new sessions. */
  cannotConnectNow: () => new PgError('57P03', 'dbward is shutting down and not accepting new sessions', 'FATAL'),
};

// Turns schema-valid YAML data (snake_case) into the camelCase Config: cross-field checks
// the schema cannot express, defaults, and paths resolved against the config file.
import { hostname } from 'node:os';
import path from 'node:path';
import { resolveIdentityConfig } from '../identity/types.js';
import { isLoopbackHost } from '../identity/verifier.js';
import type { ApprovalsConfig, AuditConfig, Config, MaskingConfig, IdentitySettings, PostgresAuditConfig, ListenerConfig, SecretRef, TargetConfig } from './types.js';
import { fieldPath, type Locator, type PathSegment } from './locate.js';
import type { SchemaProblem } from './schema.js';

// The file shape as the schema admits it. Only trusted after validateSchema() returned no problems.
interface RawListener {
  name?: string;
  engine?: 'postgres';
  host?: string;
  port?: number;
  tls?: { cert: string; key: string };
  require_tls?: boolean;
  allow_plaintext_token?: boolean;
}

interface RawTarget {
  name: string;
  engine?: 'postgres';
  host: string;
  port?: number;
  database?: string;
  user: string;
  password?: { env?: string; file?: string };
  tls?: { mode?: TargetConfig['tls']['mode']; ca?: string };
  environment?: string;
  labels?: Record<string, string>;
  connect_timeout_ms?: number;
  prewarm?: number;
  roles?: { group: string; role: string }[];
  default_role?: string;
}

interface RawIdentity {
  mode?: 'oidc' | 'unverified';
  issuer?: string;
  audience?: string | string[];
  user_claim?: string;
  groups_claim?: string;
  kind?: { claim?: string; agent_clients?: string[]; service_clients?: string[] };
  algorithms?: string[];
  clock_tolerance_sec?: number;
  discovery_timeout_ms?: number;
  expiry_grace_sec?: number;
}

interface RawAudit {
  primary?: AuditConfig['primary'];
  node?: string;
  redact_literals?: boolean;
  chain?: { key?: { env?: string; file?: string }; head_file?: string; head_interval_ms?: number };
  file?: { path?: string; fsync?: 'none' | 'batch'; rotate_bytes?: number; rotate_hours?: number };
  postgres?: {
    host: string; port?: number; database?: string; user: string; password?: { env?: string; file?: string };
    tls?: { mode?: PostgresAuditConfig['tls']['mode']; ca?: string }; table?: string; max_queue?: number;
  };
  nats?: { servers?: string[]; stream?: string; subject?: string; credentials?: string; max_queue?: number };
}

type RawSecret = { env?: string; file?: string };

interface RawApprovals {
  store?: 'memory' | 'postgres';
  postgres?: RawAudit['postgres'];
  replica?: string;
  public_url?: string;
  link_key?: RawSecret;
  sign_in?: { client_id: string; client_secret?: RawSecret; scope?: string; resource?: string };
  sweep_ms?: number;
  slack?: { webhook_url: RawSecret; signing_secret?: RawSecret };
  webhooks?: { name: string; url: string; secret: RawSecret }[];
  notify_timeout_ms?: number;
}

export interface RawConfig {
  listeners: RawListener[];
  targets: RawTarget[];
  identity: RawIdentity;
  policy: { path: string | string[]; watch?: boolean };
  audit?: RawAudit;
  masking?: { hash_key?: { env?: string; file?: string }; catalog_max_age_ms?: number };
  approvals?: RawApprovals;
  admin?: { host?: string; port?: number | null; audit_groups?: string[] };
  limits?: { max_message_bytes?: number; max_startup_bytes?: number; startup_timeout_ms?: number };
  log?: { level?: Config['log']['level'] };
  shutdown?: { drain_timeout_ms?: number };
}

export const DEFAULT_LISTENER_NAME = 'postgres';

function entries(data: unknown, key: string): Record<string, unknown>[] {
  const list = (data as Record<string, unknown> | null)?.[key];
  if (!Array.isArray(list)) return [];
  return list.map((item) => (item !== null && typeof item === 'object' ? (item as Record<string, unknown>) : {}));
}

/** Checks the schema cannot express (uniqueness, field combinations); tolerant of schema-invalid data. */
export function crossFieldProblems(data: unknown, locate: Locator): SchemaProblem[] {
  const problems: SchemaProblem[] = [];
  const report = (at: PathSegment[], message: string): void => {
    problems.push({ ...locate.value(at), field: fieldPath(at), message });
  };

  const identity = (data as Record<string, unknown> | null)?.identity as Record<string, unknown> | undefined;
  const unverified = identity?.mode === 'unverified';
  const listenerNames = new Map<string, number>();
  const addresses = new Map<string, number>();
  entries(data, 'listeners').forEach((l, i) => {
    const name = l.name === undefined ? DEFAULT_LISTENER_NAME : l.name;
    if (typeof name === 'string') {
      const first = listenerNames.get(name);
      // Two unnamed listeners collide on the default name; say so, or the message is baffling.
      const hint = l.name === undefined ? `; names default to "${DEFAULT_LISTENER_NAME}", so give each listener a name` : '';
      if (first === undefined) listenerNames.set(name, i);
      else report(l.name === undefined ? ['listeners', i] : ['listeners', i, 'name'], `duplicate listener name "${name}" (already used by listeners[${first}])${hint}`);
    }

    const host = l.host === undefined ? '127.0.0.1' : l.host;
    const port = l.port === undefined ? 6432 : l.port;
    // Port 0 asks the OS for a fresh port each time, so it never collides.
    if (typeof host === 'string' && typeof port === 'number' && port !== 0) {
      const addr = `${host}:${port}`;
      const taken = addresses.get(addr);
      if (taken === undefined) addresses.set(addr, i);
      else report(['listeners', i, l.port === undefined ? 'host' : 'port'], `${addr} is already used by listeners[${taken}]`);
    }

    // Without a certificate no client could ever satisfy require_tls, so the listener would be useless.
    if (l.require_tls === true && l.tls === undefined) report(['listeners', i, 'require_tls'], 'is true but this listener has no tls (cert and key)');
    // A token sent in clear over a network is a credential handed to anyone on the path.
    if (l.allow_plaintext_token === true && typeof host === 'string' && !isLoopbackHost(host)) {
      report(['listeners', i, 'allow_plaintext_token'], `is only allowed on a loopback host, not ${host}`);
    }
    if (unverified && typeof host === 'string' && !isLoopbackHost(host)) {
      report(['listeners', i, 'host'], `must be a loopback address while identity.mode is unverified (sessions are not authenticated), not ${host}`);
    }
  });

  const targetNames = new Map<string, number>();
  entries(data, 'targets').forEach((t, i) => {
    if (typeof t.name !== 'string') return;
    const first = targetNames.get(t.name);
    if (first !== undefined) report(['targets', i, 'name'], `duplicate target name "${t.name}" (already used by targets[${first}])`);
    else targetNames.set(t.name, i);
    if (t.default_role !== undefined && !(Array.isArray(t.roles) && t.roles.length > 0)) {
      report(['targets', i, 'default_role'], 'has no effect without roles; remove it or add roles');
    }
  });
  const audit = (data as Record<string, unknown> | null)?.audit as Record<string, unknown> | undefined;
  if (audit?.primary === 'postgres' && audit.postgres === undefined) report(['audit', 'primary'], 'is postgres but there is no audit.postgres section');
  if (audit?.primary === 'postgres' && audit.file !== undefined) report(['audit', 'file'], 'is only used as the primary sink; remove it or set primary: file');
  if (audit?.primary === 'none') {
    for (const s of ['postgres', 'nats'] as const) if (audit[s] !== undefined) report(['audit', s], 'has nothing to receive while audit.primary is none');
  }
  const approvals = (data as Record<string, unknown> | null)?.approvals as Record<string, unknown> | undefined;
  if (approvals?.store === 'postgres' && approvals.postgres === undefined) report(['approvals', 'store'], 'is postgres but there is no approvals.postgres section');
  if (approvals?.postgres !== undefined && approvals.store !== 'postgres') report(['approvals', 'postgres'], 'is only used with store: postgres');
  if (approvals?.sign_in !== undefined && approvals.link_key === undefined) report(['approvals', 'sign_in'], 'needs approvals.link_key: approvers sign in from the signed links, and the key seals the sign-in cookies');
  if (approvals?.sign_in !== undefined && unverified) report(['approvals', 'sign_in'], 'needs identity.mode oidc: approvers sign in at identity.issuer');
  const auditTls = (audit?.postgres as Record<string, unknown> | undefined)?.tls as Record<string, unknown> | undefined;
  if (auditTls?.ca !== undefined && auditTls.mode !== 'verify-full') report(['audit', 'postgres', 'tls', 'ca'], 'is only used with mode verify-full');
  if (identity && typeof identity.issuer === 'string') {
    let url: URL | undefined;
    try { url = new URL(identity.issuer); } catch { report(['identity', 'issuer'], 'is not a URL'); }
    if (url && url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      report(['identity', 'issuer'], 'must use https (plain http only on a loopback host)');
    }
  }
  return problems;
}

/** Apply defaults and resolve relative paths against `dir`; `raw` must already be schema-valid. */
export function buildConfig(raw: RawConfig, source: string): Config {
  const dir = path.dirname(source);
  const rel = (p: string): string => path.resolve(dir, p);

  const listeners = raw.listeners.map((l): ListenerConfig => {
    const out: ListenerConfig = {
      name: l.name ?? DEFAULT_LISTENER_NAME,
      engine: 'postgres',
      host: l.host ?? '127.0.0.1',
      port: l.port ?? 6432,
      requireTls: l.require_tls ?? l.tls !== undefined,
      allowPlaintextToken: l.allow_plaintext_token ?? false,
    };
    if (l.tls) out.tls = { cert: rel(l.tls.cert), key: rel(l.tls.key) };
    return out;
  });

  const targets = raw.targets.map((t): TargetConfig => {
    const tls: TargetConfig['tls'] = { mode: t.tls?.mode ?? 'prefer' };
    if (t.tls?.ca !== undefined) tls.ca = rel(t.tls.ca);
    return {
      name: t.name,
      engine: 'postgres',
      host: t.host,
      port: t.port ?? 5432,
      database: t.database ?? t.name,
      user: t.user,
      password: secretRef(t.password, rel),
      tls,
      environment: t.environment ?? 'default',
      labels: { ...(t.labels ?? {}) },
      connectTimeoutMs: t.connect_timeout_ms ?? 5000,
      ...(t.prewarm !== undefined && { prewarm: t.prewarm }),
      roles: (t.roles ?? []).map((r) => ({ group: r.group, role: r.role })),
      defaultRole: t.default_role ?? null,
    };
  });

  return {
    source,
    listeners,
    targets,
    identity: identitySettings(raw.identity),
    policy: { paths: (Array.isArray(raw.policy.path) ? raw.policy.path : [raw.policy.path]).map(rel), watch: raw.policy.watch ?? true },
    audit: auditConfig(raw.audit ?? {}, rel),
    masking: { hashKey: hashKeyRef(raw.masking?.hash_key, rel), catalogMaxAgeMs: raw.masking?.catalog_max_age_ms ?? 30_000 },
    approvals: approvalsConfig(raw.approvals ?? {}, rel),
    // `port: null` must survive as null (admin disabled), so only a missing key gets the default.
    admin: {
      host: raw.admin?.host ?? '127.0.0.1',
      port: raw.admin?.port === undefined ? 6480 : raw.admin.port,
      auditGroups: raw.admin?.audit_groups ?? ['dbward-auditors'],
    },
    limits: {
      maxMessageBytes: raw.limits?.max_message_bytes ?? 134_217_728,
      maxStartupBytes: raw.limits?.max_startup_bytes ?? 10_000,
      startupTimeoutMs: raw.limits?.startup_timeout_ms ?? 10_000,
    },
    log: { level: raw.log?.level ?? 'info' },
    shutdown: { drainTimeoutMs: raw.shutdown?.drain_timeout_ms ?? 30_000 },
  };
}

function hashKeyRef(key: { env?: string; file?: string } | undefined, rel: (p: string) => string): MaskingConfig['hashKey'] {
  if (key?.env !== undefined) return { env: key.env };
  return key?.file !== undefined ? { file: rel(key.file) } : null;
}

/** The approvals section of a config that has none (memory store, no notifiers). */
export function defaultApprovals(): ApprovalsConfig {
  return approvalsConfig({}, (p) => p);
}

function approvalsConfig(raw: RawApprovals, rel: (p: string) => string): ApprovalsConfig {
  const pg = raw.postgres;
  return {
    store: raw.store ?? 'memory',
    postgres: pg === undefined ? null : { ...postgresConfig(pg, rel), table: pg.table ?? 'dbward_approvals' },
    replica: raw.replica ?? `${hostname()}:${process.pid}`,
    publicUrl: raw.public_url?.replace(/\/+$/, '') ?? null,
    linkKey: hashKeyRef(raw.link_key, rel),
    signIn: raw.sign_in === undefined ? null : {
      clientId: raw.sign_in.client_id,
      clientSecret: secretRef(raw.sign_in.client_secret, rel),
      scope: raw.sign_in.scope ?? 'openid profile email',
      resource: raw.sign_in.resource ?? null,
    },
    sweepMs: raw.sweep_ms ?? 5000,
    slack: raw.slack === undefined ? null : {
      webhookUrl: secretRef(raw.slack.webhook_url, rel),
      signingSecret: raw.slack.signing_secret ? secretRef(raw.slack.signing_secret, rel) : null,
    },
    webhooks: (raw.webhooks ?? []).map((w) => ({ name: w.name, url: w.url, secret: secretRef(w.secret, rel) })),
    notifyTimeoutMs: raw.notify_timeout_ms ?? 5000,
  };
}

/** The connection fields shared by the audit table and the approvals table. */
function postgresConfig(pg: NonNullable<RawAudit['postgres']>, rel: (p: string) => string): Omit<PostgresAuditConfig, 'maxQueue' | 'table'> {
  return {
    host: pg.host, port: pg.port ?? 5432, database: pg.database ?? 'postgres', user: pg.user,
    password: secretRef(pg.password, rel),
    tls: { mode: pg.tls?.mode ?? 'disable', ...(pg.tls?.ca !== undefined && { ca: rel(pg.tls.ca) }) },
  };
}

function auditConfig(raw: RawAudit, rel: (p: string) => string): AuditConfig {
  const primary = raw.primary ?? 'file';
  const f = raw.file ?? (primary === 'postgres' ? null : {});
  const pg = raw.postgres;
  const key = raw.chain?.key;
  return {
    primary,
    node: raw.node ?? hostname(),
    redactLiterals: raw.redact_literals ?? false,
    chain: {
      key: key?.env !== undefined ? { env: key.env } : key?.file !== undefined ? { file: rel(key.file) } : { generate: rel('audit/chain.key') },
      headFile: raw.chain?.head_file !== undefined ? rel(raw.chain.head_file) : null,
      headIntervalMs: raw.chain?.head_interval_ms ?? 1000,
    },
    file: f === null ? null : {
      path: rel(f.path ?? 'audit/dbward.jsonl'),
      fsync: f.fsync ?? 'none',
      rotateBytes: f.rotate_bytes ?? 268_435_456,
      rotateMs: Math.round((f.rotate_hours ?? 24) * 3_600_000),
    },
    postgres: pg === undefined ? null : {
      ...postgresConfig(pg, rel),
      table: pg.table ?? 'dbward_audit',
      maxQueue: pg.max_queue ?? 100_000,
    },
    nats: raw.nats === undefined ? null : {
      servers: raw.nats.servers ?? ['nats://127.0.0.1:4222'],
      stream: raw.nats.stream ?? 'DBWARD_AUDIT',
      subject: raw.nats.subject ?? 'dbward.audit',
      credentials: raw.nats.credentials !== undefined ? rel(raw.nats.credentials) : null,
      maxQueue: raw.nats.max_queue ?? 100_000,
    },
  };
}

function identitySettings(raw: RawIdentity): IdentitySettings {
  if (raw.mode === 'unverified') return { mode: 'unverified' };
  return {
    mode: 'oidc',
    // The schema makes issuer and audience required unless mode is unverified.
    verifier: resolveIdentityConfig({
      issuer: raw.issuer!,
      audience: raw.audience!,
      ...(raw.user_claim !== undefined && { userClaim: raw.user_claim }),
      ...(raw.groups_claim !== undefined && { groupsClaim: raw.groups_claim }),
      kind: {
        ...(raw.kind?.claim !== undefined && { claim: raw.kind.claim }),
        agentClients: raw.kind?.agent_clients ?? [],
        serviceClients: raw.kind?.service_clients ?? [],
      },
      ...(raw.algorithms !== undefined && { algorithms: raw.algorithms }),
      ...(raw.clock_tolerance_sec !== undefined && { clockToleranceSec: raw.clock_tolerance_sec }),
      ...(raw.discovery_timeout_ms !== undefined && { discoveryTimeoutMs: raw.discovery_timeout_ms }),
    }),
    expiryGraceSec: raw.expiry_grace_sec ?? 0,
  };
}

function secretRef(p: { env?: string; file?: string } | undefined, rel: (p: string) => string): SecretRef {
  if (p?.env !== undefined) return { env: p.env };
  // Secret files follow the same rule as every other path in the file: relative to the config.
  if (p?.file !== undefined) return { file: rel(p.file) };
  return { none: true };
}

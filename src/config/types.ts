// The validated, defaults-applied shape of dbward.yaml. The JSON Schema in
// schemas/dbward.config.schema.json is the source of truth for the file format;
// loadConfig() turns a file into this type.

import type { RoleMapping } from '../identity/roles.js';
import type { IdentityConfig } from '../identity/types.js';

/** TLS material for a listener (server side). Paths are resolved relative to the config file. */
export interface ServerTlsConfig {
  cert: string;
  key: string;
}

/** One port dbward listens on for database clients. */
export interface ListenerConfig {
  name: string;
  engine: 'postgres';
  host: string;
  port: number;
  tls?: ServerTlsConfig;
  /** Refuse clients that did not negotiate TLS. Defaults to true when tls is set. */
  requireTls: boolean;
  /** Accept tokens without TLS; only ever true on a loopback host. */
  allowPlaintextToken: boolean;
}

/** How dbward connects to an upstream database. */
export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-full';

/** Upstream TLS settings; `ca` is a path to a PEM bundle (resolved relative to the config file). */
export interface UpstreamTlsConfig {
  mode: UpstreamTlsMode;
  ca?: string;
}

/** Where a secret comes from; never the secret itself in YAML. */
export type SecretRef = { env: string } | { file: string } | { none: true };

/** A database that clients reach through dbward, selected by the client's database name. */
export interface TargetConfig {
  name: string;
  engine: 'postgres';
  host: string;
  port: number;
  database: string;
  user: string;
  password: SecretRef;
  tls: UpstreamTlsConfig;
  environment: string;
  labels: Record<string, string>;
  connectTimeoutMs: number;
  /** Upstream connections kept logged in ahead of time, per set of startup parameters; 0 or absent: none. */
  prewarm?: number;
  /** Group -> upstream role, first match wins. */
  roles: RoleMapping[];
  /** Role for identities in no mapped group; null refuses them when roles is non-empty. */
  defaultRole: string | null;
}


/** Column masking settings (the rules are policy). */
export interface MaskingConfig {
  /** The hash strategy's HMAC key; null when none is configured. */
  hashKey: { env: string } | { file: string } | null;
  /** How old a target's catalog reading may get before masking reads it again. */
  catalogMaxAgeMs: number;
}

/** How sessions are authenticated. */
export type IdentitySettings =
  | { mode: 'unverified' }
  | { mode: 'oidc'; verifier: IdentityConfig; expiryGraceSec: number };

/** The append-only JSONL audit files. */
export interface FileAuditConfig {
  path: string;
  /** none: write() before forwarding (survives a process crash); batch: fdatasync each group commit. */
  fsync: 'none' | 'batch';
  rotateBytes: number;
  /** 0: never rotate by age. */
  rotateMs: number;
}

/** The shared PostgreSQL audit table. */
export interface PostgresAuditConfig {
  host: string;
  port: number;
  database: string;
  user: string;
  password: SecretRef;
  tls: { mode: 'disable' | 'require' | 'verify-full'; ca?: string };
  table: string;
  maxQueue: number;
}

/** The NATS JetStream audit stream. */
export interface NatsAuditConfig {
  servers: string[];
  stream: string;
  subject: string;
  credentials: string | null;
  maxQueue: number;
}

export interface AuditConfig {
  primary: 'file' | 'postgres' | 'none';
  node: string;
  redactLiterals: boolean;
  chain: {
    /** Where the HMAC key comes from; `generate` is a key file dbward creates when missing. */
    key: { env: string } | { file: string } | { generate: string };
    headFile: string | null;
    headIntervalMs: number;
  };
  /** Null when the primary is postgres and no file section was given. */
  file: FileAuditConfig | null;
  postgres: PostgresAuditConfig | null;
  nats: NatsAuditConfig | null;
}

/** Just-in-time approvals: the store, notifiers and link signing. */
export interface ApprovalsConfig {
  store: 'memory' | 'postgres';
  /** Set with store postgres (the audit table's connection fields). */
  postgres: Omit<PostgresAuditConfig, 'maxQueue'> | null;
  replica: string;
  /** Base of approval links; null: http://<admin host>:<admin port>. */
  publicUrl: string | null;
  linkKey: { env: string } | { file: string } | null;
  /** Browser sign-in of approvers who open a signed link (OIDC authorization code with PKCE); null: the link page shows the CLI command. */
  signIn: ApprovalSignInConfig | null;
  sweepMs: number;
  slack: { webhookUrl: SecretRef; signingSecret: SecretRef | null } | null;
  webhooks: { name: string; url: string; secret: SecretRef }[];
  notifyTimeoutMs: number;
}

/** The OIDC client approvers sign in with, at identity.issuer; its redirect URI is <public_url>/approvals/sign-in/callback. */
export interface ApprovalSignInConfig {
  clientId: string;
  /** { none: true }: a public client (PKCE only). */
  clientSecret: SecretRef;
  scope: string;
  /** RFC 8707 resource indicator, for issuers that choose the access token's audience by it. */
  resource: string | null;
}

export interface AdminConfig {
  host: string;
  /** 0 picks a free port; null disables the admin server. */
  port: number | null;
  /** Groups whose members may search the audit trail over HTTP. */
  auditGroups: string[];
}

export interface LimitsConfig {
  /** Largest frontend message accepted after authentication (bytes). */
  maxMessageBytes: number;
  /** Largest startup-phase packet (PostgreSQL itself uses 10,000). */
  maxStartupBytes: number;
  /** A client must finish startup within this time. */
  startupTimeoutMs: number;
}

/** Where the guardrail policy comes from. */
export interface PolicyConfig {
  /** Absolute paths of policy files or directories. */
  paths: string[];
  watch: boolean;
}

export interface Config {
  /** Absolute path of the file this came from (for reload and relative paths). */
  source: string;
  listeners: ListenerConfig[];
  targets: TargetConfig[];
  identity: IdentitySettings;
  policy: PolicyConfig;
  audit: AuditConfig;
  masking: MaskingConfig;
  approvals: ApprovalsConfig;
  admin: AdminConfig;
  limits: LimitsConfig;
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' };
  shutdown: { drainTimeoutMs: number };
}

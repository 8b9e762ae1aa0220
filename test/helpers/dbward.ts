// Starts a real dbward daemon in-process for a test, on port 0, in front of the
// real PostgreSQL, with its own audit file.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { ApprovalsConfig, AuditConfig, Config, IdentitySettings, ListenerConfig, TargetConfig } from '../../src/config/types.js';
import { defaultApprovals } from '../../src/config/build.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import type { VerifierOptions } from '../../src/identity/verifier.js';
import { PG } from './services.js';

const ALLOW_ALL_POLICY = `default: allow
rules:
  - id: test-fast-path
    match: { statement: { functions: ["oid:*"] } }
    action: allow
`;

export interface TestDaemon {
  daemon: Daemon;
  port: number;
  auditPath: string;
  /** Parsed audit events written so far. */
  audit(): Record<string, any>[];
  stop(): Promise<void>;
}

/** A target pointing at the real local PostgreSQL. */
export function pgTarget(over: Partial<TargetConfig> = {}): TargetConfig {
  return {
    name: 'test', engine: 'postgres', host: PG.host, port: PG.port, database: PG.database, user: PG.user,
    password: { none: true }, tls: { mode: 'disable' }, environment: 'test', labels: {}, connectTimeoutMs: 3000,
    roles: [], defaultRole: null, ...over,
  };
}

/** Starts dbward with one listener on port 0 and the given targets. */
export async function startTestDaemon(opts: {
  targets?: TargetConfig[];
  listener?: Partial<ListenerConfig>;
  limits?: Partial<Config['limits']>;
  drainTimeoutMs?: number;
  auditPath?: string;
  /** Default: unverified (the protocol tests need no tokens); identity tests pass an oidc setting. */
  identity?: IdentitySettings;
  verifier?: VerifierOptions;
  /** Policy YAML; default: allow everything, fast-path calls included (the protocol tests are not about policy). */
  policy?: string;
  /** Policy files or directories to load instead of `policy`. */
  policyPaths?: string[];
  /** Groups allowed to search the trail over HTTP. */
  auditGroups?: string[];
  /** The audit section, given the audit file path (default: testAuditConfig). */
  audit?: (file: string) => AuditConfig;
  /** masking.hash_key. */
  maskingHashKey?: { env: string } | { file: string };
  /** masking.catalog_max_age_ms (default 30 s). */
  catalogMaxAgeMs?: number;
  /** Overrides of the approvals section (default: memory store, no notifiers). */
  approvals?: Partial<ApprovalsConfig>;
} = {}): Promise<TestDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbward-test-'));
  const auditPath = opts.auditPath ?? path.join(dir, 'audit.jsonl');
  const policyPath = path.join(dir, 'policy.yaml');
  fs.writeFileSync(policyPath, opts.policy ?? ALLOW_ALL_POLICY);
  const config: Config = {
    source: '(test)',
    listeners: [{ name: 'pg', engine: 'postgres', host: '127.0.0.1', port: 0, requireTls: false, allowPlaintextToken: false, ...opts.listener }],
    targets: opts.targets ?? [pgTarget()],
    identity: opts.identity ?? { mode: 'unverified' },
    policy: { paths: opts.policyPaths ?? [policyPath], watch: false },
    audit: opts.audit ? opts.audit(auditPath) : testAuditConfig(auditPath, dir),
    masking: { hashKey: opts.maskingHashKey ?? null, catalogMaxAgeMs: opts.catalogMaxAgeMs ?? 30_000 },
    approvals: { ...defaultApprovals(), sweepMs: 200, ...opts.approvals },
    admin: { host: '127.0.0.1', port: 0, auditGroups: opts.auditGroups ?? ['dbward-auditors'] },
    limits: { maxMessageBytes: 64 * 1024 * 1024, maxStartupBytes: 10_000, startupTimeoutMs: 5_000, ...opts.limits },
    log: { level: 'silent' },
    shutdown: { drainTimeoutMs: opts.drainTimeoutMs ?? 2_000 },
  };
  const daemon = await startDaemon(config, { log: pino({ level: process.env.DBWARD_TEST_LOG ?? 'silent' }), ...(opts.verifier && { verifier: opts.verifier }) });
  return {
    daemon,
    port: daemon.ports.pg!,
    auditPath,
    audit: () => fs.readFileSync(auditPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
    stop: () => daemon.stop(),
  };
}

/** The audit section tests use: the file sink at `file`, a generated chain key in `dir`. */
export function testAuditConfig(file: string, dir: string, overrides: Partial<AuditConfig> = {}): AuditConfig {
  return {
    primary: 'file', node: 'test', redactLiterals: false,
    chain: { key: { generate: path.join(dir, 'chain.key') }, headFile: null, headIntervalMs: 1000 },
    file: { path: file, fsync: 'none', rotateBytes: 268_435_456, rotateMs: 0 },
    postgres: null, nats: null,
    ...overrides,
  };
}

export interface RunResult { code: number; stdout: string; stderr: string }

/** Runs psql (the real CLI) with a connection string; never throws on a non-zero exit. */
export function psql(conninfo: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile('psql', [conninfo, '-X', '-v', 'ON_ERROR_STOP=1', ...args], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '5', ...opts.env }, timeout: opts.timeoutMs ?? 20_000,
    }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** The libpq connection string for a test daemon. */
export function conninfo(port: number, extra = ''): string {
  return `host=127.0.0.1 port=${port} dbname=test user=alice sslmode=disable ${extra}`.trim();
}

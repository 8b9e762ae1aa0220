// Wires a Config into a running dbward: audit sink, policy, listeners, admin
// server; and takes it down again (drain, flush the audit trail, close).

import fs from 'node:fs';
import type http from 'node:http';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import { authorizeAuditReader } from './admin/auth.js';
import { auditSearchHandler } from './admin/audit-api.js';
import { startAdminServer, type AdminRoute } from './admin/server.js';
import { auditDbOptions, connectAuditDb } from './audit/postgres-sink.js';
import { readKey } from './audit/head.js';
import { trailFiles, type PgHandle } from './audit/read.js';
import { TargetCatalog } from './masking/catalog.js';
import type { EventSource } from './audit/search.js';
import { Metrics } from './admin/metrics.js';
import { openTrail, type AuditTrail } from './audit/trail.js';
import { resolveSecret } from './config/secrets.js';
import type { Config, TargetConfig } from './config/types.js';
import { PolicyHolder, type PolicyLoad } from './policy/reload.js';
import { eventBase, type AuditEvent } from './audit/events.js';
import { eventLine, type StatementTexts } from './audit/serialize.js';
import { normalizePg } from './analysis/pg/normalize.js';
import { scrubSecrets } from './analysis/secrets.js';
import { AnalysisCache } from './analysis/cache.js';
import { analyzePg, loadPgParser } from './analysis/pg/analyze.js';
import { CancelRegistry } from './proxy/postgres/cancel.js';
import type { PgTarget, SessionAuth } from './proxy/postgres/connection.js';
import { PrewarmMetrics, PrewarmPool } from './proxy/postgres/prewarm.js';
import type { PipelineDeps } from './proxy/session.js';
import { TokenVerifier, type VerifierOptions } from './identity/verifier.js';
import { PgListener } from './proxy/postgres/listener.js';
import { approvalsRoute } from './admin/approvals-api.js';
import { approverSignIn } from './admin/sign-in.js';
import { MemoryApprovalStore } from './approvals/memory-store.js';
import { SlackNotifier, WebhookNotifier, type Notifier } from './approvals/notify.js';
import { PostgresApprovalStore } from './approvals/pg-store.js';
import { ApprovalService } from './approvals/service.js';
import type { ApprovalStore } from './approvals/types.js';

/** A running dbward. */
export interface Daemon {
  /** Bound ports by listener name (useful with port 0). */
  ports: Record<string, number>;
  adminPort: number | null;
  metrics: Metrics;
  log: Logger;
  audit: AuditTrail;
  approvals: ApprovalService;
  /** Loads the policy files again (SIGHUP); an invalid policy leaves the old one in force. Returns whether the new one is in force. */
  reloadPolicy(): boolean;
  /** Drains sessions (up to the configured timeout), flushes the audit trail, closes everything. */
  stop(): Promise<void>;
}

/** Starts dbward from a validated config. Secrets are resolved now, so a missing one fails at start. */
export async function startDaemon(config: Config, opts: { log?: Logger; verifier?: VerifierOptions } = {}): Promise<Daemon> {
  const log = opts.log ?? pino({ level: config.log.level, base: { service: 'dbward' } });
  const metrics = new Metrics();
  const prewarmMetrics = config.targets.some((t) => (t.prewarm ?? 0) > 0) ? new PrewarmMetrics(metrics.registry) : null;
  const targets = new Map<string, PgTarget>(config.targets.map((t) => [t.name, pgTarget(t, log, prewarmMetrics)]));
  const closePools = (): void => {
    for (const t of targets.values()) t.prewarm?.close();
    for (const c of catalogs.values()) c.close();
  };
  // The parser (WASM) loads once, before any client can send a statement; before the
  // trail opens, so a failure here leaves nothing open.
  await loadPgParser();
  const analysis = new AnalysisCache(analyzePg);
  const texts: StatementTexts = { normalize: normalizePg, scrub: scrubSecrets, redactLiterals: config.audit.redactLiterals };
  // One catalog per target, read on a masked session's first need and shared by all sessions.
  const catalogs = new Map([...targets.values()].map((t) => [t.info.name, new TargetCatalog(t.endpoint, log.child({ room: 'masking', target: t.info.name }), config.masking.catalogMaxAgeMs)]));
  const masking: PipelineDeps['masking'] = {
    catalog: (t) => catalogs.get(t.name)!,
    hashKey: config.masking.hashKey ? readKey(config.masking.hashKey, 'masking.hash_key', 'the masking hash key') : null,
  };
  // One verifier for all listeners: they share the discovered keys.
  const verifier = config.identity.mode === 'oidc' ? new TokenVerifier(config.identity.verifier, opts.verifier) : null;
  if (!verifier) log.warn('identity.mode is unverified: sessions are NOT authenticated (loopback listeners only)');
  const audit = await openTrail(config.audit, metrics, log.child({ room: 'audit' }));
  let adminBase: string | null = config.approvals.publicUrl;
  let approvals: ApprovalService;
  let linkKey: Buffer | null;
  try {
    linkKey = config.approvals.linkKey ? readKey(config.approvals.linkKey, 'approvals.link_key', 'the approval link key') : null;
    approvals = await approvalService(config, audit, log.child({ room: 'approvals' }), metrics, linkKey, () => adminBase);
  } catch (err) {
    await audit.close();
    throw err;
  }
  // An invalid policy stops dbward here: it never starts without one.
  let policy: PolicyHolder;
  try {
    policy = new PolicyHolder(config.policy.paths, log.child({ room: 'policy' }), metrics);
  } catch (err) {
    await approvals.close();
    await audit.close();
    throw err;
  }
  const recordPolicy = (load: PolicyLoad): void => {
    try {
      audit.sink.append(eventLine({ ...eventBase('-'), type: 'policy_reload', ...load } satisfies AuditEvent));
    } catch (err) {
      log.error({ err }, 'could not record the policy load in the audit trail');
    }
  };
  recordPolicy({ trigger: 'start', ...policy.describe('applied') });
  policy.onLoad = recordPolicy;
  if (config.policy.watch) policy.watch();
  const cancels = new CancelRegistry();
  const listeners: { name: string; listener: PgListener }[] = [];
  const ports: Record<string, number> = {};
  let admin: { server: http.Server; port: number } | null = null;
  let stopping = false;

  try {
    for (const l of config.listeners) {
      const secureContext = l.tls
        ? tls.createSecureContext({ cert: fs.readFileSync(l.tls.cert), key: fs.readFileSync(l.tls.key), minVersion: 'TLSv1.2' })
        : undefined;
      const auth: SessionAuth = config.identity.mode === 'oidc'
        ? { mode: 'oidc', verifier: verifier!, graceMs: config.identity.expiryGraceSec * 1000, allowPlaintextToken: l.allowPlaintextToken }
        : { mode: 'unverified' };
      const listener = new PgListener({
        targets, cancels, secureContext, requireTls: l.requireTls, auth, limits: config.limits, analysis,
        metrics, log: log.child({ listener: l.name }), audit: audit.sink, texts, policy, masking, approvals,
      });
      ports[l.name] = await listener.listen(l.host, l.port);
      listeners.push({ name: l.name, listener });
      log.info({ listener: l.name, host: l.host, port: ports[l.name], tls: Boolean(l.tls), requireTls: l.requireTls }, 'listening');
    }
    if (config.admin.port !== null) {
      admin = await startAdminServer(config.admin.host, config.admin.port, metrics, {
        problems: () => [
          ...audit.problems(),
          ...(stopping ? ['shutting down'] : []),
        ],
        warnings: () => [
          ...(policy.problem ? [`policy reload refused, previous policy in force: ${policy.problem}`] : []),
          ...audit.warnings(),
        ],
      }, routes(auditRoute(config, verifier, log), approvalsRoute({
        service: approvals, verifier, log: log.child({ room: 'approvals' }),
        linkKey,
        signIn: approverSignIn(config.approvals.signIn, verifier, linkKey, () => adminBase),
        slack: config.approvals.slack && {
          signingSecret: config.approvals.slack.signingSecret ? Buffer.from(resolveSecret(config.approvals.slack.signingSecret) ?? '') : null,
        },
      })));
      adminBase ??= `http://${config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host}:${admin.port}`;
      log.info({ host: config.admin.host, port: admin.port }, 'admin server listening');
    }
  } catch (err) {
    policy.close();
    await Promise.all(listeners.map((l) => l.listener.drain(0)));
    closePools();
    admin?.server.close();
    await approvals.close();
    await audit.close();
    throw err;
  }

  return {
    ports,
    adminPort: admin?.port ?? null,
    metrics,
    log,
    audit,
    approvals,
    reloadPolicy: () => policy.reload('SIGHUP'),
    async stop() {
      if (stopping) return;
      stopping = true;
      policy.close();
      log.info({ timeoutMs: config.shutdown.drainTimeoutMs }, 'draining sessions');
      await Promise.all(listeners.map((l) => l.listener.drain(config.shutdown.drainTimeoutMs)));
      closePools();
      if (admin) {
        const server = admin.server;
        await new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); });
      }
      await approvals.close();
      await audit.close();
      log.info('stopped');
    },
  };
}

/** /audit/... on the admin server: the trail's search, for callers with a token in one of admin.audit_groups. */
function auditRoute(config: Config, verifier: TokenVerifier | null, log: Logger): AdminRoute {
  const cfg = config.audit;
  const connect = (): Promise<PgHandle> => connectAuditDb(
    { ...auditDbOptions(cfg.postgres!), application_name: 'dbward audit search' },
    // A connection that dies while a search is paused on a slow reader ends that search, not the daemon.
    (err) => log.warn({ err }, 'audit search connection lost'),
  );
  const source = (): EventSource => (cfg.primary === 'postgres' || !cfg.file
    ? { kind: 'postgres', table: cfg.postgres!.table, connect }
    : { kind: 'files', paths: trailFiles(cfg.file.path) });
  const handler = auditSearchHandler({ source });
  return async (req, res, path) => {
    if (!path.startsWith('/audit/')) return false;
    const check = await authorizeAuditReader(req, verifier, config.admin.auditGroups);
    if (!check.ok) {
      res.writeHead(check.status, { 'content-type': 'application/json', ...(check.status === 401 && { 'www-authenticate': 'Bearer' }) })
        .end(JSON.stringify({ error: check.message }));
      return true;
    }
    log.info({ user: check.identity.user, url: req.url }, 'audit trail searched over HTTP');
    await handler(req, res);
    return true;
  };
}

/** Several admin routes, tried in order. */
function routes(...all: AdminRoute[]): AdminRoute {
  return async (req, res, path) => {
    for (const r of all) if (await r(req, res, path)) return true;
    return false;
  };
}

/** The approvals service from config: its store and notifiers. Secrets are read now, so a missing one fails at start. */
async function approvalService(config: Config, audit: AuditTrail, log: Logger, metrics: Metrics, linkKey: Buffer | null, baseUrl: () => string | null): Promise<ApprovalService> {
  const a = config.approvals;
  const notifiers: Notifier[] = [];
  if (a.slack) {
    const url = resolveSecret(a.slack.webhookUrl);
    if (!url) throw new Error('approvals.slack.webhook_url: the secret is empty');
    notifiers.push(new SlackNotifier({ webhookUrl: url, timeoutMs: a.notifyTimeoutMs }));
  }
  for (const w of a.webhooks) {
    notifiers.push(new WebhookNotifier({ name: w.name, url: w.url, secret: Buffer.from(resolveSecret(w.secret) ?? ''), timeoutMs: a.notifyTimeoutMs }));
  }
  const store: ApprovalStore = a.store === 'postgres'
    ? await PostgresApprovalStore.open({
      connection: { ...auditDbOptions({ ...a.postgres!, maxQueue: 0 }), application_name: 'dbward approvals' },
      table: a.postgres!.table,
      onError: (err) => log.warn({ err }, 'approval store connection problem'),
    })
    : new MemoryApprovalStore();
  return new ApprovalService({
    store, audit: audit.sink, notifiers, replica: a.replica, log, sweepMs: a.sweepMs, onStep: (step) => metrics.approvalSteps.inc({ step }),
    links: linkKey ? { key: linkKey, baseUrl } : null,
  });
}

function pgTarget(t: TargetConfig, log: Logger, prewarmMetrics: PrewarmMetrics | null): PgTarget {
  const target: PgTarget = {
    info: { name: t.name, engine: t.engine, database: t.database, environment: t.environment, labels: t.labels },
    endpoint: {
      host: t.host, port: t.port, database: t.database, user: t.user,
      password: resolveSecret(t.password),
      tlsMode: t.tls.mode,
      ca: t.tls.ca ? fs.readFileSync(t.tls.ca) : undefined,
      connectTimeoutMs: t.connectTimeoutMs,
    },
    roles: t.roles,
    defaultRole: t.defaultRole,
  };
  if ((t.prewarm ?? 0) > 0 && prewarmMetrics) {
    target.prewarm = new PrewarmPool(t.name, target.endpoint, t.prewarm!, log.child({ room: 'prewarm', target: t.name }), prewarmMetrics);
  }
  return target;
}


// `dbward dev` / `npm start`: dbward in front of an embedded demo database
// (PGlite, in a child process) and a development identity provider (oidc-provider
// on loopback), with a self-signed TLS certificate when openssl is available, a
// ready token and a ready-to-paste psql line.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/types.js';
import { defaultApprovals } from '../config/build.js';
import { startDaemon, type Daemon } from '../daemon.js';
import { startDemoDatabaseProcess } from '../embedded/demo-db-process.js';
import { createDevCertificate } from '../embedded/devcert.js';
import { TerminalNotifier } from '../approvals/notify.js';
import { ACCOUNTS, AGENT_CLIENT, APPROVALS_CLIENT_ID, APPROVALS_SCOPE, DBWARD_RESOURCE, DEVICE_CLIENT_ID, startDevIssuer, type DevIssuer } from '../embedded/dev-idp.js';
import { resolveIdentityConfig } from '../identity/types.js';

const DEV_POLICIES = ['baseline.yaml', 'where-required.yaml', 'pii-approval.yaml'];

/** Demo tokens live a working day, so the printed line keeps working. */
const DEV_TOKEN_TTL_SEC = 8 * 3600;

/** Starts the demo database and dbward in front of it; prints how to connect. */
export async function runDev(opts: { port: number; adminPort: number; idpPort: number; stateDir?: string }): Promise<Daemon & { onStop: () => Promise<void> }> {
  const stateDir = path.resolve(opts.stateDir ?? '.dbward');
  process.stderr.write('dbward dev: starting the embedded demo database (PGlite) and the development identity provider...\n');
  const [db, idp] = await Promise.all([startDemoDatabaseProcess(), startDevIssuer({ port: opts.idpPort, accessTokenTTL: DEV_TOKEN_TTL_SEC })]);
  let cert: Awaited<ReturnType<typeof createDevCertificate>>;
  try {
    cert = await createDevCertificate(path.join(stateDir, 'tls'));
  } catch (err) {
    process.stderr.write(`dbward dev: could not make a TLS certificate (${(err as Error).message}); TLS is off.\n`);
    cert = null;
  }
  const config: Config = {
    source: '(dev)',
    // Loopback only, so a plaintext token is tolerable when openssl is missing.
    listeners: [{ name: 'postgres', engine: 'postgres', host: '127.0.0.1', port: opts.port, requireTls: false, allowPlaintextToken: true, ...(cert ? { tls: cert } : {}) }],
    targets: [{
      name: 'demo', engine: 'postgres', host: db.host, port: db.port, database: db.database, user: db.user,
      password: { none: true }, tls: { mode: 'disable' }, environment: 'development', labels: { embedded: 'pglite' }, connectTimeoutMs: 5000,
      // PGlite is single-role, so the demo maps no groups to roles.
      roles: [], defaultRole: null,
    }],
    // The example policies: nobody changes role or touches server files; UPDATE/DELETE need
    // a WHERE; writes to the PII tables need approval; agents stay away from them.
    // Approvers open the printed link and sign in at the development identity provider.
    approvals: {
      ...defaultApprovals(),
      linkKey: { file: devLinkKey(stateDir) },
      signIn: { clientId: APPROVALS_CLIENT_ID, clientSecret: { none: true }, scope: APPROVALS_SCOPE, resource: DBWARD_RESOURCE },
    },
    policy: { paths: DEV_POLICIES.map((f) => fileURLToPath(new URL(`../../examples/policies/${f}`, import.meta.url))), watch: false },
    identity: {
      mode: 'oidc',
      verifier: resolveIdentityConfig({ issuer: idp.issuer, audience: 'dbward', kind: { claim: 'dbward_kind', agentClients: [AGENT_CLIENT.id] } }),
      expiryGraceSec: 0,
    },
    audit: {
      primary: 'file', node: 'dev', redactLiterals: false,
      chain: { key: { generate: path.join(stateDir, 'audit', 'chain.key') }, headFile: path.join(stateDir, 'audit-head.json'), headIntervalMs: 1000 },
      file: { path: path.join(stateDir, 'audit', 'dbward.jsonl'), fsync: 'none', rotateBytes: 268_435_456, rotateMs: 0 },
      postgres: null, nats: null,
    },
    masking: { hashKey: null, catalogMaxAgeMs: 30_000 },
    admin: { host: '127.0.0.1', port: opts.adminPort, auditGroups: ['dba'] },
    limits: { maxMessageBytes: 128 * 1024 * 1024, maxStartupBytes: 10_000, startupTimeoutMs: 10_000 },
    log: { level: 'info' },
    shutdown: { drainTimeoutMs: 5_000 },
  };
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config);
  } catch (err) {
    await Promise.all([db.stop(), idp.close()]);
    throw err;
  }
  const user = ACCOUNTS.alice!.email;
  let token: string;
  let approverToken: string;
  try {
    // carol is a privacy officer: she can approve what the pii-approval policy holds for alice.
    [token, approverToken] = await Promise.all([idp.mintToken('alice'), idp.mintToken('carol')]);
  } catch (err) {
    await Promise.all([daemon.stop(), db.stop(), idp.close()]);
    throw err;
  }
  const tokenFile = path.join(stateDir, 'alice.token');
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const approverFile = path.join(stateDir, 'carol.token');
  fs.writeFileSync(approverFile, `${approverToken}\n`, { mode: 0o600 });
  process.stderr.write(readyText(daemon, idp, { user, token, tokenFile, tls: Boolean(cert), audit: config.audit.file!.path }));
  daemon.approvals.addNotifier(new TerminalNotifier(process.stderr));
  return Object.assign(daemon, { onStop: async () => { await Promise.all([db.stop(), idp.close()]); } });
}

/** The approval link key of the dev state directory, made on first use. */
function devLinkKey(stateDir: string): string {
  const file = path.join(stateDir, 'approval-link.key');
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(file)) fs.writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  return file;
}

function readyText(daemon: Daemon, idp: DevIssuer, o: { user: string; token: string; tokenFile: string; tls: boolean; audit: string }): string {
  const sslmode = o.tls ? 'require' : 'disable';
  const cli = `--issuer ${idp.issuer} --client-id`;
  return [
    '',
    `dbward is ready. Demo target "demo" (embedded PGlite, seeded with PII), listener 127.0.0.1:${daemon.ports.postgres}.`,
    `Development identity provider: ${idp.issuer} (demo users ${Object.values(ACCOUNTS).map((a) => a.email).join(', ')}; any password).`,
    '',
    `A ready token for ${o.user}, valid ${DEV_TOKEN_TTL_SEC / 3600} h (also in ${o.tokenFile}):`,
    '',
    `  ${o.token}`,
    '',
    'Connect with it:',
    '',
    `  PGPASSWORD=${o.token} psql "host=127.0.0.1 port=${daemon.ports.postgres} dbname=demo user=${o.user} sslmode=${sslmode}"`,
    '',
    'Or get your own token:',
    `  dbward login ${cli} ${DEVICE_CLIENT_ID} --resource ${DBWARD_RESOURCE}     # device flow; then PGPASSWORD=$(dbward token)`,
    `  DBWARD_CLIENT_SECRET=${AGENT_CLIENT.secret} dbward token --client-credentials ${cli} ${AGENT_CLIENT.id} --resource ${DBWARD_RESOURCE}   # an AI agent (user ${AGENT_CLIENT.id})`,
    '',
    'Writes to the PII tables wait for a privacy officer. Each held statement prints its approve and deny links here:',
    'open one in a browser and sign in as carol@example.com (any password) to decide. Or, from another terminal:',
    `  DBWARD_TOKEN=$(cat ${path.join(path.dirname(o.tokenFile), 'carol.token')}) dbward approvals approve <request id> --url http://127.0.0.1:${daemon.adminPort}`,
    '',
    `Audit trail: ${o.audit}   Metrics: http://127.0.0.1:${daemon.adminPort}/metrics`,
    o.tls ? '' : 'openssl was not found, so TLS is off in dev mode.',
    'Ctrl-C stops.',
    '',
  ].join('\n');
}

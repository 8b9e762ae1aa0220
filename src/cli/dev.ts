// `dbward dev` / `npm start`: dbward in front of an embedded demo database
// (PGlite, in a child process), with a self-signed TLS certificate when openssl is available, and a
// ready-to-paste psql line.

import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/types.js';
import { startDaemon, type Daemon } from '../daemon.js';
import { startDemoDatabaseProcess } from '../embedded/demo-db-process.js';
import { createDevCertificate } from '../embedded/devcert.js';

/** Starts the demo database and dbward in front of it; prints how to connect. */
export async function runDev(opts: { port: number; adminPort: number; stateDir?: string }): Promise<Daemon & { onStop: () => Promise<void> }> {
  const stateDir = path.resolve(opts.stateDir ?? '.dbward');
  process.stderr.write('dbward dev: starting the embedded demo database (PGlite)...\n');
  const db = await startDemoDatabaseProcess();
  let cert: Awaited<ReturnType<typeof createDevCertificate>>;
  try {
    cert = await createDevCertificate(path.join(stateDir, 'tls'));
  } catch (err) {
    process.stderr.write(`dbward dev: could not make a TLS certificate (${(err as Error).message}); TLS is off.\n`);
    cert = null;
  }
  const config: Config = {
    source: '(dev)',
    listeners: [{ name: 'postgres', engine: 'postgres', host: '127.0.0.1', port: opts.port, requireTls: false, ...(cert ? { tls: cert } : {}) }],
    targets: [{
      name: 'demo', engine: 'postgres', host: db.host, port: db.port, database: db.database, user: db.user,
      password: { none: true }, tls: { mode: 'disable' }, environment: 'development', labels: { embedded: 'pglite' }, connectTimeoutMs: 5000,
    }],
    audit: { file: { path: path.join(stateDir, 'audit', 'dbward.jsonl'), fsync: 'none' } },
    admin: { host: '127.0.0.1', port: opts.adminPort },
    limits: { maxMessageBytes: 128 * 1024 * 1024, maxStartupBytes: 10_000, startupTimeoutMs: 10_000 },
    log: { level: 'info' },
    shutdown: { drainTimeoutMs: 5_000 },
  };
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config);
  } catch (err) {
    await db.stop();
    throw err;
  }
  const user = os.userInfo().username || 'developer';
  const sslmode = cert ? 'require' : 'disable';
  process.stderr.write([
    '',
    `dbward is ready. Demo target "demo" (embedded PGlite, seeded with PII), listener 127.0.0.1:${daemon.ports.postgres}.`,
    '',
    `  psql "host=127.0.0.1 port=${daemon.ports.postgres} dbname=demo user=${user} sslmode=${sslmode}"`,
    '',
    `Audit trail: ${config.audit.file.path}   Metrics: http://127.0.0.1:${daemon.adminPort}/metrics`,
    cert ? '' : 'openssl was not found, so TLS is off in dev mode.',
    'Ctrl-C stops.',
    '',
  ].join('\n'));
  return Object.assign(daemon, { onStop: () => db.stop() });
}

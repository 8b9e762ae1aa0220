#!/usr/bin/env node
// The dbward command. `start -c FILE` runs the daemon from a config file;
// `dev` runs it on the embedded demo database (what `npm start` does).

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Daemon } from '../daemon.js';

const HELP = `dbward: identity-aware database proxy

Usage:
  dbward start -c dbward.yaml     run the proxy from a config file
  dbward dev [--port 6432] [--admin-port 6480] [--idp-port 6488] [--state-dir .dbward]
                                  run on an embedded demo database (what npm start does)
  dbward login --issuer URL --client-id ID [--resource R] [--scope S]
                                  log in with the OIDC device flow; caches the tokens
  dbward token                    print a valid access token: PGPASSWORD=$(dbward token)
  dbward token --client-credentials --issuer URL --client-id ID [--resource R]
                                  token for a service or agent (secret in DBWARD_CLIENT_SECRET)
  dbward policy check|test|explain ...
                                  lint policies, run policy test cases, explain a decision
  dbward audit verify|search|session|tail ...
                                  verify the audit trail's chain, search it, follow it
  dbward approvals list|show|approve|deny [ID] [--reason TEXT] [--url ADMIN_URL]
                                  see and decide approval requests (as the logged-in user)
  dbward --version

Signals: SIGTERM/SIGINT drain sessions (up to shutdown.drain_timeout_ms) and exit;
SIGHUP reloads the policy (an invalid one leaves the previous policy in force).
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(HELP);
    return command ? 0 : 2;
  }
  // `dbward audit verify --help`: the command's own usage, whatever follows it.
  const asksHelp = rest.includes('--help') || rest.includes('-h');
  if (asksHelp && (command === 'start' || command === 'dev')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (asksHelp && (command === 'policy' || command === 'audit')) rest.splice(0, rest.length, 'help');
  if (command === '--version' || command === '-v') {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`dbward ${pkg.version}\n`);
    return 0;
  }
  if (command === 'start') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
    if (!values.config) {
      process.stderr.write('dbward start: missing -c FILE\n');
      return 2;
    }
    // Loaded per command, so `$(dbward token)` does not pay for the daemon's modules.
    const [{ loadConfig }, { startDaemon }] = await Promise.all([import('../config/load.js'), import('../daemon.js')]);
    const daemon = await startDaemon(loadConfig(values.config));
    await untilSignal(daemon);
    return 0;
  }
  if (command === 'dev') {
    const { values } = parseArgs({
      args: rest, strict: true,
      options: { port: { type: 'string' }, 'admin-port': { type: 'string' }, 'idp-port': { type: 'string' }, 'state-dir': { type: 'string' } },
    });
    // Loaded only here: production `start` never loads the embedded database.
    const { runDev } = await import('./dev.js');
    const daemon = await runDev({
      port: values.port ? Number(values.port) : 6432,
      adminPort: values['admin-port'] ? Number(values['admin-port']) : 6480,
      idpPort: values['idp-port'] ? Number(values['idp-port']) : 6488,
      ...(values['state-dir'] ? { stateDir: values['state-dir'] } : {}),
    });
    await untilSignal(daemon);
    return 0;
  }
  if (command === 'policy') {
    const { policyCommand } = await import('./policy.js');
    return policyCommand(rest);
  }
  if (command === 'audit') {
    const { auditCommand } = await import('./audit.js');
    return auditCommand(rest);
  }
  if (command === 'approvals') {
    const { approvalsCommand } = await import('./approvals.js');
    return approvalsCommand(rest);
  }
  if (command === 'login' || command === 'token') {
    // Loaded only here: the daemon never needs the OIDC client side.
    const auth = await import('./auth.js');
    return command === 'login' ? auth.login(rest) : auth.token(rest);
  }
  process.stderr.write(`dbward: unknown command "${command}"\n\n${HELP}`);
  return 2;
}

/** Waits for SIGTERM or SIGINT, then drains; a second signal exits at once. */
function untilSignal(daemon: Daemon & { onStop?: () => Promise<void> }): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) process.exit(130);
      stopping = true;
      daemon.log.info({ signal: sig }, 'signal received');
      void daemon.stop().then(async () => { await daemon.onStop?.(); resolve(); });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => { daemon.reloadPolicy(); });
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    // Matched by code: ConfigError's module is loaded lazily, only by `start`.
    if (e.code === 'CONFIG_INVALID') process.stderr.write(`dbward: invalid configuration\n${e.message}\n`);
    else process.stderr.write(`dbward: ${e.message ?? String(err)}\n`);
    process.exit(1);
  },
);
